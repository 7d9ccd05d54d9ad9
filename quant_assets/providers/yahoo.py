"""A free fallback for daily bars: Yahoo's chart endpoint, as yfinance uses it (no official documentation, no key;
../shared/reference/rest-providers.md), over a `ProviderClient`.

`GET /v8/finance/chart/{ticker}?period1=<epoch s>&period2=<epoch s>&interval=1d&events=div,splits` answers
`{"chart": {"result": [{"meta", "timestamp": [..], "indicators": {"quote": [{"open", "high", "low", "close",
"volume"}], "adjclose": [{"adjclose"}]}, "events": {"dividends": {ts: {"date", "amount"}}, "splits": {ts: {"date",
"numerator", "denominator"}}}}], "error": null}}`; an error fills `chart.error.description`. Each timestamp is the
session's market open (09:30 New York): its date in New York is the session. `period2` is exclusive.

What Yahoo gives, and how it becomes `DAILY_BARS`:
- its open/high/low/close and volume are **adjusted for every split up to today** (not for dividends), as its
  users found (ranaroussi/yfinance#2611, joshuaulrich/quantmod#218): the raw bar of the flat files is made back by
  undoing each split after the day (prices x new shares per old share, volume / it). Every split after the day must
  be in the answer's events, so the request always runs to today (`period2` is tomorrow in New York), and the days
  after `end` are dropped; `adj_volume` is Yahoo's (split-adjusted) volume itself;
- only an adjusted close (splits and dividends): `adj_close` is `adjclose`, and `adj_open`, `adj_high` and
  `adj_low` are derived as the raw price x adj_close / close (the day's adjustment applies to the whole bar);
- the arrays may hold nulls (a day without a quote): such a day is set aside with its reason, the others kept;
- a dividend and a split only as events: `dividend` is the day's cash amount (0 on other days), `split_factor`
  numerator / denominator (new shares per old share; 1 on other days).

Heavily rate limited (HTTP 429 since 2025): the default `policy` is slow on purpose, and the client's retries and
backoff handle a 429 storm. Symbols: share classes `BRK-B`, indices `^GSPC` (`symbols.to_vendor`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import polars as pl

from quant_assets.names import shown
from quant_assets.providers.bars import DAILY_BARS_REQUIRED, as_bars
from quant_assets.providers.cache import Caching
from quant_assets.providers.client import Auth, Policy, ProviderClient
from quant_assets.providers.errors import MalformedResponse, VendorError
from quant_assets.providers.symbols import to_vendor
from quant_assets.providers.typed import typed_frame

NAME = "yahoo"
DEFAULT_BASE_URL = "https://query1.finance.yahoo.com"
AUTH = Auth(header=None)
NEW_YORK = ZoneInfo("America/New_York")

CHART = "/v8/finance/chart/{ticker}"

# Conservative on purpose: Yahoo answers 429 well below any published figure (it publishes none).
RATES = ((1, 1.0), (20, 60.0), (500, 3600.0), (2000, 86_400.0))
QUOTE_FIELDS = ("open", "high", "low", "close", "volume")
BAR_FIELDS: dict[str, pl.DataType] = {
    "date": pl.Date(),
    **{name: pl.Float64() for name in QUOTE_FIELDS},
    "adj_close": pl.Float64(),
}


def policy(rates: tuple[tuple[int, float], ...] = RATES, **overrides: Any) -> Policy:
    """Yahoo's `Policy`: `rates` (slow by default), cost 0, and patient retries (a 429 storm passes with time);
    `overrides` are any other `Policy` fields."""
    settings = {"attempts": 4, "backoff_initial": 2.0, "backoff_max": 60.0, **overrides}
    return Policy(rates=rates, cost_per_request=0.0, **settings)


def session_date(timestamp: Any) -> dt.date | None:
    """The session (its date in New York) of a Yahoo timestamp (epoch seconds), or None when it is not one."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        return None
    try:
        return dt.datetime.fromtimestamp(timestamp, NEW_YORK).date()
    except (OverflowError, OSError, ValueError):
        return None


def epoch(day: dt.date) -> int:
    """Midnight in New York at the start of `day`, in epoch seconds."""
    return int(dt.datetime.combine(day, dt.time(), NEW_YORK).timestamp())


class Yahoo:
    """Yahoo's chart endpoint, over a `ProviderClient` made with `AUTH` (no key)."""

    name = NAME

    def __init__(self, client: ProviderClient, today: Callable[[], dt.date] | None = None):
        self.client = client
        self.today = today or (lambda: dt.datetime.now(NEW_YORK).date())

    def daily_bars(
        self, symbol: str, start: dt.date, end: dt.date, caching: Caching | None = None
    ) -> tuple[pl.DataFrame, list[str]]:
        """`symbol`'s (canonical) daily bars in [start, end], in `DAILY_BARS`, and the days set aside, each with its
        reason. `Unsupported` before anything is sent when Yahoo has no form for the symbol."""
        vendor = to_vendor(symbol, NAME)
        path = CHART.format(ticker=quote(vendor, safe=""))
        where = f"{NAME} {CHART} ({symbol} as {vendor}, {start}..{end})"
        params = {
            "period1": epoch(start),
            "period2": epoch(max(end, self.today()) + dt.timedelta(days=1)),  # every split after `end` too
            "interval": "1d",
            "events": "div,splits",
        }
        answer = self.client.get_json(path, params, endpoint=CHART, caching=caching, check=lambda p: _result(p, where))
        result = _result(answer, where)
        records, aside = _days(result, where)
        frame, typed_aside = typed_frame(records, BAR_FIELDS, DAILY_BARS_REQUIRED, f"{where} (days with a quote)")
        aside += typed_aside
        dividends, splits, event_aside = _events(result.get("events"), where)
        aside += event_aside
        frame = _unadjusted(frame, splits)
        outside = frame.filter(pl.col("date") < start)
        aside += [f"{where}: the day {day} is before the range asked" for day in outside["date"].to_list()]
        frame = frame.filter(pl.col("date").is_between(start, end))
        repeated = frame.filter(pl.int_range(pl.len()).over("date") > 0)
        aside += [f"{where}: the day {day} comes again; its first bar kept" for day in repeated["date"].to_list()]
        frame = frame.unique("date", keep="first", maintain_order=True)
        ratio = pl.when(pl.col("close") != 0).then(pl.col("adj_close") / pl.col("close"))
        frame = frame.with_columns(
            adj_open=pl.col("open") * ratio,
            adj_high=pl.col("high") * ratio,
            adj_low=pl.col("low") * ratio,
            dividend=pl.col("date").replace_strict(dividends, default=0.0, return_dtype=pl.Float64),
            split_factor=pl.col("date").replace_strict(splits, default=1.0, return_dtype=pl.Float64),
        )
        days = set(frame["date"].to_list())
        aside += [
            f"{where}: the {kind} of {day} falls on no day kept"
            for kind, found in (("dividend", dividends), ("split", splits))
            for day in sorted(found)
            if start <= day <= end and day not in days
        ]
        if aside:
            self.client.log(f"{len(aside)} days set aside, e.g. {aside[0]}")
        return as_bars(frame, symbol), aside


def _unadjusted(frame: pl.DataFrame, splits: dict[dt.date, float]) -> pl.DataFrame:
    """`frame`'s split-adjusted Yahoo bars made raw: each split after a day undone (prices x its factor, volume /
    it, then rounded to 6 decimals, below any price's precision; a day after every split is left as it came);
    Yahoo's volume kept as `adj_volume`."""
    factor = pl.lit(1.0)
    for day, split in splits.items():
        factor = factor * pl.when(pl.col("date") < day).then(split).otherwise(1.0)

    def undone(name: str, value: pl.Expr) -> pl.Expr:
        return pl.when(factor != 1.0).then(value.round(6)).otherwise(pl.col(name)).alias(name)

    prices = [undone(name, pl.col(name) * factor) for name in ("open", "high", "low", "close")]
    return frame.with_columns(*prices, undone("volume", pl.col("volume") / factor), adj_volume=pl.col("volume"))


def _result(answer: Any, where: str) -> dict[str, Any]:
    """The chart's one result; `VendorError` for `chart.error`, `MalformedResponse` for another shape."""
    chart = answer.get("chart") if isinstance(answer, dict) else None
    if not isinstance(chart, dict):
        raise MalformedResponse(f"{where}: the answer has no `chart` object: {shown(answer)}")
    error = chart.get("error")
    if error:
        text = error.get("description") or error.get("code") if isinstance(error, dict) else error
        raise VendorError(f"{where}: Yahoo answered with an error: {str(text)[:300]}", "invalid")
    results = chart.get("result")
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        raise MalformedResponse(f"{where}: `chart.result` is not a list holding an object: {shown(results)}")
    return results[0]


def _days(result: dict[str, Any], where: str) -> tuple[list[dict[str, Any]], list[str]]:
    """One record per timestamp (date, the quote, adj_close), and the days set aside for a null in their arrays."""
    timestamps = result.get("timestamp") or []  # no trading day in the range: no `timestamp` at all
    if not isinstance(timestamps, list):
        raise MalformedResponse(f"{where}: `timestamp` is not a list: {shown(timestamps)}")
    indicators = result.get("indicators")
    quote = _first(indicators, "quote", where) if timestamps else {}
    adjusted = _first(indicators, "adjclose", where, required=False) if timestamps else {}
    arrays = {name: quote.get(name) for name in QUOTE_FIELDS}
    arrays["adj_close"] = adjusted.get("adjclose") if adjusted else None
    for name, values in arrays.items():
        if values is not None and (not isinstance(values, list) or len(values) != len(timestamps)):
            raise MalformedResponse(
                f"{where}: `{name}` is not a list of {len(timestamps)} values (one per timestamp): {shown(values)}"
            )
    records, aside = [], []
    for index, timestamp in enumerate(timestamps):
        day = session_date(timestamp)
        if day is None:
            aside.append(f"{where}: timestamp {index} is {shown(timestamp)}, not epoch seconds")
            continue
        values = {name: values[index] if values is not None else None for name, values in arrays.items()}
        if nulls := [name for name in (*QUOTE_FIELDS, "adj_close") if values[name] is None and arrays[name]]:
            aside.append(f"{where}: the day {day} has no {', '.join(nulls)} (null in Yahoo's arrays)")
            continue
        records.append({"date": day.isoformat(), **values})
    return records, aside


def _first(indicators: Any, name: str, where: str, required: bool = True) -> dict[str, Any]:
    """`indicators.<name>[0]`; `MalformedResponse` when it is missing (unless not `required`: then {})."""
    entries = indicators.get(name) if isinstance(indicators, dict) else None
    if isinstance(entries, list) and entries and isinstance(entries[0], dict):
        return entries[0]
    if entries is None and not required:
        return {}
    raise MalformedResponse(f"{where}: `indicators.{name}` is not a list holding an object: {shown(entries)}")


def _events(events: Any, where: str) -> tuple[dict[dt.date, float], dict[dt.date, float], list[str]]:
    """The dividends (cash by session) and splits (new shares per old share by session) of `events`, and the
    events set aside (unreadable)."""
    dividends: dict[dt.date, float] = {}
    splits: dict[dt.date, float] = {}
    aside: list[str] = []
    events = events if isinstance(events, dict) else {}
    for kind, found in (("dividends", dividends), ("splits", splits)):
        entries = events.get(kind) or {}
        if not isinstance(entries, dict):
            aside.append(f"{where}: `events.{kind}` is not an object: {shown(entries)}")
            continue
        for key, event in entries.items():
            event = event if isinstance(event, dict) else {}
            day = session_date(event.get("date")) or (session_date(int(key)) if str(key).isdigit() else None)
            value = _event_value(kind, event)
            if day is None or value is None:
                aside.append(f"{where}: the {kind[:-1]} event {shown(key)} is unreadable: {shown(event)}")
                continue
            found[day] = value
    return dividends, splits, aside


def _event_value(kind: str, event: dict[str, Any]) -> float | None:
    """A dividend's cash amount, or a split's numerator / denominator; None when not a positive finite number."""
    if kind == "dividends":
        value = event.get("amount")
    else:
        numerator, denominator = event.get("numerator"), event.get("denominator")
        numbers = all(isinstance(n, int | float) and not isinstance(n, bool) for n in (numerator, denominator))
        value = numerator / denominator if numbers and denominator else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (value > 0 and math.isfinite(value)):
        return None
    return float(value)
