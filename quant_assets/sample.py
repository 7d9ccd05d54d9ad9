"""A deterministic generator of synthetic vendor files, in the vendor's exact format.

It writes day and minute aggregates for every asset class under the real key layout
(`<prefix>/<dataset>/<YYYY>/<MM>/<YYYY-MM-DD>.csv.gz`) with the real headers, to a folder or to an S3 endpoint, and
the tick datasets (trades, quotes, index values) through `sample_ticks.py`, streamed so a full-size day never sits in
memory.
The data has the structure of the real files: a stable universe with awkward tickers (`BApA`, `BRK.B`, `NA`, test
tickers), tickers that list and delist, OCC option contracts, minute bars only in minutes with trades (pre- and
post-market included, early closes respected), day bars that aggregate the minute bars, 6-decimal formatting and
fractional stock volumes from 2026-02-23, splits that show as price jumps, and quarterly cash dividends whose
ex-dates drop the price by the dividend's yield. `sample_rest.py` serves the same splits and dividends over the
vendor's REST API.

Every session's files depend only on the seed, the size and the session, so generating one day or a whole year
gives the same bytes for that day.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from quant_assets.datasets import DATASETS, Calendar, Dataset
from quant_assets.flatfiles import vendor_key
from quant_assets.sessions import exchange_calendar, extended_hours, session_midnight, sessions

FIXED_DECIMALS_FROM = dt.date(2026, 2, 23)  # stock prices/volumes written as `114.790000`, volumes fractional


def fixed_decimals(dataset: Dataset, session: dt.date) -> bool:
    """Whether the vendor writes this file's numbers with 6 fixed decimals (US stocks from 2026-02-23)."""
    return dataset.prefix == "us_stocks_sip" and session >= FIXED_DECIMALS_FROM


NS_PER_MINUTE = 60_000_000_000
DIVIDEND_MONTHS = (2, 5, 8, 11)
DIVIDEND_YIELD = 0.01  # per quarter

# Real tickers that break naive readers: case-sensitive pairs, dots, warrants, test symbols, null-like names.
AWKWARD_TICKERS = (
    "BApA",
    "BAPA",
    "BCpC",
    "BCPC",
    "BRK.B",
    "NE.WS.A",
    "NMCOr",
    "BCATrw",
    "KPLTW",
    "ZTST",
    "ZZZTA",
    "ZVZZT",
    "ZXIET",
    "NA",
    "NULL",
)
OPTION_UNDERLYINGS = ("SPY", "AAPL", "BRK.B")
CRYPTO_TICKERS = ("X:BTC-USD", "X:ETH-USD", "X:SOL-USD", "X:DOGE-USD", "X:LTC-USD")
FOREX_TICKERS = ("C:EUR-USD", "C:USD-JPY", "C:GBP-USD", "C:AUD-USD", "C:USD-CHF", "C:EUR-GBP")
INDEX_TICKERS = ("I:SPX", "I:NDX", "I:DJI", "I:VIX", "I:RUT")


@dataclass(frozen=True)
class SampleSize:
    """How big a generated day is."""

    name: str
    stocks: int  # tickers in the stock universe, awkward ones included
    activity: float  # mean share of extended-hours minutes in which a stock trades
    strikes: int  # strikes each side of the money, per expiration
    expirations: int  # weekly expirations listed per underlying
    # Tick files only (`sample_ticks.py`); the aggregates do not read these.
    trades_per_active_minute: float = 2.0  # mean trades of an average stock in a regular-hours minute it trades in
    quotes_per_active_minute: float = 2.5  # the same for quote updates
    index_value_seconds: int = 5  # seconds between two values of an index


SIZES = {
    "small": SampleSize("small", stocks=60, activity=0.08, strikes=2, expirations=2),
    # A universe past a hundred symbols (a watchlist) that still generates in a second or two.
    "medium": SampleSize("medium", stocks=150, activity=0.08, strikes=2, expirations=2),
    # About the real volume: ~12k tickers in day aggregates and ~2M rows in one day of minute aggregates; ~25M stock
    # trades a day (the vendor has ~70M). Quotes are kept at about the trades' count (the vendor's ~400M would not
    # fit a test machine).
    "full": SampleSize(
        "full",
        stocks=12_000,
        activity=0.21,
        strikes=10,
        expirations=4,
        trades_per_active_minute=10.0,
        quotes_per_active_minute=10.0,
        index_value_seconds=1,
    ),
}


def _stable_int(*parts: object) -> int:
    """A 64-bit integer from `parts`, the same in every process (unlike `hash`)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _rng(seed: int, *parts: object) -> np.random.Generator:
    return np.random.default_rng([seed, _stable_int(*parts)])


def _letters(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 26)
        out.append(chr(ord("A") + r))
    return "".join(reversed(out))


@dataclass(frozen=True)
class Universe:
    """The stock universe for one seed and size: tickers with a base price, an activity level and a split day."""

    seed: int
    size: SampleSize

    @cached_property
    def stock_tickers(self) -> list[str]:
        rng = _rng(self.seed, "universe")
        names = set(AWKWARD_TICKERS) | set(OPTION_UNDERLYINGS)
        while len(names) < self.size.stocks:
            width = int(rng.choice([1, 2, 3, 4, 5], p=[0.02, 0.1, 0.38, 0.4, 0.1]))
            names.add(_letters(int(rng.integers(0, 26**width)), width))
        return sorted(names)

    @cached_property
    def split_tickers(self) -> frozenset[str]:
        """Tickers that split 2-for-1 and reverse-split 1-for-2 in alternate months (see `split_factor`)."""
        return frozenset(t for t in self.stock_tickers if _stable_int(self.seed, "split", t) % 50 == 0) | {"BRK.B"}

    def split_day(self, ticker: str) -> int:
        return 3 + _stable_int(self.seed, "split-day", ticker) % 22

    def split_factor(self, ticker: str, session: dt.date) -> float:
        """Price multiplier on `session`: 0.5 from the split day of an even month to that of the next odd month."""
        if ticker not in self.split_tickers:
            return 1.0
        after_split_day = session.day >= self.split_day(ticker)
        return 0.5 if (session.month % 2 == 0) == after_split_day else 1.0

    def split_events(self, start: dt.date, end: dt.date) -> list[tuple[str, dt.date, float]]:
        """(ticker, first session at the new price, price ratio new/old) for every split in [start, end]."""
        days = sessions(DATASETS["stocks_daily"].calendar, start - dt.timedelta(days=10), end)
        events = []
        for ticker in sorted(self.split_tickers):
            for before, after in zip(days, days[1:]):
                old, new = self.split_factor(ticker, before), self.split_factor(ticker, after)
                if old != new and start <= after <= end:
                    events.append((ticker, after, new / old))
        return sorted(events, key=lambda e: (e[1], e[0]))

    @cached_property
    def dividend_tickers(self) -> frozenset[str]:
        """Tickers that pay a quarterly cash dividend (see `dividend_events`)."""
        return frozenset(t for t in self.stock_tickers if _stable_int(self.seed, "dividend", t) % 10 == 0) | {"AAPL"}

    def dividend_ex_dates(self, ticker: str, start: dt.date, end: dt.date) -> list[dt.date]:
        """The ex-dividend dates of `ticker` in [start, end]: the first session on or after a ticker-specific day
        of February, May, August and November."""
        if ticker not in self.dividend_tickers:
            return []
        day = 2 + _stable_int(self.seed, "dividend-day", ticker) % 20
        found = []
        for year in range(start.year, end.year + 1):
            for month in DIVIDEND_MONTHS:
                first = dt.date(year, month, day)
                ex_date = sessions(DATASETS["stocks_daily"].calendar, first, first + dt.timedelta(days=10))[0]
                if start <= ex_date <= end:
                    found.append(ex_date)
        return found

    def dividend_factor(self, ticker: str, session: dt.date) -> float:
        """Price multiplier on `session`: the price drops by the dividend's yield on the ex-date and recovers at
        the end of the next month, so that prices stay bounded however long the range."""
        month_start = dt.date(session.year, session.month, 1)
        window_start = (month_start - dt.timedelta(days=1)).replace(day=1)
        return 1.0 - DIVIDEND_YIELD if self.dividend_ex_dates(ticker, window_start, session) else 1.0

    def dividend_events(self, start: dt.date, end: dt.date) -> list[tuple[str, dt.date, float]]:
        """(ticker, ex-dividend date, cash amount) for every dividend in [start, end]: the cash is the yield of
        the price level before the ex-date, rounded to the cent."""
        events = []
        for ticker in sorted(self.dividend_tickers):
            base = _stock_base(self.seed, ticker)
            for ex_date in self.dividend_ex_dates(ticker, start, end):
                before = ex_date - dt.timedelta(days=1)
                level = _price_level(self.seed, ticker, before, base) * self.split_factor(ticker, before)
                events.append((ticker, ex_date, max(0.01, round(level * DIVIDEND_YIELD, 2))))
        return sorted(events, key=lambda e: (e[1], e[0]))

    @staticmethod
    def listing_ticker(year: int, month: int) -> str:
        """The ticker that lists on the 15th of `month` and delists on the 15th two months later."""
        return "Q" + _letters(year * 12 + month, 4)

    def listed_on(self, session: dt.date) -> list[str]:
        """Tickers that trade on `session`: the stable universe plus the listings alive that day."""
        alive = []
        for back in range(3):
            year, month = divmod(session.year * 12 + session.month - 1 - back, 12)
            month += 1
            lists = dt.date(year, month, 15)
            delists = dt.date(year + (month + 1) // 12, (month + 1) % 12 + 1, 15)
            if lists <= session < delists:
                alive.append(self.listing_ticker(year, month))
        return self.stock_tickers + alive


def _stock_base(seed: int, ticker: str) -> float:
    """A stock's base price level."""
    return float(np.exp(_rng(seed, "stock", ticker).normal(3.3, 1.2)))


def _price_level(seed: int, ticker: str, session: dt.date, base: float) -> float:
    """A smooth, bounded price path: the same value for a date whatever range is generated."""
    rng = _rng(seed, "path", ticker)
    periods, phases, amps = rng.uniform(20, 400, 3), rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.02, 0.15, 3)
    t = session.toordinal()
    return base * float(np.exp(np.sum(amps * np.sin(2 * np.pi * t / periods + phases))))


def _extended_minutes(dataset: Dataset, session: dt.date) -> tuple[np.ndarray, np.ndarray]:
    """Bar-start stamps (ns, UTC) a dataset can have on `session`, and which of them are regular hours."""
    asset_class = dataset.asset_class
    if asset_class in ("stocks", "options", "indices"):
        xnys = exchange_calendar("XNYS")
        if asset_class == "indices" and not xnys.is_session(session):
            # Index files exist on weekday holidays too; give them a short, quiet day.
            open_ns = int(dt.datetime(session.year, session.month, session.day, 14, 30, tzinfo=dt.UTC).timestamp())
            open_ns *= 1_000_000_000
            close_ns = open_ns + 60 * NS_PER_MINUTE
        else:
            open_ns = xnys.session_open(session).value
            close_ns = xnys.session_close(session).value  # 13:00 on early-close days
        if asset_class == "stocks":  # pre- and post-market
            start, end = (int(t.timestamp()) * 10**9 for t in extended_hours(dataset.calendar, session))
        else:
            start, end = open_ns, close_ns
        stamps = np.arange(start, end, NS_PER_MINUTE, dtype=np.int64)
        return stamps, (stamps >= open_ns) & (stamps < close_ns)
    midnight = int(dt.datetime(session.year, session.month, session.day, tzinfo=dt.UTC).timestamp()) * 10**9
    stamps = np.arange(midnight, midnight + 1440 * NS_PER_MINUTE, NS_PER_MINUTE, dtype=np.int64)
    if asset_class == "forex":
        weekday = session.weekday()
        if weekday == 6:  # Sunday: the week opens at 22:00 UTC
            stamps = stamps[stamps >= midnight + 22 * 60 * NS_PER_MINUTE]
        elif weekday == 4:  # Friday: closes at 21:00 UTC
            stamps = stamps[stamps < midnight + 21 * 60 * NS_PER_MINUTE]
    return stamps, np.ones(len(stamps), dtype=bool)


@dataclass(frozen=True)
class _Instrument:
    ticker: str
    price: float  # the session's opening price level
    activity: float  # share of regular-hours minutes with trades
    volume_scale: float
    decimals: int


def _occ_ticker(root: str, expiration: dt.date, right: str, strike: float) -> str:
    return f"O:{root.replace('.', '')}{expiration:%y%m%d}{right}{round(strike * 1000):08d}"


def _instruments(dataset: Dataset, session: dt.date, universe: Universe) -> list[_Instrument]:
    seed, size = universe.seed, universe.size
    asset_class = dataset.asset_class
    if asset_class == "stocks":
        out = []
        for ticker in universe.listed_on(session):
            rng = _rng(seed, "stock", ticker)
            base = float(np.exp(rng.normal(3.3, 1.2)))
            price = _price_level(seed, ticker, session, base) * universe.split_factor(ticker, session)
            price *= universe.dividend_factor(ticker, session)
            activity = float(min(1.0, rng.beta(0.6, 0.6 / size.activity - 0.6) * 2))
            out.append(_Instrument(ticker, price, activity, float(rng.lognormal(6, 1.5)), 2 if price >= 1 else 4))
        return out
    if asset_class == "options":
        out = []
        for root in OPTION_UNDERLYINGS:
            rng = _rng(seed, "stock", root)
            spot = _price_level(seed, root, session, float(np.exp(rng.normal(3.3, 1.2))))
            spot *= universe.split_factor(root, session)
            step = 1.0 if spot < 100 else 5.0
            atm = round(spot / step) * step
            friday = session + dt.timedelta(days=(4 - session.weekday()) % 7)
            for week in range(size.expirations):
                expiration = friday + dt.timedelta(weeks=week)
                for k in range(-size.strikes, size.strikes + 1):
                    strike = atm + k * step
                    if strike <= 0:
                        continue
                    for right in "CP":
                        intrinsic = max(0.0, (spot - strike) if right == "C" else (strike - spot))
                        premium = intrinsic + spot * 0.02 * np.sqrt(week + 1) * np.exp(-abs(k) * 0.3)
                        activity = 0.25 * np.exp(-abs(k) * 0.4) / (week + 1)
                        out.append(
                            _Instrument(
                                _occ_ticker(root, expiration, right, strike), max(premium, 0.01), activity, 20.0, 2
                            )
                        )
        return out
    tickers, base, decimals, activity = {
        "crypto": (CRYPTO_TICKERS, 2000.0, 2, 0.9),
        "forex": (FOREX_TICKERS, 1.2, 5, 1.0),
        "indices": (INDEX_TICKERS, 4000.0, 2, 1.0),
    }[asset_class]
    out = []
    for ticker in tickers:
        rng = _rng(seed, asset_class, ticker)
        level = _price_level(seed, ticker, session, base * float(rng.uniform(0.05, 2.0)))
        out.append(_Instrument(ticker, level, activity, float(rng.lognormal(4, 1)), decimals))
    return out


def minute_bars(dataset: Dataset, session: dt.date, universe: Universe) -> pl.DataFrame:
    """Minute aggregates for one session, typed (not yet formatted), sorted by ticker then time."""
    stamps, regular = _extended_minutes(dataset, session)
    instruments = _instruments(dataset, session, universe)
    rng = _rng(universe.seed, dataset.asset_class, "minutes", session.isoformat())
    n_inst, n_min = len(instruments), len(stamps)
    activity = np.array([i.activity for i in instruments])[:, None]
    odds = np.where(regular[None, :], activity, activity * 0.15)
    traded = rng.random((n_inst, n_min)) < odds
    inst_idx, min_idx = np.nonzero(traded)
    n = len(inst_idx)

    price0 = np.array([i.price for i in instruments])
    sigma = 0.0015
    steps = rng.normal(0.0, sigma, n)
    # A random walk within each instrument: cumulative sum restarted at each instrument's first row.
    csum = np.cumsum(steps)
    first = np.r_[0, np.flatnonzero(np.diff(inst_idx)) + 1]
    counts = np.diff(np.r_[first, n])
    csum -= np.repeat(csum[first] - steps[first], counts)
    close = price0[inst_idx] * np.exp(csum)
    open_ = close * np.exp(-steps + rng.normal(0, sigma / 4, n))
    decimals = np.array([i.decimals for i in instruments])[inst_idx]
    scale = 10.0**decimals
    open_, close = np.round(open_ * scale) / scale, np.round(close * scale) / scale
    open_, close = np.maximum(open_, 1 / scale), np.maximum(close, 1 / scale)
    wick = np.abs(rng.normal(0, sigma / 2, (2, n)))
    high = np.ceil(np.maximum(open_, close) * (1 + wick[0]) * scale) / scale
    low = np.floor(np.minimum(open_, close) * (1 - wick[1]) * scale) / scale
    low = np.maximum(low, 1 / scale)
    volume_scale = np.array([i.volume_scale for i in instruments])[inst_idx]
    volume = np.maximum(1.0, np.round(rng.lognormal(0, 1, n) * volume_scale * np.where(regular[min_idx], 1, 0.2)))
    transactions = np.maximum(1, (volume / rng.uniform(20, 200, n)).astype(np.int64))
    tickers = pl.Series("ticker", [i.ticker for i in instruments], dtype=pl.String)
    return pl.DataFrame(
        {
            "ticker": tickers.gather(inst_idx),
            "volume": volume,
            "open": open_,
            "close": close,
            "high": high,
            "low": low,
            "window_start": stamps[min_idx],
            "transactions": transactions,
        }
    )


def day_bars(minutes: pl.DataFrame, session: dt.date, calendar: Calendar) -> pl.DataFrame:
    """Day aggregates that agree with `minutes`: first open, last close, extremes, sums; stamped 00:00 local."""
    midnight = session_midnight(calendar, session)
    return (
        minutes.group_by("ticker", maintain_order=True)
        .agg(
            pl.col("volume").sum(),
            pl.col("open").first(),
            pl.col("close").last(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("transactions").sum(),
        )
        .with_columns(window_start=pl.lit(int(midnight.timestamp()) * 10**9, dtype=pl.Int64))
    )


def _add_fractional_volume(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """From 2026-02-23 some stock volumes carry fractional shares."""
    fraction = np.where(rng.random(frame.height) < 0.05, np.round(rng.random(frame.height), 6), 0.0)
    return frame.with_columns(pl.col("volume") + pl.Series(fraction))


def _shuffle_a_little(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Rows are mostly ticker-major then time, but not strictly: swap a few neighbours."""
    order = np.arange(frame.height)
    swaps = rng.choice(max(frame.height - 1, 1), size=max(1, frame.height // 1000), replace=False)
    for i in swaps:
        if i + 1 < frame.height:
            order[i], order[i + 1] = order[i + 1], order[i]
    return frame[order]


def format_csv(frame: pl.DataFrame, dataset: Dataset, session: dt.date, header: bool = True) -> bytes:
    """The vendor's CSV text for `frame`: its header order (the header line only if `header`), and its number
    formatting for that date."""
    frame = frame.select(dataset.header)
    floats = [name for name, dtype in frame.schema.items() if dtype == pl.Float64]
    if fixed_decimals(dataset, session):
        return frame.write_csv(float_precision=6, include_header=header).encode()
    # Before the switch: shortest form, `21` for a whole number and `0.1952` otherwise.
    shortest = [pl.col(c).cast(pl.String).str.replace(r"\.0$", "").alias(c) for c in floats]
    return frame.with_columns(shortest).write_csv(include_header=header).encode()


def session_files(dataset: Dataset, session: dt.date, universe: Universe) -> bytes:
    """One session's gzip CSV for an aggregate dataset, byte for byte the same for the same inputs."""
    minutes = minute_bars(DATASETS[f"{dataset.asset_class}_minute"], session, universe)
    fixed = fixed_decimals(dataset, session)
    if fixed:  # on the minute bars, so that day volumes still sum them
        minutes = _add_fractional_volume(minutes, _rng(universe.seed, "fractions", session.isoformat()))
    if dataset.frequency == "day":
        frame = day_bars(minutes, session, dataset.calendar)
        frame = frame.with_columns(pl.col("volume").round(6))
    else:
        frame = minutes
    if not fixed:
        frame = frame.with_columns(pl.col("volume").cast(pl.Int64))
    rng = _rng(universe.seed, dataset.name, "format", session.isoformat())
    frame = _shuffle_a_little(frame, rng)
    return gzip_bytes(format_csv(frame, dataset, session))


def gzip_bytes(data: bytes, level: int = 6) -> bytes:
    """gzip with a fixed header (no file name, mtime 0), so the same text gives the same bytes."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def gzip_chunks(text_chunks: Iterable[bytes], level: int = 1) -> Iterator[bytes]:
    """`gzip_bytes` of the concatenated `text_chunks`, streamed: one gzip member with the same fixed header, yielded
    piece by piece as the text arrives (so the same text gives the same bytes however it is split)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    for text in text_chunks:
        if out := compressor.compress(text):  # zlib buffers small inputs; an empty piece is no piece
            yield out
    yield compressor.flush()


# What a writer receives: the key and the file's gzip bytes as an iterable of pieces (a big file never sits whole in
# memory). A writer also accepts plain bytes, the protocol before tick files.
Writer = Callable[[str, Iterable[bytes]], None]


def session_chunks(dataset: Dataset, session: dt.date, universe: Universe) -> Iterator[bytes]:
    """One session's gzip CSV for any dataset, as pieces: aggregates in one piece (`session_files`), tick files
    streamed from `sample_ticks.tick_text_chunks` at compression level 1 (a tick day is gigabytes at full size)."""
    if dataset.is_aggregate:
        return iter([session_files(dataset, session, universe)])
    from quant_assets.sample_ticks import tick_text_chunks  # here, not at the top: sample_ticks builds on this module

    return gzip_chunks(_read_ahead(tick_text_chunks(dataset, session, universe)), level=1)


def _read_ahead(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """`pieces`, the next one made in a worker thread while the caller compresses and writes this one (numpy,
    polars and zlib release the GIL, so both cores work). Same pieces, same order; errors reach the caller."""
    iterator = iter(pieces)
    with ThreadPoolExecutor(1) as worker:
        ahead = worker.submit(next, iterator, None)
        while (piece := ahead.result()) is not None:
            ahead = worker.submit(next, iterator, None)
            yield piece


def generate(
    datasets: Iterable[Dataset],
    start: dt.date,
    end: dt.date,
    write: Writer,
    seed: int = 7,
    size: str = "small",
    progress=lambda items, what: items,
) -> list[str]:
    """Write every session file of `datasets` from `start` to `end` through `write(key, chunks)`, where `chunks`
    are the file's gzip bytes in pieces; return the keys. `progress(items, what)` may wrap each dataset's
    sessions (a progress bar)."""
    universe = Universe(seed, SIZES[size])
    keys = []
    for dataset in datasets:
        for session in progress(sessions(dataset.calendar, start, end), dataset.name):
            key = vendor_key(dataset, session)
            write(key, session_chunks(dataset, session, universe))
            keys.append(key)
    return keys


def _pieces(chunks: Iterable[bytes] | bytes) -> Iterable[bytes]:
    # Iterating bytes would give ints: whole bytes are one piece.
    return [chunks] if isinstance(chunks, (bytes, bytearray, memoryview)) else chunks


def folder_writer(root: str | os.PathLike) -> Writer:
    """A `write(key, chunks)` that mirrors the vendor's key layout under `root`: each file is streamed to a temporary
    file in its folder and moved into place atomically, and only when its bytes change."""
    root = Path(root)

    def write(key: str, chunks: Iterable[bytes]) -> None:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with tmp.open("wb") as out:
                for piece in _pieces(chunks):
                    out.write(piece)
            if path.is_file() and _same_bytes(tmp, path):
                tmp.unlink()  # unchanged: keep the old file (and its mtime) as it is
                return
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    return write


def _same_bytes(a: Path, b: Path, block: int = 1 << 20) -> bool:
    """Whether two files hold the same bytes, read a block at a time (tick files are gigabytes)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(block), fb.read(block)
            if x != y:
                return False
            if not x:
                return True


class _ChunkReader:
    """A read-only file over an iterator of byte pieces. `read(n)` returns exactly `n` bytes until the end: boto3
    cuts multipart parts at what one read returns, and every part but the last must be at least 5 MB."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(_pieces(chunks))
        self._buffer = bytearray()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            piece = next(self._chunks, None)
            if piece is None:
                break
            self._buffer += piece
        size = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


def s3_writer(client, bucket: str) -> Writer:
    """A `write(key, chunks)` that streams to `bucket` through a boto3 S3 client (one PUT for a small file, a
    multipart upload for a big one; memory is bounded by boto3's part buffers, not by the file)."""

    def write(key: str, chunks: Iterable[bytes]) -> None:
        client.upload_fileobj(_ChunkReader(chunks), bucket, key)

    return write
