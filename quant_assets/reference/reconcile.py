"""The flat files' day bars against the REST API's grouped daily bars of the same session, per ticker.

Both are the vendor's unadjusted consolidated bars, but they are built by different pipelines and corrected at
different times, so small differences are normal: prices may differ by `TOLERANCES["price"]` (relative) and
volume by `TOLERANCES["volume"]` before a ticker counts as a mismatch.
"""

from __future__ import annotations

import polars as pl

TOLERANCES = {"price": 0.001, "volume": 0.02}
COMPARED = ("open", "high", "low", "close", "volume")


def reconcile_with_rest(
    lake: pl.DataFrame, rest: pl.DataFrame, tolerances: dict[str, float] = TOLERANCES
) -> pl.DataFrame:
    """One row per ticker that disagrees: `problem` (`only in flat files`, `only in REST`, or the columns out of
    tolerance) and both sources' values."""
    left = lake.select("ticker", *COMPARED)
    right = rest.select("ticker", *COMPARED)
    both = left.join(right, on="ticker", how="full", suffix="_rest", coalesce=True)
    off = []
    for column in COMPARED:
        tolerance = tolerances["volume" if column == "volume" else "price"]
        a, b = pl.col(column), pl.col(f"{column}_rest")
        too_far = (a - b).abs() > tolerance * pl.max_horizontal(a.abs(), b.abs())
        off.append(pl.when(too_far).then(pl.lit(column)))
    problem = (
        pl.when(pl.col("close").is_null() & pl.col("close_rest").is_not_null())
        .then(pl.lit("only in REST"))
        .when(pl.col("close_rest").is_null() & pl.col("close").is_not_null())
        .then(pl.lit("only in flat files"))
        .otherwise(pl.concat_str(off, separator=", ", ignore_nulls=True))
    )
    found = both.with_columns(problem=problem).filter(pl.col("problem").is_not_null() & (pl.col("problem") != ""))
    return found.select("ticker", "problem", *(c for name in COMPARED for c in (name, f"{name}_rest"))).sort("ticker")
