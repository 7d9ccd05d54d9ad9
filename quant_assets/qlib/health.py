"""The publication gate of a Qlib directory: what must hold before users' `qlib.init` should see it.

Errors (the directory is not publishable):
- the calendar file is the fixed calendar: strictly increasing, no duplicates, each slot where it belongs;
- `instruments/all.txt`: a line per symbol, no name pandas reads as missing, first <= last within the calendar;
- every bin of a symbol spans exactly its instruments span (its length matches), and the symbol has the price
  fields, volume and factor; no feature folder lacks an instruments line;
- `factor` is present wherever `close` is, and no price, volume or factor is infinite, or NaN where the symbol has
  a row (where any of them has a value): NaN is only the padding of slots without a bar;
- the large-step check of Qlib's `check_data_health.py`: an adjusted price (open, high, low, close) that moves by
  more than `price_step` (50%) from one slot to the next, usually a corporate action the factors miss.

Warnings: volume moving by more than `volume_step` (300%, Qlib's threshold) from one slot to the next, which busy
sessions do on their own.

Before a write, `screen` sets aside the rows that must never reach a bin: a ticker that is not a vendor symbol
(counted, the others written) and a non-finite price, volume or factor (a gate error: the run's mark does not move).

A full check reads every bin and the whole calendar; a check of a written range reads only the range (and the slot
before it) of the calendar and of the symbols in it, so the gate of one session costs O(one session).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from quant_assets.names import UnsafeName, ticker_valid
from quant_assets.qlib.bins import DTYPE
from quant_assets.qlib.directory import QlibDirectory
from quant_assets.qlib.fields import PRICES
from quant_assets.qlib.symbols import MAX_TICKER, NA_TOKENS, feature_folder

REQUIRED = (*PRICES, "volume", "factor")
PRICE_STEP = 0.5
VOLUME_STEP = 3.0
BATCH = 1000  # symbols whose windows are checked together


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    symbols: int = 0
    bins: int = 0

    @property
    def passed(self) -> bool:
        return not self.errors


TICKER_REASON = "ticker is not a vendor symbol"
SET_ASIDE_SCHEMA = {"ticker": pl.String, "rows": pl.UInt32, "first_slot": pl.Int64, "reason": pl.String}


def screen(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the rows of `frame` that may be written, what was set aside) for a frame about to be written (`ticker`,
    `slot`, fields): the rows of a ticker that is not a vendor symbol (`names.ticker_valid`), and the rows with a
    price, volume or factor that is not finite, or a factor that is not positive, as float32 (the bins' type). The
    set-aside table has a row per ticker and reason: `rows`, the `first_slot` and the `reason`."""
    present = [name for name in REQUIRED if name in frame.columns]
    valid = ticker_valid("ticker", MAX_TICKER).fill_null(False)  # as `qlib_symbol` decides
    stored = {name: pl.col(name).cast(pl.Float32) for name in present}  # as the bins hold it: 1e300 is inf there
    bad = [pl.when(~v.is_finite().fill_null(False)).then(pl.lit(f"{n} is not finite")) for n, v in stored.items()]
    if "factor" in present:
        bad.append(pl.when(stored["factor"] <= 0).then(pl.lit("factor is not positive")))
    values = pl.concat_str(bad, separator=", ", ignore_nulls=True) if bad else pl.lit(None, pl.String)
    reason = pl.when(~valid).then(pl.lit(TICKER_REASON)).otherwise(values)
    marked = frame.with_columns(_reason=reason.replace("", None))
    aside = (
        marked.filter(pl.col("_reason").is_not_null())
        .group_by("ticker", "_reason")
        .agg(rows=pl.len(), first_slot=pl.col("slot").min())
        .select("ticker", "rows", "first_slot", reason="_reason")
        .sort("ticker", "reason")
        .cast(SET_ASIDE_SCHEMA)
    )
    return marked.filter(pl.col("_reason").is_null()).drop("_reason"), aside


def verify(
    directory: QlibDirectory,
    symbols: Iterable[str] | None = None,
    lo: int | None = None,
    hi: int | None = None,
    price_step: float = PRICE_STEP,
    volume_step: float = VOLUME_STEP,
) -> Report:
    """Check `directory` (every symbol and slot, or `symbols`' slots in [lo, hi)); see the module docstring."""
    report = Report()
    length = _check_calendar(directory, report, lo, hi)
    try:
        spans = directory.read_instruments()
    except ValueError as error:
        report.errors.append(f"instruments/all.txt: {error}")
        return report
    for symbol, (first, last) in spans.items():
        if symbol.upper() in NA_TOKENS:
            report.errors.append(f"instruments/all.txt: {symbol!r} reads as missing in pandas")
        if not 0 <= first <= last < length:
            report.errors.append(f"{symbol}: span {first}..{last} is not inside the calendar's {length} slots")
    if symbols is None:
        folders = {feature_folder(s) for s in spans}
        features = directory.root / "features"
        for folder in sorted(features.iterdir()) if features.is_dir() else []:
            if folder.name not in folders:
                report.errors.append(f"features/{folder.name}: no line in instruments/all.txt")
        symbols = spans
    symbols = list(symbols)
    for first in range(0, len(symbols), BATCH):  # memory bounded by a batch of windows, whatever the range
        _check_symbols(directory, symbols[first : first + BATCH], spans, lo, hi, price_step, volume_step, report)
    return report


def _check_calendar(directory: QlibDirectory, report: Report, lo: int | None, hi: int | None) -> int:
    """Check the calendar's lines (all, or those of the slots [lo - 1, hi): lines have a fixed width); return its
    length in slots."""
    path = directory.calendar_path()
    name = f"calendars/{directory.freq}.txt"
    if not path.exists():
        report.errors.append(f"{name} is missing")
        return 0
    width = directory.slots.width
    size = path.stat().st_size
    if size % width:
        report.errors.append(f"{name}: {size} bytes is not a whole number of {width}-byte lines")
    length = size // width
    if hi is not None and hi > length:
        report.errors.append(f"{name}: {length} slots, the run wrote up to slot {hi - 1}")
    first = 0 if lo is None else min(max(lo - 1, 0), length)
    end = length if hi is None else min(hi, length)
    with open(path, "rb") as stream:
        stream.seek(first * width)
        lines = stream.read((end - first) * width).decode(errors="replace").splitlines()
    try:
        stamps = np.array([line.replace(" ", "T") for line in lines], dtype="datetime64[m]")
    except ValueError as error:
        report.errors.append(f"{name}: {error}")
        return length
    steps = np.diff(stamps)
    if (steps <= np.timedelta64(0, "m")).any():
        at = int(np.argmax(steps <= np.timedelta64(0, "m"))) + 1
        report.errors.append(f"{name}: line {first + at + 1} ({lines[at]}) is not after the line before")
    expected = directory.slots.labels(np.arange(first, first + len(lines)))
    if lines != expected:
        at = next(i for i, (a, b) in enumerate(zip(lines, expected, strict=True)) if a != b)
        report.errors.append(f"{name}: line {first + at + 1} is {lines[at]}, the calendar says {expected[at]}")
    return length


def _check_symbols(directory, symbols, spans, lo, hi, price_step, volume_step, report) -> None:
    """Spans and fields of each symbol's bins, then the value checks over all symbols at once."""
    suffix = f".{directory.freq}.bin"
    windows: dict[str, list[bytes]] = {name: [] for name in REQUIRED}
    owners, firsts = [], []  # per window: its symbol and its first slot
    for symbol in symbols:
        if symbol not in spans:
            report.errors.append(f"{symbol}: written but not in instruments/all.txt")
            continue
        first, last = spans[symbol]
        try:
            path = directory.feature_dir(symbol)
        except UnsafeName as error:  # an instruments file written by something else
            report.errors.append(f"instruments/all.txt: {error}")
            continue
        folder = os.path.basename(path)
        try:
            names = [n[: -len(suffix)] for n in os.listdir(path) if n.endswith(suffix)]
        except FileNotFoundError:
            names = []
        missing = [f for f in REQUIRED if f not in names]
        if missing:
            report.errors.append(f"{symbol}: no {', '.join(missing)} bin in features/{folder}")
        report.symbols += 1
        window_lo = first if lo is None else max(first, lo - 1)
        window_hi = last + 1 if hi is None else min(last + 1, hi)
        whole = not missing and window_lo < window_hi
        for name in names:
            report.bins += 1
            fd = os.open(f"{path}/{name}{suffix}", os.O_RDONLY)
            try:
                start = int(struct.unpack("<f", os.pread(fd, 4, 0))[0])
                count = os.fstat(fd).st_size // 4 - 1
                if (start, start + count - 1) != (first, last):
                    report.errors.append(
                        f"{symbol}: features/{folder}/{name}{suffix} spans slots {start}..{start + count - 1}, "
                        f"instruments/all.txt says {first}..{last}"
                    )
                    whole = False
                elif whole and name in windows:
                    windows[name].append(os.pread(fd, 4 * (window_hi - window_lo), 4 * (1 + window_lo - start)))
            finally:
                os.close(fd)
        if whole:
            owners.append(symbol)
            firsts.append(window_lo)
        else:  # keep the windows aligned: drop what this symbol added
            for name in windows:
                del windows[name][len(owners) :]
    if not owners:
        return
    lengths = np.array([len(w) // 4 for w in windows["close"]])
    owner = np.repeat(np.arange(len(owners)), lengths)
    slot = (
        np.repeat(np.array(firsts), lengths)
        + np.arange(lengths.sum())
        - np.repeat(np.cumsum(lengths) - lengths, lengths)
    )
    values = {name: np.frombuffer(b"".join(chunks), dtype=DTYPE) for name, chunks in windows.items()}
    label = directory.slots.labels
    bad = np.flatnonzero(~np.isnan(values["close"]) & np.isnan(values["factor"]))
    found, first, counts = np.unique(owner[bad], return_index=True, return_counts=True)  # `owner` is sorted
    for o, at, n in zip(found, label(slot[bad[first]]), counts, strict=True):
        report.errors.append(f"{owners[o]}: close without factor at {at} ({n} slots)")
    row = np.logical_or.reduce([~np.isnan(values[name]) for name in REQUIRED])  # a slot where the symbol has a bar
    for name in REQUIRED:
        bad = np.flatnonzero(np.isinf(values[name]) | (row & np.isnan(values[name])))
        if name == "factor":  # a close without factor is reported above
            bad = np.flatnonzero(np.isinf(values[name]) | (row & np.isnan(values[name]) & np.isnan(values["close"])))
        found, first, counts = np.unique(owner[bad], return_index=True, return_counts=True)
        for o, at, n in zip(found, label(slot[bad[first]]), counts, strict=True):
            report.errors.append(f"{owners[o]}: {name} is not finite at {at} ({n} slots with a bar)")
    same = owner[1:] == owner[:-1]
    for name, limit, out in [
        *((p, price_step, report.errors) for p in PRICES),
        ("volume", volume_step, report.warnings),
    ]:
        series = values[name]
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.abs(series[1:] / series[:-1] - 1)
        big = np.flatnonzero((step > limit) & same)  # a step into slot big + 1
        found, first, counts = np.unique(owner[big + 1], return_index=True, return_counts=True)
        for o, at, size, n in zip(found, label(slot[big[first] + 1]), step[big[first]], counts, strict=True):
            out.append(f"{owners[o]}: {name} moves {size:.0%} into {at} (over {limit:.0%}; {n} such steps)")
