"""Daily features per ticker and session, on adjusted prices (`reference.factors.adjust`).

Every window is counted in the calendar's sessions, on a grid that gives each ticker a row for every session from
its first bar to its last: a session the ticker did not trade is a gap (nulls), not a shorter step. So a 1-session
return across a gap is null rather than a 2-session return in disguise, and a window needs all its sessions.
Exponential and Wilder averages use a finite window of `smoothing_span` × n sessions, so that a value depends only on
a fixed number of earlier sessions: the first session of a backfill and a one-day incremental run read the same
`lookback` and compute the same number.

The features (n from `FeatureSet`; c, o, h, l, v the adjusted close, open, high, low and volume):

- `return_n`       c[t] / c[t-n] - 1
- `log_return_n`   ln(c[t] / c[t-n])
- `volatility_n`   the sample standard deviation (ddof 1) of the n one-session log returns ending at t, × √252
- `sma_n`          the mean of c over the n sessions ending at t
- `ema_n`          Σ w[k]·c[t-k] / Σ w[k], k < span·n, w[k] = (1-α)^k, α = 2/(n+1)
- `rsi_n`          100 - 100 / (1 + G/L), G and L the Wilder averages (α = 1/n, finite window as for `ema_n`) of the
                   session gains max(c[t]-c[t-1], 0) and losses max(c[t-1]-c[t], 0); 100 when L is 0 (50 when G is too)
- `atr_n`          the Wilder average of the true range max(h-l, |h-c[t-1]|, |l-c[t-1]|)
- `dollar_volume`  raw close × raw volume: the dollars that actually traded
- `overnight_gap`  o[t] / c[t-1] - 1
- `relative_volume_n`  v[t] / the mean of v over the n sessions before t
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

TRADING_DAYS = 252


@dataclass(frozen=True)
class FeatureSet:
    """Which features to compute, with which windows (sessions). Extend it from configuration, not code."""

    return_windows: tuple[int, ...] = (1, 5, 20)
    volatility_windows: tuple[int, ...] = (20,)
    sma_windows: tuple[int, ...] = (5, 20)
    ema_windows: tuple[int, ...] = (12, 26)
    rsi_windows: tuple[int, ...] = (14,)
    atr_windows: tuple[int, ...] = (14,)
    relative_volume_windows: tuple[int, ...] = (20,)
    smoothing_span: int = 3  # exponential and Wilder averages look back span × n sessions

    def __post_init__(self):
        for name in ("return_windows", "volatility_windows", "sma_windows", "ema_windows", "rsi_windows",
                     "atr_windows", "relative_volume_windows"):  # fmt: skip
            windows = getattr(self, name)
            if any(not isinstance(n, int) or n < 1 for n in windows):
                raise ValueError(f"feature set: {name} must be positive whole numbers of sessions, not {windows!r}")
        if self.smoothing_span < 1:
            raise ValueError(f"feature set: smoothing_span must be at least 1, not {self.smoothing_span!r}")

    @classmethod
    def from_mapping(cls, fields: Mapping[str, Any]) -> FeatureSet:
        """A feature set from configuration or JSON, where windows come as lists."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})

    @property
    def lookback(self) -> int:
        """Sessions before the first output session that its features read."""
        smoothed = [self.smoothing_span * n - 1 for n in self.ema_windows]
        smoothed += [self.smoothing_span * n for n in (*self.rsi_windows, *self.atr_windows)]
        plain = [*self.return_windows, *self.volatility_windows, *(n - 1 for n in self.sma_windows)]
        plain += [*self.relative_volume_windows, 1]  # 1: the overnight gap
        return max(smoothed + plain)

    def columns(self) -> list[str]:
        names = [f"{kind}_{n}" for n in self.return_windows for kind in ("return", "log_return")]
        names += [f"volatility_{n}" for n in self.volatility_windows]
        names += [f"sma_{n}" for n in self.sma_windows] + [f"ema_{n}" for n in self.ema_windows]
        names += [f"rsi_{n}" for n in self.rsi_windows] + [f"atr_{n}" for n in self.atr_windows]
        names += ["dollar_volume", "overnight_gap"] + [f"relative_volume_{n}" for n in self.relative_volume_windows]
        return names


def decay_weights(alpha: float, length: int) -> list[float]:
    """Weights of a finite exponential average, oldest first: (1-α)^(length-1) ... (1-α)^0."""
    return [(1 - alpha) ** (length - 1 - i) for i in range(length)]


POSITION = "_position"  # a row's position within its ticker on the grid


def within(expr: pl.Expr, reach: int) -> pl.Expr:
    """`expr` computed over the whole grid, kept only where the `reach` rows it looked back over are the same
    ticker's. The grid is sorted by ticker, so one pass over the column with this mask gives what a per-ticker
    window would, without grouping each expression (`over`), which is several times slower."""
    return pl.when(pl.col(POSITION) >= reach).then(expr)


def lag(column: str | pl.Expr, k: int) -> pl.Expr:
    """The value `k` sessions earlier, per ticker."""
    expr = pl.col(column) if isinstance(column, str) else column
    return within(expr.shift(k), k)


def finite_average(column: str, alpha: float, length: int) -> pl.Expr:
    """The exponential average of `column` over the `length` rows ending at each row, weights (1-α)^k with k rows
    back, per ticker; null unless all `length` values are present. (Polars' weighted rolling windows do not take
    nulls, so the nulls are zeroed and counted.)"""
    weights = decay_weights(alpha, length)
    values = pl.col(column)
    total = values.fill_null(0.0).rolling_sum(length, weights=weights)
    present = values.is_not_null().cast(pl.Int32).rolling_sum(length)
    return within(pl.when(present == length).then(total / sum(weights)), length - 1)


def session_grid(bars: pl.DataFrame, sessions: Sequence) -> pl.DataFrame:
    """`bars` on a grid: one row per ticker and session from the ticker's first bar to its last (a session without
    a bar is a row of nulls), with `session_index`, sorted by ticker then session."""
    index = pl.DataFrame({"date": list(sessions)}, schema={"date": pl.Date}).with_row_index("session_index")
    placed = bars.join(index, on="date", how="inner")
    spans = placed.group_by("ticker").agg(
        pl.col("session_index").min().alias("first"), pl.col("session_index").max().alias("last")
    )
    grid = (
        spans.select("ticker", session_index=pl.int_ranges("first", pl.col("last") + 1, dtype=pl.UInt32))
        .explode("session_index")
        .join(index, on="session_index")
    )
    return grid.join(placed.drop("session_index"), on=["ticker", "date"], how="left").sort("ticker", "session_index")


def daily_features(grid: pl.DataFrame, features: FeatureSet) -> pl.DataFrame:
    """The features of `features` on a `session_grid` of adjusted bars (ticker, date, open, high, low, close,
    volume, raw_close, raw_volume), for every grid row; rows without a bar keep nulls."""
    c, o, h, l, v = (pl.col(n) for n in ("close", "open", "high", "low", "volume"))  # noqa: E741
    previous = lag("close", 1)
    delta = c - previous
    first = [
        previous.alias("_previous_close"),
        (c / previous).log().alias("_log_return"),
        delta.clip(lower_bound=0).alias("_gain"),
        (-delta).clip(lower_bound=0).alias("_loss"),
        # max_horizontal would skip a missing previous close: a true range needs it (strict, like every window).
        pl.when(previous.is_not_null())
        .then(pl.max_horizontal(h - l, (h - previous).abs(), (l - previous).abs()))
        .alias("_true_range"),
    ]
    exprs = []
    for n in features.return_windows:
        back = lag("close", n)
        exprs += [(c / back - 1).alias(f"return_{n}"), (c / back).log().alias(f"log_return_{n}")]
    for n in features.volatility_windows:
        std = within(pl.col("_log_return").rolling_std(n, min_samples=n, ddof=1), n - 1)
        exprs.append((std * math.sqrt(TRADING_DAYS)).alias(f"volatility_{n}"))
    exprs += [within(c.rolling_mean(n, min_samples=n), n - 1).alias(f"sma_{n}") for n in features.sma_windows]
    span = features.smoothing_span
    exprs += [finite_average("close", 2 / (n + 1), span * n).alias(f"ema_{n}") for n in features.ema_windows]
    for n in features.rsi_windows:
        gain, loss = (finite_average(name, 1 / n, span * n) for name in ("_gain", "_loss"))
        rsi = (
            pl.when(loss == 0)
            .then(pl.when(gain == 0).then(50.0).otherwise(100.0))
            .otherwise(100 - 100 / (1 + gain / loss))
        )
        exprs.append(rsi.alias(f"rsi_{n}"))
    exprs += [finite_average("_true_range", 1 / n, span * n).alias(f"atr_{n}") for n in features.atr_windows]
    exprs += [
        (pl.col("raw_close") * pl.col("raw_volume")).alias("dollar_volume"),
        (o / pl.col("_previous_close") - 1).alias("overnight_gap"),
    ]
    for n in features.relative_volume_windows:
        mean = within(v.shift(1).rolling_mean(n, min_samples=n), n)
        exprs.append((v / mean).alias(f"relative_volume_{n}"))
    helpers = [e.meta.output_name() for e in first] + [POSITION]
    position = pl.int_range(pl.len(), dtype=pl.UInt32).over("ticker").alias(POSITION)
    return grid.with_columns(position).with_columns(first).with_columns(exprs).drop(helpers)


def session_vwap(minutes: pl.DataFrame | pl.LazyFrame, regular_start, regular_end) -> pl.LazyFrame:
    """Per ticker, the volume-weighted average price of one session's minute bars, Σ(p·v) / Σ(v) with p each
    minute's typical price (high + low + close) / 3: `vwap` over the regular session [regular_start, regular_end)
    (UTC datetimes), `vwap_extended` over every minute, pre- and post-market included. Raw prices: adjust them
    with the session's price factor like any price."""
    typical = (pl.col("high") + pl.col("low") + pl.col("close")) / 3
    regular = pl.col("window_start").is_between(regular_start, regular_end, closed="left")
    return (
        minutes.lazy()
        .group_by("ticker")
        .agg(
            ((typical * pl.col("volume")).filter(regular).sum() / pl.col("volume").filter(regular).sum()).alias("vwap"),
            ((typical * pl.col("volume")).sum() / pl.col("volume").sum()).alias("vwap_extended"),
        )
        .with_columns(pl.col("vwap").fill_nan(None), pl.col("vwap_extended").fill_nan(None))
    )
