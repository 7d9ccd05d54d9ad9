"""A local Tiingo server: the end-of-day endpoints in the vendor's JSON, over the synthetic universe's daily bars
(`history.DailyHistory`: the raw numbers of the generated `stocks_daily` files, Tiingo-style adjusted prices).

    server = TiingoServer(dt.date(2026, 1, 2), dt.date(2026, 2, 27), api_key="secret").start()
    ... Tiingo(ProviderClient("tiingo", server.url, "secret", policy, data, auth=tiingo.AUTH)) ...
    server.stop()   # or `with TiingoServer(...) as server:`

- `GET /tiingo/daily/<ticker>/prices?startDate&endDate`: a JSON array, one object per session (`date` like
  `2026-02-02T00:00:00.000Z`, `open`..`volume`, `adjOpen`..`adjVolume`, `divCash`, `splitFactor`); without dates,
  the latest session only; a ticker in Tiingo's form (`BRK-B`, `BA-P-A`), read back with `symbols.from_vendor`;
- `GET /tiingo/daily/<ticker>`: its metadata (`ticker`, `name`, `exchangeCode`, `description`, `startDate`,
  `endDate`);
- an unknown ticker: `404 {"detail": "Error: Ticker 'X' not found"}`; without the key (`Authorization: Token
  <key>`): `401 {"detail": "Invalid token."}`.

Quirks: `plain_text_over_quota=True` answers past `quota` as Tiingo has been seen to, HTTP 200 with a plain-text
body (else 429 with a `detail`); `empty_for` tickers (canonical) are answered `[]`. `per_second`, `latency`,
`script` and `requests` are the base's (`server.VendorServer`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from quant_assets.providers.symbols import Unsupported, from_vendor
from quant_assets.sample_rest import Reply
from quant_assets.samples.history import HistoryServer
from quant_assets.samples.server import json_reply

PREFIX = "/tiingo/daily/"
OVER_QUOTA_TEXT = (
    "Error: You have run over your hourly request allocation. Please upgrade at https://api.tiingo.com/pricing "
    "to have your limits increased."
)


class TiingoServer(HistoryServer):
    """Tiingo's end-of-day endpoints over `DailyHistory(start, end, seed, size)` (`end`: the vendor's last day)."""

    name = "tiingo"

    def __init__(
        self,
        start: dt.date,
        end: dt.date,
        plain_text_over_quota: bool = False,
        empty_for: Iterable[str] = (),
        **options,
    ):
        super().__init__(start, end, **options)
        self.plain_text_over_quota = plain_text_over_quota
        self.empty_for = frozenset(empty_for)

    def authorised(self, headers, query: dict[str, str]) -> bool:
        return self.api_key is None or headers.get("Authorization") == f"Token {self.api_key}"

    def unauthorised(self) -> Reply:
        return json_reply({"detail": "Invalid token."}, 401)

    def over_limit(self) -> Reply:
        return json_reply({"detail": OVER_QUOTA_TEXT}, 429)

    def over_quota(self) -> Reply:
        if self.plain_text_over_quota:
            return Reply(200, OVER_QUOTA_TEXT, {"Content-Type": "text/plain; charset=utf-8"})
        return self.over_limit()

    def answer(self, path: str, query: dict[str, str]) -> Reply:
        if not path.startswith(PREFIX):
            return json_reply({"detail": "Not found."}, 404)
        rest = path[len(PREFIX) :].rstrip("/")
        vendor, _, tail = rest.partition("/")
        vendor = unquote(vendor)
        if tail not in ("", "prices"):
            return json_reply({"detail": "Not found."}, 404)
        try:
            ticker = from_vendor(vendor, self.name)
        except Unsupported:
            ticker = None
        if ticker not in self.history.tickers:
            return json_reply({"detail": f"Error: Ticker '{vendor}' not found"}, 404)
        if tail == "":
            return json_reply(self._metadata(ticker, vendor))
        try:
            first = dt.date.fromisoformat(query["startDate"]) if "startDate" in query else None
            last = dt.date.fromisoformat(query["endDate"]) if "endDate" in query else None
        except ValueError:
            return json_reply({"detail": "Error: startDate and endDate must be dates (YYYY-MM-DD)"}, 400)
        if ticker in self.empty_for:
            return json_reply([])
        if first is None and last is None:  # the latest day only
            bars = self.history.bars(ticker, self.history.start, self.history.end)[-1:]
        else:
            bars = self.history.bars(ticker, first or self.history.start, last or self.history.end)
        return json_reply([_day(bar) for bar in bars])

    def _metadata(self, ticker: str, vendor: str) -> dict[str, Any]:
        bars = self.history.bars(ticker, self.history.start, self.history.end)
        return {
            "ticker": vendor,
            "name": f"{ticker} Synthetic Inc.",
            "exchangeCode": "NYSE",
            "description": f"A synthetic company traded as {ticker}.",
            "startDate": bars[0]["date"].isoformat() if bars else None,
            "endDate": bars[-1]["date"].isoformat() if bars else None,
        }


def _day(bar: dict[str, Any]) -> dict[str, Any]:
    """One session in Tiingo's shape (volumes as integers, as Tiingo sends them)."""
    return {
        "date": f"{bar['date'].isoformat()}T00:00:00.000Z",
        "close": bar["close"],
        "high": bar["high"],
        "low": bar["low"],
        "open": bar["open"],
        "volume": _whole(bar["volume"]),
        "adjClose": bar["adj_close"],
        "adjHigh": bar["adj_high"],
        "adjLow": bar["adj_low"],
        "adjOpen": bar["adj_open"],
        "adjVolume": _whole(bar["adj_volume"]),
        "divCash": bar["dividend"],
        "splitFactor": bar["split_factor"],
    }


def _whole(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
