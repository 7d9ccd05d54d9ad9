"""The lake on disk: one Parquet file per dataset and session, written atomically.

    <root>/<dataset>/date=YYYY-MM-DD/part-0.parquet

The `date=` folders are Hive-style, so `polars.scan_parquet(root / dataset, hive_partitioning=True)` and DuckDB's
`read_parquet(..., hive_partitioning = true)` see the session as a `date` column.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import polars as pl


PART_NAME = "part-0.parquet"
# zstd at level 1: about a third smaller than snappy for a few per cent more write time.
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1


def partition_dir(root: str | os.PathLike, dataset: str, session: dt.date) -> Path:
    return Path(root) / dataset / f"date={session.isoformat()}"


def partition_path(root: str | os.PathLike, dataset: str, session: dt.date) -> Path:
    return partition_dir(root, dataset, session) / PART_NAME


def stage_parquet(frame: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write `frame` to a temporary file beside `path` and return it; `commit` renames it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        frame.write_parquet(tmp, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL, metadata=metadata or None)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def discard(tmp: Path) -> None:
    """Delete a staged file that will not be committed, and its partition folder if that is now empty."""
    tmp.unlink(missing_ok=True)
    try:
        tmp.parent.rmdir()
    except OSError:  # not empty: an earlier partition, or another writer's file
        pass


def commit(tmp: Path, path: Path) -> Path:
    """Rename a staged file over `path`: a reader sees the old file or the new one, never half of one."""
    os.replace(tmp, path)
    return path


def atomic_write_parquet(frame: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write `frame` to `path` through a temporary file; a crash leaves at most a `.tmp-` file, never a partial
    `path`."""
    return commit(stage_parquet(frame, path, metadata), path)


def stage_partition(
    frame: pl.DataFrame, root: str | os.PathLike, dataset: str, session: dt.date, provenance: dict[str, str]
) -> Path:
    """Stage the lake partition of `dataset` for `session`; `provenance` goes into the file's key-value metadata,
    so a file on its own still says where it came from. `commit_partition` puts it in place."""
    metadata = {"quant_assets": json.dumps({"dataset": dataset, "session": session.isoformat(), **provenance})}
    return stage_parquet(frame, partition_path(root, dataset, session), metadata)


STALE_TMP_SECONDS = 24 * 3600  # a `.tmp-` file this old is from a killed run, not a concurrent write


def commit_partition(staged: Path, root: str | os.PathLike, dataset: str, session: dt.date) -> Path:
    """Put a staged partition in place and remove what else is in its folder: files of an older layout, and
    temporary files that killed runs left behind."""
    path = commit(staged, partition_path(root, dataset, session))
    now = time.time()
    for other in path.parent.iterdir():
        if other.name == PART_NAME:
            continue
        if not other.name.startswith(".") or now - other.stat().st_mtime > STALE_TMP_SECONDS:
            other.unlink(missing_ok=True)
    return path


def write_partition(
    frame: pl.DataFrame, root: str | os.PathLike, dataset: str, session: dt.date, provenance: dict[str, str]
) -> Path:
    """Replace the lake partition of `dataset` for `session` with `frame`, atomically."""
    return commit_partition(stage_partition(frame, root, dataset, session, provenance), root, dataset, session)


def read_provenance(path: str | os.PathLike) -> dict[str, str]:
    """The provenance written into a lake file by `write_partition`."""
    return json.loads(pl.read_parquet_metadata(path).get("quant_assets", "{}"))


def ticker_filter(patterns: Sequence[str]) -> pl.Expr | None:
    """Rows whose ticker equals one of `patterns` or matches one with `*`/`?` globs (case-sensitive)."""
    if not patterns:
        return None
    exact = [p for p in patterns if "*" not in p and "?" not in p]
    condition = pl.col("ticker").is_in(exact)
    for pattern in (p for p in patterns if p not in exact):
        regex = "".join({"*": ".*", "?": "."}.get(ch, re.escape(ch)) for ch in pattern)
        condition = condition | pl.col("ticker").str.contains(f"^{regex}$")
    return condition

