"""Daily bars from a REST provider, in one schema whatever the vendor: the canonical ticker, the session, the raw
(unadjusted) open/high/low/close/volume as the flat files hold them, the vendor's adjusted prices and volume where
it has them (null where it has not), and the day's dividend and split factor where it says.

Every vendor module's `daily_bars(symbol, start, end, caching=None)` returns `(frame, set_aside)` with exactly
`DAILY_BARS`, sorted by date; `set_aside` lists the records not used, each with its reason. `hybrid.py` adds the
`provider` column.
"""

from __future__ import annotations

import polars as pl

DAILY_BARS: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "date": pl.Date(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "adj_open": pl.Float64(),
    "adj_high": pl.Float64(),
    "adj_low": pl.Float64(),
    "adj_close": pl.Float64(),
    "adj_volume": pl.Float64(),
    "dividend": pl.Float64(),  # cash paid on this ex-date, per share
    "split_factor": pl.Float64(),  # new shares per old share on this date, 1 on other days
}
DAILY_BARS_REQUIRED = ("date", "open", "high", "low", "close", "volume")


def empty_bars() -> pl.DataFrame:
    return pl.DataFrame(schema=DAILY_BARS)


def as_bars(frame: pl.DataFrame, ticker: str) -> pl.DataFrame:
    """`frame` (the vendor's rows already renamed to `DAILY_BARS`' names, typed) with every column of
    `DAILY_BARS` (a missing one null), the canonical `ticker`, sorted by date."""
    columns = [
        pl.lit(ticker, pl.String).alias(name)
        if name == "ticker"
        else (pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name))
        for name, dtype in DAILY_BARS.items()
    ]
    return frame.select(columns).sort("date")
