"""Synthetic tick files (trades, quotes, index values) in the vendor's exact format, streamed.

A full-size stock trades day is tens of millions of rows, so a day is made one instrument at a time and handed out
as CSV text in pieces of about `rows_per_chunk` rows: memory follows the piece, never the day. Each instrument's
rows come from its own random generator, seeded by (seed, dataset, ticker, session), so the bytes of a day do not
depend on how it is cut into pieces, nor on which other days or datasets are generated.

Market structure: ticks fall only in the hours the dataset has (stocks 04:00-20:00 ET with early closes, options and
index values regular hours, crypto the whole UTC day, forex the forex week); prices start from the level the
aggregate generator gives the instrument that session (`sample._instruments`, split factors included); bid < ask;
sizes > 0. Vendor quirks: code lists that are empty, a bare code or a quoted comma list; opaque and sometimes empty
trade ids; a participant_timestamp of 0 in a few stock trades; TRF fields empty for most stock trades; 6 fixed
decimals for stocks from 2026-02-23 (shortest form before) with a few fractional trade sizes; quote sizes in round
lots before 2025-11-03 and in shares from then; option trades without a participant_timestamp column.

Pure numpy/polars: the per-instrument rows are numpy columns ("raw" columns, codes as indices into a vocabulary),
and a whole piece is turned into the vendor's columns with polars and formatted by `sample.format_csv`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from quant_assets.datasets import Dataset
from quant_assets.sample import (
    NS_PER_MINUTE,
    SampleSize,
    Universe,
    _extended_minutes,
    _Instrument,
    _instruments,
    _rng,
    _stable_int,
    fixed_decimals,
    format_csv,
)

QUOTE_SIZES_IN_SHARES_FROM = dt.date(2025, 11, 3)  # quote sizes were round lots (of 100 shares) before
NS_PER_SECOND = 1_000_000_000
# As in the minute bars: a stock is active in a pre- or post-market minute 0.15 times as often as in a regular one,
# and when it is, it trades less.
EXTENDED_ODDS = 0.15
EXTENDED_RATE = 0.3

# Code vocabularies and their odds. None is an empty field (an empty string would be written as `""`); a code list
# holds a comma, so the CSV writer quotes it as the vendor does (`"12,37"`).
STOCK_TRADE_CONDITIONS = (
    (None, 0.45),
    ("12", 0.12),
    ("37", 0.22),
    ("14", 0.04),
    ("41", 0.03),
    ("12,37", 0.06),
    ("14,41", 0.05),
    ("14,37,41", 0.03),
)
STOCK_QUOTE_CONDITIONS = ((None, 0.7), ("1", 0.24), ("2", 0.04), ("1,8", 0.02))
STOCK_QUOTE_INDICATORS = ((None, 0.9), ("604", 0.06), ("1", 0.02), ("604,606", 0.02))
OPTION_TRADE_CONDITIONS = ((None, 0.03), ("209", 0.6), ("219", 0.2), ("227", 0.12), ("232", 0.03), ("209,219", 0.02))
CRYPTO_TRADE_CONDITIONS = ((None, 0.1), ("1", 0.44), ("2", 0.44), ("1,2", 0.02))
STOCK_EXCHANGES = np.array([1, 2, 3, 7, 8, 9, 10, 11, 12, 15, 17, 18, 19, 20, 21])  # 4 (FINRA ADF) is for TRF trades
TRF_IDS = np.array([201, 202, 203])
OPTION_EXCHANGES = np.array([301, 302, 303, 304, 307, 308, 309, 312, 313, 315, 316, 319, 320, 322, 323, 325])
CRYPTO_EXCHANGES = np.array([1, 2, 6, 23])
FOREX_EXCHANGE = 48


@dataclass(frozen=True)
class _Day:
    """What every instrument of one dataset's session shares."""

    dataset: Dataset
    session: dt.date
    seed: int
    size: SampleSize
    minutes: np.ndarray  # start stamps (ns) of the minutes the dataset can have ticks in
    regular: np.ndarray  # which of them are regular hours

    @property
    def fixed(self) -> bool:
        return fixed_decimals(self.dataset, self.session)


Raw = dict[str, np.ndarray]  # one instrument's rows, or a piece's: numpy columns of equal length


@dataclass(frozen=True)
class _Spec:
    """How a tick dataset is made: `rows` gives one instrument's raw columns, `finish` turns a piece's raw columns
    (with `ticker` as an index into the tickers) into the vendor's columns."""

    rows: Callable[[np.random.Generator, _Instrument, _Day], Raw]
    finish: Callable[[Raw, pl.Series, _Day], pl.DataFrame]


def tick_text_chunks(
    dataset: Dataset, session: dt.date, universe: Universe, rows_per_chunk: int = 500_000
) -> Iterator[bytes]:
    """The uncompressed CSV text of `dataset`'s file for `session`, in pieces of `rows_per_chunk` rows (the last one
    fewer); memory follows the piece (and the busiest instrument), not the day.

    The first piece starts with the header line, every piece ends at a line end, and the concatenation is the same
    whatever `rows_per_chunk` is. Rows are ticker-major, then in time order within a ticker.
    """
    if rows_per_chunk < 1:
        raise ValueError(f"rows_per_chunk must be at least 1, not {rows_per_chunk}")
    spec = SPECS[dataset.name]
    minutes, regular = _extended_minutes(dataset, session)
    day = _Day(dataset, session, universe.seed, universe.size, minutes, regular)
    instruments = _instruments(dataset, session, universe)
    tickers = pl.Series("ticker", [i.ticker for i in instruments], dtype=pl.String)

    def text(raw: Raw, header: bool) -> bytes:
        return format_csv(spec.finish(raw, tickers, day), dataset, session, header=header)

    pending: list[Raw] = []
    pending_rows, header = 0, True
    for index, instrument in enumerate(instruments):
        raw = spec.rows(_rng(universe.seed, dataset.name, instrument.ticker, session.isoformat()), instrument, day)
        rows = len(next(iter(raw.values())))
        raw["ticker"] = np.full(rows, index, dtype=np.int32)
        pending.append(raw)
        pending_rows += rows
        # Cut full pieces as soon as there are enough rows (an active ticker can fill several).
        while pending_rows >= rows_per_chunk:
            merged = _concat(pending)
            yield text({k: v[:rows_per_chunk] for k, v in merged.items()}, header)
            header = False
            pending = [{k: v[rows_per_chunk:] for k, v in merged.items()}]
            pending_rows -= rows_per_chunk
    if pending_rows:
        yield text(_concat(pending), header)
    elif header:  # a file without rows still has its header line
        yield (",".join(dataset.header) + "\n").encode()


def _concat(raws: list[Raw]) -> Raw:
    if len(raws) == 1:
        return raws[0]
    return {key: np.concatenate([raw[key] for raw in raws]) for key in raws[0]}


# --- shared pieces of market structure -------------------------------------------------------------------------


def _stamps(rng: np.random.Generator, day: _Day, activity: float, per_minute: float) -> np.ndarray:
    """Sorted tick stamps (ns) of one instrument: the minutes it is active in (as likely as in the minute bars),
    then about `per_minute` ticks at random instants of each (fewer in pre- and post-market)."""
    odds = np.where(day.regular, activity, activity * EXTENDED_ODDS)
    active = rng.random(len(day.minutes)) < odds
    rate = np.where(day.regular[active], per_minute, per_minute * EXTENDED_RATE)
    counts = 1 + rng.poisson(np.maximum(rate - 1.0, 0.0))
    stamps = np.repeat(day.minutes[active], counts) + rng.integers(0, NS_PER_MINUTE, int(counts.sum()))
    stamps.sort()
    return stamps


def _liquidity(instrument: _Instrument) -> float:
    """How many more ticks than an average stock this one has in a minute it trades in (heavy-tailed, median 1)."""
    return float(np.clip(np.sqrt(instrument.volume_scale / np.exp(6.0)), 0.2, 20.0))


def _walk(rng: np.random.Generator, level: float, n: int, sigma: float, decimals: int) -> np.ndarray:
    """A geometric random walk from `level`, rounded to `decimals` and never below one tick."""
    scale = 10.0**decimals
    path = level * np.exp(np.cumsum(rng.normal(0.0, sigma, n)))
    return np.maximum(np.round(path * scale), 1.0) / scale


def _bid_ask(
    rng: np.random.Generator, mid: np.ndarray, tick: float | np.ndarray, spread: float, decimals: int
) -> tuple[np.ndarray, np.ndarray]:
    """Bid and ask around `mid`: a spread of whole ticks (about `spread` of the price, plus noise, at least one),
    the bid at least one tick, so 0 < bid < ask."""
    ticks = np.maximum(1.0, np.round(mid * spread / tick)) + rng.geometric(0.6, len(mid)) - 1
    bid = np.maximum(np.floor(mid / tick - ticks / 2), 1.0)
    # Rounded to `decimals` so that a price is written `0.3`, not `0.30000000000000004`.
    return np.round(bid * tick, decimals), np.round((bid + ticks) * tick, decimals)


def _sequence(rng: np.random.Generator, n: int) -> np.ndarray:
    """Increasing sequence numbers with gaps (other tickers' messages sit in between)."""
    return rng.integers(1_000, 1_000_000) + np.cumsum(rng.integers(1, 40, n))


def _latency(rng: np.random.Generator, n: int) -> np.ndarray:
    """How long before the SIP stamp the participant stamped the event: microseconds to milliseconds."""
    return rng.lognormal(np.log(300_000.0), 1.0, n).astype(np.int64) + 1_000


def _choose(rng: np.random.Generator, vocabulary: tuple, n: int) -> np.ndarray:
    """Indices into `vocabulary` ((value, odds) pairs) drawn with its odds."""
    odds = np.array([p for _, p in vocabulary])
    return rng.choice(len(vocabulary), n, p=odds / odds.sum()).astype(np.int8)


def _codes(vocabulary: tuple, index: np.ndarray) -> pl.Series:
    """The code-list text of each row: null (an empty field), a bare code or a comma list."""
    return pl.Series([value for value, _ in vocabulary], dtype=pl.String).gather(index)


def _ids(kind: np.ndarray, number: np.ndarray) -> pl.Series:
    """Opaque trade ids: mostly a number, some letter codes (`A0031I`) and odd ones (`900]:C`), a few empty."""
    frame = pl.DataFrame({"kind": kind, "n": number})
    n = pl.col("n")
    return frame.select(
        pl.when(pl.col("kind") == 0)
        .then(n.cast(pl.String))
        .when(pl.col("kind") == 1)
        .then(pl.format("A{}I", (n % 10_000).cast(pl.String).str.zfill(4)))
        .when(pl.col("kind") == 2)
        .then(pl.format("{}]:C", n % 1_000))
        .otherwise(None)
    ).to_series()


def _id_kinds(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(4, n, p=[0.93, 0.04, 0.025, 0.005]).astype(np.int8)


def _tape(day: _Day, ticker: str) -> int:
    """The ticker's tape (1 NYSE, 2 other listings, 3 Nasdaq): one per ticker."""
    return 1 + _stable_int(day.seed, "tape", ticker) % 3


def _frame(raw: Raw, tickers: pl.Series, columns: dict) -> pl.DataFrame:
    """A piece's vendor columns: the ticker text, then `columns` (numpy arrays, series or expressions over `raw`)."""
    base = pl.DataFrame(raw)
    return base.select(ticker=tickers.gather(raw["ticker"]), **columns)


# --- stocks -----------------------------------------------------------------------------------------------------


def _stock_trade_rows(rng: np.random.Generator, inst: _Instrument, day: _Day) -> Raw:
    per_minute = day.size.trades_per_active_minute * _liquidity(inst)
    sip = _stamps(rng, day, inst.activity, per_minute)
    n = len(sip)
    latency = _latency(rng, n)
    trf = rng.random(n) < 0.3  # trades reported off-exchange through a TRF
    size = np.where(rng.random(n) < 0.45, rng.integers(1, 100, n), 100 * rng.geometric(0.45, n)).astype(np.float64)
    if day.fixed:  # fractional shares from 2026-02-23, in a few rows
        fractional = rng.random(n) < 0.03
        size = np.where(fractional, np.round(rng.uniform(0.001, 5.0, n), 6), size)
    return {
        "conditions": _choose(rng, STOCK_TRADE_CONDITIONS, n),
        "correction": np.where(rng.random(n) < 0.001, 1, 0),
        "exchange": np.where(trf, 4, rng.choice(STOCK_EXCHANGES, n)),
        "id_kind": _id_kinds(rng, n),
        "id": _sequence(rng, n),
        "participant_timestamp": np.where(rng.random(n) < 0.002, 0, sip - latency),
        "price": _walk(rng, inst.price, n, 0.0015 / np.sqrt(max(per_minute, 1.0)), inst.decimals),
        "sequence_number": _sequence(rng, n),
        "sip_timestamp": sip,
        "size": size,
        "tape": np.full(n, _tape(day, inst.ticker)),
        "trf": trf,
        "trf_id": rng.choice(TRF_IDS, n),
        "trf_timestamp": sip - (latency * rng.random(n)).astype(np.int64),  # between the participant and the SIP
    }


def _stock_trade_frame(raw: Raw, tickers: pl.Series, day: _Day) -> pl.DataFrame:
    trf = pl.col("trf")
    return _frame(
        raw,
        tickers,
        {
            "conditions": _codes(STOCK_TRADE_CONDITIONS, raw["conditions"]),
            "correction": pl.col("correction"),
            "exchange": pl.col("exchange"),
            "id": _ids(raw["id_kind"], raw["id"]),
            "participant_timestamp": pl.col("participant_timestamp"),
            "price": pl.col("price"),
            "sequence_number": pl.col("sequence_number"),
            "sip_timestamp": pl.col("sip_timestamp"),
            "size": pl.col("size"),
            "tape": pl.col("tape"),
            "trf_id": pl.when(trf).then(pl.col("trf_id")),  # empty for trades that did not go through a TRF
            "trf_timestamp": pl.when(trf).then(pl.col("trf_timestamp")),
        },
    )


def _quote_sizes(rng: np.random.Generator, day: _Day, n: int) -> np.ndarray:
    """Displayed sizes: round lots before 2025-11-03, shares (lots of 100) from then."""
    lots = rng.geometric(0.35, n).astype(np.float64)
    return lots * 100 if day.session >= QUOTE_SIZES_IN_SHARES_FROM else lots


def _stock_quote_rows(rng: np.random.Generator, inst: _Instrument, day: _Day) -> Raw:
    per_minute = day.size.quotes_per_active_minute * _liquidity(inst)
    sip = _stamps(rng, day, inst.activity, per_minute)
    n = len(sip)
    tick = 10.0**-inst.decimals
    mid = _walk(rng, inst.price, n, 0.0015 / np.sqrt(max(per_minute, 1.0)), inst.decimals + 1)
    bid, ask = _bid_ask(rng, mid, tick, 0.0004, inst.decimals)
    latency = _latency(rng, n)
    return {
        "ask_exchange": rng.choice(STOCK_EXCHANGES, n),
        "ask_price": ask,
        "ask_size": _quote_sizes(rng, day, n),
        "bid_exchange": rng.choice(STOCK_EXCHANGES, n),
        "bid_price": bid,
        "bid_size": _quote_sizes(rng, day, n),
        "conditions": _choose(rng, STOCK_QUOTE_CONDITIONS, n),
        "indicators": _choose(rng, STOCK_QUOTE_INDICATORS, n),
        "participant_timestamp": sip - latency,
        "sequence_number": _sequence(rng, n),
        "sip_timestamp": sip,
        "tape": np.full(n, _tape(day, inst.ticker)),
        "trf": rng.random(n) < 0.01,
        "trf_timestamp": sip - (latency * rng.random(n)).astype(np.int64),
    }


def _stock_quote_frame(raw: Raw, tickers: pl.Series, day: _Day) -> pl.DataFrame:
    same = ("ask_exchange", "ask_price", "ask_size", "bid_exchange", "bid_price", "bid_size")
    return _frame(
        raw,
        tickers,
        {
            **{name: pl.col(name) for name in same},
            "conditions": _codes(STOCK_QUOTE_CONDITIONS, raw["conditions"]),
            "indicators": _codes(STOCK_QUOTE_INDICATORS, raw["indicators"]),
            **{name: pl.col(name) for name in ("participant_timestamp", "sequence_number", "sip_timestamp", "tape")},
            "trf_timestamp": pl.when(pl.col("trf")).then(pl.col("trf_timestamp")),
        },
    )


# --- options ----------------------------------------------------------------------------------------------------


def _option_trade_rows(rng: np.random.Generator, inst: _Instrument, day: _Day) -> Raw:
    sip = _stamps(rng, day, inst.activity, day.size.trades_per_active_minute * 0.5)
    n = len(sip)
    return {
        "conditions": _choose(rng, OPTION_TRADE_CONDITIONS, n),
        "correction": np.where(rng.random(n) < 0.001, 1, 0),
        "exchange": rng.choice(OPTION_EXCHANGES, n),
        "price": _walk(rng, inst.price, n, 0.01, inst.decimals),
        "sip_timestamp": sip,
        "size": (1 + rng.geometric(0.3, n)).astype(np.float64),
    }


def _option_trade_frame(raw: Raw, tickers: pl.Series, day: _Day) -> pl.DataFrame:
    # No participant_timestamp: the vendor's docs list one, its files do not have it.
    return _frame(
        raw,
        tickers,
        {
            "conditions": _codes(OPTION_TRADE_CONDITIONS, raw["conditions"]),
            **{name: pl.col(name) for name in ("correction", "exchange", "price", "sip_timestamp", "size")},
        },
    )


def _option_quote_rows(rng: np.random.Generator, inst: _Instrument, day: _Day) -> Raw:
    sip = _stamps(rng, day, inst.activity, day.size.quotes_per_active_minute * 2)
    n = len(sip)
    mid = _walk(rng, inst.price, n, 0.005, 3)
    tick = np.where(mid < 3.0, 0.01, 0.05)  # the penny pilot: nickels above $3
    bid, ask = _bid_ask(rng, mid, tick, 0.02, 2)
    return {
        "ask_exchange": rng.choice(OPTION_EXCHANGES, n),
        "ask_price": ask,
        "ask_size": rng.geometric(0.05, n).astype(np.float64),
        "bid_exchange": rng.choice(OPTION_EXCHANGES, n),
        "bid_price": bid,
        "bid_size": rng.geometric(0.05, n).astype(np.float64),
        "sequence_number": _sequence(rng, n),
        "sip_timestamp": sip,
    }


def _plain_frame(raw: Raw, tickers: pl.Series, day: _Day) -> pl.DataFrame:
    """Vendor columns that are the raw columns as they are."""
    return _frame(raw, tickers, {name: pl.col(name) for name in day.dataset.header if name != "ticker"})


# --- crypto, forex, indices -------------------------------------------------------------------------------------


def _crypto_trade_rows(rng: np.random.Generator, inst: _Instrument, day: _Day) -> Raw:
    stamps = _stamps(rng, day, inst.activity, day.size.trades_per_active_minute)
    n = len(stamps)
    return {
        "conditions": _choose(rng, CRYPTO_TRADE_CONDITIONS, n),
        "exchange": rng.choice(CRYPTO_EXCHANGES, n),
        "id_kind": _id_kinds(rng, n),
        "id": _sequence(rng, n),
        "participant_timestamp": stamps,
        "price": _walk(rng, inst.price, n, 0.0005, inst.decimals),
        # Fractional coins; at least 0.0001 so that no size is written in exponent form.
        "size": np.maximum(np.round(rng.lognormal(-3.0, 1.8, n), 8), 0.0001),
    }


def _crypto_trade_frame(raw: Raw, tickers: pl.Series, day: _Day) -> pl.DataFrame:
    return _frame(
        raw,
        tickers,
        {
            "conditions": _codes(CRYPTO_TRADE_CONDITIONS, raw["conditions"]),
            "exchange": pl.col("exchange"),
            "id": _ids(raw["id_kind"], raw["id"]),
            **{name: pl.col(name) for name in ("participant_timestamp", "price", "size")},
        },
    )


def _forex_quote_rows(rng: np.random.Generator, inst: _Instrument, day: _Day) -> Raw:
    stamps = _stamps(rng, day, inst.activity, day.size.quotes_per_active_minute)
    n = len(stamps)
    tick = 10.0**-inst.decimals
    mid = _walk(rng, inst.price, n, 0.0001, inst.decimals + 1)
    bid, ask = _bid_ask(rng, mid, tick, 0.00005, inst.decimals)
    return {
        "ask_exchange": np.full(n, FOREX_EXCHANGE),
        "ask_price": ask,
        "bid_exchange": np.full(n, FOREX_EXCHANGE),
        "bid_price": bid,
        "participant_timestamp": stamps,
    }


def _index_value_rows(rng: np.random.Generator, inst: _Instrument, day: _Day) -> Raw:
    """About one value per `index_value_seconds` through the minutes the index has, a millisecond of jitter."""
    step = day.size.index_value_seconds * NS_PER_SECOND
    stamps = np.arange(day.minutes[0], day.minutes[-1] + NS_PER_MINUTE, step, dtype=np.int64)
    stamps += rng.integers(0, 1_000_000, len(stamps))
    sigma = 0.00005 * np.sqrt(day.size.index_value_seconds)
    return {"value": _walk(rng, inst.price, len(stamps), sigma, inst.decimals), "timestamp": stamps}


SPECS: dict[str, _Spec] = {
    "stocks_trades": _Spec(_stock_trade_rows, _stock_trade_frame),
    "stocks_quotes": _Spec(_stock_quote_rows, _stock_quote_frame),
    "options_trades": _Spec(_option_trade_rows, _option_trade_frame),
    "options_quotes": _Spec(_option_quote_rows, _plain_frame),
    "crypto_trades": _Spec(_crypto_trade_rows, _crypto_trade_frame),
    "forex_quotes": _Spec(_forex_quote_rows, _plain_frame),
    "indices_values": _Spec(_index_value_rows, _plain_frame),
}
