"""Cross-source reconciliation: a session's minute aggregates against its day aggregates, per ticker."""

import polars as pl

PROBLEMS = {
    "volume": "sum of minute volume above the day volume",
    "high": "a minute high above the day high",
    "low": "a minute low below the day low",
    "open": "first minute open differs from the day open",
    "close": "last minute close differs from the day close",
}


def reconcile(minute: pl.DataFrame, day: pl.DataFrame, volume_tolerance: float, price_tolerance: float) -> pl.DataFrame:
    """One row per ticker in both files whose minute bars disagree with its day bar: the values compared and a
    `problems` list (keys of PROBLEMS). Tolerances are relative."""
    bars = (
        minute.sort("ticker", "window_start")
        .group_by("ticker")
        .agg(
            minute_volume=pl.col("volume").sum(),
            minute_high=pl.col("high").max(),
            minute_low=pl.col("low").min(),
            first_open=pl.col("open").first(),
            last_close=pl.col("close").last(),
        )
    )
    joined = day.select("ticker", "volume", "open", "close", "high", "low").join(bars, on="ticker", how="inner")
    tiny = 1e-9  # float noise in sums of 6-decimal volumes
    checks = {
        "volume": pl.col("minute_volume") > pl.col("volume") * (1 + volume_tolerance) + tiny,
        "high": pl.col("minute_high") > pl.col("high") * (1 + tiny),
        "low": pl.col("minute_low") < pl.col("low") * (1 - tiny),
        "open": (pl.col("first_open") - pl.col("open")).abs() > price_tolerance * pl.col("open").abs(),
        "close": (pl.col("last_close") - pl.col("close")).abs() > price_tolerance * pl.col("close").abs(),
    }
    flagged = joined.with_columns(
        problems=pl.concat_list([pl.when(expr).then(pl.lit(name)) for name, expr in checks.items()]).list.drop_nulls()
    )
    return flagged.filter(pl.col("problems").list.len() > 0).sort("ticker")
