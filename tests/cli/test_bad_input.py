"""Every kind of bad input exits 2 with one line on stderr and changes nothing stored.

One table: bad files, flags, ids, paths and settings. ``{tmp}`` is a folder holding the files
of ``FILES``; ``{file}`` is a plain file there (a folder cannot be made under it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import db_fingerprint, run

CDD = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USD"
GOOD_ROW = "1704153600,2024-01-02,BTC/USD,1,2,1,1,1,1"
FILES: dict[str, bytes | str] = {
    "file": "not a folder",
    "empty.csv": b"",
    "binary.csv": b"\x00\x01\x02\x03",
    "columns.csv": "unix,date,symbol,open\n1,2,3,4\n",
    "number.csv": f"{CDD}\n{GOOD_ROW}\n1704067200,2024-01-01,BTC/USD,1,2,x1,1,1,1\n",
    "field.csv": f"{CDD}\n{GOOD_ROW}\n1704067200,2024-01-01,BTC/USD,1,2,{'9' * 200_000},1,1,1\n",
    "quote.csv": f'{CDD}\n{GOOD_ROW}\n1704067200,2024-01-01,BTC/USD,1,2,"1,1,1,1\n',
    "unix_9e15.csv": f"{CDD}\n{GOOD_ROW}\n9e15,2024-01-01,BTC/USD,1,2,1,1,1,1\n",
    "unix_1e20.csv": f"{CDD}\n{GOOD_ROW}\n1e20,2024-01-01,BTC/USD,1,2,1,1,1,1\n",
    "symbol.csv": f"{CDD}\n1704067200,2024-01-01,ETH/USD,1,2,1,1,1,1\n",
    "yahoo_date.csv": "Date,Open,High,Low,Close,Volume\nyesterday,1,2,1,1,1\n",
}
TOO_BIG = str(2**64)  # SQLite's OverflowError; PostgreSQL refuses from 2^31 already
NO_ENV: dict[str, str] = {}

# (args, extra environment, what the one line says)
CASES: list[tuple[list[str], dict[str, str], str]] = [
    # unusable CSV files
    (["ingest", "--path", "{tmp}/missing.csv"], NO_ENV, "missing.csv: no such file"),
    (["ingest", "--path", "{tmp}"], NO_ENV, "is a directory"),
    (["ingest", "--path", "{tmp}/empty.csv"], NO_ENV, "empty.csv: file is empty"),
    (["ingest", "--path", "{tmp}/binary.csv"], NO_ENV, "binary.csv: binary file"),
    (["ingest", "--path", "{tmp}/columns.csv"], NO_ENV, "missing column(s) high, low, close"),
    (["ingest", "--path", "{tmp}/number.csv"], NO_ENV, "number.csv:3: low `x1` is not a number"),
    (["ingest", "--path", "{tmp}/field.csv"], NO_ENV, "field.csv:3: not valid CSV (field larger"),
    (["ingest", "--path", "{tmp}/quote.csv"], NO_ENV, "quote.csv:3: not valid CSV (unexpected end"),
    (["ingest", "--path", "{tmp}/unix_9e15.csv"], NO_ENV, ":3: unix `9e15` is beyond the dates"),
    (["ingest", "--path", "{tmp}/unix_1e20.csv"], NO_ENV, ":3: unix `1e20` is beyond the dates"),
    (["ingest", "--path", "{tmp}/symbol.csv"], NO_ENV, ":2: row is for `ETH/USD`, not BTC-USD"),
    (["ingest", "--path", "{tmp}/yahoo_date.csv"], NO_ENV, ":2: date `yesterday` is not YYYY-MM"),
    # ingest flags
    (["ingest", "--source", "ftp", "--path", "{tmp}/number.csv"], NO_ENV, "unknown source `ftp`"),
    (["ingest", "--source", "yahoo", "--path", "{tmp}/number.csv"], NO_ENV, "--path is only for"),
    (["ingest", "--asset", "bitcoin"], NO_ENV, "--asset: `bitcoin` is not of the form BASE-QUOTE"),
    (["ingest", "--asset", "../x"], NO_ENV, "--asset: `../x` is not of the form BASE-QUOTE"),
    (
        ["ingest", "--since", "yesterday"],
        NO_ENV,
        "--since: `yesterday` is not a day (use YYYY-MM-DD)",
    ),
    (["ingest", "--since", "2024-02-30"], NO_ENV, "--since: `2024-02-30` is not a day"),
    # settings
    (["data", "status"], {"BTCP_MAX_DATA_AGE": "soon"}, "invalid setting BTCP_MAX_DATA_AGE"),
    (["data", "status"], {"BTCP_DATABASE_URL": "foo"}, "BTCP_DATABASE_URL: not a database URL"),
    (["data", "status"], {"BTCP_DATABASE_URL": "mysql://x/y"}, "is not SQLite or PostgreSQL"),
    (["data", "status"], {"BTCP_DATA_DIR": "{tmp}/file"}, "BTCP_DATA_DIR: {tmp}/file is a file"),
    (
        ["data", "status"],
        {"BTCP_DATABASE_URL": "sqlite:///{tmp}/file/db/btc.db"},
        "cannot create {tmp}/file/db for the database: {tmp}/file is a file",
    ),
    (
        ["data", "status"],
        {"BTCP_DATABASE_URL": "sqlite:////proc/btcp/btc.db"},
        "cannot create /proc/btcp for the database",
    ),
    (["data", "status"], {"BTCP_ASSETS": "BTC-USD,../x"}, "BTCP_ASSETS: `../x` is not of the form"),
    (["data", "status"], {"BTCP_ASSETS": "BTC-USD,btc/usd"}, "BTC-USD listed more than once"),
    (["data", "status", "--asset", "DOGE-USD"], NO_ENV, "asset DOGE-USD is neither tracked nor"),
    # train
    (["train", "--seed", "-1"], NO_ENV, "--seed: Input should be greater than or equal to 0"),
    (["train", "--seed", str(2**31)], NO_ENV, "--seed: Input should be less than or equal to 2147"),
    (["train", "--promote", "sometimes"], NO_ENV, "--promote: Input should be 'auto', 'always' or"),
    (
        ["train", "--model", "prophet"],
        NO_ENV,
        "--model: unknown model `prophet` (valid models: nai",
    ),
    (["train", "--asset", "DOGE-USD", "--model", "naive"], NO_ENV, "no data for DOGE-USD"),
    (["train", "--model", "naive", "--start", "2025-10-01"], NO_ENV, "needs at least 295"),
    # predict
    (
        ["predict", "--model", "foo"],
        NO_ENV,
        "--model: unknown model `foo` (valid models: naive, dr",
    ),
    (
        ["predict", "--horizon", "0"],
        NO_ENV,
        "--horizon: Input should be greater than or equal to 1",
    ),
    (["predict", "--horizon", "31"], NO_ENV, "horizon 31 is out of range (1..30)"),
    (["predict", "--level", "49"], NO_ENV, "--level: Input should be greater than or equal to 50"),
    (["predict", "--asset", "ETH-USD"], NO_ENV, "asset ETH-USD is neither tracked nor stored"),
    (["predict", "--model", "drift"], NO_ENV, "no drift version for BTC-USD"),
    # a risk model asked for a price forecast: the line says where to ask instead
    (["predict", "--model", "har"], NO_ENV, "`har` is a risk model: it forecasts the daily range"),
    (["predict", "--model", "naive-range"], NO_ENV, "ask `btc-predictor risk` or GET /api/v1/risk"),
    # risk (no risk version is stored: the line says what to train)
    (["risk"], NO_ENV, "no active risk model for BTC-USD: run `btc-predictor train --model har"),
    (["risk", "--model", "ewma-vol"], NO_ENV, "run `btc-predictor train --model ewma-vol --asset"),
    (["risk", "--model", "foo"], NO_ENV, "--model: unknown risk model `foo` (valid risk models"),
    (["risk", "--horizon", "0"], NO_ENV, "--horizon: Input should be greater than or equal to 1"),
    (["risk", "--horizon", "31"], NO_ENV, "horizon 31 is out of range (1..30)"),
    (["risk", "--level", "100"], NO_ENV, "--level: Input should be less than or equal to 99"),
    (["risk", "--asset", "ETH-USD"], NO_ENV, "asset ETH-USD is neither tracked nor stored"),
    (["risk", "--asset", "bitcoin"], NO_ENV, "--asset: `bitcoin` is not of the form BASE-QUOTE"),
    # a price model asked for a risk forecast: the line says where to ask instead
    (["risk", "--model", "lstm"], NO_ENV, "`lstm` is a price model: it forecasts closes"),
    (["risk", "--model", "drift"], NO_ENV, "ask `btc-predictor predict` or GET /api/v1/forecast"),
    # backtest (paths are checked before the backtest runs)
    (["backtest", "--days", "9", "--start", "2024-01-01"], NO_ENV, "give days or start, not both"),
    (["backtest", "--days", "5000", "--model", "naive"], NO_ENV, "leaves no history to fit on"),
    (["backtest", "--model", "naive", "--plot", "{tmp}"], NO_ENV, "is a folder, not a file"),
    (
        ["backtest", "--model", "naive", "--plot", "{tmp}/file/bt.png"],
        NO_ENV,
        "--plot {tmp}/file/bt.png: {tmp}/file is a file, not a folder",
    ),
    (
        ["backtest", "--model", "naive", "--plot", "/proc/btcp/bt.png"],
        NO_ENV,
        "--plot /proc/btcp/bt.png: cannot write in /proc",
    ),
    # model versions
    (["models", "list", "--model", "foo"], NO_ENV, "--model: unknown model `foo` (valid models:"),
    (["models", "list", "--asset", "bitcoin"], NO_ENV, "asset `bitcoin` is not of the form"),
    (["models", "show", "42"], NO_ENV, "no model version 42"),
    (["models", "show", "0"], NO_ENV, "version: Input should be greater than or equal to 1"),
    (["models", "show", TOO_BIG], NO_ENV, "version: Input should be less than or equal to 2147"),
    (["models", "show", str(2**31)], NO_ENV, "version: Input should be less than or equal to"),
    (["models", "promote", TOO_BIG], NO_ENV, "version: Input should be less than or equal to"),
    (["models", "promote", "42"], NO_ENV, "no model version 42"),
    (["models", "export", TOO_BIG, "{tmp}/out"], NO_ENV, "version: Input should be less than or"),
    (["models", "export", "1", "{tmp}/file"], NO_ENV, "output folder {tmp}/file: {tmp}/file is a"),
    (["models", "export", "1", "{tmp}/file/out"], NO_ENV, "{tmp}/file is a file, not a folder"),
    (["models", "export", "1", "/proc/btcp"], NO_ENV, "output folder /proc/btcp: cannot write in"),
    (["models", "rollback"], NO_ENV, "no earlier promoted version"),
    (["models", "rollback", "--asset", "x"], NO_ENV, "asset `x` is not of the form BASE-QUOTE"),
    (["models", "rollback", "--family", "risk"], NO_ENV, "no earlier promoted version (risk fam"),
    (["models", "rollback", "--family", "vol"], NO_ENV, "--family: Input should be 'price' or 'ri"),
    (["models", "list", "--family", "vol"], NO_ENV, "--family: Input should be 'price' or 'risk'"),
]


@pytest.fixture(scope="module")
def installed(
    tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> tuple[dict[str, str], Path]:
    """Real BTC data, version 1 (naive) active, and the bad files: shared by every case."""
    tmp = tmp_path_factory.mktemp("bad")
    env = {"BTCP_DATA_DIR": str(tmp / "data"), "BTCP_SOURCES": "yahoo"}
    code, _out, err = run(env, "ingest", "--path", str(shared_data / "Bitstamp_BTCUSD_d.csv"))
    assert code == 0, err
    code, _out, err = run(env, "train", "--model", "naive", "--promote", "always")
    assert code == 0, err
    for name, content in FILES.items():
        path = tmp / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return env, tmp


def case_id(args: list[str], extra: dict[str, str]) -> str:
    """``models show 0``, or ``data status BTCP_ASSETS`` for a bad setting."""
    return " ".join([*args, *extra])


@pytest.mark.parametrize(
    ("args", "extra", "message"), CASES, ids=[case_id(a, e) for a, e, _ in CASES]
)
def test_bad_input_exits_2_with_one_line_and_changes_nothing(
    installed: tuple[dict[str, str], Path], args: list[str], extra: dict[str, str], message: str
) -> None:
    env, tmp = installed

    def fill(text: str) -> str:
        return text.replace("{tmp}", str(tmp))

    before = db_fingerprint(env)
    code, out, err = run({**env, **{k: fill(v) for k, v in extra.items()}}, *map(fill, args))
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert fill(message) in err, err
    assert "Traceback" not in err + out
    assert db_fingerprint(env) == before
    assert not (tmp / "out").exists()
