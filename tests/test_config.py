"""Settings: every BTCP_ value is checked when read, with the one asset rule shared by all."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from btc_predictor.config import Settings
from btc_predictor.errors import InvalidInputError
from btc_predictor.shapes.common import first_problem
from btc_predictor.shapes.requests import ForecastRequest
from btc_predictor.sources.base import parse_asset


def test_assets_are_normalised_to_one_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BTCP_ASSETS", " btc/usd , eth-usd,SOL-EUR ")
    assert Settings().assets == ["BTC-USD", "ETH-USD", "SOL-EUR"]


@pytest.mark.parametrize(
    ("assets", "message"),
    [
        ("../x", "`../x` is not of the form BASE-QUOTE"),
        ("BTC-USD,BTCUSD", "`BTCUSD` is not of the form BASE-QUOTE"),
        ("BTC-USD,../../etc", "`../../etc` is not of the form BASE-QUOTE"),
        ("BTC-USD;ETH-USD", "is not of the form BASE-QUOTE"),
        ("BTC-USD,ETH-USD,btc/usd", "BTC-USD listed more than once"),
    ],
)
def test_malformed_or_duplicate_assets_are_refused(
    monkeypatch: pytest.MonkeyPatch, assets: str, message: str
) -> None:
    monkeypatch.setenv("BTCP_ASSETS", assets)
    with pytest.raises(ValidationError, match=message) as info:
        Settings()
    assert info.value.errors()[0]["loc"] == ("assets",)


@pytest.mark.parametrize("text", ["btc/usd", " ETH-usd ", "B-USD", "BTC-USDTTT", "BTC_USD", ""])
def test_settings_shapes_and_sources_apply_the_same_asset_rule(text: str) -> None:
    """One rule, defined once on the ground floor: all three agree on every symbol."""
    outcomes = []
    for check in (
        lambda: Settings(assets=[text]).assets[0],
        lambda: ForecastRequest(asset=text).asset,
        lambda: parse_asset(text).symbol,
    ):
        try:
            outcomes.append(check())
        except (ValidationError, InvalidInputError):
            outcomes.append(None)
    assert len(set(outcomes)) == 1, outcomes


def test_data_dir_must_be_a_folder_or_creatable(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    for data_dir in (file, file / "sub"):
        with pytest.raises(ValidationError, match=f"{file} is a file, not a folder"):
            Settings(data_dir=data_dir)
    assert Settings(data_dir=tmp_path / "new" / "data").data_dir == tmp_path / "new" / "data"


@pytest.mark.parametrize("url", ["foo", "://", "postgresql://u:secret@h:notaport/db"])
def test_a_malformed_database_url_is_refused_without_repeating_it(url: str) -> None:
    with pytest.raises(ValidationError, match="not a database URL") as info:
        Settings(database_url=url)
    where, message = first_problem(info.value)  # what the CLI prints
    assert where == "database_url" and "secret" not in message


def test_an_empty_database_url_means_the_default_sqlite_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="")
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve()}/btc_predictor.db"
