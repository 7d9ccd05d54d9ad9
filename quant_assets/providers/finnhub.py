"""Finnhub: quotes, company and market news, basic financials, earnings and the earnings calendar, as typed polars
frames (../shared/reference/rest-providers.md). Listed now so the market-data jobs only add assets.

Quirks handled here: an all-zero quote (`c == 0 and t == 0`) means no data, never a price of 0; `{"error": ...}`
with HTTP 200 is a `VendorError` (`not_entitled` when it speaks of a subscription or access, else `invalid`); indices
(`^GSPC`) need a paid plan. The key travels in the `X-Finnhub-Token` header (`AUTH`); one user found only the
`token=` parameter worked, so `AUTH_QUERY` is a configuration (the client keeps it out of every URL it stores).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from quant_assets.names import shown
from quant_assets.providers.cache import Caching
from quant_assets.providers.client import Auth, ProviderClient
from quant_assets.providers.errors import MalformedResponse, VendorError
from quant_assets.providers.symbols import from_vendor, to_vendor
from quant_assets.providers.typed import typed_frame

NAME = "finnhub"
DEFAULT_BASE_URL = "https://finnhub.io"
AUTH = Auth(header="X-Finnhub-Token", template="{key}")
AUTH_QUERY = Auth(header=None, query="token")
PER_SECOND = 30  # on any plan
PER_MINUTE = 60  # the free plan

QUOTE = "/api/v1/quote"
COMPANY_NEWS = "/api/v1/company-news"
MARKET_NEWS = "/api/v1/news"
METRIC = "/api/v1/stock/metric"
EARNINGS = "/api/v1/stock/earnings"
EARNINGS_CALENDAR = "/api/v1/calendar/earnings"

QUOTE_FIELDS = {n: pl.Float64() for n in ("c", "d", "dp", "h", "l", "o", "pc")} | {"t": pl.Int64()}
QUOTE_NAMES = {"c": "price", "d": "change", "dp": "change_percent", "h": "high", "l": "low", "o": "open",
               "pc": "previous_close"}  # fmt: skip
NEWS_FIELDS: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "datetime": pl.Int64(),
    "category": pl.String(),
    "headline": pl.String(),
    "summary": pl.String(),
    "source": pl.String(),
    "related": pl.String(),
    "url": pl.String(),
    "image": pl.String(),
}
EARNINGS_FIELDS: dict[str, pl.DataType] = {
    "period": pl.Date(),
    "year": pl.Int64(),
    "quarter": pl.Int64(),
    "actual": pl.Float64(),
    "estimate": pl.Float64(),
    "surprise": pl.Float64(),
    "surprisePercent": pl.Float64(),
}
CALENDAR_FIELDS: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "date": pl.Date(),
    "hour": pl.String(),
    "year": pl.Int64(),
    "quarter": pl.Int64(),
    "epsActual": pl.Float64(),
    "epsEstimate": pl.Float64(),
    "revenueActual": pl.Float64(),
    "revenueEstimate": pl.Float64(),
}
NOT_ENTITLED_WORDS = ("subscription", "access", "premium", "plan")


def check_error(parsed: Any, where: str) -> None:
    """Finnhub's `{"error": ...}` answered with HTTP 200, as a `VendorError` naming `where`."""
    if isinstance(parsed, dict) and parsed.get("error"):
        message = str(parsed["error"])[:300]
        kind = "not_entitled" if any(w in message.lower() for w in NOT_ENTITLED_WORDS) else "invalid"
        raise VendorError(f"{where}: {message}", kind)


class Finnhub:
    """The Finnhub endpoints this project reads, over a `ProviderClient` made with `AUTH` (or `AUTH_QUERY`)."""

    name = NAME

    def __init__(self, client: ProviderClient):
        self.client = client
        self.set_aside: list[str] = []

    def _get(self, path: str, params: dict, where: str, shape: type, caching: Caching | None) -> Any:
        def check(parsed: Any) -> None:
            check_error(parsed, where)
            if not isinstance(parsed, shape):
                raise MalformedResponse(f"{where}: the answer is not a JSON {shape.__name__}: {shown(parsed)}")

        answer = self.client.get_json(path, params, endpoint=path, caching=caching, check=check)
        check(answer)
        return answer

    def _typed(self, rows: Any, fields, required, where: str) -> pl.DataFrame:
        frame, aside = typed_frame(rows, fields, required, where, tickers=())
        if aside:
            self.set_aside += aside
            self.client.log(f"{len(aside)} results set aside, e.g. {aside[0]}")
        return frame

    def quote(self, symbol: str, caching: Caching | None = None) -> dict[str, Any] | None:
        """`symbol`'s current quote: price, change, change_percent, high, low, open, previous_close and `time` (UTC);
        None when Finnhub has no data for it (its all-zero quote)."""
        vendor = to_vendor(symbol, NAME)
        where = f"{NAME} {QUOTE} ({symbol} as {vendor})"
        answer = self._get(QUOTE, {"symbol": vendor}, where, dict, caching)
        if answer.get("c") == 0 and answer.get("t") == 0:  # no data, not a price of 0 (Finnhub-API#54, #332)
            return None
        frame = self._typed([answer], QUOTE_FIELDS, ("c", "t"), where)
        if not frame.height:
            raise MalformedResponse(f"{where}: the quote is not usable: {self.set_aside[-1]}")
        row = frame.row(0, named=True)
        quote = {QUOTE_NAMES[k]: row[k] for k in QUOTE_NAMES} | {"symbol": symbol}
        quote["time"] = dt.datetime.fromtimestamp(row["t"], dt.UTC)
        return quote

    def company_news(self, symbol: str, start: dt.date, end: dt.date, caching: Caching | None = None) -> pl.DataFrame:
        """`symbol`'s news between `start` and `end` (both required by Finnhub), one row per article, with the
        canonical `symbol` and `published` (UTC)."""
        vendor = to_vendor(symbol, NAME)
        where = f"{NAME} {COMPANY_NEWS} ({symbol}, {start}..{end})"
        params = {"symbol": vendor, "from": start.isoformat(), "to": end.isoformat()}
        rows = self._get(COMPANY_NEWS, params, where, list, caching)
        return _news(self._typed(rows, NEWS_FIELDS, ("id", "datetime", "headline"), where)).with_columns(
            symbol=pl.lit(symbol)
        )

    def market_news(
        self, category: str = "general", min_id: int | None = None, caching: Caching | None = None
    ) -> pl.DataFrame:
        """Market-wide news of `category` (general, forex, crypto, merger) newer than `min_id` (Finnhub's only
        paging: the last id seen), one row per article."""
        where = f"{NAME} {MARKET_NEWS} ({category}, after id {min_id})"
        params = {"category": category, "minId": min_id}
        rows = self._get(MARKET_NEWS, params, where, list, caching)
        return _news(self._typed(rows, NEWS_FIELDS, ("id", "datetime", "headline"), where))

    def basic_financials(self, symbol: str, caching: Caching | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
        """`symbol`'s basic financials: the `metric` map as rows (symbol, name, value) and the `series` as rows
        (symbol, frequency, name, period, value); a value that is not a finite number is set aside."""
        vendor = to_vendor(symbol, NAME)
        where = f"{NAME} {METRIC} ({symbol})"
        answer = self._get(METRIC, {"symbol": vendor, "metric": "all"}, where, dict, caching)
        metric, series = answer.get("metric") or {}, answer.get("series") or {}
        if not isinstance(metric, dict) or not isinstance(series, dict):
            raise MalformedResponse(f"{where}: `metric` and `series` must be objects")
        metrics = self._typed(
            [{"name": k, "value": v} for k, v in metric.items()], {"name": pl.String(), "value": pl.Float64()},
            ("name", "value"), f"{where} metric",
        )  # fmt: skip
        points = []
        for frequency, names in series.items():
            for name, values in names.items() if isinstance(names, dict) else []:
                for point in values if isinstance(values, list) else []:
                    if isinstance(point, dict):
                        points.append({"frequency": frequency, "name": name, **point})
        fields = {"frequency": pl.String(), "name": pl.String(), "period": pl.Date(), "v": pl.Float64()}
        history = self._typed(points, fields, tuple(fields), f"{where} series").rename({"v": "value"})
        return metrics.with_columns(symbol=pl.lit(symbol)), history.with_columns(symbol=pl.lit(symbol))

    def earnings(self, symbol: str, caching: Caching | None = None) -> pl.DataFrame:
        """`symbol`'s reported quarters: period, year, quarter, actual and estimated EPS, surprise."""
        vendor = to_vendor(symbol, NAME)
        where = f"{NAME} {EARNINGS} ({symbol})"
        rows = self._get(EARNINGS, {"symbol": vendor}, where, list, caching)
        frame = self._typed(rows, EARNINGS_FIELDS, ("period",), where)
        return frame.rename({"surprisePercent": "surprise_percent"}).with_columns(symbol=pl.lit(symbol))

    def earnings_calendar(
        self, start: dt.date, end: dt.date, symbol: str | None = None, caching: Caching | None = None
    ) -> pl.DataFrame:
        """The earnings dates between `start` and `end` (of `symbol`, or every company), with the vendor's
        symbols mapped to the canonical form (a symbol that has none is set aside)."""
        where = f"{NAME} {EARNINGS_CALENDAR} ({symbol or 'all'}, {start}..{end})"
        params = {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "symbol": to_vendor(symbol, NAME) if symbol else None,
        }
        answer = self._get(EARNINGS_CALENDAR, params, where, dict, caching)
        rows = answer.get("earningsCalendar")
        if not isinstance(rows, list):
            raise MalformedResponse(f"{where}: no `earningsCalendar` list")
        frame = self._typed(rows, CALENDAR_FIELDS, ("symbol", "date"), where)
        canonical, keep = [], []
        for text in frame["symbol"].to_list():
            try:
                canonical.append(from_vendor(text, NAME))
                keep.append(True)
            except ValueError as error:
                self.set_aside.append(f"{where}: {error}")
                canonical.append(None)
                keep.append(False)
        renamed = {"epsActual": "eps_actual", "epsEstimate": "eps_estimate", "revenueActual": "revenue_actual",
                   "revenueEstimate": "revenue_estimate"}  # fmt: skip
        return frame.with_columns(symbol=pl.Series(canonical, dtype=pl.String)).filter(pl.Series(keep)).rename(renamed)


def _news(frame: pl.DataFrame) -> pl.DataFrame:
    published = pl.from_epoch("datetime", time_unit="s").dt.replace_time_zone("UTC").alias("published")
    return frame.with_columns(published).drop("datetime")
