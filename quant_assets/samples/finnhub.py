"""A local Finnhub server over the synthetic universe (`DailyHistory`): quotes (the last session's bar), company
news (one article a week per ticker), market news (paged by `minId`), basic financials, earnings and the earnings
calendar, in Finnhub's JSON, with its quirks on demand: the all-zero quote (`all_zero_for`), indices refused without
a paid plan (`paid_indices`), 429 past `per_second`.

    with FinnhubServer(start, end, api_key="secret") as server: ... server.url ...
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from quant_assets.providers.symbols import from_vendor, to_vendor
from quant_assets.sample import _stable_int
from quant_assets.sample_rest import Reply
from quant_assets.samples.history import HistoryServer
from quant_assets.samples.server import json_reply

NEW_YORK = ZoneInfo("America/New_York")
MARKET_NEWS_COUNT = 30  # general market news articles, ids 1..30


def _epoch(day: dt.date, hour: int = 16) -> int:
    return int(dt.datetime.combine(day, dt.time(hour), NEW_YORK).timestamp())


class FinnhubServer(HistoryServer):
    name = "finnhub"

    def __init__(
        self,
        start: dt.date,
        end: dt.date,
        all_zero_for: Iterable[str] = (),
        paid_indices: bool = True,
        **options,
    ):
        super().__init__(start, end, **options)
        self.all_zero_for = frozenset(all_zero_for)
        self.paid_indices = paid_indices

    def authorised(self, headers, query: dict[str, str]) -> bool:
        return self.api_key is None or self.api_key in (headers.get("X-Finnhub-Token"), query.get("token"))

    def unauthorised(self) -> Reply:
        return json_reply({"error": "Invalid API key"}, 401)

    def answer(self, path: str, query: dict[str, str]) -> Reply:
        symbol = query.get("symbol", "")
        if symbol.startswith("^") and self.paid_indices:
            return json_reply({"error": "Market data subscription required. Please upgrade your plan."}, 403)
        if path == "/api/v1/news":
            return json_reply(self._market_news(query.get("category", "general"), int(query.get("minId") or 0)))
        if path == "/api/v1/calendar/earnings":
            first, last = dt.date.fromisoformat(query["from"]), dt.date.fromisoformat(query["to"])
            tickers = [from_vendor(symbol, "finnhub")] if symbol else sorted(self.history.tickers)
            rows = [
                row for t in tickers for row in self._earnings(t) if first <= dt.date.fromisoformat(row["date"]) <= last
            ]
            return json_reply({"earningsCalendar": rows})
        try:
            ticker = from_vendor(symbol, "finnhub") if symbol else ""
        except ValueError:
            ticker = ""
        if symbol and ticker not in self.history.tickers:
            return json_reply({"error": "Symbol not supported."})
        if path == "/api/v1/quote":
            return json_reply(self._quote(ticker))
        if path == "/api/v1/company-news":
            first, last = dt.date.fromisoformat(query["from"]), dt.date.fromisoformat(query["to"])
            return json_reply(self._company_news(ticker, symbol, first, last))
        if path == "/api/v1/stock/metric":
            return json_reply(self._metric(ticker, symbol))
        if path == "/api/v1/stock/earnings":
            return json_reply(
                [{"actual": r["epsActual"], "estimate": r["epsEstimate"],
                  "surprise": round(r["epsActual"] - r["epsEstimate"], 4),
                  "surprisePercent": round((r["epsActual"] / r["epsEstimate"] - 1) * 100, 4), "period": r["period"],
                  "quarter": r["quarter"], "year": r["year"], "symbol": symbol} for r in self._earnings(ticker)]
            )  # fmt: skip
        return json_reply({"error": "Not found"}, 404)

    def _bars(self, ticker: str) -> list[dict]:
        return self.history.bars(ticker, self.history.start, self.history.end)

    def _quote(self, ticker: str) -> dict:
        bars = self._bars(ticker)
        if ticker in self.all_zero_for or len(bars) < 2:
            return {"c": 0, "d": None, "dp": None, "h": 0, "l": 0, "o": 0, "pc": 0, "t": 0}
        last, before = bars[-1], bars[-2]
        change = round(last["close"] - before["close"], 4)
        return {"c": last["close"], "d": change, "dp": round(change / before["close"] * 100, 4), "h": last["high"],
                "l": last["low"], "o": last["open"], "pc": before["close"], "t": _epoch(last["date"])}  # fmt: skip

    def _company_news(self, ticker: str, symbol: str, first: dt.date, last: dt.date) -> list[dict]:
        days = [d for d in self.history.sessions if first <= d <= last and d.weekday() == 0]
        return [
            {"category": "company", "datetime": _epoch(day, 9), "headline": f"{ticker} synthetic news of {day}",
             "id": _stable_int("finnhub-news", ticker, day) % 10**9, "image": "", "related": symbol,
             "source": "Synthetic Wire", "summary": f"What {ticker} did in the week of {day}.",
             "url": f"https://news.example/{ticker}/{day}"}
            for day in reversed(days)
        ]  # fmt: skip

    def _market_news(self, category: str, min_id: int) -> list[dict]:
        return [
            {"category": category, "datetime": _epoch(self.history.start, 8) + 3600 * i, "headline":
             f"Market news {i}", "id": i, "image": "", "related": "", "source": "Synthetic Wire",
             "summary": f"The market's story number {i}.", "url": f"https://news.example/market/{i}"}
            for i in range(MARKET_NEWS_COUNT, min_id, -1)
        ]  # fmt: skip

    def _metric(self, ticker: str, symbol: str) -> dict:
        closes = [b["close"] for b in self._bars(ticker)]
        eps = [{"period": f"{year}-12-31", "v": round(1 + _stable_int("eps", ticker, year) % 500 / 100, 2)}
               for year in (2025, 2024, 2023)]  # fmt: skip
        return {"symbol": symbol, "metricType": "all",
                "metric": {"52WeekHigh": max(closes), "52WeekLow": min(closes), "beta": 1.0 + len(ticker) / 10,
                           "10DayAverageTradingVolume": round(sum(b["volume"] for b in self._bars(ticker)[-10:])
                                                              / 10 / 1e6, 6)},
                "series": {"annual": {"eps": eps}, "quarterly": {}}}  # fmt: skip

    def _earnings(self, ticker: str) -> list[dict]:
        rows = []
        for year, quarter, day in ((2025, 4, dt.date(2026, 1, 28)), (2026, 1, dt.date(2026, 4, 29))):
            estimate = round(1 + _stable_int("estimate", ticker, year, quarter) % 300 / 100, 2)
            actual = round(estimate * (0.9 + _stable_int("actual", ticker, year, quarter) % 20 / 100), 2)
            day = day + dt.timedelta(days=_stable_int("day", ticker) % 5)
            rows.append({"date": day.isoformat(), "epsActual": actual, "epsEstimate": estimate, "hour": "amc",
                         "quarter": quarter, "revenueActual": None, "revenueEstimate": None,
                         "symbol": to_vendor(ticker, "finnhub"), "year": year,
                         "period": dt.date(year, quarter * 3, 28 if quarter * 3 == 2 else 30).isoformat()})  # fmt: skip
        return rows
