"""Row-level rules for the lake, declared once and generated from the dataset registry.

Each rule is a polars expression that is true for a valid row. The same rules make the pandera schemas
(`schemas.py`), decide which rows the gate quarantines (`gate.py`), and name the reasons users read.
"""

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from quant_assets.datasets import Dataset, Kind
from quant_assets.sessions import extended_hours, session_midnight

PRICES = ("open", "high", "low", "close")
NS_MIN_DIGITS = 10**18  # a current stamp in nanoseconds has 19 digits; 17 digits means truncated


@dataclass(frozen=True)
class Rule:
    """A named row check: `valid` is true for rows that pass; `reason` is what a quarantined row says.

    `valid` is a polars expression, or a function of the whole frame for rules no expression states cheaply.
    """

    name: str
    reason: str
    valid: pl.Expr | Callable[[pl.LazyFrame], pl.LazyFrame]

    def evaluate(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """One boolean column, true where a row passes."""
        if isinstance(self.valid, pl.Expr):
            return frame.select(self.valid.alias(self.name))
        return self.valid(frame)


def first_of_each_key(time: str) -> Callable[[pl.LazyFrame], pl.LazyFrame]:
    """True for the first row of each (ticker, time) key: later copies are duplicates.

    Files are mostly ticker-major then time, so a duplicate can only hide in a run of rows of one ticker that is
    not strictly increasing in time, or in a ticker that appears in more than one run. Only those runs are sorted
    (as integers), which keeps a 2M-row day to a few tens of milliseconds instead of hashing every key.
    """

    def check(lazy: pl.LazyFrame) -> pl.LazyFrame:
        frame = lazy.select("ticker", time).collect()
        valid = np.ones(frame.height, dtype=bool)
        if frame.height < 2:
            return pl.LazyFrame({"unique_ticker_time": valid})
        runs = frame["ticker"].rle()  # runs of one ticker in file order: (len, value)
        lengths = runs.struct.field("len").to_numpy()
        run_id = np.repeat(np.arange(len(lengths)), lengths)
        run_code = runs.struct.field("value").rank("dense").to_numpy()  # the ticker of each run, as an int
        new_run = np.zeros(frame.height, dtype=bool)
        new_run[np.cumsum(lengths[:-1])] = True
        new_run[0] = True
        stamps = frame[time].dt.epoch("ns").to_numpy()
        out_of_order = ~new_run[1:] & (stamps[1:] <= stamps[:-1])
        suspect = np.zeros(len(run_code), dtype=bool)
        suspect[run_id[1:][out_of_order]] = True
        runs_per_code = np.bincount(run_code)
        suspect |= runs_per_code[run_code] > 1
        rows = np.flatnonzero(suspect[run_id])
        if rows.size:
            keys = pl.DataFrame({"code": run_code[run_id[rows]], "time": stamps[rows]})
            # Stable: equal keys keep file order, so the first copy in the file is the one kept.
            order = keys.select(pl.arg_sort_by("code", "time", maintain_order=True)).to_series().to_numpy()
            codes, times, ordered = keys["code"].to_numpy()[order], keys["time"].to_numpy()[order], rows[order]
            repeat = (codes[1:] == codes[:-1]) & (times[1:] == times[:-1])
            valid[ordered[1:][repeat]] = False
        return pl.LazyFrame({"unique_ticker_time": valid})

    return check


def _finite_positive(column: str) -> pl.Expr:
    return pl.col(column).is_finite() & (pl.col(column) > 0)


def rule_catalogue(dataset: Dataset) -> dict[str, str]:
    """Rule name -> reason of `dataset`, in schema order (names do not depend on the session; the wording of
    session-specific reasons is that of an arbitrary session)."""
    return {rule.name: rule.reason for rule in rules_for(dataset, dt.date(2026, 1, 2))}


def rules_for(dataset: Dataset, session: dt.date) -> list[Rule]:
    """The row rules of `dataset` for the partition of `session`."""
    names = set(dataset.header)
    time = dataset.time_column
    rules = []
    prices = [p for p in PRICES if p in names]
    if prices:
        rules.append(Rule("positive_prices", "price is zero, negative or NaN",
                          pl.all_horizontal([_finite_positive(p) for p in prices])))  # fmt: skip
    for column in ("price", "value"):
        if column in names:
            rules.append(Rule(f"positive_{column}", f"{column} is zero, negative or NaN", _finite_positive(column)))
    volumes = [c for c, kind in dataset.columns if kind is Kind.FLOAT and c in ("volume", "size", "ask_size", "bid_size")]
    if volumes:
        rules.append(Rule("non_negative_volume", f"{'/'.join(volumes)} is negative or NaN",
                          pl.all_horizontal([pl.col(v).is_finite() & (pl.col(v) >= 0) for v in volumes])))  # fmt: skip
    if set(PRICES) <= names:
        rules.append(Rule(
            "high_low_consistent", "high below max(open, close) or low above min(open, close)",
            (pl.col("high") >= pl.max_horizontal("open", "close")) & (pl.col("low") <= pl.min_horizontal("open", "close")),
        ))  # fmt: skip
    if dataset.is_aggregate:
        rules.append(Rule("unique_ticker_time", f"duplicate (ticker, {time})", first_of_each_key(time)))
    stamps = pl.col(time).dt.epoch("ns")
    rules.append(Rule("nanosecond_timestamps", f"{time} is not in nanoseconds (fewer than 19 digits)",
                      stamps.abs() >= NS_MIN_DIGITS))  # fmt: skip
    if dataset.frequency == "day":
        midnight = session_midnight(dataset.calendar, session)
        rules.append(Rule("in_session", f"{time} is not 00:00 of session {session} ({midnight:%H:%M} UTC)",
                          pl.col(time) == pl.lit(midnight)))  # fmt: skip
    else:
        start, end = extended_hours(dataset.calendar, session)
        rules.append(Rule("in_session", f"{time} is outside session {session} ({start:%H:%M}-{end:%H:%M} UTC)",
                          pl.col(time).is_between(pl.lit(start), pl.lit(end), closed="left")))  # fmt: skip
    return rules
