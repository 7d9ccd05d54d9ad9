"""The fields of a Qlib directory, in Qlib's conventions (see ../shared/reference/qlib-format.md):

- `open`, `high`, `low`, `close`, `vwap`: adjusted prices (backward adjustment, `reference/factors.py`), so that
  `$close / $factor` is the raw close;
- `factor`: the price factor (adjusted / raw; 1.0 when nothing adjusts the session);
- `volume`: raw volume / factor, so that `$volume * $factor` is the raw number of shares and
  `$close * $volume` the raw dollar volume, as Qlib's backtest rounds lots with `$factor`;
- `change`: close over the previous slot's close - 1, both adjusted; NaN when either slot has no bar (a day after a
  session the symbol skipped, a minute after one without a trade, and each session's first minute bar);
- the configured enriched features, as the enriched layer computed them (day only).

`vwap` is the session VWAP of the enriched layer (from minute bars; NaN where the lake has none). Minute bars carry
no VWAP in the vendor's files, so `1min` has none.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from quant_assets.datasets import Calendar
from quant_assets.reference.factors import adjust
from quant_assets.sessions import previous_session

PRICES = ("open", "high", "low", "close")
DAY_FIELDS = (*PRICES, "volume", "vwap", "factor", "change")
MINUTE_FIELDS = (*PRICES, "volume", "factor", "change")
ENRICHED_COLUMNS = ("ticker", "date", *PRICES, "raw_volume", "price_factor", "vwap")  # what `day_fields` reads


def day_fields(
    rows: pl.DataFrame, days: Sequence[dt.date], features: Sequence[str] = (), calendar: Calendar = Calendar.XNYS
) -> pl.DataFrame:
    """(ticker, date, slot, fields...) of `days` (consecutive sessions of `calendar`, `slot` counted from the
    first) from enriched day rows (ticker, date, adjusted prices, `raw_volume`, `price_factor`, `vwap`, features)
    of those sessions and of the session before them, for `change`."""
    missing = sorted({*features} - set(rows.columns))
    if missing:
        raise ValueError(f"no enriched feature {', '.join(missing)}: the enriched rows have {', '.join(rows.columns)}")
    grid = pl.DataFrame({"date": list(days)}, schema={"date": pl.Date}).with_row_index("slot")
    last_before = previous_session(calendar, days[0]) if days else None
    before = [last_before] if last_before else []
    previous = (
        rows.select("ticker", "date", pl.col("close").alias("previous_close"))
        .join(
            pl.DataFrame({"date": before + list(days)}, schema={"date": pl.Date}).with_row_index(
                "slot", offset=1 - len(before)
            ),
            on="date",
        )  # the slot after each row's session, counted from `days[0]`
        .drop("date")
    )
    feature_columns = [pl.col(name).cast(pl.Float64).alias(name.lower()) for name in features]
    return (
        rows.join(grid, on="date")
        .join(previous, on=["ticker", "slot"], how="left")
        .select(
            "ticker",
            "date",
            pl.col("slot").cast(pl.Int64),
            *PRICES,
            (pl.col("raw_volume") / pl.col("price_factor")).alias("volume"),
            "vwap",
            pl.col("price_factor").alias("factor"),
            (pl.col("close") / pl.col("previous_close") - 1).alias("change"),
            *feature_columns,
        )
        .sort("ticker", "slot")
    )


def minute_fields(
    minutes: pl.LazyFrame, session: dt.date, factors: pl.DataFrame, open_: dt.datetime, close: dt.datetime
) -> pl.DataFrame:
    """(ticker, slot, fields...) of one session's regular-hours minute bars (`slot`: minutes since the open;
    bars outside [open_, close) are not in Qlib's calendar), adjusted with `factors` (the factor table)."""
    bars = (
        minutes.filter(pl.col("window_start").is_between(open_, close, closed="left"))
        .select(
            "ticker",
            ((pl.col("window_start") - pl.lit(open_)).dt.total_minutes()).cast(pl.Int64).alias("slot"),
            *PRICES,
            "volume",
            date=pl.lit(session, pl.Date),
        )
        .collect()
    )
    adjusted = adjust(bars.with_columns(raw_volume=pl.col("volume")), factors)
    return adjusted.sort("ticker", "slot").select(
        "ticker",
        "slot",
        *PRICES,
        (pl.col("raw_volume") / pl.col("price_factor")).alias("volume"),
        pl.col("price_factor").alias("factor"),
        pl.when(pl.col("slot").shift(1).over("ticker") == pl.col("slot") - 1)
        .then(pl.col("close") / pl.col("close").shift(1).over("ticker") - 1)
        .alias("change"),
    )
