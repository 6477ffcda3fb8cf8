"""The folders are the layers (DESIGN §9): imports point down only, and the core stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "btc_predictor"
GROUND = {"config", "errors", "logs", "telemetry", "__init__", "__main__"}
# Higher number = higher floor; a module may import its own floor and any lower one.
RANK = {
    "ground": 0,
    "shapes": 1,
    "forecasting": 2,
    "sources": 2,
    "storage": 3,
    "services": 4,
    "jobs": 5,
    "api": 6,
    "cli": 7,
}
# forecasting/ and sources/ share a floor but never import each other.
SIBLINGS = {("forecasting", "sources"), ("sources", "forecasting")}


def modules() -> list[tuple[tuple[str, ...], Path]]:
    """Every module of the package as (dotted parts inside the package, file)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found.append((parts, path))
    return found


def imported(path: Path) -> set[tuple[str, ...]]:
    """The package-internal modules ``path`` imports (anywhere in the file)."""
    names: set[tuple[str, ...]] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "btc_predictor":
                names.update((alias.name,) for alias in node.names)
            elif node.module.startswith("btc_predictor."):
                names.add(tuple(node.module.split(".")[1:]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("btc_predictor."):
                    names.add(tuple(alias.name.split(".")[1:]))
    return names


MODULES = modules()


def test_the_package_root_holds_only_the_ground_floor() -> None:
    loose = {parts[0] for parts, _ in MODULES if len(parts) == 1} - GROUND
    assert not loose, f"modules at the package root outside the ground floor: {sorted(loose)}"


@pytest.mark.parametrize(("parts", "path"), MODULES, ids=[".".join(p) for p, _ in MODULES])
def test_imports_point_down_only(parts: tuple[str, ...], path: Path) -> None:
    if parts == ("__main__",):
        return  # the process entry point calls the CLI by design
    own = "ground" if len(parts) == 1 else parts[0]
    for target in imported(path):
        # A package name is its layer; anything else is a root module or a name in __init__.
        other = target[0] if target[0] in RANK else "ground"
        assert (own, other) not in SIBLINGS, f"{'.'.join(parts)} imports {'.'.join(target)}"
        assert RANK[other] <= RANK[own], f"{'.'.join(parts)} imports upward: {'.'.join(target)}"


def test_forecasting_imports_only_errors_and_itself() -> None:
    for parts, path in MODULES:
        if parts[0] != "forecasting":
            continue
        for target in imported(path):
            assert target[0] in ("errors", "forecasting"), f"{'.'.join(parts)} imports {target}"


# SQLAlchemy's statement builders: only storage/ writes SQL (DESIGN §9).
SQL_BUILDERS = {"select", "insert", "update", "delete", "text", "func"}


def _from_sqlalchemy(node: ast.ImportFrom) -> set[str]:
    """Builders and dialect modules named by ``from sqlalchemy… import …``."""
    module = node.module or ""
    if module != "sqlalchemy" and not module.startswith("sqlalchemy."):
        return set()
    found = {module} if module.startswith("sqlalchemy.dialects") else set()
    wanted = SQL_BUILDERS | {"dialects"}
    return found | {f"{module}.{a.name}" for a in node.names if a.name in wanted}


def sql_uses(path: Path) -> set[str]:
    """The statement builders and dialect modules ``path`` imports or reaches by attribute."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    packages: set[str] = set()  # local names bound to the sqlalchemy package itself
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found |= _from_sqlalchemy(node)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sqlalchemy.dialects")}
            packages |= {a.asname or a.name for a in node.names if a.name == "sqlalchemy"}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in packages
            and node.attr in SQL_BUILDERS | {"dialects"}
        ):
            found.add(f"sqlalchemy.{node.attr}")
    return found


@pytest.mark.parametrize(("parts", "path"), MODULES, ids=[".".join(p) for p, _ in MODULES])
def test_only_storage_builds_sql(parts: tuple[str, ...], path: Path) -> None:
    if parts[0] == "storage":
        return
    assert not sql_uses(path), f"{'.'.join(parts)} builds SQL outside storage/: {sql_uses(path)}"
