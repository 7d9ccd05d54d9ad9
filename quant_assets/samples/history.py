"""The daily bars the local vendor servers serve: for each ticker of the synthetic universe and each session, the
raw bar of the generated `stocks_daily` flat file (the same numbers byte for byte), and the vendor-adjusted bar as
a vendor computes it on the last day of its data (`end`): backward-adjusted for every split and cash dividend after
the session, as Tiingo's `adj*` and Yahoo's `adjclose` are.
"""

from __future__ import annotations

import datetime as dt
from functools import cached_property, lru_cache

from quant_assets.datasets import DATASETS
from quant_assets.sample import INDEX_TICKERS, SIZES, Universe
from quant_assets.sample_rest import _grouped
from quant_assets.samples.server import VendorServer
from quant_assets.sessions import sessions

DAILY = DATASETS["stocks_daily"]
INDEX_SCALE = {"SPX": 25.0, "NDX": 90.0, "DJI": 200.0, "VIX": 0.2, "RUT": 10.0}


class DailyHistory:
    """The synthetic universe's daily bars between `start` and `end` (the vendor's last day of data)."""

    def __init__(self, start: dt.date, end: dt.date, seed: int = 7, size: str = "small"):
        self.universe = Universe(seed, SIZES[size])
        self.start, self.end = start, end

    @cached_property
    def sessions(self) -> list[dt.date]:
        return sessions(DAILY.calendar, self.start, self.end)

    @cached_property
    def tickers(self) -> frozenset[str]:
        return frozenset(self.universe.stock_tickers)

    def session_bars(self, session: dt.date) -> dict[str, dict]:
        """Every ticker's raw bar on `session` (the generated file's), by ticker."""
        return _by_ticker(self.universe, session)

    def warm(self) -> None:
        """Generate every session's bars now (a benchmark times the server, not the generator)."""
        for session in self.sessions:
            self.session_bars(session)

    @cached_property
    def _events(self) -> tuple[dict[str, list[tuple[dt.date, float]]], dict[str, list[tuple[dt.date, float]]]]:
        splits: dict[str, list[tuple[dt.date, float]]] = {}
        for ticker, day, ratio in self.universe.split_events(self.start, self.end):
            splits.setdefault(ticker, []).append((day, 1 / ratio))  # new shares per old share
        dividends: dict[str, list[tuple[dt.date, float]]] = {}
        for ticker, day, cash in self.universe.dividend_events(self.start, self.end):
            dividends.setdefault(ticker, []).append((day, cash))
        return splits, dividends

    def split_factor(self, ticker: str, session: dt.date) -> float:
        """New shares per old share when `ticker` splits on `session`, else 1."""
        return next((f for day, f in self._events[0].get(ticker, []) if day == session), 1.0)

    def dividend(self, ticker: str, session: dt.date) -> float:
        """The cash dividend per share of `ticker` with ex-date `session`, else 0."""
        return next((cash for day, cash in self._events[1].get(ticker, []) if day == session), 0.0)

    def bars(self, ticker: str, first: dt.date, last: dt.date) -> list[dict]:
        """`ticker`'s bars in [first, last] (where it traded), oldest first: `date`, raw `open`..`volume`,
        `adj_open`..`adj_volume`, `dividend` and `split_factor`."""
        days = [s for s in self.sessions if first <= s <= last]
        if ticker not in self.tickers or not days:
            return []
        rows = [(day, bar) for day in days if (bar := self.session_bars(day).get(ticker))]
        out = []
        for day, bar in rows:
            price, volume = self._adjustment(ticker, day)
            out.append(
                {
                    "date": day,
                    "open": bar["o"], "high": bar["h"], "low": bar["l"], "close": bar["c"], "volume": bar["v"],
                    "adj_open": round(bar["o"] * price, 4), "adj_high": round(bar["h"] * price, 4),
                    "adj_low": round(bar["l"] * price, 4), "adj_close": round(bar["c"] * price, 4),
                    "adj_volume": round(bar["v"] * volume, 4),
                    "dividend": self.dividend(ticker, day), "split_factor": self.split_factor(ticker, day),
                }
            )  # fmt: skip
        return out

    def index_bars(self, ticker: str) -> list[dict]:
        """An index's (`I:SPX`) synthetic bars, oldest first, in `bars`' shape: each session's open/high/low/close is
        `INDEX_SCALE[name]` x the mean of the stable universe's raw open/high/low/close that day (2 decimals), its
        volume their total; no events, `adj_close` = close. Empty for a ticker that is not an index."""
        return self._indices.get(ticker, [])

    @cached_property
    def _indices(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {ticker: [] for ticker in INDEX_TICKERS}
        for session in self.sessions:
            day = [bar for ticker, bar in self.session_bars(session).items() if ticker in self.tickers]
            if not day:
                continue
            means = {
                name: sum(bar[key] for bar in day) / len(day)
                for name, key in zip(("open", "high", "low", "close"), "ohlc")
            }
            volume = float(sum(bar["v"] for bar in day))
            for ticker in INDEX_TICKERS:
                scale = INDEX_SCALE.get(ticker[2:], 1.0)
                prices = {name: round(mean * scale, 2) for name, mean in means.items()}
                out[ticker].append(
                    {"date": session, **prices, "volume": volume, "adj_close": prices["close"], "dividend": 0.0,
                     "split_factor": 1.0}
                )  # fmt: skip
        return out

    def _adjustment(self, ticker: str, session: dt.date) -> tuple[float, float]:
        """The price and volume multipliers that adjust `ticker`'s bar of `session` for every event after it."""
        splits, dividends = self._events
        price = volume = 1.0
        for day, factor in splits.get(ticker, []):
            if day > session:
                price, volume = price / factor, volume * factor
        for day, cash in dividends.get(ticker, []):
            if day > session:
                before = max((s for s in self.sessions if s < day), default=None)
                bar = self.session_bars(before).get(ticker) if before else None
                if bar and bar["c"] > cash:
                    price *= 1 - cash / (bar["c"] * self.split_factor(ticker, day))
        return price, volume


@lru_cache(maxsize=512)
def _by_ticker(universe: Universe, session: dt.date) -> dict[str, dict]:
    return {row["T"]: row for row in _grouped(universe, session)}


class HistoryServer(VendorServer):
    """A vendor server over `DailyHistory(start, end, seed, size)`, with `VendorServer`'s key, latency, per-second
    limit and quota: what the Tiingo, Yahoo, Finnhub and Alpha Vantage servers share."""

    def __init__(
        self,
        start: dt.date,
        end: dt.date,
        api_key: str | None = None,
        port: int = 0,
        seed: int = 7,
        size: str = "small",
        latency: float = 0.0,
        per_second: int | None = None,
        quota: int | None = None,
    ):
        super().__init__(port, api_key, latency, per_second, quota)
        self.history = DailyHistory(start, end, seed, size)
