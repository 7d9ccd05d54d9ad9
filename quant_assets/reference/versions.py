"""Versioned reference tables under `data/reference/<table>/as_of=<YYYY-MM-DD>.parquet`.

A refresh writes a new version only when the content changed; each version keeps the date it was first seen, so
that a question asked "as of" a past day gets the answer that was known then (point in time). Re-running a refresh
on the same day replaces that day's version (idempotent).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import polars as pl

from quant_assets.lake import replace_parquet


def table_dir(root: str | os.PathLike, table: str) -> Path:
    return Path(root) / table


def versions(folder: Path) -> list[dt.date]:
    """The as-of dates of the versions in `folder`, oldest first."""
    return sorted(dt.date.fromisoformat(p.stem[6:]) for p in folder.glob("as_of=*.parquet"))


def version_path(folder: Path, as_of: dt.date) -> Path:
    return folder / f"as_of={as_of.isoformat()}.parquet"


def latest_version(folder: Path, as_of: dt.date | None = None) -> dt.date | None:
    """The newest version in `folder` known on `as_of` (any, if None)."""
    known = [v for v in versions(folder) if as_of is None or v <= as_of]
    return known[-1] if known else None


def read_version(folder: Path, as_of: dt.date | None = None) -> pl.DataFrame | None:
    """The table as known on `as_of` (the newest, if None); None when there was none yet."""
    version = latest_version(folder, as_of)
    return None if version is None else pl.read_parquet(version_path(folder, version))


def same_rows(a: pl.DataFrame | None, b: pl.DataFrame) -> bool:
    """Whether two versions hold the same rows (order aside)."""
    if a is None or a.schema != b.schema or a.height != b.height:
        return False
    return a.sort(a.columns, nulls_last=True).equals(b.sort(b.columns, nulls_last=True))


def write_version(folder: Path, frame: pl.DataFrame, as_of: dt.date) -> tuple[dt.date, bool]:
    """Store `frame` as the version of `as_of` unless the version known before it holds the same rows; return the
    version that now holds them and whether it was written."""
    before = latest_version(folder, as_of - dt.timedelta(days=1))
    current = version_path(folder, as_of)
    if current.exists() and same_rows(pl.read_parquet(current), frame):  # the same day's refresh, run again
        return as_of, False
    if before is not None and same_rows(pl.read_parquet(version_path(folder, before)), frame):
        current.unlink(missing_ok=True)  # an earlier same-day version that differed is superseded
        return before, False
    replace_parquet(frame, current)  # the other versions beside it stay
    return as_of, True
