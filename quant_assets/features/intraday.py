"""Per-session features that need no earlier session: intraday bars and returns from minute aggregates, and option
contract features against the underlying's close. Raw prices: one session has one adjustment factor, so returns are
unaffected and levels are adjusted by multiplying with the session's `price_factor`.

Intraday (`minute_features`, `resample`):
- `return_1m`       close[t] / close[t-1 minute] - 1 for every minute bar (pre- and post-market too), null when the
                    ticker has no bar the minute before
- `vwap_cumulative` Σ(p·v) / Σ(v) from the open to this minute, p the minute's (high + low + close) / 3: regular
                    session [open, close) only (early closes respected), null outside it and before any volume
- bars of k minutes aligned to the open: the first starts at the open, the last ends at the close (shorter when
  the session is not a multiple of k); open first, high max, low min, close last, volume and transactions summed

Options (`option_features`), from the OCC fields the lake already parses:
- `underlying_ticker` the stock ticker of the OCC root (`BRKB` -> `BRK.B`), `underlying_close` its raw close
- `days_to_expiry`  calendar days from the session to the expiration
- `moneyness`       underlying close / strike; `log_moneyness` its log; `in_the_money` for the contract's side
"""

from __future__ import annotations

import datetime as dt

import polars as pl

NS_PER_MINUTE = 60_000_000_000
BAR_MINUTES = (5, 15, 60)  # each a multiple of the smallest


def _regular(open_at: dt.datetime, close_at: dt.datetime) -> pl.Expr:
    return pl.col("window_start").is_between(open_at, close_at, closed="left")


def sort_minutes(minutes: pl.DataFrame) -> pl.DataFrame:
    """Minute bars sorted by ticker and time, as `minute_features` and `resample` take them (sort once)."""
    return minutes.sort("ticker", "window_start")


def _new_ticker() -> pl.Expr:
    """True on the first row of each ticker (the frame sorted by ticker): one pass, no grouping."""
    return pl.col("ticker") != pl.col("ticker").shift(1).fill_null("")


def minute_features(minutes: pl.DataFrame, open_at: dt.datetime, close_at: dt.datetime) -> pl.DataFrame:
    """`minutes` (one session, sorted by `sort_minutes`) with `return_1m` and `vwap_cumulative`."""
    typical = (pl.col("high") + pl.col("low") + pl.col("close")) / 3
    regular = _regular(open_at, close_at)
    same_ticker = ~_new_ticker()
    one_minute_before = same_ticker & (
        (pl.col("window_start") - pl.col("window_start").shift(1)) == pl.duration(minutes=1)
    )

    # Running sums per ticker (`over`): a session-wide sum minus its value at the ticker's start would lose the
    # digits of a late, thin ticker to the session's total.
    pv = pl.when(regular).then(typical * pl.col("volume")).otherwise(0.0).cum_sum().over("ticker")
    v = pl.when(regular).then(pl.col("volume")).otherwise(0.0).cum_sum().over("ticker")
    return minutes.with_columns(
        pl.when(one_minute_before).then(pl.col("close") / pl.col("close").shift(1) - 1).alias("return_1m"),
        pl.when(regular & (v > 0)).then(pv / v).alias("vwap_cumulative"),
    )


def resample(minutes: pl.DataFrame, open_at: dt.datetime, close_at: dt.datetime, every: int) -> pl.DataFrame:
    """Bars of `every` minutes of the regular session, aligned to the open (see the module docstring), from
    `minutes` sorted by `sort_minutes`."""
    start = pl.lit(open_at).cast(pl.Datetime("ns", "UTC"))
    offset = (pl.col("window_start") - start).dt.total_nanoseconds() // (every * NS_PER_MINUTE)
    bucket = start + pl.duration(nanoseconds=offset * every * NS_PER_MINUTE)
    close = pl.lit(close_at).cast(pl.Datetime("ns", "UTC"))
    end = pl.min_horizontal(pl.col("window_start") + pl.duration(minutes=every), close).cast(pl.Datetime("ns", "UTC"))
    # A bar is a run of rows with one ticker and one bucket: numbered in one pass, grouped by that integer.
    regular = minutes.filter(_regular(open_at, close_at)).with_columns(bucket.alias("window_start"))
    run = (_new_ticker() | (pl.col("window_start") != pl.col("window_start").shift(1))).cum_sum().alias("_bar")
    return (
        regular.with_columns(run)
        .group_by("_bar", maintain_order=True)
        .agg(
            pl.col("ticker").first(),
            pl.col("window_start").first(),
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.col("transactions").sum(),
        )
        .drop("_bar")
        .with_columns(end.alias("window_end"))
    )


def session_bars(minutes: pl.DataFrame, open_at: dt.datetime, close_at: dt.datetime) -> dict[int, pl.DataFrame]:
    """The `BAR_MINUTES` bars of a session: the smallest from the minutes, each larger one from the smallest (the
    buckets are aligned to the open, so a larger bar is exactly a run of smaller ones), which is much cheaper."""
    smallest, *larger = sorted(BAR_MINUTES)
    bars = {smallest: resample(minutes, open_at, close_at, smallest)}
    for every in larger:
        bars[every] = resample(bars[smallest], open_at, close_at, every)
    return bars


def option_features(options: pl.DataFrame, stocks: pl.DataFrame, session: dt.date) -> pl.DataFrame:
    """`options` (one session of option day aggregates with the OCC fields) with the contract features; the
    underlying's close comes from `stocks` (the same session's stock day aggregates)."""
    roots = stocks.select(
        pl.col("ticker").str.replace_all(".", "", literal=True).alias("underlying"),
        pl.col("ticker").alias("underlying_ticker"),
        pl.col("close").alias("underlying_close"),
    ).unique("underlying", keep="first")
    moneyness = pl.col("underlying_close") / pl.col("strike")
    return options.join(roots, on="underlying", how="left").with_columns(
        (pl.col("expiration") - pl.lit(session)).dt.total_days().alias("days_to_expiry"),
        moneyness.alias("moneyness"),
        moneyness.log().alias("log_moneyness"),
        pl.when(pl.col("contract_type") == "C")
        .then(pl.col("underlying_close") > pl.col("strike"))
        .otherwise(pl.col("underlying_close") < pl.col("strike"))
        .alias("in_the_money"),
    )
