"""CSV files: CryptoDataDownload exports and Yahoo Finance history downloads."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from btc_predictor.errors import DataFileError
from btc_predictor.sources.base import (
    Asset,
    Candle,
    FetchResult,
    from_epoch_seconds,
    today_utc,
    utc_day,
    utc_now,
)

# Both volumes positive and base·close this many times off the quote volume (either way)
# while the swapped pair agrees within SWAP_AGREE: the columns were swapped in the export.
SWAP_FAR = 10.0
SWAP_AGREE = 3.0
_MAX_BYTES = 200 * 1024 * 1024
_PRICES = ("open", "high", "low", "close")
_YAHOO = ("date", "open", "high", "low", "close")
_CDD = ("unix", "date", "symbol", "open", "high", "low", "close")


@dataclass(frozen=True, slots=True)
class _Row:
    """A parsed line: the candle, the second volume column (CDD quote volume), its line number."""

    candle: Candle
    quote_volume: float | None
    line: int


class CsvSource:
    """Reads candles from a CSV file (format detected from its header)."""

    name = "csv"

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.path = path
        self._clock = clock

    def fetch(self, asset: Asset, start: date | None, end: date) -> FetchResult:
        """Candles in ``[start, end)`` and any dated today or later; minus a CDD download day."""
        today = today_utc(self._clock())
        rows = self._rows(asset)
        result = FetchResult(self.name, [])
        if rows and rows[0].quote_volume is not None:  # only CryptoDataDownload rows have one
            rows, result.fixed_volume = _drop_download_day_and_fix(rows, today, result)
        low = utc_day(start) if start else None
        high = utc_day(end)
        # Rows dated today or later stay whatever the range: validation rejects and reports
        # them (the still-forming day, the future), so a file never loses a row unseen.
        result.candles = sorted(
            (
                r.candle
                for r in rows
                if (low is None or r.candle.ts >= low)
                and (r.candle.ts < high or r.candle.ts.date() >= today)
            ),
            key=lambda c: c.ts,
        )
        return result

    def _rows(self, asset: Asset) -> list[_Row]:
        """Every data row of the file, parsed by the format its header names."""
        text = _read_text(self.path)
        lines = text.splitlines()
        header_at = _header_line(lines, self.path)
        header = [h.strip().lower() for h in _header_fields(lines[header_at], header_at, self.path)]
        parse = (
            _cdd_parser(header, asset, self.path)
            if header[0] == "unix"
            else _yahoo_parser(header, self.path)
        )
        return list(_parse_rows(lines, header_at, parse, self.path))


def _read_text(path: Path) -> str:
    """The file's text, or a DataFileError saying why it is unusable."""
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    if path.is_dir():
        raise DataFileError(f"{path}: is a directory, not a CSV file")
    with path.open("rb") as file:
        # One byte past the cap tells an oversized file without reading (or holding) all of it.
        data = file.read(_MAX_BYTES + 1)
    if len(data) > _MAX_BYTES:
        raise DataFileError(f"{path}: larger than {_MAX_BYTES // 2**20} MiB")
    if not data.strip():
        raise DataFileError(f"{path}: file is empty")
    if b"\x00" in data:
        raise DataFileError(f"{path}: binary file, not CSV text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path}: not UTF-8 text (byte {exc.start})") from exc


def _header_line(lines: list[str], path: Path) -> int:
    """Index of the header line: the first, or the second after a CryptoDataDownload banner."""
    for index, line in enumerate(lines[:2]):
        first = line.split(",")[0].strip().lower().lstrip("\ufeff")
        if first in ("unix", "date"):
            return index
    raise DataFileError(
        f"{path}:1: no recognised header (expected CryptoDataDownload "
        "`unix,date,symbol,open,high,low,close,Volume <BASE>,Volume <QUOTE>` "
        "or Yahoo `Date,Open,High,Low,Close,Adj Close,Volume`)"
    )


def _header_fields(line: str, header_at: int, path: Path) -> list[str]:
    """The header line's fields, or a DataFileError when it is not valid CSV."""
    reader = csv.reader([line], strict=True)
    try:
        return next(reader)
    except csv.Error as exc:
        raise DataFileError(f"{path}:{header_at + 1}: not valid CSV ({exc})") from None


_Parser = Callable[[list[str], int], _Row]


def _parse_rows(lines: list[str], header_at: int, parse: _Parser, path: Path) -> Iterator[_Row]:
    """Parse every data line; any malformed line fails the whole file (nothing is stored)."""
    # strict: an unbalanced quote is an error, not a field that swallows the lines after it.
    reader = csv.reader(io.StringIO("\n".join(lines[header_at + 1 :])), strict=True)
    while True:
        try:
            fields = next(reader, None)
        except csv.Error as exc:  # also a field over csv's size limit (128 KiB)
            line = header_at + 1 + reader.line_num
            raise DataFileError(f"{path}:{line}: not valid CSV ({exc})") from None
        if fields is None:
            break
        if fields and "".join(fields).strip():
            yield parse(fields, header_at + 1 + reader.line_num)
    if header_at + 1 >= len(lines):
        raise DataFileError(f"{path}: header only, no data rows")


def _require(header: list[str], needed: tuple[str, ...], path: Path) -> dict[str, int]:
    """Column positions by name, or a DataFileError naming the missing ones."""
    missing = [name for name in needed if name not in header]
    if missing:
        raise DataFileError(
            f"{path}:header: missing column(s) {', '.join(missing)}; found {', '.join(header)}"
        )
    return {name: header.index(name) for name in header}


def _number(fields: list[str], index: int, name: str, path: Path, line: int) -> float:
    """A float field, or a DataFileError naming file, line and column."""
    try:
        raw = fields[index].strip()
    except IndexError:
        raise DataFileError(f"{path}:{line}: missing value for `{name}`") from None
    try:
        return float(raw)
    except ValueError:
        raise DataFileError(f"{path}:{line}: {name} `{raw}` is not a number") from None


def _cdd_parser(header: list[str], asset: Asset, path: Path) -> _Parser:
    """A line parser for CryptoDataDownload files, checked against ``asset``."""
    cols = _require(header, _CDD, path)
    volumes = [name for name in header if name.startswith("volume ")]
    base_col = f"volume {asset.base.lower()}"
    if len(volumes) != 2 or base_col not in volumes:
        raise DataFileError(
            f"{path}:header: expected columns `Volume {asset.base}` and `Volume {asset.quote}`, "
            f"found {', '.join(volumes) or 'none'}"
        )
    quote_col = next(v for v in volumes if v != base_col)

    def parse(fields: list[str], line: int) -> _Row:
        symbol = fields[cols["symbol"]].strip().upper().replace("-", "/") if len(fields) > 2 else ""
        if symbol != asset.ccxt_symbol:
            raise DataFileError(f"{path}:{line}: row is for `{symbol}`, not {asset.symbol}")
        ts = _cdd_time(fields, cols, path, line)
        o, h, lo, c = (_number(fields, cols[n], n, path, line) for n in _PRICES)
        base_volume = _number(fields, cols[base_col], base_col, path, line)
        quote = _number(fields, cols[quote_col], quote_col, path, line)
        return _Row(Candle(ts, o, h, lo, c, base_volume), quote, line)

    return parse


def _cdd_time(fields: list[str], cols: dict[str, int], path: Path, line: int) -> datetime:
    """The row's open time from ``unix`` (seconds or milliseconds)."""
    seconds = _number(fields, cols["unix"], "unix", path, line)
    if not math.isfinite(seconds) or seconds <= 0:
        raise DataFileError(f"{path}:{line}: unix `{fields[cols['unix']]}` is not a timestamp")
    try:
        # CryptoDataDownload switched from milliseconds to seconds at some point.
        return from_epoch_seconds(seconds / 1000 if seconds > 1e11 else seconds)
    except ValueError:
        raise DataFileError(
            f"{path}:{line}: unix `{fields[cols['unix']]}` is beyond the dates a calendar holds"
        ) from None


def _yahoo_parser(header: list[str], path: Path) -> _Parser:
    """A line parser for Yahoo Finance history CSVs."""
    cols = _require(header, _YAHOO, path)

    def parse(fields: list[str], line: int) -> _Row:
        ts = _yahoo_date(fields[cols["date"]] if fields else "", path, line)
        o, h, lo, c = (_number(fields, cols[n], n, path, line) for n in _PRICES)
        volume = _number(fields, cols["volume"], "volume", path, line) if "volume" in cols else 0.0
        return _Row(Candle(ts, o, h, lo, c, volume), None, line)

    return parse


def _yahoo_date(raw: str, path: Path, line: int) -> datetime:
    """A Yahoo date (``2024-01-31``, optionally with a time and offset) as a UTC day."""
    try:
        parsed = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise DataFileError(f"{path}:{line}: date `{raw}` is not YYYY-MM-DD") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.replace(tzinfo=UTC)


def _drop_download_day_and_fix(
    rows: list[_Row], today: date, result: FetchResult
) -> tuple[list[_Row], int]:
    """Drop the download-day row and un-swap volume columns that are clearly swapped.

    The download day is the newest row not dated in the future: a file cannot have been
    downloaded after today, so a later row is a bad row for validation to report.
    """
    past = [r for r in rows if r.candle.ts.date() <= today]
    kept = rows
    if past:
        newest = max(past, key=lambda r: r.candle.ts)
        which = "newest row" if len(past) == len(rows) else "newest row not dated in the future"
        result.notes.append(
            f"dropped the {which} ({newest.candle.ts.date().isoformat()}): "
            "it is the download day, not a closed candle"
        )
        kept = [r for r in rows if r is not newest]
    fixed = [_unswap(r) for r in kept]
    return fixed, sum(1 for before, after in zip(kept, fixed, strict=True) if before is not after)


def _unswap(row: _Row) -> _Row:
    """The row with volumes in the right columns (the same object when nothing was wrong)."""
    base, quote, close = row.candle.volume, row.quote_volume, row.candle.close
    if quote is None or base <= 0 or quote <= 0 or close <= 0:
        return row
    as_given = base * close / quote
    swapped = quote * close / base
    far = as_given > SWAP_FAR or as_given < 1 / SWAP_FAR
    agrees = 1 / SWAP_AGREE < swapped < SWAP_AGREE
    if not (far and agrees):
        return row
    c = row.candle
    return _Row(Candle(c.ts, c.open, c.high, c.low, c.close, quote), base, row.line)
