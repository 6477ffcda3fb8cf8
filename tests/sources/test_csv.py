"""CSV source: CryptoDataDownload and Yahoo formats, real files, and every kind of bad file."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from btc_predictor.errors import DataFileError
from btc_predictor.sources.base import parse_asset
from btc_predictor.sources.csv import CsvSource
from btc_predictor.sources.validate import validate_candles

BTC = parse_asset("BTC-USD")
END = date(2100, 1, 1)
CDD_HEADER = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USD"


def write(tmp_path: Path, text: str | bytes, name: str = "f.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def cdd_row(day: int, close: float = 100.0, vb: float = 2.0, vq: float | None = None) -> str:
    ts = int(datetime(2024, 1, day, tzinfo=UTC).timestamp())
    quote = vb * close if vq is None else vq
    return f"{ts},2024-01-{day:02d} 00:00:00,BTC/USD,{close},{close + 1},{close - 1},{close},{vb},{quote}"


def test_real_btc_file(shared_data: Path) -> None:
    result = CsvSource(shared_data / "Bitstamp_BTCUSD_d.csv").fetch(BTC, None, END)
    assert len(result.candles) == 4020
    assert result.candles[0].ts.date() == date(2014, 11, 28)
    assert result.candles[-1].ts.date() == date(2025, 11, 29)
    assert result.fixed_volume == 1180
    assert sum(1 for c in result.candles if c.volume == 0) == 8
    assert "2025-11-30" in result.notes[0]


def test_real_eth_file_without_banner(shared_data: Path) -> None:
    result = CsvSource(shared_data / "Bitstamp_ETHUSD_d.csv").fetch(
        parse_asset("ETH-USD"), None, END
    )
    checked = validate_candles(result.candles, datetime(2025, 12, 1, tzinfo=UTC))
    assert (len(checked.valid), len(checked.rejected), result.fixed_volume) == (1437, 988, 111)
    assert checked.valid[0].ts.date() == date(2017, 11, 9)
    assert checked.valid[-1].ts.date() == date(2021, 10, 15)


def test_newest_row_is_dropped_and_rows_come_back_ascending(tmp_path: Path) -> None:
    text = "\n".join(
        ["https://www.CryptoDataDownload.com", CDD_HEADER, cdd_row(3), cdd_row(2), cdd_row(1)]
    )
    result = CsvSource(write(tmp_path, text)).fetch(BTC, None, END)
    assert [c.ts.day for c in result.candles] == [1, 2]


def test_swapped_volumes_are_fixed_only_when_clearly_swapped(tmp_path: Path) -> None:
    rows = [
        cdd_row(4),  # newest: dropped
        cdd_row(3, close=400.0, vb=2_000_000.0, vq=5_000.0),  # swapped: 5000 BTC * 400 ≈ 2e6 USD
        cdd_row(2, close=400.0, vb=0.0, vq=0.0),  # zero volume is valid, never "fixed"
        cdd_row(1, close=400.0, vb=3.0, vq=1300.0),  # consistent: left alone
    ]
    result = CsvSource(write(tmp_path, "\n".join([CDD_HEADER, *rows]))).fetch(BTC, None, END)
    assert result.fixed_volume == 1
    assert [c.volume for c in result.candles] == [3.0, 0.0, 5_000.0]


def test_millisecond_timestamps_and_range_filter(tmp_path: Path) -> None:
    ms = int(datetime(2024, 1, 5, tzinfo=UTC).timestamp() * 1000)
    rows = [cdd_row(6), f"{ms},2024-01-05,BTC/USD,10,11,9,10,1,10", cdd_row(4), cdd_row(3)]
    result = CsvSource(write(tmp_path, "\n".join([CDD_HEADER, *rows]))).fetch(
        BTC, date(2024, 1, 4), date(2024, 1, 6)
    )
    assert [c.ts.day for c in result.candles] == [4, 5]


def test_yahoo_export_format(tmp_path: Path) -> None:
    text = "Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-01,1,2,0.5,1.5,1.5,100\n2024-01-02,1.5,2,1,1.8,1.8,0\n"
    result = CsvSource(write(tmp_path, text)).fetch(BTC, None, END)
    assert [(c.ts.date(), c.close, c.volume) for c in result.candles] == [
        (date(2024, 1, 1), 1.5, 100.0),
        (date(2024, 1, 2), 1.8, 0.0),
    ]
    assert result.fixed_volume == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "binary file"),
        (b"\xff\xfe\xfa not utf8 at all", "not UTF-8"),
        ("just,some,columns\n1,2,3\n", ":1: no recognised header"),
        ("unix,date,symbol,open,high,low\n1,2,3,4,5,6\n", "missing column(s) close"),
        (f"{CDD_HEADER}\n", "header only"),
        (
            f"{CDD_HEADER}\n{cdd_row(2)}\n1704067200,2024-01-01,BTC/USD,1,2,abc,1,1,1\n",
            ":3: low `abc` is not a number",
        ),
        (
            f"{CDD_HEADER}\n{cdd_row(2)}\n1704067200,2024-01-01,BTC/USD,1,2\n",
            ":3: missing value for `low`",
        ),
        (
            f"{CDD_HEADER}\n1704067200,2024-01-01,ETH/USD,1,2,1,1,1,1\n",
            ":2: row is for `ETH/USD`, not BTC-USD",
        ),
        (
            "unix,date,symbol,open,high,low,close,Volume ETH,Volume USD\n1,2,3\n",
            "expected columns `Volume BTC`",
        ),
        (
            "Date,Open,High,Low,Close,Volume\nyesterday,1,2,1,1,1\n",
            ":2: date `yesterday` is not YYYY-MM-DD",
        ),
        (
            f"{CDD_HEADER}\n{cdd_row(2)}\n1704067200,2024-01-01,BTC/USD,1,2,{'9' * 200_000},1,1,1\n",
            ":3: not valid CSV (field larger than field limit",
        ),
        (
            f'{CDD_HEADER}\n{cdd_row(3)}\n{cdd_row(2)}\n1704067200,2024-01-01,BTC/USD,1,2,"1,1,1,1\n',
            ":4: not valid CSV (unexpected end of data)",
        ),
        (
            f'{CDD_HEADER}\n{cdd_row(2)}\n1704067200,2024-01-01,BTC/USD,1,"2"x,1,1,1,1\n',
            ":3: not valid CSV (',' expected after '\"')",
        ),
        ('Date,"Open,High\n2024-01-01,1,2\n', ":1: not valid CSV"),
        (
            f"{CDD_HEADER}\n{cdd_row(2)}\n9e15,2024-01-01,BTC/USD,1,2,1,1,1,1\n",
            ":3: unix `9e15` is beyond",
        ),
        (
            f"{CDD_HEADER}\n{cdd_row(2)}\n1e20,2024-01-01,BTC/USD,1,2,1,1,1,1\n",
            ":3: unix `1e20` is beyond",
        ),
        (
            f"{CDD_HEADER}\n{cdd_row(2)}\n-5,2024-01-01,BTC/USD,1,2,1,1,1,1\n",
            ":3: unix `-5` is not a",
        ),
        (
            f"{CDD_HEADER}\n{cdd_row(2)}\ninf,2024-01-01,BTC/USD,1,2,1,1,1,1\n",
            ":3: unix `inf` is not a",
        ),
    ],
)
def test_bad_files_fail_with_file_and_line(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = write(tmp_path, content)
    with pytest.raises(DataFileError) as info:
        CsvSource(path).fetch(BTC, None, END)
    assert str(path) in info.value.message and message in info.value.message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no such file"):
        CsvSource(tmp_path / "nope.csv").fetch(BTC, None, END)
    with pytest.raises(DataFileError, match="is a directory"):
        CsvSource(tmp_path).fetch(BTC, None, END)


def test_an_oversized_file_is_refused_after_reading_only_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tracemalloc

    from btc_predictor.sources import csv

    monkeypatch.setattr(csv, "_MAX_BYTES", 1024)
    huge = tmp_path / "huge.csv"
    with huge.open("wb") as out:  # sparse: 64 MiB on paper, no disk
        out.truncate(64 * 2**20)
    tracemalloc.start()
    try:
        with pytest.raises(DataFileError, match="larger than"):
            CsvSource(huge).fetch(BTC, None, END)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"read {peak} bytes of a file over a 1 KiB cap"


def test_future_rows_reach_validation_and_the_download_day_is_the_newest_past_row(
    tmp_path: Path,
) -> None:
    """Downloaded on 10 January, with a row dated the 20th on top: the 20th is reported as a
    future row (not taken for the download day), and the 10th is dropped as the download day."""
    now = datetime(2024, 1, 10, 15, tzinfo=UTC)
    rows = [cdd_row(20), cdd_row(10), cdd_row(9), cdd_row(8)]
    source = CsvSource(write(tmp_path, "\n".join([CDD_HEADER, *rows])), clock=lambda: now)
    result = source.fetch(BTC, None, now.date())
    assert [c.ts.day for c in result.candles] == [8, 9, 20]
    assert result.notes == [
        "dropped the newest row not dated in the future (2024-01-10): "
        "it is the download day, not a closed candle"
    ]
    checked = validate_candles(result.candles, now)
    assert [c.ts.day for c in checked.valid] == [8, 9]
    assert checked.rejected == ["2024-01-20: timestamp is in the future"]


def test_a_yahoo_file_row_for_today_is_reported_not_dropped(tmp_path: Path) -> None:
    now = datetime(2024, 1, 3, 15, tzinfo=UTC)
    text = "Date,Open,High,Low,Close,Volume\n2024-01-01,1,2,1,1,1\n2024-01-02,1,2,1,1,1\n2024-01-03,1,2,1,1,1\n2024-01-09,1,2,1,1,1\n"
    result = CsvSource(write(tmp_path, text), clock=lambda: now).fetch(BTC, None, now.date())
    checked = validate_candles(result.candles, now)
    assert [c.ts.day for c in checked.valid] == [1, 2]
    assert checked.rejected == [
        "2024-01-03: day has not closed yet",
        "2024-01-09: timestamp is in the future",
    ]
