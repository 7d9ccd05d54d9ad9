"""The lake on disk: one Parquet file per dataset and session, written atomically, and its read side.

    <root>/<dataset>/date=YYYY-MM-DD/part-0.parquet

The `date=` folders are Hive-style, so `polars.scan_parquet(root / dataset, hive_partitioning=True)` and DuckDB's
`read_parquet(..., hive_partitioning = true)` see the session as a `date` column. Later layers read the lake
through `scan`, never through paths of their own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from polars.io.plugins import register_io_source

from quant_assets.errors import SessionError, writing

PART_NAME = "part-0.parquet"
PROVENANCE_KEY = "quant_assets"
# zstd at level 1: about a third smaller than snappy for a few per cent more write time.
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1
STALE_TMP_SECONDS = 24 * 3600  # a `.tmp-` file this old is from a killed run, not a concurrent write

# Parquet encoding of `PartitionWriter` runs here, in parallel with the reading and checking of the next batch
# (pyarrow releases the GIL).
_WRITERS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-writer")


def partition_dir(root: str | os.PathLike, dataset: str, session: dt.date) -> Path:
    """The folder of `dataset`'s partition of `session` under a zone: `root/<dataset>/date=YYYY-MM-DD`."""
    return Path(root) / dataset / f"date={session.isoformat()}"


def partition_path(root: str | os.PathLike, dataset: str, session: dt.date) -> Path:
    """The file of `dataset`'s partition of `session`: `partition_dir(...)/part-0.parquet`."""
    return partition_dir(root, dataset, session) / PART_NAME


def temporary_path(path: Path) -> Path:
    """A unique hidden name beside `path`, for writing before the rename."""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")


class PartitionWriter:
    """Writes one Parquet file batch by batch (a row group each) to a temporary file beside `path`, in a
    background thread; `commit` renames it into place, `discard` removes it. A crash leaves at most a `.tmp-`
    file, never a partial `path`. A folder that cannot take the file (read-only, full) raises DataFolderError."""

    def __init__(self, path: Path, schema: dict[str, pl.DataType]):
        self.path = path
        self.schema = schema
        self.tmp: Path | None = None
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._pending: Future | None = None

    def write(self, frame: pl.DataFrame) -> None:
        """Append `frame` as a row group; returns once the previous batch is written (at most one in flight)."""
        if frame.height == 0:
            return
        table = frame.to_arrow()
        with writing(self.path):
            self._wait()
            if self._writer is None:
                self._open(table.schema)
        self.rows += frame.height
        self._pending = _WRITERS.submit(self._writer.write_table, table)

    def _open(self, schema: pa.Schema) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temporary_path(self.path)
        self._writer = pq.ParquetWriter(self.tmp, schema, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def commit(self, metadata: dict[str, str] | None = None) -> Path:
        """Finish the file (an empty table if nothing was written), then rename it over `path`."""
        with writing(self.path):
            self._wait()
            if self._writer is None:
                self._open(pl.DataFrame(schema=self.schema).to_arrow().schema)
            if metadata:
                self._writer.add_key_value_metadata(metadata)
            self._writer.close()
            pa.default_memory_pool().release_unused()  # arrow's pool would otherwise keep its peak for the process
            os.replace(self.tmp, self.path)
        remove_leftovers(self.path)
        return self.path

    def discard(self) -> None:
        """Drop what was written; the partition (if any) stays as it was, and a folder made for it goes."""
        try:
            self._wait()
        except Exception:
            pass  # the write failed: there is nothing to keep
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:
                pass
            pa.default_memory_pool().release_unused()
        if self.tmp is not None:  # also when opening the writer failed after it made the file
            with contextlib.suppress(OSError):  # the error that brought us here is the one to report
                self.tmp.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:  # not empty (an earlier partition, another writer's file) or never made
            pass


def sink_partition(
    frames: Iterator[pl.DataFrame],
    path: Path,
    schema: dict[str, pl.DataType],
    metadata: Callable[[], dict[str, str]] | None = None,
) -> Path:
    """Stream `frames` into the Parquet file `path` through a temporary file, then rename it into place.

    polars' streaming engine pulls the frames and encodes row groups on its own threads while the next frame is
    produced, so reading and writing overlap. `metadata()` is asked for the file's key-value metadata when the
    last frame is in (counts known only then). On any error the temporary file is removed and `path` is left as
    it was; a folder that cannot take the file (read-only, full) raises DataFolderError.
    """
    tmp = temporary_path(path)

    def source(with_columns, predicate, n_rows, batch_size):
        yield from frames

    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            register_io_source(source, schema=schema).sink_parquet(
                tmp,
                compression=COMPRESSION,
                compression_level=COMPRESSION_LEVEL,
                metadata=(lambda context: metadata()) if metadata else None,
            )
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):  # the error that brought us here is the one to report
                tmp.unlink(missing_ok=True)
            try:
                path.parent.rmdir()
            except OSError:
                pass
            raise
    remove_leftovers(path)
    return path


def remove_leftovers(path: Path) -> None:
    """Remove what else is in a committed file's folder: files of an older layout, and temporary files that killed
    runs left behind."""
    for other in path.parent.iterdir():
        if other.name != path.name and not other.name.startswith("."):
            other.unlink(missing_ok=True)
    sweep_temporaries(path.parent, path.name)


def sweep_temporaries(folder: Path, name: str = "", older_than: float = STALE_TMP_SECONDS) -> int:
    """Remove temporary files (`.<name>.tmp-*`) that killed runs left in `folder`. Without the file's lock, one
    younger than `older_than` may be a concurrent writer's and is kept; with it (`older_than=0`), every one is a
    dead run's. Returns how many were removed."""
    if not folder.is_dir():
        return 0
    removed, now = 0, time.time()
    for tmp in folder.glob(f".{name}*.tmp-*"):
        try:
            if now - tmp.stat().st_mtime >= older_than:
                tmp.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def remove_partition(root: str | os.PathLike, dataset: str, session: dt.date) -> None:
    """Delete a partition's file and its folder (what else is in the folder is left alone)."""
    path = partition_path(root, dataset, session)
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass


def replace_file(path: Path, write: Callable[[Path], object]) -> Path:
    """Replace `path` atomically with what `write(temporary)` writes: a temporary file beside it, then a rename, so
    a reader never sees half a file and a failure leaves the old one. A folder that cannot take the file
    (read-only, full) raises DataFolderError."""
    temporary = temporary_path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            write(temporary)
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(OSError):  # an error of the write is the one to report
                temporary.unlink(missing_ok=True)
    return path


def replace_bytes(path: Path, data: bytes) -> Path:
    """Replace `path` with `data`, atomically."""
    return replace_file(path, lambda temporary: temporary.write_bytes(data))


def replace_parquet(frame: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Replace `path` with `frame` (a frame in memory; `PartitionWriter` streams batches), atomically; the files
    beside it stay."""
    return replace_file(
        path,
        lambda temporary: frame.write_parquet(
            temporary, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL, metadata=metadata
        ),
    )


def write_parquet(frame: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Replace a partition's file `path` with `frame`, atomically, and remove what else is in its folder."""
    replace_parquet(frame, path, metadata)
    remove_leftovers(path)
    return path


def provenance_metadata(dataset: str, session: dt.date, provenance: dict[str, str]) -> dict[str, str]:
    """The key-value metadata of a lake file: where it came from, so that a file on its own still says so."""
    return {PROVENANCE_KEY: json.dumps({"dataset": dataset, "session": session.isoformat(), **provenance})}


def read_provenance(path: str | os.PathLike) -> dict[str, str]:
    """The provenance written into a lake file by the ingest (`provenance_metadata`)."""
    return json.loads(pl.read_parquet_metadata(path).get(PROVENANCE_KEY, "{}"))


def partition_provenance(root: str | os.PathLike, dataset: str, session: dt.date) -> dict[str, str] | None:
    """The provenance of the lake partition of `dataset` on `session`, or None if there is none."""
    path = partition_path(root, dataset, session)
    return read_provenance(path) if path.exists() else None


def partition_counts(root: str | os.PathLike, dataset: str, session: dt.date) -> tuple[int, int] | None:
    """(rows, tickers) of a lake partition, from its Parquet metadata; None if there is none."""
    info = partition_provenance(root, dataset, session)
    if not info or "rows" not in info:
        return None
    return int(info["rows"]), int(info["tickers"])


def sessions_in(root: str | os.PathLike, dataset: str) -> list[dt.date]:
    """The sessions the lake holds a partition of `dataset` for, in order."""
    folder = Path(root) / dataset
    found = [dt.date.fromisoformat(p.parent.name[5:]) for p in folder.glob(f"date=*/{PART_NAME}")]
    return sorted(found)


def scan(root: str | os.PathLike, dataset: str, sessions: Iterable[dt.date] | None = None) -> pl.LazyFrame:
    """The lake partitions of `dataset` (all, or those of `sessions` that exist) as one LazyFrame with a `date`
    column: the one read side of the lake for every later layer."""
    wanted = sessions_in(root, dataset) if sessions is None else sessions
    paths = [p for s in wanted if (p := partition_path(root, dataset, s)).exists()]
    if not paths:
        return pl.LazyFrame(schema={"date": pl.Date})
    return pl.scan_parquet(paths, hive_partitioning=True, hive_schema={"date": pl.Date})


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


def read_partitions(
    root: str | os.PathLike, dataset: str, sessions: Iterable[dt.date], columns: Sequence[str] | None = None
) -> tuple[pl.DataFrame, dict[dt.date, SessionError]]:
    """The partitions of `dataset` for `sessions` (those that exist) as one frame with a `date` column, each file
    read on its own, and for each file that cannot be read (truncated, not Parquet, without the columns) a
    `SessionError` naming the file: one corrupt partition fails its own session, never the sessions read with it."""
    frames, errors = [], {}
    for session in sessions:
        path = partition_path(root, dataset, session)
        if not path.exists():
            continue
        try:
            frame = pl.read_parquet(path, columns=list(columns) if columns is not None else None)
        except Exception as error:  # polars and arrow raise several kinds for a damaged file
            errors[session] = unreadable(dataset, session, path, error)
            continue
        frames.append(frame.with_columns(date=pl.lit(session, pl.Date)))
    if not frames:
        return pl.DataFrame(schema={"date": pl.Date}), errors
    return pl.concat(frames, how="vertical_relaxed"), errors


def unreadable(dataset: str, session: dt.date, path: Path, error: Exception) -> SessionError:
    """The error of a session whose partition `path` could not be read (`error`)."""
    problem = f"the partition cannot be read ({type(error).__name__}: {str(error)[:200]}); materialise it again"
    return SessionError(dataset, session, str(path), problem)
