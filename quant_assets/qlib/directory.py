"""A Qlib provider directory written a block of sessions at a time: `calendars/<freq>.txt`,
`instruments/all.txt` and `features/<folder>/<field>.<freq>.bin`.

Every slot has a fixed position (`calendars.QlibCalendar`): a session written out of order, or a symbol that skips
sessions, never shifts a value. Writing a range of sessions touches those sessions' slots in the bins of the symbols
they hold (and of the symbols whose span reaches into them, which get NaN there: a re-run is exact), rewrites the
instruments file and extends the calendar file to the newest session written. `instruments/all.txt` is also the
directory's index: each symbol's first and last slot, so a delisted symbol ends where it stopped
(survivorship-free) and a writer knows every span without opening a bin. Writers of one directory take turns under
its lock, so ranges can be written in any order by parallel processes; every text file is replaced atomically.

Sessions can only be written from the directory's first session on: it is fixed when the directory is created (the
first calendar line) so that slots never move.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from quant_assets.datasets import Calendar
from quant_assets.lake import replace_bytes
from quant_assets.locks import locked
from quant_assets.names import child, index_line, joined
from quant_assets.qlib.bins import DTYPE, NAN, read_bin, write_bin, write_block
from quant_assets.qlib.calendars import QlibCalendar
from quant_assets.qlib.symbols import feature_folder, qlib_symbol
from quant_assets.reference.factors import PRICE_COLUMNS as PRICES
from quant_assets.reference.factors import adjust
from quant_assets.universes.files import checked_name

STATE = ".quant_assets"  # our own bookkeeping inside the directory; Qlib never looks there


@dataclass(frozen=True)
class Written:
    """What one write did."""

    symbols: int  # symbols with values in the range
    cleared: int  # symbols whose span reached into the range without values there: NaN now
    bins: int  # bins written
    calendar_slots: int  # the calendar's length afterwards


class QlibDirectory:
    """One provider directory at one frequency. `start` is used only when the directory is new."""

    def __init__(self, root: str | os.PathLike, calendar: Calendar, start: dt.date, freq: str = "day"):
        self.root = Path(root)
        self._features = str(self.root / "features")
        self.freq = freq
        first = self._first_session()
        self.slots = QlibCalendar(calendar, first or start, freq)

    @property
    def start(self) -> dt.date:
        return self.slots.start

    def _first_session(self) -> dt.date | None:
        path = self.calendar_path()
        if not path.exists() or not path.stat().st_size:
            return None
        with open(path) as stream:
            return dt.date.fromisoformat(stream.readline()[:10])

    def calendar_path(self) -> Path:
        return self.root / "calendars" / f"{self.freq}.txt"

    def instruments_path(self) -> Path:
        return self.root / "instruments" / "all.txt"

    def state_dir(self) -> Path:
        return self.root / STATE

    def feature_dir(self, symbol: str) -> str:
        """The folder of `symbol`'s bins, made by `names.joined`: always one folder inside `features/`."""
        return joined(self._features, feature_folder(symbol))

    def bin_path(self, symbol: str, field: str) -> Path:
        return Path(f"{self.feature_dir(symbol)}/{field.lower()}.{self.freq}.bin")

    def calendar_length(self) -> int:
        """Slots the calendar file lists (a partial last line, from a crash, does not count)."""
        path = self.calendar_path()
        return path.stat().st_size // self.slots.width if path.exists() else 0

    def read_instruments(self) -> dict[str, tuple[int, int]]:
        """Each symbol's first and last slot."""
        path = self.instruments_path()
        if not path.exists():
            return {}
        rows = [line.split("\t") for line in path.read_text().split("\n") if line]
        for number, row in enumerate(rows, 1):
            if len(row) != 3:
                raise ValueError(
                    f"{path}: line {number} has {len(row)} tab-separated fields, not 3 (symbol, first, last)"
                )
        firsts = self.slots.slots_of([row[1] for row in rows])
        lasts = self.slots.slots_of([row[2] for row in rows])
        return {row[0]: (int(f), int(e)) for row, f, e in zip(rows, firsts, lasts, strict=True)}

    def _write_instruments(self, spans: dict[str, tuple[int, int]]) -> None:
        symbols = sorted(spans)
        firsts = self.slots.labels(np.array([spans[s][0] for s in symbols], dtype=np.int64))
        lasts = self.slots.labels(np.array([spans[s][1] for s in symbols], dtype=np.int64))
        text = "".join(index_line(s, f, e) for s, f, e in zip(symbols, firsts, lasts, strict=True))
        replace_bytes(self.instruments_path(), text.encode())

    def _extend_calendar(self, end: int) -> None:
        """List every slot up to `end` (exclusive) in the calendar file."""
        path = self.calendar_path()
        length = self.calendar_length()
        if end <= length and (not path.exists() or path.stat().st_size == length * self.slots.width):
            return
        kept = path.read_bytes()[: length * self.slots.width] if path.exists() else b""
        lines = self.slots.labels(np.arange(length, max(end, length), dtype=np.int64))
        replace_bytes(path, kept + "".join(index_line(line) for line in lines).encode())

    def session_range(self, first: dt.date, last: dt.date) -> tuple[int, int]:
        """[lo, hi) slots of the sessions from `first` to `last`."""
        return self.slots.slots(first)[0], self.slots.slots(last)[1]

    def write(self, frame: pl.DataFrame, lo: int, hi: int, fields: Sequence[str], extend: bool = True) -> Written:
        """Write `frame` (a row per vendor `ticker` and calendar `slot`, a Float column per field), whose slots all
        lie in [lo, hi), a whole range of sessions: every symbol's slots in the range are rewritten, NaN where it
        has no row. Bins of `fields` only; a symbol's other bins are left as they are.

        With `extend=False` only what the directory already spans is rewritten (a field of sessions written
        before, or the history of symbols whose adjustment changed): rows outside their symbol's span are
        dropped, and symbols without rows are left as they are."""
        if frame.height and (frame["slot"].min() < lo or frame["slot"].max() >= hi):
            raise ValueError(f"rows outside the slots [{lo}, {hi}) being written")
        with locked(self.root):
            spans = self.read_instruments()
            if not extend:
                frame = _within(frame, spans)
            data = _grouped(frame, fields)
            written, present = 0, set()
            for symbol, slots, blocks in data:
                present.add(symbol)
                old = spans.get(symbol)
                first, last = slots[0], slots[-1]
                if old is not None:  # rewrite the slots of the range its span already reaches too
                    first, last = min(first, max(old[0], lo)), max(last, min(old[1], hi - 1))
                folder = f"{self.feature_dir(symbol)}/"
                if len(slots) != last - first + 1:  # holes in the block: NaN there
                    at = np.array(slots) - first
                    filled = []
                    for block in blocks:
                        values = np.full(last - first + 1, np.nan, dtype=DTYPE)
                        values[at] = np.frombuffer(block, dtype=DTYPE)
                        filled.append(values.tobytes())
                    blocks = filled
                for field, block in zip(fields, blocks, strict=True):
                    start, length = write_block(f"{folder}{field.lower()}.{self.freq}.bin", first, block)
                written += len(fields)
                spans[symbol] = (start, start + length - 1)
            cleared = 0
            for symbol, (first, last) in spans.items():
                if not extend or symbol in present or last < lo or first >= hi:
                    continue
                first, last = max(first, lo), min(last, hi - 1)
                folder = self.feature_dir(symbol)
                for field in fields:
                    path = f"{folder}/{field.lower()}.{self.freq}.bin"
                    if os.path.exists(path):
                        write_block(path, first, NAN * (last - first + 1))
                        written += 1
                cleared += 1
            self._write_instruments(spans)
            self._extend_calendar(hi)
            return Written(len(present), cleared, written, self.calendar_length())

    def write_sessions(
        self, frame: pl.DataFrame, first: dt.date, last: dt.date, fields: Sequence[str], extend: bool = True
    ) -> Written:
        """`write` for the consecutive sessions from `first` to `last`, with `slot` relative to `first`'s first
        slot (a day frame's `slot` is the session's position from `first`)."""
        lo, hi = self.session_range(first, last)
        return self.write(frame.with_columns(pl.col("slot") + lo), lo, hi, fields, extend)


def readjust(directory: QlibDirectory, tickers: Sequence[str], factors: pl.DataFrame) -> list[str]:
    """Re-adjust the price, volume and factor bins of `tickers`' symbols to `factors` (their rows of the factor
    table), slot by slot from the factor each slot was written with (its `factor` bin): prices x new / old, volume
    x old / new. For a directory whose history is not re-read from its source (1min). Returns the tickers whose
    bins changed."""
    changed = []
    with locked(directory.root):
        spans = directory.read_instruments()
        for ticker in tickers:
            symbol = qlib_symbol(ticker)
            path = directory.bin_path(symbol, "factor")
            if symbol not in spans or not path.exists():
                continue
            start, old = read_bin(path)
            old = old.astype(np.float64)
            slots = np.arange(start, start + old.size)
            position = np.searchsorted(directory.slots.first_slots, slots, side="right") - 1
            days = pl.DataFrame({"date": directory.slots.days[position].astype("datetime64[D]"), "ticker": ticker})
            new = adjust(days, factors.filter(pl.col("ticker") == ticker))["price_factor"].to_numpy()
            written = ~np.isnan(old)
            if np.array_equal(new[written].astype(DTYPE), old[written].astype(DTYPE)):  # the same at float32
                continue
            ratio = np.where(written, new / old, 1.0)
            for field, scale in [*((p, ratio) for p in PRICES), ("volume", 1 / ratio), ("factor", ratio)]:
                target = directory.bin_path(symbol, field)
                if target.exists():
                    first, values = read_bin(target)
                    write_bin(target, first, values.astype(np.float64) * scale)
            changed.append(ticker)
    return changed


def write_universe_instruments(
    directory: QlibDirectory, name: str, spans: Iterable[tuple[str, dt.date, dt.date | None]]
) -> Path:
    """Write `instruments/<name>.txt` of a day directory: one line `SYMBOL\tfirst\tlast` per membership span
    (`ticker`, first day, last day included or None while open), so that `D.instruments(name)` gives each member
    only for the sessions it was a member. Spans are clipped to the directory's calendar (an open span ends at its
    last session; a span without a session in it has no line). A member without data in the directory is listed
    all the same: membership is the universe's, and Qlib reads no rows for it. Replaced atomically, under the
    directory's lock. `name` must be a universe name (never `all`, the directory's own index)."""
    if directory.freq != "day":
        raise ValueError(f"universe {name}: instruments are written to day directories, not {directory.freq}")
    path = child(directory.root / "instruments", f"{checked_name(name)}.txt")
    with locked(directory.root):
        days = np.array(directory.slots.labels(np.arange(directory.calendar_length())), dtype="datetime64[D]")
        lines = []
        for ticker, first, last in spans:
            lo = int(np.searchsorted(days, np.datetime64(first, "D")))
            hi = len(days) - 1 if last is None else int(np.searchsorted(days, np.datetime64(last, "D"), "right")) - 1
            if lo <= hi:
                lines.append(index_line(qlib_symbol(ticker), str(days[lo]), str(days[hi])))
        replace_bytes(path, "".join(sorted(lines)).encode())
    return path


def _within(frame: pl.DataFrame, spans: dict[str, tuple[int, int]]) -> pl.DataFrame:
    """The rows of `frame` inside their symbol's span."""
    if not frame.height:
        return frame
    table = pl.DataFrame(
        [(s, f, e) for s, (f, e) in spans.items()], schema={"symbol": pl.String, "first": pl.Int64, "last": pl.Int64},
        orient="row",
    )  # fmt: skip
    symbols = {t: qlib_symbol(t) for t in frame["ticker"].unique().to_list()}
    return (
        frame.with_columns(symbol=pl.col("ticker").replace_strict(symbols, return_dtype=pl.String))
        .join(table, on="symbol")
        .filter(pl.col("slot").is_between(pl.col("first"), pl.col("last")))
        .drop("symbol", "first", "last")
    )


def _grouped(frame: pl.DataFrame, fields: Sequence[str]):
    """(symbol, sorted slots, [float32 LE bytes per field]) per symbol of `frame`."""
    if not frame.height:
        return []
    symbols = {t: qlib_symbol(t) for t in frame["ticker"].unique().to_list()}
    ordered = frame.with_columns(symbol=pl.col("ticker").replace_strict(symbols, return_dtype=pl.String)).sort(
        "symbol", "slot"
    )
    duplicated = ordered.select("symbol", "slot").is_duplicated()
    if duplicated.any():
        row = ordered.filter(duplicated).row(0, named=True)
        raise ValueError(f"two rows for {row['ticker']} (Qlib symbol {row['symbol']}) at calendar slot {row['slot']}")
    slots = ordered["slot"].to_list()
    columns = [ordered[field].cast(pl.Float32).fill_null(np.nan).to_numpy().astype(DTYPE).tobytes() for field in fields]
    names = ordered["symbol"].to_numpy()
    bounds = np.flatnonzero(names[1:] != names[:-1]) + 1
    starts = [0, *bounds.tolist()]
    ends = [*bounds.tolist(), len(names)]
    return [(names[a], slots[a:b], [c[4 * a : 4 * b] for c in columns]) for a, b in zip(starts, ends, strict=True)]
