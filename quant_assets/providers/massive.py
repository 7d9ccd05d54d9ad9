"""The Massive (formerly Polygon.io) REST API: reference splits, dividends and tickers, and grouped daily bars, as
typed polars frames with the vendor's field names.

Shapes, from the vendor's documentation: list endpoints answer `{"status": "OK", "request_id": ..., "results":
[...], "next_url": ...}` with at most `limit` results a page (1000 here); grouped daily bars answer
`{"resultsCount": n, "results": [{"T", "o", "h", "l", "c", "v", "vw", "n", "t"}], ...}` with `t` in milliseconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import polars as pl

from quant_assets.names import shown, ticker_problem
from quant_assets.providers.bars import as_bars
from quant_assets.providers.cache import Caching
from quant_assets.providers.client import ProviderClient
from quant_assets.providers.errors import MalformedResponse, RequestFailed
from quant_assets.providers.symbols import to_vendor
from quant_assets.providers.typed import projected, typed_frame

NAME = "massive"
DEFAULT_BASE_URL = "https://api.massive.com"
PAGE_LIMIT = 1000

SPLITS = "/v3/reference/splits"
DIVIDENDS = "/v3/reference/dividends"
TICKERS = "/v3/reference/tickers"
GROUPED_DAILY = "/v2/aggs/grouped/locale/us/market/stocks/{date}"
TICKER_EVENTS = "/vX/reference/tickers/{id}/events"
AGGREGATES = "/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{start}/{end}"
NEWS = "/v2/reference/news"
SNAPSHOT = "/v3/snapshot"  # the unified snapshot (stocks and indices); its field set is not confirmed here
SNAPSHOT_FIELDS: dict[str, pl.DataType] = {
    name: pl.Float64() for name in ("price", "change", "change_percent", "open", "high", "low", "previous_close")
} | {"last_updated": pl.Int64()}
AGGREGATE_LIMIT = 50_000
AGGREGATE_REQUIRED = ("o", "h", "l", "c", "v", "t")
NEWS_FIELDS: dict[str, pl.DataType] = {
    "id": pl.String(),
    "title": pl.String(),
    "author": pl.String(),
    "description": pl.String(),
    "article_url": pl.String(),
    "published_utc": pl.Datetime("us", "UTC"),
}
NEWS_REQUIRED = ("id", "title", "published_utc")
INSIGHT_FIELDS = ("ticker", "sentiment", "sentiment_reasoning")
INSIGHT = pl.Struct({name: pl.String() for name in INSIGHT_FIELDS})

# The vendor's fields and their types; `required` fields must be present in every result.
SPLIT_FIELDS: dict[str, pl.DataType] = {
    "id": pl.String(),
    "ticker": pl.String(),
    "execution_date": pl.Date(),
    "split_from": pl.Float64(),
    "split_to": pl.Float64(),
    "adjustment_type": pl.String(),
    "historical_adjustment_factor": pl.Float64(),
}
SPLIT_REQUIRED = ("ticker", "execution_date", "split_from", "split_to")

DIVIDEND_FIELDS: dict[str, pl.DataType] = {
    "id": pl.String(),
    "ticker": pl.String(),
    "cash_amount": pl.Float64(),
    "currency": pl.String(),
    "declaration_date": pl.Date(),
    "ex_dividend_date": pl.Date(),
    "record_date": pl.Date(),
    "pay_date": pl.Date(),
    "dividend_type": pl.String(),  # CD regular cash, SC special cash, LT/ST capital gains
    "frequency": pl.Int64(),
    "historical_adjustment_factor": pl.Float64(),
}
DIVIDEND_REQUIRED = ("ticker", "cash_amount", "ex_dividend_date")

TICKER_FIELDS: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "name": pl.String(),
    "market": pl.String(),
    "locale": pl.String(),
    "primary_exchange": pl.String(),
    "type": pl.String(),
    "active": pl.Boolean(),
    "currency_name": pl.String(),
    "cik": pl.String(),
    "composite_figi": pl.String(),
    "share_class_figi": pl.String(),
    "last_updated_utc": pl.Datetime("us", "UTC"),
    "delisted_utc": pl.Datetime("us", "UTC"),
}
TICKER_REQUIRED = ("ticker", "active")

GROUPED_FIELDS: dict[str, pl.DataType] = {
    "T": pl.String(),
    "o": pl.Float64(),
    "h": pl.Float64(),
    "l": pl.Float64(),
    "c": pl.Float64(),
    "v": pl.Float64(),
    "vw": pl.Float64(),
    "n": pl.Int64(),
    "t": pl.Int64(),
}
GROUPED_REQUIRED = ("T", "o", "h", "l", "c", "v")
AGGREGATE_FIELDS = {name: dtype for name, dtype in GROUPED_FIELDS.items() if name != "T"}  # one symbol's bars


class Massive:
    """The Massive REST endpoints this project reads, over a `ProviderClient`."""

    def __init__(self, client: ProviderClient):
        self.client = client
        self.set_aside: list[str] = []  # the results not used, each with its reason (`typed_frame`)

    def _typed(self, results, fields, required, where: str, tickers=("ticker",)) -> pl.DataFrame:
        frame, aside = typed_frame(results, fields, required, where, tickers)
        if aside:
            self.set_aside += aside
            self.client.log(f"{len(aside)} results set aside, e.g. {aside[0]}")
        return frame

    def _list(self, path: str, fields, required, params: Mapping[str, Any]) -> pl.DataFrame:
        results = []
        for page_number, page in enumerate(self.client.pages(path, {"limit": PAGE_LIMIT, **params}, endpoint=path)):
            if not isinstance(page, dict) or not isinstance(page.get("results", []), list):
                raise MalformedResponse(f"{NAME} {path}: page {page_number} has no `results` list")
            # Only the fields this project reads are kept, page by page: memory grows with them, not with what
            # else a vendor (or an attacker) puts in each result.
            results.extend(projected(r, fields) for r in page.get("results", []))
        return self._typed(results, fields, required, f"{NAME} {path}")

    def splits(self, **params: Any) -> pl.DataFrame:
        """Every split (the vendor's filters, e.g. `ticker=`, `execution_date.gte=`, may narrow it)."""
        return self._list(SPLITS, SPLIT_FIELDS, SPLIT_REQUIRED, {"order": "asc", "sort": "execution_date", **params})

    def dividends(self, **params: Any) -> pl.DataFrame:
        """Every dividend (filters as for `splits`)."""
        return self._list(
            DIVIDENDS, DIVIDEND_FIELDS, DIVIDEND_REQUIRED, {"order": "asc", "sort": "ex_dividend_date", **params}
        )

    def tickers(self, **params: Any) -> pl.DataFrame:
        """Active and delisted stock tickers (two listings: the vendor lists one or the other)."""
        frames = [
            self._list(TICKERS, TICKER_FIELDS, TICKER_REQUIRED, {"market": "stocks", "active": active, **params})
            for active in ("true", "false")
        ]
        # A symbol reused after a delisting is two companies: keep both (they differ in FIGI or delisting time).
        return pl.concat(frames).unique(["ticker", "composite_figi", "delisted_utc"], maintain_order=True)

    def grouped_daily(self, session: dt.date, adjusted: bool = False) -> pl.DataFrame:
        """Every stock's day bar on `session`, unadjusted by default (as the flat files are)."""
        path = GROUPED_DAILY.format(date=session.isoformat())
        page = self.client.get_json(path, {"adjusted": str(adjusted).lower()}, endpoint=GROUPED_DAILY)
        if not isinstance(page, dict):
            raise MalformedResponse(f"{NAME} {GROUPED_DAILY} {session}: the answer is not an object")
        frame = self._typed(page.get("results") or [], GROUPED_FIELDS, GROUPED_REQUIRED, f"{NAME} {path}", ("T",))
        return frame.select(
            pl.col("T").alias("ticker"),
            pl.col("o").alias("open"),
            pl.col("h").alias("high"),
            pl.col("l").alias("low"),
            pl.col("c").alias("close"),
            pl.col("v").alias("volume"),
            pl.col("vw").alias("vwap"),
            pl.col("n").alias("transactions"),
            pl.from_epoch("t", time_unit="ms").dt.replace_time_zone("UTC").alias("window_start"),
        )

    def ticker_events(self, identifier: str) -> list[tuple[dt.date, str]] | None:
        """The ticker changes of a ticker or composite FIGI, oldest first: (date, ticker in use from then on); the
        first is the listing. None when the vendor does not know `identifier`."""
        path = TICKER_EVENTS.format(id=quote(identifier, safe=""))
        try:
            page = self.client.get_json(path, {"types": "ticker_change"}, endpoint=TICKER_EVENTS)
        except RequestFailed as error:
            if error.status == 404:
                return None
            raise
        where = f"{NAME} {TICKER_EVENTS} ({identifier})"
        events = page.get("results", {}).get("events") if isinstance(page, dict) else None
        if not isinstance(events, list):
            raise MalformedResponse(f"{where}: no `results.events` list")
        found = []
        for index, event in enumerate(events):
            try:
                if event.get("type", "ticker_change") != "ticker_change":
                    continue
                day, ticker = dt.date.fromisoformat(event["date"]), event["ticker_change"]["ticker"]
            except (AttributeError, KeyError, TypeError, ValueError):
                self.set_aside.append(f"{where}: event {index} is not a ticker change: {shown(event)}")
                continue
            if problem := ticker_problem(ticker):
                self.set_aside.append(f"{where}: event {index}: {problem}")
                continue
            found.append((day, ticker))
        return sorted(found)

    def aggregates(self, symbol: str, multiplier: int, timespan: str, start: dt.date, end: dt.date,
                    adjusted: bool = False, caching: Caching | None = None) -> pl.DataFrame:  # fmt: skip
        """`symbol`'s bars of `multiplier` x `timespan` (minute, hour, day, ...) between `start` and `end`, oldest
        first, following `next_url`: ticker (canonical), window_start (UTC), open, high, low, close, volume, vwap,
        transactions. Unadjusted by default, as the flat files are. Indices as `I:SPX`."""
        vendor = to_vendor(symbol, NAME)
        path = AGGREGATES.format(
            ticker=quote(vendor, safe=":"), multiplier=multiplier, timespan=timespan, start=start, end=end
        )
        where = f"{NAME} {AGGREGATES} ({symbol}, {multiplier} {timespan}, {start}..{end}, adjusted={adjusted})"
        params = {"adjusted": str(adjusted).lower(), "sort": "asc", "limit": AGGREGATE_LIMIT}
        results = []
        for page in self.client.pages(path, params, endpoint=AGGREGATES, caching=caching, check=_results_check(where)):
            results.extend(projected(r, AGGREGATE_FIELDS) for r in page.get("results") or [])
        frame = self._typed(results, AGGREGATE_FIELDS, AGGREGATE_REQUIRED, where, tickers=())
        return frame.select(
            pl.lit(symbol, pl.String).alias("ticker"),
            pl.from_epoch("t", time_unit="ms").dt.replace_time_zone("UTC").alias("window_start"),
            pl.col("o").alias("open"),
            pl.col("h").alias("high"),
            pl.col("l").alias("low"),
            pl.col("c").alias("close"),
            pl.col("v").alias("volume"),
            pl.col("vw").alias("vwap"),
            pl.col("n").alias("transactions"),
        )

    def daily_bars(
        self, symbol: str, start: dt.date, end: dt.date, caching: Caching | None = None
    ) -> tuple[pl.DataFrame, list[str]]:
        """`symbol`'s daily bars in [start, end] in `DAILY_BARS`: the raw bars (`adjusted=false`) and the vendor's
        split-adjusted ones (`adjusted=true`, Massive's adjustment) as `adj_*`; no dividend or split columns (null)."""
        before = len(self.set_aside)
        raw = self.aggregates(symbol, 1, "day", start, end, adjusted=False, caching=caching)
        adjusted = self.aggregates(symbol, 1, "day", start, end, adjusted=True, caching=caching)
        session = pl.col("window_start").dt.convert_time_zone("America/New_York").dt.date().alias("date")
        adj = adjusted.select(
            session, *(pl.col(c).alias(f"adj_{c}") for c in ("open", "high", "low", "close", "volume"))
        )
        frame = raw.select(session, "open", "high", "low", "close", "volume").join(adj, on="date", how="left")
        return as_bars(frame.filter(pl.col("date").is_between(start, end)), symbol), self.set_aside[before:]

    def quote(self, symbol: str, caching: Caching | None = None) -> dict[str, Any] | None:
        """`symbol`'s latest quote from the unified snapshot, in Finnhub's quote shape (price, change,
        change_percent, high, low, open, previous_close, `time` UTC, `symbol`); None when Massive has no data for it
        (no result, or the result's `error`, e.g. NOT_FOUND). Indices as `I:SPX`."""
        vendor = to_vendor(symbol, NAME)
        where = f"{NAME} {SNAPSHOT} ({symbol} as {vendor})"
        check = _results_check(where)
        answer = self.client.get_json(SNAPSHOT, {"ticker.any_of": vendor}, endpoint=SNAPSHOT, caching=caching,
                                      check=check)  # fmt: skip
        check(answer)
        found = [r for r in answer.get("results") or [] if isinstance(r, Mapping) and r.get("ticker") == vendor]
        if not found or found[0].get("error"):
            return None
        frame = self._typed([_snapshot_row(found[0])], SNAPSHOT_FIELDS, ("price", "last_updated"), where, tickers=())
        if not frame.height:
            raise MalformedResponse(f"{where}: the snapshot is not usable: {self.set_aside[-1]}")
        row = frame.row(0, named=True)
        time = dt.datetime.fromtimestamp(row.pop("last_updated") / 1e9, dt.UTC)
        return row | {"symbol": symbol, "time": time}

    def news(
        self, ticker: str | None = None, published_gte: dt.datetime | dt.date | None = None,
        limit: int = PAGE_LIMIT, caching: Caching | None = None,
    ) -> pl.DataFrame:  # fmt: skip
        """News articles (of `ticker`, or market-wide), oldest first from `published_gte`, following `next_url`: id,
        title, author, description, article_url, published_utc, publisher (its name), tickers (the valid symbols
        among those the article names), keywords and insights (ticker, sentiment, sentiment_reasoning)."""
        where = f"{NAME} {NEWS} ({ticker or 'all'})"
        params = {"ticker": to_vendor(ticker, NAME) if ticker else None, "order": "asc", "sort": "published_utc",
                  "limit": limit, "published_utc.gte": _utc_text(published_gte) if published_gte else None}  # fmt: skip
        articles = []
        for page in self.client.pages(NEWS, params, endpoint=NEWS, caching=caching, check=_results_check(where)):
            articles.extend(page.get("results") or [])
        frame = self._typed(articles, NEWS_FIELDS, NEWS_REQUIRED, where, tickers=())
        extras = []  # the list fields, by article id, joined to the typed rows
        for index, article in enumerate(articles):
            if not isinstance(article, Mapping) or not isinstance(article.get("id"), str):
                continue
            publisher = article.get("publisher")
            named = article.get("tickers") if isinstance(article.get("tickers"), list) else []
            valid = [t for t in named if isinstance(t, str) and ticker_problem(t) is None]
            if len(valid) < len(named):
                self.set_aside.append(
                    f"{where}: article {index} names {len(named) - len(valid)} tickers that are not symbols"
                )
            words = article.get("keywords") if isinstance(article.get("keywords"), list) else []
            found = article.get("insights") if isinstance(article.get("insights"), list) else []
            extras.append({
                "id": article["id"],
                "publisher": str(publisher.get("name")) if isinstance(publisher, Mapping) else None,
                "tickers": valid,
                "keywords": [str(w)[:200] for w in words],
                "insights": [{k: None if i.get(k) is None else str(i.get(k)) for k in INSIGHT_FIELDS}
                             for i in found if isinstance(i, Mapping)],
            })  # fmt: skip
        schema = {"id": pl.String(), "publisher": pl.String(), "tickers": pl.List(pl.String()),
                  "keywords": pl.List(pl.String()), "insights": pl.List(INSIGHT)}  # fmt: skip
        lists = pl.DataFrame(extras, schema=schema).unique("id", keep="first", maintain_order=True)
        return frame.join(lists, on="id", how="left", maintain_order="left")


def _snapshot_row(result: Mapping) -> dict[str, Any]:
    """One unified-snapshot result in `SNAPSHOT_FIELDS`: a stock's price is its last trade (else the session's
    close), an index's its `value`; `last_updated` in nanoseconds."""
    day = result.get("session") if isinstance(result.get("session"), Mapping) else {}
    trade = result.get("last_trade") if isinstance(result.get("last_trade"), Mapping) else {}
    price = result.get("value", trade.get("price", day.get("close")))
    row = {name: day.get(name) for name in ("change", "change_percent", "open", "high", "low", "previous_close")}
    return row | {"price": price, "last_updated": result.get("last_updated")}


def _utc_text(when: dt.datetime | dt.date) -> str:
    """A time as the vendor writes it (`2026-02-23T13:30:00Z`); a date as `2026-02-23`."""
    if isinstance(when, dt.datetime):
        return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return when.isoformat()


def _results_check(where: str):
    def check(page: Any) -> None:
        if not isinstance(page, dict) or not isinstance(page.get("results", []), list):
            raise MalformedResponse(f"{where}: the answer has no `results` list")

    return check
