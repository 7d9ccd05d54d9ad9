"""Corporate actions that arrive after the features were computed: only the affected tickers are rewritten.

The enriched day table is stored per session, each row stamped with the `factors_version` it was adjusted with.
When `adjustment_factors` reports changed tickers, `restate` recomputes the whole enriched history of just those
tickers with the new factors and stores it per ticker (`_restated/ticker=<T>/as_of=<version>.parquet`); no session
file is touched. `read_enriched_daily` is the read side: a restated row replaces the session's row when it was
adjusted with newer factors than that row; a later run of the enrich job over a session (which applies the newest
factors) makes the restatement moot for that session.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path
from urllib.parse import quote, unquote

import polars as pl

from quant_assets.datasets import Calendar
from quant_assets.features.daily import FeatureSet, daily_features, session_grid
from quant_assets.features.enrich import BAR_COLUMNS, window_sessions
from quant_assets.lake import replace_bytes, scan, sessions_in
from quant_assets.names import child
from quant_assets.reference.factors import adjust
from quant_assets.reference.versions import latest_version, version_path, write_version

RESTATED = "_restated"
FEATURE_SET = "_feature_set.json"  # the feature set the enriched rows were computed with
BATCH = 500  # tickers restated together


def restated_dir(enriched_root: str | os.PathLike, dataset: str, ticker: str) -> Path:
    """The folder of `ticker`'s restated versions (`_restated/ticker=<T>/`), the ticker URL-quoted."""
    return child(Path(enriched_root) / dataset / RESTATED, f"ticker={quote(ticker, safe='')}")


def restate(
    lake_root: str | os.PathLike,
    enriched_root: str | os.PathLike,
    dataset: str,
    calendar: Calendar,
    tickers: list[str],
    factors: pl.DataFrame,
    factors_version: dt.date,
    features: FeatureSet,
) -> dict[str, int]:
    """Recompute the enriched rows of `tickers` over every session the enriched zone holds, with `factors`
    (version `factors_version`) and the feature set of the enriched rows, and store them per ticker, `BATCH`
    tickers at a time (memory grows with the batch and the history, not with the number of tickers). Returns rows
    written per ticker."""
    written: dict[str, int] = {}
    for first in range(0, len(tickers), BATCH):
        batch = tickers[first : first + BATCH]
        written |= _restate_batch(
            lake_root, enriched_root, dataset, calendar, batch, factors, factors_version, features
        )
    return written


def _restate_batch(lake_root, enriched_root, dataset, calendar, tickers, factors, factors_version, features):
    held = sessions_in(enriched_root, dataset)
    if not held or not tickers:
        return {}
    window = window_sessions(calendar, [held[0], held[-1]], features.lookback)
    wanted = pl.col("ticker").is_in(tickers)
    raw = scan(lake_root, dataset, window).filter(wanted).select(*BAR_COLUMNS).collect()
    bars = adjust(raw.with_columns(raw_close=pl.col("close"), raw_volume=pl.col("volume")), factors)
    table = daily_features(session_grid(bars, window), features).filter(
        pl.col("close").is_not_null() & pl.col("date").is_in(held)
    )
    # The VWAPs come from minute bars: take them from the session files, back to raw, and adjust them anew.
    vwaps = (
        scan(enriched_root, dataset, held)
        .filter(wanted)
        .select(
            "ticker",
            "date",
            *((pl.col(c) / pl.col("price_factor")).alias(f"_raw_{c}") for c in ("vwap", "vwap_extended")),
        )
        .collect()
    )
    table = table.join(vwaps, on=["ticker", "date"], how="left").with_columns(
        *((pl.col(f"_raw_{c}") * pl.col("price_factor")).alias(c) for c in ("vwap", "vwap_extended")),
        factors_version=pl.lit(factors_version, pl.Date),
    )
    table = table.drop("session_index", "_raw_vwap", "_raw_vwap_extended")
    written = {}
    for (ticker,), frame in table.partition_by("ticker", as_dict=True).items():
        write_version(restated_dir(enriched_root, dataset, ticker), frame.sort("date"), factors_version)
        written[ticker] = frame.height
    return written


def read_enriched_daily(enriched_root: str | os.PathLike, dataset: str, sessions=None) -> pl.LazyFrame:
    """The enriched day table (all sessions, or `sessions`), with each ticker's restated rows where they were
    adjusted with newer factors than the session's own rows."""
    base = scan(enriched_root, dataset, sessions)
    folder = Path(enriched_root) / dataset / RESTATED
    paths = []
    for ticker_folder in sorted(folder.glob("ticker=*")) if folder.is_dir() else []:
        version = latest_version(ticker_folder)
        if version is not None:
            paths.append(version_path(ticker_folder, version))
    if not paths:
        return base
    columns = base.collect_schema().names()
    restated = pl.scan_parquet(paths).select(columns)
    if sessions is not None:
        restated = restated.filter(pl.col("date").is_in(list(sessions)))
    newer = restated.join(
        base.select("ticker", "date", pl.col("factors_version").alias("_base_version")), on=["ticker", "date"]
    ).filter(pl.col("factors_version") > pl.col("_base_version").fill_null(dt.date.min))
    kept = base.join(newer.select("ticker", "date"), on=["ticker", "date"], how="anti")
    return pl.concat([kept, newer.drop("_base_version")]).sort("date", "ticker")


def restated_tickers(enriched_root: str | os.PathLike, dataset: str) -> list[str]:
    """The tickers that have restated rows, sorted."""
    folder = Path(enriched_root) / dataset / RESTATED
    return sorted(unquote(p.name[7:]) for p in folder.glob("ticker=*")) if folder.is_dir() else []


def write_feature_set(enriched_root: str | os.PathLike, dataset: str, features: FeatureSet) -> None:
    """Record the feature set of the enriched rows, so that a restatement computes the same columns."""
    replace_bytes(
        Path(enriched_root) / dataset / FEATURE_SET, json.dumps(dataclasses.asdict(features), indent=1).encode()
    )


def read_feature_set(enriched_root: str | os.PathLike, dataset: str) -> FeatureSet:
    """The feature set the enriched rows were computed with (the default set if none was recorded)."""
    path = Path(enriched_root) / dataset / FEATURE_SET
    if not path.exists():
        return FeatureSet()
    return FeatureSet.from_mapping(json.loads(path.read_text()))
