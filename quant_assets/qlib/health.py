"""The publication gate of a Qlib directory: what must hold before users' `qlib.init` should see it.

Errors (the directory is not publishable):
- the calendar file is the fixed calendar: strictly increasing, no duplicates, each slot where it belongs;
- `instruments/all.txt`: a line per symbol, no name pandas reads as missing, first <= last within the calendar;
- every bin of a symbol spans exactly its instruments span (its length matches), and the symbol has the price
  fields, volume and factor; no feature folder lacks an instruments line;
- `factor` is present wherever `close` is;
- the large-step check of Qlib's `check_data_health.py`: an adjusted price (open, high, low, close) that moves by
  more than `price_step` (50%) from one slot to the next, usually a corporate action the factors miss.

Warnings: volume moving by more than `volume_step` (300%, Qlib's threshold) from one slot to the next, which busy
sessions do on their own.

A full check reads every bin; a check of a written range reads only the range (and the slot before it) of the
symbols in it, so the gate of one session costs O(one session).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from quant_assets.qlib.bins import DTYPE
from quant_assets.qlib.directory import QlibDirectory
from quant_assets.qlib.fields import PRICES
from quant_assets.qlib.symbols import NA_TOKENS, feature_folder

REQUIRED = (*PRICES, "volume", "factor")
PRICE_STEP = 0.5
VOLUME_STEP = 3.0
SAMPLES = 20


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    symbols: int = 0
    bins: int = 0

    @property
    def passed(self) -> bool:
        return not self.errors


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
    length = _check_calendar(directory, report)
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
    for symbol in symbols:
        if symbol not in spans:
            report.errors.append(f"{symbol}: written but not in instruments/all.txt")
            continue
        _check_symbol(directory, symbol, spans[symbol], lo, hi, price_step, volume_step, report)
    return report


def _check_calendar(directory: QlibDirectory, report: Report) -> int:
    path = directory.calendar_path()
    if not path.exists():
        report.errors.append(f"{path.relative_to(directory.root)} is missing")
        return 0
    lines = path.read_text().splitlines()
    try:
        stamps = np.array([line.replace(" ", "T") for line in lines], dtype="datetime64[m]")
    except ValueError as error:
        report.errors.append(f"calendars/{directory.freq}.txt: {error}")
        return len(lines)
    steps = np.diff(stamps)
    if (steps <= np.timedelta64(0, "m")).any():
        at = int(np.argmax(steps <= np.timedelta64(0, "m"))) + 1
        report.errors.append(
            f"calendars/{directory.freq}.txt: line {at + 1} ({lines[at]}) is not after the line before"
        )
    expected = directory.slots.labels(np.arange(len(lines)))
    if lines != expected:
        at = next(i for i, (a, b) in enumerate(zip(lines, expected, strict=True)) if a != b)
        report.errors.append(
            f"calendars/{directory.freq}.txt: line {at + 1} is {lines[at]}, the calendar says {expected[at]}"
        )
    return len(lines)


def _check_symbol(directory, symbol, span, lo, hi, price_step, volume_step, report) -> None:
    first, last = span
    folder = directory.root / "features" / feature_folder(symbol)
    suffix = f".{directory.freq}.bin"
    paths = {p.name[: -len(suffix)]: p for p in folder.glob(f"*{suffix}")} if folder.is_dir() else {}
    missing = [f for f in REQUIRED if f not in paths]
    if missing:
        report.errors.append(f"{symbol}: no {', '.join(missing)} bin in features/{folder.name}")
    report.symbols += 1
    window_lo = first if lo is None else max(first, lo - 1)
    window_hi = last + 1 if hi is None else min(last + 1, hi)
    values = {}
    for name, path in paths.items():
        report.bins += 1
        with open(path, "rb") as stream:
            start = int(np.frombuffer(stream.read(4), dtype=DTYPE)[0])
            count = os.fstat(stream.fileno()).st_size // 4 - 1
            if (start, start + count - 1) != (first, last):
                report.errors.append(
                    f"{symbol}: features/{folder.name}/{path.name} spans slots {start}..{start + count - 1}, "
                    f"instruments/all.txt says {first}..{last}"
                )
                continue
            if window_lo < window_hi and name in (*PRICES, "volume", "factor"):
                stream.seek(4 * (1 + window_lo - start))
                values[name] = np.frombuffer(stream.read(4 * (window_hi - window_lo)), dtype=DTYPE)
    label = directory.slots.labels
    if "close" in values and "factor" in values:
        bad = np.flatnonzero(~np.isnan(values["close"]) & np.isnan(values["factor"]))
        if bad.size:
            report.errors.append(
                f"{symbol}: close without factor at {label([window_lo + bad[0]])[0]} ({bad.size} slots)"
            )
    for name, limit, out in [
        *((p, price_step, report.errors) for p in PRICES),
        ("volume", volume_step, report.warnings),
    ]:
        series = values.get(name)
        if series is None or series.size < 2:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.abs(series[1:] / series[:-1] - 1)
        big = np.flatnonzero(step > limit)
        if big.size:
            at = label([window_lo + big[0] + 1])[0]
            out.append(f"{symbol}: {name} moves {step[big[0]]:.0%} into {at} (over {limit:.0%}; {big.size} such steps)")
