"""The dashboard in headless Chromium against a live `btc-predictor serve` with real data."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from btc_predictor.config import Settings
from btc_predictor.services.ingest import ingest
from btc_predictor.services.training import train
from btc_predictor.shapes.requests import IngestRequest, TrainRequest
from btc_predictor.storage.db import create_db_engine, upgrade
from tests.api.conftest import API_KEY
from tests.api.live import serving
from tests.conftest import NOW, REPO, unavailable

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the dev extra is missing: the browser fixture skips (fails in CI)
    expect = sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("BTCP_TEST_ARTIFACTS") or REPO / ".artifacts")
# No network in tests: the worker's first-start refresh fails at once instead of retrying.
OFFLINE = {"BTCP_SOURCE_RETRIES": "0", "BTCP_TRAIN_EPOCHS": "1"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium (Debian's) for the whole module."""
    if not CHROMIUM.is_file():
        unavailable(f"{CHROMIUM} not found (apt-get install chromium)")
    if sync_playwright is None:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[str]:
    """`serve` (with its worker) over real BTC history, an active drift model and (trained
    after it, so the price intervals stay static) an active har risk model."""
    root = tmp_path_factory.mktemp("dashboard")
    settings = Settings(data_dir=root / "data", api_key=API_KEY, sources=["yahoo"])
    engine = create_db_engine(settings)
    upgrade(engine)
    csv = shared_data / "Bitstamp_BTCUSD_d.csv"
    ingest(settings, engine, IngestRequest(asset="BTC-USD", path=csv), now=NOW)
    train(settings, engine, TrainRequest(model="drift", promote="always"), now=NOW)
    train(settings, engine, TrainRequest(model="har", promote="always"), now=NOW)
    engine.dispose()
    with serving(settings.data_dir, root / "serve.log", **OFFLINE) as url:
        yield url


class Dashboard:
    """A page on /ui with every console error and uncaught exception collected."""

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.goto(f"{url}/ui")
        self.settled()

    def settled(self) -> None:
        """Wait until the page has loaded and no refresh is running."""
        self.page.wait_for_selector("body[data-loaded='true']:not([data-busy])")

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def text(self, selector: str) -> str:
        return str(self.page.locator(selector).inner_text())


@pytest.fixture
def dashboard(browser: Any, server: str) -> Iterator[Dashboard]:
    """The loaded dashboard in a fresh browser context (its own sessionStorage)."""
    board = Dashboard(browser, server)
    yield board
    board.context.close()


def money(text: str) -> float:
    """Parse en-US currency text ("$90,892.09") back into a number."""
    match = re.fullmatch(r"\$([\d,]+\.\d{2})", text.strip())
    assert match, f"not en-US money: {text!r}"
    return float(match.group(1).replace(",", ""))


def test_dashboard_loads_cleanly_and_shows_the_data_state(
    dashboard: Dashboard, server: str
) -> None:
    asset = requests.get(f"{server}/api/v1/assets", timeout=5).json()[0]
    assert dashboard.problems == []
    assert dashboard.page.locator("#asset").input_value() == "BTC-USD"
    assert money(dashboard.text("[data-testid=last-close]")) == 90832.0
    assert dashboard.text("#last-date") == "Nov 29, 2025"
    assert dashboard.text("[data-testid=active-model]") == "drift v1"
    # The shared data ends in 2025 and the server runs on the real clock: it is stale.
    assert asset["stale"] is True
    assert dashboard.page.locator("[data-testid=stale-warning]").is_visible()
    assert "no data yet" not in dashboard.text("main").lower()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dashboard.page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def drawn_pixels(dashboard: Dashboard, selector: str) -> int:
    """Non-transparent pixels on the chart's canvas (uPlot draws series on one canvas)."""
    return int(
        dashboard.page.locator(f"{selector} canvas").evaluate(
            "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
            ".filter((v, i) => i % 4 === 3 && v > 0).length"
        )
    )


def test_chart_draws_the_history_and_forecast_the_api_returns(
    dashboard: Dashboard, server: str
) -> None:
    chart = dashboard.page.locator("[data-testid=forecast-chart]")
    candles = requests.get(f"{server}/api/v1/assets/BTC-USD/candles?limit=180", timeout=5).json()
    forecast = requests.get(f"{server}/api/v1/forecast?horizon=14", timeout=5).json()
    assert int(chart.get_attribute("data-history-points")) == len(candles) == 180
    assert int(chart.get_attribute("data-forecast-points")) == len(forecast["points"]) == 14
    assert int(chart.get_attribute("data-naive-points")) == 14
    assert drawn_pixels(dashboard, "[data-testid=forecast-chart]") > 2000
    assert "naive (last close held flat)" in dashboard.text("[data-testid=forecast-chart]")
    dashboard.page.select_option("#horizon", "7")
    dashboard.page.select_option("#history-days", "90")
    dashboard.page.wait_for_selector(
        "[data-testid=forecast-chart][data-forecast-points='7'][data-history-points='90']"
    )


def test_metrics_card_shows_the_api_forecast_and_the_verdict(
    dashboard: Dashboard, server: str
) -> None:
    forecast = requests.get(f"{server}/api/v1/forecast?horizon=1", timeout=5).json()
    active = next(
        v
        for v in requests.get(f"{server}/api/v1/models", timeout=5).json()
        if v["active"] and v["family"] == "price"
    )
    point = forecast["points"][0]
    assert money(dashboard.text("[data-testid=next-day-forecast]")) == round(point["value"], 2)
    low, high = dashboard.text("[data-testid=next-day-interval]").split(" – ")
    assert (money(low), money(high)) == (round(point["lower"], 2), round(point["upper"], 2))
    assert dashboard.text("[data-testid=mase]") == f"{active['holdout_mase']:.3f}"
    assert abs(active["holdout_mase"] - 1) <= 0.005  # drift ties naive on daily BTC
    assert dashboard.text("[data-testid=verdict]") == "ties the naive forecast"
    assert "within ±0.5%" in dashboard.text("[data-testid=metrics-card]")
    ledger = requests.get(f"{server}/api/v1/predictions?limit=200", timeout=5).json()
    rows = dashboard.page.locator("[data-testid=ledger-table] tbody tr").count()
    assert rows == min(len(ledger), 50) > 0  # the dashboard's own forecast is in the ledger


def test_risk_card_shows_the_api_range_var_direction_and_verdict(
    dashboard: Dashboard, server: str
) -> None:
    from datetime import date

    risk = requests.get(f"{server}/api/v1/risk?horizon=14", timeout=5).json()
    forecast = requests.get(f"{server}/api/v1/forecast?horizon=14", timeout=5).json()
    active = next(
        v
        for v in requests.get(f"{server}/api/v1/models", timeout=5).json()
        if v["active"] and v["family"] == "risk"
    )
    assert dashboard.problems == []
    # The expected range for the next days, drawn as a band with naive.
    chart = dashboard.page.locator("[data-testid=risk-chart]")
    assert int(chart.get_attribute("data-points")) == len(risk["points"]) == 14
    assert drawn_pixels(dashboard, "[data-testid=risk-chart]") > 1000
    assert "naive range" in dashboard.text("[data-testid=risk-chart]")
    rows = dashboard.page.locator("[data-testid=risk-table] tbody tr")
    assert rows.count() == 7
    for i, point in enumerate(risk["points"][:7]):
        day, expected, band, naive = rows.nth(i).inner_text().split("\t")
        target = date.fromisoformat(point["target_date"])
        assert day == f"{target:%b} {target.day}, {target.year}"
        assert expected == f"{point['range_pct']:.2f}%"
        assert band == f"{point['range_lower_pct']:.2f}% – {point['range_upper_pct']:.2f}%"
        assert naive == f"{point['naive_range_pct']:.2f}%"
    # Next-day VaR: the risk answer's, which is the price forecast's distribution.
    first, price = risk["points"][0], forecast["points"][0]
    for level in (95, 99):
        var = first[f"var_{level}"]
        assert var is not None and var == pytest.approx(price[f"var_{level}"])
        node = dashboard.page.locator(f"[data-testid=var-{level}]")
        assert float(node.get_attribute("data-value")) == pytest.approx(var)
        assert f"{level}%: {var:.2f}% of the last close" in node.inner_text()
    # p_up, with the honest note: drift ties naive, so p_up stays at 0.5.
    p_up = price["p_up"]
    assert p_up == 0.5
    assert float(dashboard.page.locator("[data-testid=p-up]").get_attribute("data-value")) == p_up
    assert dashboard.text("[data-testid=p-up]") == f"{p_up:.1%}"
    assert dashboard.text("[data-testid=p-up-note]").startswith("no directional edge")
    notes = dashboard.page.evaluate(
        "async () => { const m = await import('./js/risk.js');"
        " return [0.449, 0.45, 0.55, 0.551].map(m.directionNote); }"
    )
    assert [n.split(":")[0] for n in notes] == [
        "leans down",
        "no directional edge",
        "no directional edge",
        "leans up",
    ]
    # The range model's holdout MASE with the price model's verdict rule.
    mase = active["holdout_mase"]
    assert dashboard.text("[data-testid=risk-mase]") == f"{mase:.3f}"
    verdict = (
        "beats the naive range"
        if mase < 0.995
        else "ties the naive range"
        if mase <= 1.005
        else "worse than naive"
    )
    assert dashboard.text("[data-testid=risk-verdict]") == verdict
    assert mase < 0.95  # har beats the naive range on real BTC (measured 0.668 here)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dashboard.page.locator("#risk-card").screenshot(path=str(ARTIFACTS / "dashboard-risk.png"))


def test_mutations_without_or_with_a_wrong_key_explain_why(dashboard: Dashboard) -> None:
    page = dashboard.page
    page.click("#train-start")
    error = page.locator("[data-testid=training-panel] > .error")
    error.wait_for()
    assert "Enter the API key first" in error.inner_text()
    page.fill("#api-key", "wrong-key")
    page.click("#key-save")
    page.click("#train-start")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=training-panel] > .error').textContent.includes('wrong API key')"
    )
    assert (
        error.inner_text() == "missing or wrong API key (send Authorization: Bearer <BTCP_API_KEY>)"
    )


def test_training_from_the_page_adds_a_version_to_the_table(
    dashboard: Dashboard, server: str
) -> None:
    page = dashboard.page
    before = {v["id"] for v in requests.get(f"{server}/api/v1/models", timeout=5).json()}
    page.fill("#api-key", API_KEY)
    page.click("#key-save")
    assert page.evaluate("sessionStorage.getItem('btcp.apiKey')") == API_KEY
    page.select_option("[data-testid=train-model]", "drift")
    page.click("#train-start")
    page.wait_for_selector(
        "[data-testid=training-panel][data-job-status='succeeded']", timeout=60_000
    )
    versions = requests.get(f"{server}/api/v1/models", timeout=5).json()
    (new,) = [v for v in versions if v["id"] not in before]
    row = page.locator(f"[data-testid=model-table] tr[data-version-id='{new['id']}']")
    row.wait_for()
    assert "drift" in row.inner_text()
    assert f"Stored as version {new['id']} (drift)" in dashboard.text("[data-testid=train-result]")
    assert dashboard.problems == []


def train_by_api(server: str) -> dict[str, Any]:
    """Store one more drift version (never promoted) and return it."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    job = requests.post(
        f"{server}/api/v1/train",
        json={"model": "drift", "promote": "never"},
        headers=auth,
        timeout=10,
    ).json()
    deadline = time.monotonic() + 60
    while job["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = requests.get(f"{server}/api/v1/jobs/{job['id']}", timeout=5).json()
    assert job["status"] == "succeeded", job
    return dict(
        requests.get(f"{server}/api/v1/models/{job['result']['version']}", timeout=5).json()
    )


def active_id(server: str) -> int:
    """The active price version (the worker's bootstrap also trains an active risk model)."""
    return int(
        next(
            v["id"]
            for v in requests.get(f"{server}/api/v1/models", timeout=5).json()
            if v["active"] and v["family"] == "price"
        )
    )


def test_promote_and_roll_back_from_the_model_table(dashboard: Dashboard, server: str) -> None:
    before = active_id(server)
    stored = train_by_api(server)
    page = dashboard.page
    page.fill("#api-key", API_KEY)
    page.click("#key-save")
    page.click("#reload")
    page.click(f"[data-testid=model-table] button[data-promote='{stored['id']}']")
    expect(page.locator("[data-testid=active-model]")).to_have_text(f"drift v{stored['id']}")
    # One active version per family: the price row is the promoted one.
    expect(
        page.locator("[data-testid=model-table] tr.is-active[data-family=price]")
    ).to_have_attribute("data-version-id", str(stored["id"]))
    assert active_id(server) == stored["id"]
    page.click("#rollback")
    expect(page.locator("[data-testid=active-model]")).to_have_text(f"drift v{before}")
    expect(page.locator("#models-status")).to_contain_text(
        f"version {before} (drift) is active again"
    )
    assert active_id(server) == before
    dashboard.settled()
    assert dashboard.problems == []


def test_a_backtest_started_from_the_page_is_charted_against_naive(
    dashboard: Dashboard, server: str
) -> None:
    page = dashboard.page
    page.fill("#api-key", API_KEY)
    page.click("#key-save")
    page.select_option("#backtest-model", "drift")
    page.fill("#backtest-days", "60")
    page.fill("#backtest-max-horizon", "3")
    page.click("#backtest-start")
    page.wait_for_selector("[data-testid=backtest-table] tbody tr >> nth=2", timeout=60_000)
    (job,) = requests.get(f"{server}/api/v1/backtests", timeout=5).json()
    result = requests.get(f"{server}/api/v1/backtests/{job['id']}", timeout=5).json()
    next_day = [r for r in result["series"] if r["h"] == 1]
    chart = page.locator("[data-testid=backtest-chart]")
    assert int(chart.get_attribute("data-points")) == len(next_day) == 60
    assert drawn_pixels(dashboard, "[data-testid=backtest-chart]") > 2000
    first = page.locator("[data-testid=backtest-table] tbody tr").first.inner_text().split("\t")
    assert money(first[2]) == round(result["horizons"][0]["mae"], 2)
    assert money(first[3]) == round(result["horizons"][0]["naive_mae"], 2)
    page.select_option("#backtest-horizon", "3")
    assert chart.get_attribute("data-points") == str(sum(r["h"] == 3 for r in result["series"]))
    assert dashboard.problems == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("#backtest-card").screenshot(path=str(ARTIFACTS / "dashboard-backtest.png"))


def test_a_risk_backtest_is_charted_as_daily_ranges_against_naive_range(
    dashboard: Dashboard, server: str
) -> None:
    page = dashboard.page
    page.fill("#api-key", API_KEY)
    page.click("#key-save")
    page.select_option("#backtest-model", "har")
    page.fill("#backtest-days", "60")
    page.fill("#backtest-max-horizon", "2")
    page.click("#backtest-start")
    expect(page.locator("#backtest-status")).to_contain_text("against naive-range", timeout=60_000)
    jobs = requests.get(f"{server}/api/v1/backtests", timeout=5).json()
    (job,) = [j for j in jobs if j["params"]["model"] == "har"]
    result = requests.get(f"{server}/api/v1/backtests/{job['id']}", timeout=5).json()
    assert result["family"] == "risk"
    first = page.locator("[data-testid=backtest-table] tbody tr").first.inner_text().split("\t")
    # ranges are shown in percent of the previous close, not as money
    assert first[2] == f"{result['horizons'][0]['range_mae']:.2f}%"
    assert first[3] == f"{result['horizons'][0]['naive_range_mae']:.2f}%"
    chart = page.locator("[data-testid=backtest-chart]")
    assert int(chart.get_attribute("data-points")) == 60
    assert dashboard.problems == []


@pytest.fixture
def empty_server(tmp_path: Path) -> Iterator[str]:
    """`serve` over a fresh data directory (no worker: it would try to download data)."""
    with serving(tmp_path / "data", tmp_path / "serve.log", BTCP_EMBEDDED_WORKER="false") as url:
        yield url


def test_an_empty_install_says_what_to_run(browser: Any, empty_server: str) -> None:
    board = Dashboard(browser, empty_server)
    try:
        assert board.problems == []
        empty = board.text("[data-testid=forecast-empty]")
        assert (
            empty
            == "No data yet: run btc-predictor ingest --asset BTC-USD (or ./run.sh local) to store its daily candles."
        )
        assert "No model yet: run btc-predictor train --asset BTC-USD" in board.text("#models-card")
        assert board.text("[data-testid=active-model]") == "none"
        assert (
            board.page.locator("[data-testid=forecast-chart]").get_attribute("data-history-points")
            == "0"
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        board.page.screenshot(path=str(ARTIFACTS / "dashboard-empty.png"), full_page=True)
    finally:
        board.context.close()
