"""Listing dates and ticker-change histories for the reference ticker table.

The vendor's ticker list has delisting times but no listing dates or earlier tickers; its ticker events do (the
first event is the listing under the first ticker). Events cost one request per ticker, so a refresh asks only for
tickers it has not seen with the same composite FIGI in the previous version: the first refresh of a full universe
is slow (~12k requests, within the rate limits), the daily ones ask for the day's new listings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import polars as pl

from quant_assets.providers.errors import ProviderError

CHANGE = pl.Struct({"date": pl.Date(), "ticker": pl.String()})
HISTORY_SCHEMA = {"list_date": pl.Date(), "ticker_changes": pl.List(CHANGE)}

Events = Callable[[str], list[tuple[dt.date, str]] | None]


def with_ticker_history(
    tickers: pl.DataFrame, previous: pl.DataFrame | None, events: Events
) -> tuple[pl.DataFrame, int, list[str]]:
    """`tickers` with `list_date` (the first ticker event) and `ticker_changes` ([{date, ticker}], oldest first),
    reused from `previous` where the ticker and its composite FIGI are unchanged, else fetched with
    `events(composite FIGI or ticker)`. A ticker whose events could not be fetched (a `ProviderError`) keeps a null
    history and is asked for again by the next refresh, so a long first refresh cut short is not lost. Returns the
    frame, how many tickers were fetched, and the errors of those that failed."""
    known: dict[tuple[str, str | None], dict] = {}
    if previous is not None and "ticker_changes" in previous.columns:
        for row in previous.select("ticker", "composite_figi", *HISTORY_SCHEMA).iter_rows(named=True):
            if row["ticker_changes"] is not None:
                known[(row["ticker"], row["composite_figi"])] = row
    histories, fetched, failed = [], 0, []
    for ticker, figi in tickers.select("ticker", "composite_figi").iter_rows():
        if (ticker, figi) in known:
            row = known[(ticker, figi)]
            histories.append((row["list_date"], row["ticker_changes"]))
            continue
        fetched += 1
        try:
            found = events(figi or ticker) or []
        except ProviderError as error:
            failed.append(f"{ticker}: {error}")
            histories.append((None, None))
            continue
        changes = [{"date": day, "ticker": name} for day, name in found]
        histories.append((found[0][0] if found else None, changes))
    history = pl.DataFrame(histories, schema=HISTORY_SCHEMA, orient="row")
    return pl.concat([tickers, history], how="horizontal"), fetched, failed
