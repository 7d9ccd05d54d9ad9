"""A local Massive REST server for tests and the demo: the vendor's documented JSON shapes, with the data of the
synthetic flat files (`sample.py`): the same splits and dividends the generator bakes into its prices, the same
tickers (with their listing dates and ticker changes as ticker events), and grouped daily bars equal to the
generated `stocks_daily` files.

    server = LocalProvider(start, end, api_key="secret")   # or `quant-assets sample-rest --port 8765`
    server.start(); ... server.url ...; server.stop()

For fault injection, tests queue scripted replies (`server.script.append(Reply(503))`) served before the real
ones, and read `server.requests` (arrival time, path, whether the key came with it).
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import time
import uuid
from collections.abc import Callable
from functools import cached_property, lru_cache
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

import polars as pl

from quant_assets.datasets import DATASETS
from quant_assets.sample import SIZES, Universe, _stable_int, session_files
from quant_assets.samples.server import Reply, Seen, VendorServer
from quant_assets.sessions import sessions

DAILY = DATASETS["stocks_daily"]


class ProviderData:
    """The reference data of one synthetic universe between `start` and `end`, in the vendor's shapes."""

    def __init__(self, start: dt.date, end: dt.date, seed: int = 7, size: str = "small"):
        self.universe = Universe(seed, SIZES[size])
        self.start, self.end = start, end
        self.extra_splits: list[dict[str, Any]] = []
        self.extra_dividends: list[dict[str, Any]] = []

    def announce_split(self, ticker: str, execution_date: dt.date, split_from: float, split_to: float) -> None:
        """A split the vendor starts listing from now on (generated prices do not show it)."""
        self.extra_splits.append(_split(ticker, execution_date, split_from, split_to))

    def splits(self) -> list[dict[str, Any]]:
        events = self.universe.split_events(self.start, self.end)
        # Price ratio new/old 0.5 is a 2-for-1 split (from 1 to 2); 2.0 a 1-for-2 reverse split.
        found = [_split(t, d, *((1, 2) if ratio < 1 else (2, 1))) for t, d, ratio in events]
        return sorted(found + self.extra_splits, key=lambda r: (r["execution_date"], r["ticker"]))

    def dividends(self) -> list[dict[str, Any]]:
        found = [_dividend(t, d, cash) for t, d, cash in self.universe.dividend_events(self.start, self.end)]
        return sorted(found + self.extra_dividends, key=lambda r: (r["ex_dividend_date"], r["ticker"]))

    def tickers(self) -> list[dict[str, Any]]:
        """The stable universe (active) and the monthly listings seen in the range (delisted once past)."""
        rows = [_ticker(t, active=True) for t in self.universe.stock_tickers]
        month = dt.date(self.start.year, self.start.month, 1)
        while month <= self.end:
            ticker = Universe.listing_ticker(month.year, month.month)
            delisted = (month + dt.timedelta(days=62)).replace(day=15)
            rows.append(_ticker(ticker, active=delisted > self.end, delisted=delisted))
            month = (month + dt.timedelta(days=32)).replace(day=1)
        return sorted(rows, key=lambda r: r["ticker"])

    def ticker_events(self, identifier: str) -> dict[str, Any] | None:
        """The vendor's ticker events of a ticker (or its composite FIGI): its first ticker at listing, and for a
        twelfth of the stable universe a rename on 2019-06-03 (before any generated file)."""
        rows = {r["ticker"]: r for r in self.tickers()}
        rows |= {r["composite_figi"]: r for r in rows.values()}
        row = rows.get(identifier)
        if row is None:
            return None
        ticker = row["ticker"]
        if ticker in self.universe.stock_tickers:
            listed = dt.date(1995, 1, 3) + dt.timedelta(days=_stable_int("listed", ticker) % 7000)
        else:  # a monthly listing: Q + four letters of year * 12 + month, listed on the 15th
            n = sum((ord(c) - ord("A")) * 26**i for i, c in enumerate(reversed(ticker[1:])))  # year * 12 + month
            listed = dt.date((n - 1) // 12, (n - 1) % 12 + 1, 15)
        events = [{"ticker_change": {"ticker": ticker}, "type": "ticker_change", "date": listed.isoformat()}]
        renamed = dt.date(2019, 6, 3)
        if _stable_int("renamed", ticker) % 12 == 0 and ticker in self.universe.stock_tickers and listed < renamed:
            events[0]["date"] = renamed.isoformat()
            old = {"ticker_change": {"ticker": f"{ticker}O"}, "type": "ticker_change", "date": listed.isoformat()}
            events.append(old)
        return {"name": row["name"], "composite_figi": row["composite_figi"], "cik": row["cik"], "events": events}

    @cached_property
    def history(self):
        """The daily bars, raw and vendor-adjusted (`samples.history`), of the same universe."""
        from quant_assets.samples.history import DailyHistory  # it reads this module's grouped bars

        return DailyHistory(self.start, self.end, self.universe.seed, self.universe.size.name)

    def grouped_daily(self, session: dt.date) -> list[dict[str, Any]]:
        return _grouped(self.universe, session) if sessions(DAILY.calendar, session, session) else []


@lru_cache(maxsize=64)
def _grouped(universe: Universe, session: dt.date) -> list[dict[str, Any]]:
    """The day bars of the generated `stocks_daily` file for `session`, as grouped daily results."""
    text = gzip.decompress(session_files(DAILY, session, universe))
    frame = pl.read_csv(io.BytesIO(text), schema_overrides={"ticker": pl.String, "volume": pl.Float64})
    return [
        {"T": r["ticker"], "v": r["volume"], "vw": round((r["open"] + r["close"]) / 2, 4), "o": r["open"],
         "c": r["close"], "h": r["high"], "l": r["low"], "t": r["window_start"] // 1_000_000, "n": r["transactions"]}
        for r in frame.iter_rows(named=True)
    ]  # fmt: skip


def _split(ticker: str, execution_date: dt.date, split_from: float, split_to: float) -> dict[str, Any]:
    return {
        "execution_date": execution_date.isoformat(),
        "id": f"E{uuid.uuid5(uuid.NAMESPACE_URL, f'split/{ticker}/{execution_date}').hex[:20]}",
        "split_from": split_from,
        "split_to": split_to,
        "ticker": ticker,
    }


def _dividend(ticker: str, ex_date: dt.date, cash: float, kind: str = "CD") -> dict[str, Any]:
    return {
        "cash_amount": cash,
        "currency": "USD",
        "declaration_date": (ex_date - dt.timedelta(days=14)).isoformat(),
        "dividend_type": kind,
        "ex_dividend_date": ex_date.isoformat(),
        "frequency": 4,
        "id": f"E{uuid.uuid5(uuid.NAMESPACE_URL, f'dividend/{ticker}/{ex_date}').hex[:20]}",
        "pay_date": (ex_date + dt.timedelta(days=14)).isoformat(),
        "record_date": (ex_date + dt.timedelta(days=1)).isoformat(),
        "ticker": ticker,
    }


def _ticker(ticker: str, active: bool, delisted: dt.date | None = None) -> dict[str, Any]:
    row = {
        "active": active,
        "cik": f"{_stable_int('cik', ticker) % 10**10:010d}",
        "composite_figi": f"BBG{uuid.uuid5(uuid.NAMESPACE_URL, ticker).hex[:9].upper()}",
        "currency_name": "usd",
        "last_updated_utc": "2026-01-02T00:00:00Z",
        "locale": "us",
        "market": "stocks",
        "name": f"{ticker} Synthetic Inc.",
        "primary_exchange": "XNYS",
        "type": "CS",
        "ticker": ticker,
    }
    if not active and delisted:
        row["delisted_utc"] = f"{delisted.isoformat()}T00:00:00Z"
    return row


LIST_ENDPOINTS: dict[str, tuple[Callable[[ProviderData], list[dict]], str]] = {
    "/v3/reference/splits": (ProviderData.splits, "execution_date"),
    "/v3/reference/dividends": (ProviderData.dividends, "ex_dividend_date"),
    "/v3/reference/tickers": (ProviderData.tickers, "ticker"),
}
GROUPED_PREFIX = "/v2/aggs/grouped/locale/us/market/stocks/"
AGGREGATES_PREFIX = "/v2/aggs/ticker/"
NEWS_PATH = "/v2/reference/news"
SNAPSHOT_PATH = "/v3/snapshot"
NEW_YORK = ZoneInfo("America/New_York")
EVENTS_PREFIX = "/vX/reference/tickers/"


class LocalProvider(VendorServer):
    """The server, on 127.0.0.1 (`port` 0 picks a free one), in a background thread (`VendorServer`)."""

    name = "massive"

    def __init__(
        self,
        start: dt.date,
        end: dt.date,
        api_key: str | None = None,
        port: int = 0,
        seed: int = 7,
        size: str = "small",
    ):
        super().__init__(port, api_key)
        self.data = ProviderData(start, end, seed, size)
        self.not_entitled_for: set[str] = set()  # paths or tickers answered 403 NOT_AUTHORIZED
        self.aggregate_page = 50_000  # results per page of aggregates at most (a test pages with less)

    def _authorised(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> bool:
        if self.api_key is None:
            return True
        return handler.headers.get("Authorization") == f"Bearer {self.api_key}" or query.get("apiKey") == self.api_key

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = dict(parse_qsl(parts.query))
        authorised = self._authorised(handler, query)
        with self._lock:
            self.requests.append(Seen(time.time(), handler.path, authorised))
            scripted = self.script.pop(0) if self.script else None
        if scripted is not None:
            time.sleep(scripted.delay)
            if scripted.drop:
                handler.close_connection = True
                handler.connection.close()
                return
            body = scripted.body.encode() if isinstance(scripted.body, str) else scripted.body
            return _send(handler, scripted.status, body, scripted.headers)
        request_id = uuid.uuid4().hex
        if not authorised:
            error = {"status": "ERROR", "request_id": request_id, "error": "Unknown API Key"}
            return _send_json(handler, 401, error)
        if parts.path in LIST_ENDPOINTS:
            return _send_json(handler, 200, self._page(parts.path, query, request_id))
        if parts.path.startswith(EVENTS_PREFIX) and parts.path.endswith("/events"):
            found = self.data.ticker_events(unquote(parts.path[len(EVENTS_PREFIX) : -len("/events")]))
            if found is None:
                return _send_json(
                    handler, 404, {"status": "NOT_FOUND", "request_id": request_id, "message": "no ticker"}
                )
            return _send_json(handler, 200, {"results": found, "status": "OK", "request_id": request_id})
        if any(blocked in parts.path or blocked == query.get("ticker") for blocked in self.not_entitled_for):
            return _send_json(handler, 403, {"status": "NOT_AUTHORIZED", "request_id": request_id, "message":
                              "You are not entitled to this data. Please upgrade your plan at massive.com/pricing"})  # fmt: skip
        if parts.path.startswith(AGGREGATES_PREFIX):
            return _send_json(handler, 200, self._aggregates(parts.path, query, request_id))
        if parts.path == NEWS_PATH:
            return _send_json(handler, 200, self._news(query, request_id))
        if parts.path == SNAPSHOT_PATH:
            return _send_json(handler, 200, self._snapshot(query, request_id))
        if parts.path.startswith(GROUPED_PREFIX):
            try:
                session = dt.date.fromisoformat(parts.path.removeprefix(GROUPED_PREFIX))
            except ValueError:
                return _send_json(handler, 400, {"status": "ERROR", "request_id": request_id, "error": "bad date"})
            results = self.data.grouped_daily(session)
            answer = {"adjusted": query.get("adjusted", "true") == "true", "queryCount": len(results),
                      "request_id": request_id, "resultsCount": len(results), "status": "OK"}  # fmt: skip
            if results:
                answer["results"] = results
            return _send_json(handler, 200, answer)
        _send_json(handler, 404, {"status": "NOT_FOUND", "request_id": request_id, "message": "Not found"})

    def _aggregates(self, path: str, query: dict[str, str], request_id: str) -> dict[str, Any]:
        """`/v2/aggs/ticker/{ticker}/range/1/day/{from}/{to}`: the ticker's day bars from `DailyHistory` (raw, or
        split- and dividend-adjusted as the history's vendor-adjusted bars with `adjusted=true`; an index's
        `index_bars`), `t` the session's
        midnight in New York (ms), paged by `limit` (at most `aggregate_page`) with a `cursor` in `next_url`."""
        ticker, _, _, _, first, last = unquote(path.removeprefix(AGGREGATES_PREFIX)).split("/")
        first_day, last_day = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
        if ticker.startswith("I:"):  # an index's synthetic series (as the snapshot's), no adjustment
            bars = [dict(b, **{f"adj_{k}": b[k] for k in ("open", "high", "low", "close", "volume")})
                    for b in self.data.history.index_bars(ticker) if first_day <= b["date"] <= last_day]  # fmt: skip
        else:
            bars = self.data.history.bars(ticker, first_day, last_day)
        adjusted = query.get("adjusted", "true") == "true"
        results = [
            {"o": b["adj_open" if adjusted else "open"], "h": b["adj_high" if adjusted else "high"],
             "l": b["adj_low" if adjusted else "low"], "c": b["adj_close" if adjusted else "close"],
             "v": b["adj_volume" if adjusted else "volume"], "vw": round((b["open"] + b["close"]) / 2, 4),
             "n": 1, "t": int(dt.datetime.combine(b["date"], dt.time(), NEW_YORK).timestamp() * 1000)}
            for b in bars
        ]  # fmt: skip
        return self._paged(path, query, request_id, results, {"ticker": ticker, "adjusted": adjusted,
                                                               "queryCount": len(results)})  # fmt: skip

    def _snapshot(self, query: dict[str, str], request_id: str) -> dict[str, Any]:
        """`/v3/snapshot?ticker.any_of=A,B`: each ticker's last session of the history as its snapshot (a stock's
        `session` and `last_trade`, an index's `value`), updated at that session's close; an unknown ticker gets a
        result with `error: NOT_FOUND`, as the vendor answers it."""
        results = []
        for ticker in filter(None, query.get("ticker.any_of", "").split(",")):
            history = self.data.history
            index = ticker.startswith("I:")
            bars = history.index_bars(ticker) if index else history.bars(ticker, history.start, history.end)
            if len(bars) < 2:
                results.append({"ticker": ticker, "error": "NOT_FOUND", "message": "Ticker not found."})
                continue
            last, before = bars[-1], bars[-2]
            closed = dt.datetime.combine(last["date"], dt.time(16), NEW_YORK)
            change = round(last["close"] - before["close"], 4)
            day = {"open": last["open"], "high": last["high"], "low": last["low"], "close": last["close"],
                   "volume": last["volume"], "previous_close": before["close"], "change": change,
                   "change_percent": round(change / before["close"] * 100, 4)}  # fmt: skip
            result = {"ticker": ticker, "type": "indices" if index else "stocks", "market_status": "closed",
                      "session": day, "last_updated": int(closed.timestamp()) * 10**9}  # fmt: skip
            if index:
                result["value"] = last["close"]
            else:
                result["last_trade"] = {"price": last["close"], "size": 100, "sip_timestamp": result["last_updated"]}
            results.append(result)
        return {"results": results, "status": "OK", "request_id": request_id}

    def _news(self, query: dict[str, str], request_id: str) -> dict[str, Any]:
        """`/v2/reference/news`: one synthetic article per ticker per Monday session (of `ticker`, or all), oldest
        first, from `published_utc.gte`, paged like the list endpoints."""
        tickers = [query["ticker"]] if "ticker" in query else sorted(self.data.universe.stock_tickers)
        since = query.get("published_utc.gte", "")
        articles = []
        for day in sessions(DAILY.calendar, self.data.start, self.data.end):
            if day.weekday() != 0:
                continue
            for ticker in tickers:
                published = dt.datetime.combine(day, dt.time(13, 30), dt.UTC).isoformat().replace("+00:00", "Z")
                if published < since:
                    continue
                articles.append({
                    "id": uuid.uuid5(uuid.NAMESPACE_URL, f"news/{ticker}/{day}").hex, "title": f"{ticker}: the week of {day}",
                    "author": "Synthetic Desk", "description": f"What moved {ticker}.", "published_utc": published,
                    "article_url": f"https://news.example/{ticker}/{day}", "tickers": [ticker],
                    "keywords": ["synthetic", "weekly"], "publisher": {"name": "Synthetic Wire", "homepage_url":
                    "https://news.example/"}, "insights": [{"ticker": ticker, "sentiment": "neutral",
                    "sentiment_reasoning": "It is synthetic."}],
                })  # fmt: skip
        return self._paged(NEWS_PATH, query, request_id, articles, {})

    def _paged(self, path: str, query: dict[str, str], request_id: str, rows: list, extra: dict) -> dict[str, Any]:
        offset = int(query.get("cursor", 0))
        limit = min(int(query.get("limit", 10)), self.aggregate_page if path != NEWS_PATH else 1000)
        page = rows[offset : offset + limit]
        answer: dict[str, Any] = {**extra, "results": page, "resultsCount": len(page), "status": "OK",
                                  "request_id": request_id}  # fmt: skip
        if offset + limit < len(rows):
            kept = {k: v for k, v in query.items() if k not in ("cursor", "apiKey")}
            answer["next_url"] = f"{self.url}{path}?{urlencode({**kept, 'cursor': offset + limit})}"
        return answer

    def _page(self, path: str, query: dict[str, str], request_id: str) -> dict[str, Any]:
        """One page of a list endpoint: filters `ticker`, `<date field>.gte/.lte`, `active`; `cursor` is the
        offset, `limit` the page size; `next_url` carries both, and never the key."""
        source, date_field = LIST_ENDPOINTS[path]
        rows = source(self.data)
        if "ticker" in query:
            rows = [r for r in rows if r["ticker"] == query["ticker"]]
        if "active" in query:
            rows = [r for r in rows if r.get("active") == (query["active"] == "true")]
        for op, keep in (("gte", lambda a, b: a >= b), ("lte", lambda a, b: a <= b)):
            if f"{date_field}.{op}" in query:
                rows = [r for r in rows if keep(r[date_field], query[f"{date_field}.{op}"])]
        offset, limit = int(query.get("cursor", 0)), min(int(query.get("limit", 10)), 1000)
        answer: dict[str, Any] = {"results": rows[offset : offset + limit], "status": "OK", "request_id": request_id}
        if offset + limit < len(rows):
            kept = {k: v for k, v in query.items() if k not in ("cursor", "apiKey")}
            answer["next_url"] = f"{self.url}{path}?{urlencode({**kept, 'cursor': offset + limit})}"
        return answer


def _send_json(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    _send(handler, status, json.dumps(body).encode(), {"Content-Type": "application/json"})


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
    try:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
        pass


__all__ = ["LocalProvider", "ProviderData", "Reply", "Seen"]  # Reply and Seen live in samples/server.py
