"""A local Yahoo chart server (the endpoint yfinance uses), over the synthetic universe's daily bars
(`history.DailyHistory`), in Yahoo's shape and with Yahoo's habits.

    server = YahooServer(dt.date(2026, 1, 2), dt.date(2026, 2, 27)).start()
    ... Yahoo(ProviderClient("yahoo", server.url, None, policy, data, auth=yahoo.AUTH)) ...
    server.stop()   # or `with YahooServer(...) as server:`

`GET /v8/finance/chart/<ticker>?period1=<epoch s>&period2=<epoch s>&interval=1d&events=div,splits` answers
`{"chart": {"result": [{"meta", "timestamp", "events", "indicators": {"quote": [...], "adjclose": [...]}}],
"error": null}}` for the sessions whose 09:30 New York timestamp is in [period1, period2); the ticker in Yahoo's
form (`BRK-B`, `^GSPC`), read back with `symbols.from_vendor`. As Yahoo does, open/high/low/close and volume are
adjusted for every split up to the server's last day (`end`), not for dividends; `adjclose` for both (the
history's `adj_close`); dividends and splits come as events. An unknown ticker: 404 with `chart.error`.

Indices (`^GSPC`, `^NDX`, `^DJI`, `^VIX`, `^RUT`: the universe's `I:` tickers) are `DailyHistory.index_bars`, a
synthetic series derived from the stock universe: each session's open/high/low/close is `INDEX_SCALE[name]` x the
mean of the stable universe's raw open/high/low/close that day (rounded to 2 decimals), its volume their total; no
events, `adjclose` = close.

Quirks: `per_second` (and `quota`) answered as Yahoo's 429 storms are, `429 Too Many Requests` in plain text;
`nulls`, (ticker, session) pairs (canonical) whose quote and adjclose are null that day (`null_fields` narrows
which). `latency`, `script` and `requests` are the base's (`server.VendorServer`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from fractions import Fraction
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from quant_assets.providers.symbols import Unsupported, from_vendor
from quant_assets.sample import INDEX_TICKERS
from quant_assets.sample_rest import Reply
from quant_assets.samples.history import HistoryServer
from quant_assets.samples.server import json_reply

PREFIX = "/v8/finance/chart/"
NEW_YORK = ZoneInfo("America/New_York")
OPEN = dt.time(9, 30)
QUOTE = ("open", "high", "low", "close", "volume")


def market_open(session: dt.date) -> int:
    """The epoch seconds of 09:30 New York on `session`, Yahoo's timestamp of a daily bar."""
    return int(dt.datetime.combine(session, OPEN, NEW_YORK).timestamp())


class YahooServer(HistoryServer):
    """Yahoo's chart endpoint over `DailyHistory(start, end, seed, size)` (`end`: the vendor's last day)."""

    name = "yahoo"

    def __init__(
        self,
        start: dt.date,
        end: dt.date,
        nulls: Iterable[tuple[str, dt.date]] = (),
        null_fields: tuple[str, ...] = (*QUOTE, "adjclose"),
        **options,
    ):
        super().__init__(start, end, **options)
        self.nulls = frozenset(nulls)
        self.null_fields = null_fields

    def over_limit(self) -> Reply:
        return Reply(429, "Too Many Requests", {"Content-Type": "text/plain; charset=utf-8"})

    def answer(self, path: str, query: dict[str, str]) -> Reply:
        vendor = unquote(path[len(PREFIX) :]) if path.startswith(PREFIX) else ""
        try:
            ticker = from_vendor(vendor, self.name) if vendor else None
        except Unsupported:
            ticker = None
        if ticker not in self.history.tickers and ticker not in INDEX_TICKERS:
            return _error(404, "Not Found", "No data found, symbol may be delisted")
        try:
            period1, period2 = int(query["period1"]), int(query["period2"])
        except (KeyError, ValueError):
            return _error(400, "Bad Request", "period1 and period2 must be epoch seconds")
        if query.get("interval", "1d") != "1d":
            return _error(400, "Bad Request", f"Invalid input - interval={query['interval']} is not supported here")
        bars = [bar for bar in self._bars(ticker) if period1 <= market_open(bar["date"]) < period2]
        return json_reply({"chart": {"result": [self._result(ticker, vendor, bars)], "error": None}})

    def _bars(self, ticker: str) -> list[dict[str, Any]]:
        """`ticker`'s bars as Yahoo holds them: OHLCV adjusted for the splits after each day (up to `end`)."""
        if ticker in INDEX_TICKERS:
            return self._index(ticker)
        bars = self.history.bars(ticker, self.history.start, self.history.end)
        later, out = 1.0, []
        for bar in reversed(bars):
            prices = {name: bar[name] / later for name in ("open", "high", "low", "close")}
            out.append({**bar, **prices, "volume": bar["volume"] * later})
            later *= bar["split_factor"]
        return out[::-1]

    def _index(self, ticker: str) -> list[dict[str, Any]]:
        return self.history.index_bars(ticker)

    def _result(self, ticker: str, vendor: str, bars: list[dict[str, Any]]) -> dict[str, Any]:
        index = ticker in INDEX_TICKERS
        everything = self._bars(ticker)
        last = everything[-1] if everything else None
        meta = {
            "currency": "USD",
            "symbol": vendor,
            "exchangeName": "SNP" if index else "NYQ",
            "fullExchangeName": "SNP" if index else "NYSE",
            "instrumentType": "INDEX" if index else "EQUITY",
            "firstTradeDate": market_open(everything[0]["date"]) if everything else None,
            "regularMarketTime": market_open(last["date"]) + 23_400 if last else None,
            "hasPrePostMarketData": not index,
            "gmtoffset": -18000,
            "timezone": "EST",
            "exchangeTimezoneName": "America/New_York",
            "regularMarketPrice": last["close"] if last else None,
            "chartPreviousClose": bars[0]["close"] if bars else None,
            "priceHint": 2,
            "dataGranularity": "1d",
            "range": "",
        }
        result: dict[str, Any] = {"meta": meta}
        if not bars:  # Yahoo's answer for a range without a session: no timestamps, empty indicators
            result["indicators"] = {"quote": [{}], "adjclose": [{}]}
            return result
        nulls = [(ticker, bar["date"]) in self.nulls for bar in bars]
        quote = {
            name: [
                None if null and name in self.null_fields else _shown(name, bar[name]) for bar, null in zip(bars, nulls)
            ]
            for name in QUOTE
        }
        adjclose = [
            None if null and "adjclose" in self.null_fields else bar["adj_close"] for bar, null in zip(bars, nulls)
        ]
        result["timestamp"] = [market_open(bar["date"]) for bar in bars]
        events: dict[str, Any] = {}
        dividends = {
            str(market_open(b["date"])): {"amount": b["dividend"], "date": market_open(b["date"])}
            for b in bars
            if b["dividend"]
        }
        splits = {
            str(market_open(b["date"])): _split(b["split_factor"], market_open(b["date"]))
            for b in bars
            if b["split_factor"] != 1
        }
        if dividends:
            events["dividends"] = dividends
        if splits:
            events["splits"] = splits
        if events:
            result["events"] = events
        result["indicators"] = {"quote": [quote], "adjclose": [{"adjclose": adjclose}]}
        return result


def _shown(name: str, value: float) -> int | float:
    """A quote value as Yahoo sends it: prices as floats, a volume as an integer when it is whole."""
    return int(value) if name == "volume" and float(value).is_integer() else value


def _split(factor: float, timestamp: int) -> dict[str, Any]:
    ratio = Fraction(factor).limit_denominator(1000)
    return {
        "date": timestamp,
        "numerator": float(ratio.numerator),
        "denominator": float(ratio.denominator),
        "splitRatio": f"{ratio.numerator}:{ratio.denominator}",
    }


def _error(status: int, code: str, description: str) -> Reply:
    return json_reply({"chart": {"result": None, "error": {"code": code, "description": description}}}, status)
