"""Tiingo's end-of-day prices: daily bars (raw and Tiingo-adjusted, with the day's dividend and split factor) and
a ticker's metadata, over a `ProviderClient` (../shared/reference/rest-providers.md).

Shapes, from the vendor's documentation: `GET /tiingo/daily/<ticker>/prices?startDate&endDate` answers a JSON array,
one object per day (`date` a timestamp string such as `2026-02-02T00:00:00.000Z`, `open`..`volume`,
`adjOpen`..`adjVolume`, `divCash`, `splitFactor`); without dates, the latest day only. `GET /tiingo/daily/<ticker>`
answers the ticker's metadata (`ticker`, `name`, `exchangeCode`, `description`, `startDate`, `endDate`; from a
community spec, unconfirmed: only `ticker` is required, and a missing one fails loudly). One ticker per request.

Errors: `{"detail": "..."}` (a 404 for an unknown ticker; the same body with HTTP 200 is a `VendorError`), and an
over-quota answer seen as plain text with HTTP 200, which the client refuses as `MalformedResponse` ("not valid
JSON", naming the endpoint). Tiingo has no index data: `I:SPX` raises `Unsupported` before anything is sent.

The key travels as `Authorization: Token <key>` (`AUTH`), never as the `token=` parameter (URLs get logged).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

import polars as pl

from quant_assets.names import shown
from quant_assets.providers.bars import DAILY_BARS_REQUIRED, as_bars
from quant_assets.providers.cache import Caching
from quant_assets.providers.client import Auth, Policy, ProviderClient
from quant_assets.providers.errors import MalformedResponse, VendorError
from quant_assets.providers.symbols import Unsupported, from_vendor, to_vendor
from quant_assets.providers.typed import projected, typed_frame

NAME = "tiingo"
DEFAULT_BASE_URL = "https://api.tiingo.com"
AUTH = Auth(header="Authorization", template="Token {key}")

PRICES = "/tiingo/daily/{ticker}/prices"
METADATA = "/tiingo/daily/{ticker}"

# Figures seen for the free plan, not confirmed by the vendor: configuration, not facts (`policy`).
PER_HOUR = 50
PER_DAY = 1000

# Tiingo's field -> `DAILY_BARS`' name, and the vendor's types.
PRICE_ALIASES = {
    "date": "date",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "volume": "volume",
    "adjOpen": "adj_open",
    "adjHigh": "adj_high",
    "adjLow": "adj_low",
    "adjClose": "adj_close",
    "adjVolume": "adj_volume",
    "divCash": "dividend",
    "splitFactor": "split_factor",
}
PRICE_FIELDS: dict[str, pl.DataType] = {
    vendor: pl.Date() if vendor == "date" else pl.Float64() for vendor in PRICE_ALIASES
}
PRICE_REQUIRED = tuple(vendor for vendor, ours in PRICE_ALIASES.items() if ours in DAILY_BARS_REQUIRED)

# Words of a `detail` message that say the key may not have the data, and that it is over its allocation.
NOT_ENTITLED_WORDS = ("token", "access", "permission")
RATE_LIMITED_WORDS = ("allocation", "rate limit", "too many")


def policy(
    per_hour: int = PER_HOUR,
    per_day: int = PER_DAY,
    cost_per_request: float = 0.0,
    daily_budget: float | None = None,
    **overrides: Any,
) -> Policy:
    """Tiingo's limits as a `Policy`: `per_hour` and `per_day` requests (the free plan's figures by default,
    unconfirmed), at most one a second; `overrides` are any other `Policy` fields (attempts, backoff, ...)."""
    rates = ((1, 1.0), (per_hour, 3600.0), (per_day, 86_400.0))
    return Policy(rates=rates, cost_per_request=cost_per_request, daily_budget=daily_budget, **overrides)


def check_detail(parsed: Any, where: str) -> None:
    """Raise `VendorError` when `parsed` is Tiingo's error object (`{"detail": ...}`): `not_entitled` when it
    speaks of the token, access or permission, `rate_limited` of the allocation, `invalid` otherwise."""
    if isinstance(parsed, dict) and "detail" in parsed:
        detail = str(parsed["detail"])[:300]
        lowered = detail.lower()
        if any(word in lowered for word in NOT_ENTITLED_WORDS):
            kind = "not_entitled"
        elif any(word in lowered for word in RATE_LIMITED_WORDS):
            kind = "rate_limited"
        else:
            kind = "invalid"
        raise VendorError(f"{where}: Tiingo answered with an error: {detail}", kind)


class Tiingo:
    """The Tiingo end-of-day endpoints this project reads, over a `ProviderClient` made with `AUTH`."""

    name = NAME

    def __init__(self, client: ProviderClient):
        self.client = client

    def daily_bars(
        self, symbol: str, start: dt.date, end: dt.date, caching: Caching | None = None
    ) -> tuple[pl.DataFrame, list[str]]:
        """`symbol`'s (canonical) daily bars in [start, end], in `DAILY_BARS`, and the records set aside, each with
        its reason. `Unsupported` (an index) before anything is sent."""
        vendor = to_vendor(symbol, NAME)
        path = PRICES.format(ticker=quote(vendor, safe=""))
        where = f"{NAME} {PRICES} ({symbol} as {vendor}, {start}..{end})"

        def check(parsed: Any) -> None:
            check_detail(parsed, where)
            if not isinstance(parsed, list):
                raise MalformedResponse(f"{where}: the answer is not a JSON array of days: {shown(parsed)}")

        params = {
            "startDate": start.isoformat(),
            "endDate": end.isoformat(),
            "format": "json",
            "resampleFreq": "daily",
        }
        days = self.client.get_json(path, params, endpoint=PRICES, caching=caching, check=check)
        check(days)  # a cached answer was checked when stored; this costs nothing
        frame, aside = typed_frame([projected(d, PRICE_FIELDS) for d in days], PRICE_FIELDS, PRICE_REQUIRED, where)
        frame = frame.rename(PRICE_ALIASES)
        outside = frame.filter((pl.col("date") < start) | (pl.col("date") > end))
        aside += [f"{where}: the day {day} is outside the range asked" for day in outside["date"].to_list()]
        frame = frame.filter(pl.col("date").is_between(start, end))
        if aside:
            self.client.log(f"{len(aside)} days set aside, e.g. {aside[0]}")
        return as_bars(frame, symbol), aside

    def metadata(self, symbol: str, caching: Caching | None = None) -> dict[str, Any]:
        """`symbol`'s metadata: `ticker` (canonical), `name`, `exchange_code`, `description`, `start_date` and
        `end_date` (None where Tiingo has no prices). `MalformedResponse` when the answer lacks `ticker` or names
        another ticker, or a date is unreadable."""
        vendor = to_vendor(symbol, NAME)
        path = METADATA.format(ticker=quote(vendor, safe=""))
        where = f"{NAME} {METADATA} ({symbol} as {vendor})"

        def check(parsed: Any) -> None:
            check_detail(parsed, where)
            if not isinstance(parsed, dict):
                raise MalformedResponse(f"{where}: the answer is not a JSON object: {shown(parsed)}")
            if not isinstance(parsed.get("ticker"), str) or not parsed["ticker"]:
                raise MalformedResponse(f"{where}: the answer has no `ticker` (fields: {shown(sorted(parsed))})")

        found = self.client.get_json(path, endpoint=METADATA, caching=caching, check=check)
        check(found)
        try:
            ticker = from_vendor(found["ticker"].upper(), NAME)
        except Unsupported as error:
            raise MalformedResponse(f"{where}: {error}") from None
        if ticker != symbol:
            raise MalformedResponse(f"{where}: the answer is about {shown(found['ticker'])}, not {vendor}")
        return {
            "ticker": ticker,
            "name": _text(found.get("name")),
            "exchange_code": _text(found.get("exchangeCode")),
            "description": _text(found.get("description")),
            "start_date": _date(found.get("startDate"), "startDate", where),
            "end_date": _date(found.get("endDate"), "endDate", where),
        }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _date(value: Any, field: str, where: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise MalformedResponse(f"{where}: `{field}` is {shown(value)}, not a date") from None
