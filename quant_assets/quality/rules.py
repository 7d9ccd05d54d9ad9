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
from quant_assets.names import TICKER_RULE, ticker_valid
from quant_assets.sessions import extended_hours, session_midnight
from quant_assets.settings import DEFAULT_MAX_TICKER_LENGTH

PRICES = ("open", "high", "low", "close")
COMPLETE_VALUES = "complete_values"
TICKER = "ticker"  # the rule of `names.ticker_problem`: a ticker that could pick a path never reaches the lake
NS_MIN_DIGITS = 10**18  # a current stamp in nanoseconds has 19 digits; 17 digits means truncated


@dataclass(frozen=True)
class Rule:
    """A named row check: `valid` is true for rows that pass; `reason` is what a quarantined row says.

    `valid` is a polars expression, or a function of a frame (one session's batches in file order) for rules
    no expression states cheaply.
    """

    name: str
    reason: str
    valid: pl.Expr | Callable[[pl.DataFrame], np.ndarray]
    about: str = ""  # the reason in words that hold for every session, where `reason` names one

    @property
    def description(self) -> str:
        return self.about or self.reason

    def evaluate(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """One boolean column over a whole frame, true where a row passes (a null value passes every rule but
        `complete_values`)."""
        if isinstance(self.valid, pl.Expr):
            return frame.select(self.valid.fill_null(True).alias(self.name))
        return pl.LazyFrame({self.name: self.valid(frame.collect())})


class FirstOfEachKey:
    """The duplicate rule over a session's batches: true for the first row of each (ticker, time) key, in file
    order; later copies, in the same batch or a later one, are duplicates.

    Files are mostly ticker-major then time, so within a batch a duplicate can only hide in a run of rows of one
    ticker that is not strictly increasing in time, or in a ticker that appears in more than one run: only those
    runs are sorted, which keeps a 2M-row day to tens of milliseconds instead of hashing every key. Across batches,
    only the keys of tickers seen again are compared with the batches that held them.
    """

    def __init__(self, time: str):
        self.time = time
        self.batches: list[pl.DataFrame] = []  # (ticker, time) first seen in each earlier batch
        self.tickers_of: list[pl.Series] = []  # the tickers of each earlier batch, once each
        self.tickers = pl.Series("ticker", [], dtype=pl.String)  # the tickers of every earlier batch, once each

    def __call__(self, frame: pl.DataFrame) -> np.ndarray:
        keys = frame.select("ticker", self.time)
        runs = keys["ticker"].rle()  # runs of one ticker in file order: (len, value)
        valid = _first_within(keys, runs, self.time)
        if self.batches:  # vectorised: a day file holds 12k tickers, a Python loop over them costs more than the rule
            tickers = runs.struct.field("value").unique()
            again = tickers.filter(tickers.is_in(self.tickers))
            if again.len():
                wanted = again.implode()
                holding = [b for b, held in zip(self.batches, self.tickers_of, strict=True) if again.is_in(held).any()]
                earlier = pl.concat(holding).filter(pl.col("ticker").is_in(wanted)).unique()
                mine = keys.with_row_index("row").filter(pl.col("ticker").is_in(wanted))
                seen = mine.join(earlier, on=["ticker", self.time], how="semi")["row"]
                valid[seen.to_numpy()] = False
        # Only first copies are kept: a later copy's key is already held, so memory grows with distinct keys, not
        # rows (a file of one day repeated a thousand times holds one day of keys).
        kept = keys if valid.all() else keys.filter(pl.Series(valid))
        if kept.height:
            held = kept["ticker"].unique()
            self.batches.append(kept)
            self.tickers_of.append(held)
            self.tickers = pl.concat([self.tickers, held]).unique()
        return valid


class VendorSymbols:
    """The ticker rule over a batch: `names.ticker_valid`, evaluated once per run of one ticker in file order (files
    are mostly ticker-major, so a 2M-row minute day has ~12k runs), not once per row."""

    def __init__(self, max_length: int):
        self.max_length = max_length

    def __call__(self, frame: pl.DataFrame) -> np.ndarray:
        runs = frame["ticker"].rle()
        values = runs.struct.field("value").to_frame("ticker")
        valid = values.select(ticker_valid("ticker", self.max_length).fill_null(True)).to_series().to_numpy()
        return np.repeat(valid, runs.struct.field("len").to_numpy())


def _first_within(keys: pl.DataFrame, runs: pl.Series, time: str) -> np.ndarray:
    """Within one frame of (ticker, time): true for the first row of each key; `runs` is the ticker's rle."""
    valid = np.ones(keys.height, dtype=bool)
    if keys.height < 2:
        return valid
    lengths = runs.struct.field("len").to_numpy()
    run_id = np.repeat(np.arange(len(lengths)), lengths)
    new_run = np.zeros(keys.height, dtype=bool)
    new_run[np.cumsum(lengths[:-1])] = True
    new_run[0] = True
    stamps = keys[time].dt.epoch("ns").fill_null(0).to_numpy()
    out_of_order = ~new_run[1:] & (stamps[1:] <= stamps[:-1])
    # Each run's ticker as an int: the index of the ticker's first run (a ticker may have several runs).
    values = runs.struct.field("value").to_frame("ticker").with_row_index("run")
    run_ticker = values.select(pl.col("run").min().over("ticker")).to_series().to_numpy()
    suspect = run_ticker != np.arange(len(run_ticker))  # a later run of a ticker seen before
    suspect[np.unique(run_ticker[suspect])] = True  # and that ticker's first run
    suspect[run_id[1:][out_of_order]] = True
    rows = np.flatnonzero(suspect[run_id])
    if rows.size:
        # Sorted by (ticker, time), then file order: the first copy in the file is the one kept.
        ordered = pl.DataFrame({"ticker": run_ticker[run_id[rows]], "time": stamps[rows], "row": rows}).sort(
            "ticker", "time", "row"
        )
        repeat = (
            ordered.select((pl.col("ticker") == pl.col("ticker").shift()) & (pl.col("time") == pl.col("time").shift()))
            .to_series()
            .fill_null(False)
        )
        valid[ordered["row"].filter(repeat).to_numpy()] = False
    return valid


def _finite_positive(column: str) -> pl.Expr:
    return pl.col(column).is_finite() & (pl.col(column) > 0)


def rule_catalogue(dataset: Dataset) -> dict[str, str]:
    """Rule name -> what the rule refuses, for every session of `dataset`, in schema order (the check
    descriptions; a quarantined row's reason names its session)."""
    return {rule.name: rule.description for rule in rules_for(dataset, dt.date(2026, 1, 2))}


def rules_for(dataset: Dataset, session: dt.date, max_ticker_length: int = DEFAULT_MAX_TICKER_LENGTH) -> list[Rule]:
    """The row rules of `dataset` for the partition of `session` (fresh ones: the duplicate rule has state)."""
    names = set(dataset.header)
    time = dataset.time_column
    # A value that is empty, missing or does not parse is read as null; the reader says which and why.
    rules = [
        Rule(
            COMPLETE_VALUES,
            "a required value is empty, missing or not a number",
            pl.all_horizontal([pl.col(c).is_not_null() for c in dataset.required]),
        )
    ]
    rules.append(
        Rule(
            TICKER,
            f"ticker is not a vendor symbol ({TICKER_RULE}; at most {max_ticker_length} characters)",
            VendorSymbols(max_ticker_length),
        )
    )
    prices = [p for p in PRICES if p in names]
    if prices:
        rules.append(
            Rule(
                "positive_prices",
                "price is zero, negative or NaN",
                pl.all_horizontal([_finite_positive(p) for p in prices]),
            )
        )
    for column in ("price", "value"):
        if column in names:
            rules.append(Rule(f"positive_{column}", f"{column} is zero, negative or NaN", _finite_positive(column)))
    volumes = [
        c for c, kind in dataset.columns if kind is Kind.FLOAT and c in ("volume", "size", "ask_size", "bid_size")
    ]
    if volumes:
        rules.append(
            Rule(
                "non_negative_volume",
                f"{'/'.join(volumes)} is negative or NaN",
                pl.all_horizontal([pl.col(v).is_finite() & (pl.col(v) >= 0) for v in volumes]),
            )
        )
    if set(PRICES) <= names:
        rules.append(
            Rule(
                "high_low_consistent",
                "high below max(open, close) or low above min(open, close)",
                (pl.col("high") >= pl.max_horizontal("open", "close"))
                & (pl.col("low") <= pl.min_horizontal("open", "close")),
            )
        )
    if dataset.is_aggregate:
        rules.append(Rule("unique_ticker_time", f"duplicate (ticker, {time})", FirstOfEachKey(time)))
    stamps = pl.col(time).dt.epoch("ns")
    rules.append(
        Rule(
            "nanosecond_timestamps",
            f"{time} is not in nanoseconds (fewer than 19 digits)",
            stamps.abs() >= NS_MIN_DIGITS,
        )
    )
    if dataset.frequency == "day":
        midnight = session_midnight(dataset.calendar, session)
        rules.append(
            Rule(
                "in_session",
                f"{time} is not 00:00 of session {session} ({midnight:%H:%M} UTC)",
                pl.col(time) == pl.lit(midnight),
                f"{time} is not 00:00 of its session (the calendar's midnight, in UTC)",
            )
        )
    else:
        start, end = extended_hours(dataset.calendar, session)
        rules.append(
            Rule(
                "in_session",
                f"{time} is outside session {session} ({start:%H:%M}-{end:%H:%M} UTC)",
                pl.col(time).is_between(pl.lit(start), pl.lit(end), closed="left"),
                f"{time} is outside its session's hours (for XNYS 04:00 New York to four hours after the close; "
                "otherwise the local day)",
            )
        )
    return rules
