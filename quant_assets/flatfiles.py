"""Vendor flat files: where a session's file lives, and how a gzip CSV becomes a typed frame.

Columns are resolved by header name, never by position. Tickers keep their case and null-like names (`NA`,
`NULL`) stay strings. Every error names the dataset, the session, the object key and, where there is one, the row.
"""

from __future__ import annotations

import csv
import ctypes
import datetime as dt
import io
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue

import polars as pl
from isal import isal_zlib

from quant_assets.datasets import Dataset, Kind
from quant_assets.errors import SessionError
from quant_assets.settings import DEFAULT_BATCH_MB

_KEY_DATE = re.compile(r"/(\d{4})/(\d{2})/(\d{4}-\d{2}-\d{2})\.csv\.gz$")
_OCC = r"^O:([A-Z0-9]+?)(\d{6})([CP])(\d{8})$"


class FlatFileError(SessionError):
    """A vendor file that cannot be landed or read as it is (a file-level defect, or a source failure)."""


class CorruptFile(FlatFileError):
    """The bytes are not a whole gzip stream (empty, not gzip, truncated, bad CRC): a landed copy like this is
    fetched again on the next landing."""


class FlatFileMissing(FlatFileError):
    """The calendar expects a file for the session but the source has none."""


class FlatFilePermissionError(FlatFileError):
    """The source refused access (HTTP 403): the plan does not cover this dataset or date. Not retried."""


@dataclass(frozen=True)
class ObjectInfo:
    """What a source says about one object: enough to tell whether a landed copy is still current."""

    key: str
    etag: str
    size: int


class SourceError(Exception):
    """A source could not serve `key`."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


class ObjectMissing(SourceError):
    """The source has no object at `key`."""


class AccessDenied(SourceError):
    """The source answered 403 for `key`: the plan does not include it. Retrying will not help."""


def vendor_key(dataset: Dataset, session: dt.date) -> str:
    """The object key of `dataset`'s file for `session`: `<prefix>/<dataset>/<YYYY>/<MM>/<YYYY-MM-DD>.csv.gz`."""
    return f"{dataset.key_prefix}{session:%Y}/{session:%m}/{session.isoformat()}.csv.gz"


def session_from_key(key: str) -> dt.date:
    """The session date a key stands for; the file's own timestamps are checked against it, not trusted."""
    match = _KEY_DATE.search(key)
    if not match or match.group(3)[:4] != match.group(1) or match.group(3)[5:7] != match.group(2):
        raise ValueError(f"{key!r} is not a vendor flat-file key (<prefix>/<dataset>/YYYY/MM/YYYY-MM-DD.csv.gz)")
    return dt.date.fromisoformat(match.group(3))


def files_by_session(dataset: Dataset, listing: Iterable[ObjectInfo]) -> dict[dt.date, ObjectInfo]:
    """The daily files of `dataset` in a source's listing, by session: only keys that are exactly the dataset's key
    for their date (a README, a partial upload or another dataset's file is left out: nothing else is trusted)."""
    files = {}
    for info in listing:
        try:
            session = session_from_key(info.key)
        except ValueError:
            continue
        if info.key == vendor_key(dataset, session):
            files[session] = info
    return files


def _large_blocks_to_the_os(threshold: int = 2**20) -> None:
    """Make glibc serve every allocation of `threshold` bytes or more (text blocks, decoded columns) with its own
    mmap, returned to the system when freed. By default glibc raises that threshold as large blocks are freed, after
    which they come from the heap and fragment it: a run over many sessions then creeps up in memory although each
    session frees what it used. No effect on other C libraries."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, threshold)  # M_MMAP_THRESHOLD; fixing it also stops the adjustment
    except (OSError, AttributeError):
        pass


_large_blocks_to_the_os()

# Compressed bytes read at a time, and the most text one inflate call may produce: a file that inflates a
# thousandfold (a gzip bomb) still only grows memory by a block at a time.
READ_CHUNK = 256 * 2**10
INFLATE_CHUNK = 8 * 2**20
DEFAULT_BATCH_BYTES = DEFAULT_BATCH_MB * 2**20  # inflated text per batch: ~400k rows of minute bars


@dataclass(frozen=True)
class ReadLimits:
    """Caps on what one file may inflate to; None is no cap. A file beyond either fails as a whole (a gzip bomb,
    a runaway file), leaving no partial partition."""

    max_inflated_bytes: int | None = None
    max_rows: int | None = None


# Per frequency: several times the largest real file (stock minute aggregates: ~2.2M rows, ~170 MB of text;
# option quotes: 100+ GB of gzip). The duplicate rule of aggregates keeps 16 bytes per row, so their row cap
# also bounds its memory (320 MB at 20M rows).
DEFAULT_LIMITS = {
    "day": ReadLimits(max_inflated_bytes=2 * 2**30, max_rows=10_000_000),
    "minute": ReadLimits(max_inflated_bytes=4 * 2**30, max_rows=20_000_000),
    "tick": ReadLimits(max_inflated_bytes=2**40, max_rows=20_000_000_000),
}


def limits_for(dataset: Dataset, max_rows: int = 0, max_inflated_gb: float = 0) -> ReadLimits:
    """The caps of `dataset`'s files: the configured ones where given (non-zero), else its frequency's defaults."""
    default = DEFAULT_LIMITS[dataset.frequency]
    return ReadLimits(
        max_inflated_bytes=int(max_inflated_gb * 2**30) if max_inflated_gb else default.max_inflated_bytes,
        max_rows=max_rows or default.max_rows,
    )


@dataclass(frozen=True)
class Batch:
    """Consecutive rows of a vendor file, typed as in the lake.

    A value that is empty, missing (a short row) or does not parse is null in `frame`, and `defects` says, for
    that row, which column and what text (None when the batch has no such row).
    """

    first_row: int  # vendor row number of the frame's first row; 1 is the row after the header
    frame: pl.DataFrame
    defects: pl.Series | None = None

    @property
    def vendor_rows(self) -> pl.Series:
        return pl.int_range(self.first_row, self.first_row + self.frame.height, dtype=pl.UInt32, eager=True)


def _inflate(path: Path, dataset: Dataset, session: dt.date, key: str) -> Iterator[bytes]:
    """The file's text, inflated a block at a time (all gzip members); the CRC of each member is checked."""

    def error(problem: str) -> CorruptFile:
        return CorruptFile(dataset.name, session, key, problem)

    with open(path, "rb") as stream:
        pending = stream.read(READ_CHUNK)
        if not pending:
            raise error("the file is empty (0 bytes)")
        inflater = isal_zlib.decompressobj(31)
        while True:
            try:
                text = inflater.decompress(pending, INFLATE_CHUNK)
            except isal_zlib.error as exc:
                raise error(f"not a valid gzip file ({exc})") from None
            if text:
                yield text
            if inflater.eof:  # a member ended: another may follow (concatenated gzip members)
                pending = inflater.unused_data or stream.read(READ_CHUNK)
                if not pending:
                    return
                inflater = isal_zlib.decompressobj(31)
                continue
            pending = inflater.unconsumed_tail or stream.read(READ_CHUNK)
            if not pending:
                raise error("the gzip stream is truncated (download cut short?)")


def prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """`items`, produced in a background thread up to `depth` ahead; its exceptions are raised here."""
    done = object()
    queue: Queue = Queue(depth)
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                if stop.is_set():
                    return
                queue.put((item, None))
            queue.put((done, None))
        except BaseException as exc:  # handed to the consumer
            queue.put((done, exc))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = queue.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue, then let it finish
            try:
                queue.get(timeout=0.05)
            except Empty:
                pass


def text_blocks(
    path: str | Path,
    dataset: Dataset,
    session: dt.date,
    key: str,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    limits: ReadLimits = ReadLimits(),
) -> Iterator[bytes]:
    """The file's text in blocks of about `batch_bytes`, each ending at a line end; the first holds the header."""
    pieces: list[bytes] = []
    pending = inflated = 0
    for text in _inflate(Path(path), dataset, session, key):
        inflated += len(text)
        if limits.max_inflated_bytes is not None and inflated > limits.max_inflated_bytes:
            raise FlatFileError(
                dataset.name,
                session,
                key,
                f"the file inflates to more than {limits.max_inflated_bytes:,} bytes, the cap for {dataset.name} "
                "(QUANT_ASSETS_MAX_INFLATED_GB); nothing was written, the raw file is kept",
            )
        pieces.append(text)
        pending += len(text)
        if pending < batch_bytes:
            continue
        if pending < 2 * batch_bytes:  # one block: cut the last piece at its last line end (one copy, the join)
            last = pieces[-1]
            cut = last.rfind(b"\n") + 1
            if cut:
                pieces[-1] = last[:cut]
                yield b"".join(pieces)
                pieces, pending = ([last[cut:]], len(last) - cut) if cut < len(last) else ([], 0)
            continue
        buffer = b"".join(pieces)  # pieces larger than a batch (small batches): cut into several blocks
        start = 0
        while len(buffer) - start >= batch_bytes:  # whole lines, about batch_bytes each
            cut = buffer.rfind(b"\n", start, start + batch_bytes) + 1 or buffer.find(b"\n", start + batch_bytes) + 1
            if not cut:  # no line end yet: wait for more text
                break
            yield buffer[start:cut]
            start = cut
        pieces = [buffer[start:]] if start < len(buffer) else []
        pending = len(buffer) - start
    if pieces:
        yield b"".join(pieces)


def parse_header(line: bytes, dataset: Dataset, session: dt.date, key: str) -> list[str]:
    """The file's column names, after checking they are exactly the dataset's (in any order)."""
    first_line = line.rstrip(b"\r\n").decode("utf-8", errors="replace")
    if not first_line.strip():
        raise FlatFileError(dataset.name, session, key, "the file has no header row")
    columns = [c.strip().strip('"') for c in first_line.split(",")]
    expected = set(dataset.header)
    if set(columns) != expected or len(columns) != len(expected):
        missing = [c for c in dataset.header if c not in columns]
        extra = [c for c in columns if c not in expected]
        raise FlatFileError(
            dataset.name,
            session,
            key,
            f"header does not match {dataset.name}: missing {missing}, unexpected {extra}; "
            f"expected {','.join(dataset.header)}; got {first_line[:500]}",
        )
    return columns


_READ_DTYPES = {
    Kind.TICKER: pl.String,
    Kind.STRING: pl.String,
    Kind.FLOAT: pl.Float64,
    Kind.INT: pl.Int64,
    Kind.TIMESTAMP: pl.Int64,
    Kind.CODES: pl.String,
}
_CSV_OPTIONS = {"quote_char": '"', "null_values": None, "empty_string_is_null": False}


def read_batches(
    path: str | Path,
    dataset: Dataset,
    session: dt.date,
    key: str,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    limits: ReadLimits = ReadLimits(),
) -> Iterator[Batch]:
    """A landed vendor file as typed batches, streamed: memory is bounded by `batch_bytes`, not the file.

    File defects (empty, not gzip, truncated, wrong header, malformed CSV, beyond a cap) raise a FlatFileError,
    possibly after earlier batches were yielded. Row defects (an empty or unparsable value, a short row) do not:
    the row is kept with nulls and its `Batch.defects` entry says what is wrong, for the quality gate.
    """
    kinds = dict(dataset.columns)
    schema = None
    next_row = 1
    # Blocks are inflated in a thread of their own (isal releases the GIL) while the previous one is parsed.
    for block in prefetch(text_blocks(path, dataset, session, key, batch_bytes, limits)):
        first = schema is None
        if first:
            header_end = block.find(b"\n") + 1 or len(block)
            names = parse_header(block[:header_end], dataset, session, key)
            schema = {name: _READ_DTYPES[kinds[name]] for name in names}
            block = block[header_end:]
            if not block.strip():
                continue
        batch = _parse_block(block, schema, dataset, session, key, next_row)
        next_row += batch.frame.height
        if limits.max_rows is not None and next_row - 1 > limits.max_rows:
            raise FlatFileError(
                dataset.name,
                session,
                key,
                f"the file has more than {limits.max_rows:,} rows, the cap for {dataset.name} (QUANT_ASSETS_MAX_ROWS); "
                "nothing was written, the raw file is kept",
            )
        yield batch
    if schema is None:
        raise FlatFileError(dataset.name, session, key, "the file has no header row")
    if next_row == 1:
        raise FlatFileError(dataset.name, session, key, "the file has a header but no rows")


def _parse_block(block: bytes, schema: dict, dataset: Dataset, session: dt.date, key: str, first_row: int) -> Batch:
    """One block of rows -> a typed Batch. The fast path parses typed; only a block with a null in a required
    column or a value that does not parse is read again as text, to say which rows and why."""
    try:
        frame = pl.read_csv(block, has_header=False, schema=schema, **_CSV_OPTIONS)
        if not any(frame[name].null_count() for name in dataset.required):
            return Batch(first_row, to_lake_frame(frame, dataset))
    except pl.exceptions.PolarsError:
        pass
    try:
        text = pl.read_csv(block, has_header=False, schema=dict.fromkeys(schema, pl.String), **_CSV_OPTIONS)
    except pl.exceptions.PolarsError as exc:  # invalid UTF-8, more fields than the header, an unclosed quote
        for offset, line in enumerate(block.splitlines()):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                raise FlatFileError(
                    dataset.name,
                    session,
                    key,
                    f"invalid UTF-8 ({bad.reason} at byte {bad.start}): {line[:80]!r}",
                    row=first_row + offset,
                ) from None
        last = first_row + block.count(b"\n") - 1
        raise FlatFileError(
            dataset.name, session, key, f"malformed CSV in rows {first_row:,}-{last:,}: {str(exc).splitlines()[0]}"
        ) from None
    # The reader pads a short row with empty fields: count each row's fields to tell it from an empty value.
    fields = [len(row) for row in csv.reader(io.StringIO(block.decode("utf-8", errors="replace"))) if row]
    if len(fields) != text.height:
        fields = [len(schema)] * text.height  # cannot align (blank lines inside quotes): judge values only
    required = set(dataset.required)
    problems = [
        pl.when(pl.Series(fields) < len(schema)).then(
            pl.format(f"short row: {{}} fields, the header has {len(schema)}", pl.Series(fields))
        )
    ]
    typed = []
    for name, dtype in schema.items():
        values = pl.col(name)
        parsed = values.cast(dtype, strict=False) if dtype is not pl.String else values
        typed.append(pl.when(values != "").then(parsed).alias(name) if dtype is not pl.String else values)
        shown = values.str.slice(0, 40)
        problems.append(
            pl.when(values.is_null())
            .then(pl.lit(f"short row: no value for column {name!r}"))
            .when((values == "") & pl.lit(name in required))
            .then(pl.lit(f"column {name!r} is empty"))
            .when((values != "") & parsed.is_null() & pl.lit(dtype is not pl.String))
            .then(pl.format(f"column {name!r} value '{{}}' is not a valid {dtype.__name__}", shown))
        )
    frame = text.select(*typed, _defect=pl.coalesce(problems))
    return Batch(first_row, to_lake_frame(frame.drop("_defect"), dataset), frame["_defect"])


def read_flat_file(path: str | Path, dataset: Dataset, session: dt.date, key: str) -> pl.DataFrame:
    """A whole vendor file as its typed lake frame, strictly: the first row defect raises a FlatFileError naming
    the row. For files known to fit in memory (tests, small files); the lake streams with `read_batches`."""
    frames = []
    for batch in read_batches(path, dataset, session, key):
        if batch.defects is not None and batch.defects.null_count() < batch.defects.len():
            index = int(batch.defects.is_not_null().arg_true()[0])
            ticker = batch.frame["ticker"][index]
            raise FlatFileError(
                dataset.name, session, key, f"{batch.defects[index]} (ticker {ticker!r})", row=batch.first_row + index
            )
        frames.append(batch.frame)
    return pl.concat(frames)


def to_lake_frame(frame: pl.DataFrame, dataset: Dataset) -> pl.DataFrame:
    """Cast read columns to the lake schema: ns UTC timestamps, code lists, OCC contract fields for options."""
    exprs = []
    for name, kind in dataset.columns:
        if kind is Kind.TIMESTAMP:
            exprs.append(pl.col(name).cast(pl.Datetime("ns", "UTC")))
        elif kind is Kind.CODES:
            codes = pl.col(name)
            exprs.append(
                pl.when(codes.is_null() | (codes == ""))
                .then(pl.lit([], dtype=pl.List(pl.Int32)))
                .otherwise(codes.str.split(",").cast(pl.List(pl.Int32), strict=False))
                .alias(name)
            )
        else:
            exprs.append(pl.col(name))
    if dataset.derived:
        parts = pl.col("ticker").str.extract_groups(_OCC)
        exprs += [
            parts.struct.field("1").alias("underlying"),
            parts.struct.field("2").str.to_date("%y%m%d", strict=False).alias("expiration"),
            parts.struct.field("3").alias("contract_type"),
            (parts.struct.field("4").cast(pl.Float64) / 1000).alias("strike"),
        ]
    return frame.select(exprs)
