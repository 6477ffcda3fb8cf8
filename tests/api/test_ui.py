"""The dashboard's static files: served under /ui with the right types, complete, offline."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from btc_predictor.api.routes.ui import UI_DIR
from btc_predictor.shapes.common import MODEL_NAMES
from tests.conftest import REPO

UPLOT_VERSION = "1.6.32"
JS = ("text/javascript", "application/javascript")


class _Refs(HTMLParser):
    """Collects the src/href attributes of a page and the options of one select."""

    def __init__(self, select_id: str) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.options: list[str] = []
        self._select_id, self._in_select = select_id, False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "select":
            self._in_select = values.get("id") == self._select_id
        elif tag == "option" and self._in_select and values.get("value"):
            self.options.append(str(values["value"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._in_select = False


def page_refs(html: str, select_id: str = "train-model") -> _Refs:
    parser = _Refs(select_id)
    parser.feed(html)
    return parser


def test_ui_redirects_to_the_index_page(client: TestClient) -> None:
    moved = client.get("/ui", follow_redirects=False)
    assert moved.status_code == 307 and moved.headers["location"] == "ui/"
    assert client.head("/ui", follow_redirects=False).status_code == 307
    page = client.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for testid in (
        "forecast-chart",
        "metrics-card",
        "model-table",
        "training-panel",
        "ledger-table",
    ):
        assert f'data-testid="{testid}"' in page.text


@pytest.mark.parametrize(
    ("path", "types"),
    [
        ("js/app.js", JS),
        ("js/charts.js", JS),
        ("style.css", ("text/css",)),
        ("favicon.svg", ("image/svg+xml",)),
        ("vendor/uplot/uPlot.iife.min.js", JS),
        ("vendor/uplot/uPlot.min.css", ("text/css",)),
        ("vendor/uplot/LICENSE.txt", ("text/plain",)),
    ],
)
def test_assets_are_served_with_their_content_type(
    empty_client: TestClient, path: str, types: tuple[str, ...]
) -> None:
    answer = empty_client.get(f"/ui/{path}")
    assert answer.status_code == 200, path
    assert answer.headers["content-type"].split(";")[0] in types
    assert answer.content == (UI_DIR / path).read_bytes()


def test_every_file_the_page_and_its_modules_reference_is_served(empty_client: TestClient) -> None:
    html = empty_client.get("/ui/").text
    local = [r for r in page_refs(html).refs if not r.startswith(("../", "#"))]
    modules = sorted((UI_DIR / "js").glob("*.js"))
    imported = {
        f"js/{name.removeprefix('./')}"
        for module in modules
        for name in re.findall(r'from "(\./[\w.]+\.js)"', module.read_text())
    }
    assert imported == {f"js/{m.name}" for m in modules} - {"js/app.js"}  # no dead modules
    for ref in sorted({*local, *imported}):
        assert empty_client.get(f"/ui/{ref}").status_code == 200, ref
    api_links = [r for r in page_refs(html).refs if r.startswith("../")]
    assert api_links and all(empty_client.get(f"/{r[3:]}").status_code == 200 for r in api_links)


def test_the_dashboard_needs_no_network(empty_client: TestClient) -> None:
    own = [UI_DIR / "index.html", UI_DIR / "style.css", *sorted((UI_DIR / "js").glob("*.js"))]
    for path in own:
        assert not re.search(r"(https?:)?//[\w.-]+\.\w+/", path.read_text()), (
            f"{path.name} loads from a URL"
        )
    assert empty_client.get("/ui/vendor/uplot/uPlot.iife.min.js").text.startswith(
        f"/*! https://github.com/leeoniya/uPlot (v{UPLOT_VERSION}) */"
    )
    assert "MIT License" in empty_client.get("/ui/vendor/uplot/LICENSE.txt").text


def test_readme_names_the_vendored_chart_library_and_version() -> None:
    section = (REPO / "README.md").read_text().split("## Web dashboard", 1)[1].split("\n## ", 1)[0]
    assert (
        re.search(rf"uPlot(\]\([^)]+\))? {re.escape(UPLOT_VERSION)}", section) and "/ui" in section
    )


def test_training_and_backtest_forms_offer_exactly_the_api_models(empty_client: TestClient) -> None:
    options = page_refs(empty_client.get("/ui/").text).options
    assert options == list(MODEL_NAMES)


def test_unknown_ui_files_get_the_api_error_shape(empty_client: TestClient) -> None:
    answer = empty_client.get("/ui/nope.js")
    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found"


def test_the_dashboard_is_not_part_of_the_api_schema(empty_client: TestClient) -> None:
    paths = empty_client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/ui")]


def test_dashboard_files_are_counted_under_one_route_template(empty_client: TestClient) -> None:
    for path in ("/ui/", "/ui/js/app.js", "/ui/style.css"):
        assert empty_client.get(path).status_code == 200
    exposition = empty_client.get("/metrics").text
    endpoints = set(re.findall(r'bitcoin_lstm_requests_total\{[^}]*endpoint="([^"]*)"', exposition))
    assert {e for e in endpoints if e.startswith("/ui/")} == {"/ui/{path}"}  # a template, not files
