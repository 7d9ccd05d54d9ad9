"""Alpha Vantage: technical indicators and daily series (../shared/reference/rest-providers.md).

Quirks handled here: errors come with HTTP 200 (`{"Information": ...}` for the daily limit or a premium endpoint,
the older `{"Note": ...}`, `{"Error Message": ...}`), so every answer is checked before it is cached or used, and a
200 without the expected key is an error naming the function; a rate-limit answer still counts against the day's
budget (the client charged it before sending). Values are strings. The key can only go in the query string
(`AUTH`): the client adds it to the request it sends and to nothing it logs, audits or caches. No indices.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import polars as pl

from quant_assets.names import shown
from quant_assets.providers.bars import DAILY_BARS_REQUIRED, as_bars
from quant_assets.providers.cache import Caching
from quant_assets.providers.client import Auth, ProviderClient
from quant_assets.providers.errors import MalformedResponse, VendorError
from quant_assets.providers.symbols import to_vendor
from quant_assets.providers.typed import typed_frame

NAME = "alphavantage"
DEFAULT_BASE_URL = "https://www.alphavantage.co"
AUTH = Auth(header=None, query="apikey")
QUERY = "/query"
PER_MINUTE = 5
PER_DAY = 25  # the free plan: with a cost of 1, the day's budget (a calendar day, not a rolling window)
COST_PER_REQUEST = 1.0
DAILY_BUDGET = 25.0
COMPACT_DAYS = 100  # `outputsize=compact` holds the latest 100 days
RATE_LIMITED = re.compile(r"per (day|minute|second)|rate limit|requests? per|call frequency", re.I)

DAILY_SERIES = "Time Series (Daily)"
DAILY_FIELDS = {"1. open": "open", "2. high": "high", "3. low": "low", "4. close": "close", "5. volume": "volume"}


def endpoint(function: str) -> str:
    """How errors and the audit trail name an Alpha Vantage endpoint: everything goes to /query."""
    return f"{QUERY}?function={function}"


def check_answer(parsed: Any, where: str, expected: str) -> None:
    """Alpha Vantage's errors with HTTP 200 as `VendorError`s, and an answer without `expected` as
    `MalformedResponse`, each naming `where`."""
    if not isinstance(parsed, dict):
        raise MalformedResponse(f"{where}: the answer is not a JSON object: {shown(parsed)}")
    for key in ("Information", "Note"):
        if key in parsed:
            message = str(parsed[key])[:300]
            if RATE_LIMITED.search(message):
                kind = "rate_limited"
            elif "premium" in message.lower():
                kind = "not_entitled"
            else:
                kind = "unknown"
            raise VendorError(f"{where}: {key}: {message}", kind)
    if "Error Message" in parsed:
        raise VendorError(f"{where}: Error Message: {str(parsed['Error Message'])[:300]}", "invalid")
    if expected not in parsed or not isinstance(parsed[expected], dict):
        raise MalformedResponse(f"{where}: no {expected!r} object in the answer (keys: {shown(list(parsed)[:8])})")


class AlphaVantage:
    """The Alpha Vantage functions this project reads, over a `ProviderClient` made with `AUTH`."""

    name = NAME

    def __init__(self, client: ProviderClient):
        self.client = client
        self.set_aside: list[str] = []

    def _query(self, function: str, params: dict, where: str, expected: str, caching: Caching | None) -> dict:
        path = endpoint(function)
        answer = self.client.get_json(
            QUERY, {"function": function, **params}, endpoint=path, caching=caching,
            check=lambda parsed: check_answer(parsed, where, expected),
        )  # fmt: skip
        check_answer(answer, where, expected)
        return answer[expected]

    def indicator(
        self,
        function: str,
        symbol: str,
        interval: str = "daily",
        time_period: int | None = 14,
        series_type: str = "close",
        caching: Caching | None = None,
    ) -> tuple[pl.DataFrame, list[str]]:
        """Alpha Vantage's `function` (SMA, EMA, RSI, MACD, ...) of `symbol`: one row per date (`ticker`, `date`,
        then one float column per value the function has, e.g. `MACD`, `MACD_Signal`, `MACD_Hist`), oldest
        first, and the days set aside."""
        vendor = to_vendor(symbol, NAME)
        where = f"{NAME} {endpoint(function)} ({symbol}, {interval})"
        params = {"symbol": vendor, "interval": interval, "time_period": time_period, "series_type": series_type}
        series = self._query(function, params, where, f"Technical Analysis: {function}", caching)
        names = sorted({name for values in series.values() if isinstance(values, dict) for name in values})
        rows = [{"date": day, **values} if isinstance(values, dict) else values for day, values in series.items()]
        fields = {"date": pl.Date(), **{name: pl.Float64() for name in names}}
        frame, aside = typed_frame(rows, fields, ("date", *names), where, tickers=())
        return frame.with_columns(ticker=pl.lit(symbol)).select("ticker", *fields).sort("date"), self._kept(aside)

    def daily_bars(
        self, symbol: str, start: dt.date, end: dt.date, caching: Caching | None = None
    ) -> tuple[pl.DataFrame, list[str]]:
        """`symbol`'s daily bars in [start, end] from TIME_SERIES_DAILY (unadjusted: the adjusted series is
        premium, so `adj_*` are null), in `DAILY_BARS`, and the days set aside."""
        vendor = to_vendor(symbol, NAME)
        where = f"{NAME} {endpoint('TIME_SERIES_DAILY')} ({symbol}, {start}..{end})"
        size = "full" if (dt.date.today() - start).days > COMPACT_DAYS * 7 // 5 else "compact"
        series = self._query("TIME_SERIES_DAILY", {"symbol": vendor, "outputsize": size}, where, DAILY_SERIES, caching)
        rows = [
            {"date": day, **{ours: values.get(theirs) for theirs, ours in DAILY_FIELDS.items()}}
            if isinstance(values, dict) else values
            for day, values in series.items()
        ]  # fmt: skip
        fields = {"date": pl.Date(), **{ours: pl.Float64() for ours in DAILY_FIELDS.values()}}
        frame, aside = typed_frame(rows, fields, DAILY_BARS_REQUIRED, where, tickers=())
        frame = frame.filter(pl.col("date").is_between(start, end))
        return as_bars(frame, symbol), self._kept(aside)

    def _kept(self, aside: list[str]) -> list[str]:
        if aside:
            self.set_aside += aside
            self.client.log(f"{len(aside)} days set aside, e.g. {aside[0]}")
        return aside
