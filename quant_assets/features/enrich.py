"""The enriched day table of a run of sessions, computed a chunk at a time: each chunk reads its sessions and the
`lookback` sessions before them from the lake once, so memory is bounded by the chunk, not by the range, and a
window is right on the first session of a backfill as in a one-day run.
"""

from __future__ import annotations

import bisect
import datetime as dt
import os
from collections.abc import Sequence

import polars as pl

from quant_assets.datasets import Calendar
from quant_assets.errors import SessionError
from quant_assets.features.daily import FeatureSet, daily_features, session_grid, session_vwap
from quant_assets.lake import partition_path, read_partitions, scan
from quant_assets.reference.factors import adjust
from quant_assets.sessions import regular_hours, sessions_around

VWAP_FILE = "vwap.parquet"
CHUNK = 63  # sessions computed together: a quarter, so the lookback read again per chunk stays a small share
BAR_COLUMNS = ("ticker", "date", "open", "high", "low", "close", "volume")


def chunk_of(run_sessions: Sequence[dt.date], session: dt.date) -> list[dt.date]:
    """The chunk of `run_sessions` (sorted) that holds `session`."""
    position = list(run_sessions).index(session)
    start = position - position % CHUNK
    return list(run_sessions[start : start + CHUNK])


def followers(
    calendar: Calendar, run_sessions: Sequence[dt.date], held: Sequence[dt.date], lookback: int
) -> list[dt.date]:
    """The sessions of `held` (already in the enriched zone) outside the run whose lookback window holds a session
    of the run: their rolling features (returns, averages, ...) read those sessions' bars, so when the run builds a
    session again (its lake partition was re-materialised), they are computed again too."""
    in_run, held_set = set(run_sessions), set(held)
    if not in_run or not lookback:
        return []
    span = sessions_around(calendar, min(in_run), max(in_run), after=lookback)
    positions = [i for i, s in enumerate(span) if s in in_run]
    found = []
    for i, session in enumerate(span):
        before = bisect.bisect_left(positions, i) - 1  # the nearest run session before this one
        if session in held_set and session not in in_run and before >= 0 and i - positions[before] <= lookback:
            found.append(session)
    return found


def window_sessions(calendar: Calendar, chunk: Sequence[dt.date], lookback: int) -> list[dt.date]:
    """The calendar's sessions from `lookback` sessions before the chunk's first to its last."""
    return sessions_around(calendar, chunk[0], chunk[-1], before=lookback)


def enrich_daily(
    lake_root: str | os.PathLike,
    daily_dataset: str,
    minute_dataset: str | None,
    calendar: Calendar,
    chunk: Sequence[dt.date],
    factors: pl.DataFrame,
    features: FeatureSet,
    factors_version: dt.date | None = None,
    enriched_root: str | os.PathLike | None = None,
) -> dict[dt.date, pl.DataFrame | SessionError]:
    """The enriched rows of each session of `chunk` that the lake holds: the adjusted bars, their price and volume
    factors (and `factors_version`, the factors' as-of date), the features, and (where the lake has the session's
    minute bars) the session's VWAPs, adjusted: from `enriched_stocks_minute`'s `vwap.parquet` under
    `enriched_root` where it was built, else from the lake's minute bars.

    A session of the chunk whose day or minute partition cannot be read gets a `SessionError` naming the file
    instead of rows; the other sessions are built (their windows without the unreadable session's bars)."""
    window = window_sessions(calendar, chunk, features.lookback)
    raw, unreadable = read_partitions(lake_root, daily_dataset, window, [c for c in BAR_COLUMNS if c != "date"])
    out: dict[dt.date, pl.DataFrame | SessionError] = {s: e for s, e in unreadable.items() if s in chunk}
    if not raw.height:
        return out
    raw = raw.select(*BAR_COLUMNS)
    bars = adjust(raw.with_columns(raw_close=pl.col("close"), raw_volume=pl.col("volume")), factors)
    table = daily_features(session_grid(bars, window), features).filter(
        pl.col("close").is_not_null() & pl.col("date").is_in(list(chunk))
    )
    for (session,), frame in table.partition_by("date", as_dict=True, maintain_order=True).items():
        frame = frame.drop("session_index", "date")  # the date is the partition's, as in the lake
        if minute_dataset and partition_path(lake_root, minute_dataset, session).exists():
            try:
                vwaps = _vwaps(lake_root, minute_dataset, session, enriched_root)
            except (OSError, pl.exceptions.PolarsError) as error:
                path = partition_path(lake_root, minute_dataset, session)
                out[session] = SessionError(
                    minute_dataset, session, str(path), f"cannot be read for the VWAPs ({error})"
                )
                continue
            frame = frame.join(vwaps, on="ticker", how="left")
            frame = frame.with_columns(pl.col("vwap", "vwap_extended") * pl.col("price_factor"))
        else:
            frame = frame.with_columns(vwap=pl.lit(None, pl.Float64), vwap_extended=pl.lit(None, pl.Float64))
        out[session] = frame.with_columns(factors_version=pl.lit(factors_version, pl.Date)).sort("ticker")
    return out


def vwap_path(enriched_root: str | os.PathLike, minute_dataset: str, session: dt.date):
    """Where `enriched_stocks_minute` keeps the session's VWAPs (computed from the minutes it has in hand)."""
    return partition_path(enriched_root, minute_dataset, session).with_name(VWAP_FILE)


def _vwaps(lake_root, minute_dataset: str, session: dt.date, enriched_root=None) -> pl.DataFrame:
    """The session's VWAPs, the regular session bounded by the exchange's open and close (early closes too)."""
    if enriched_root is not None and (built := vwap_path(enriched_root, minute_dataset, session)).exists():
        return pl.read_parquet(built)
    opens, closes = regular_hours(session)  # stocks: the XNYS session
    minutes = scan(lake_root, minute_dataset, [session]).select(
        "ticker", "high", "low", "close", "volume", "window_start"
    )
    return session_vwap(minutes, opens, closes).collect()
