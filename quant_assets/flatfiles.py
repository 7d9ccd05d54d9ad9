"""Vendor flat files: where a session's file lives, and how a gzip CSV becomes a typed frame.

Columns are resolved by header name, never by position. Tickers keep their case and null-like names (`NA`,
`NULL`) stay strings. Every error names the dataset, the session, the object key and, where there is one, the row.
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
import zlib
from pathlib import Path

import polars as pl

from quant_assets.datasets import Dataset, Kind

_KEY_DATE = re.compile(r"/(\d{4})/(\d{2})/(\d{4}-\d{2}-\d{2})\.csv\.gz$")
_OCC = r"^O:([A-Z0-9]+?)(\d{6})([CP])(\d{8})$"


class FlatFileError(ValueError):
    """A vendor file that cannot be landed as it is; the message names dataset, session, key and row."""

    def __init__(self, dataset: str, session: dt.date | str, key: str, problem: str, row: int | None = None):
        self.dataset, self.session, self.key, self.problem, self.row = dataset, str(session), key, problem, row
        where = f", row {row} (line {row + 1})" if row is not None else ""
        super().__init__(f"{dataset} {session}: {key}{where}: {problem}")


class FlatFileMissing(FlatFileError):
    """The calendar expects a file for the session but the source has none."""


class FlatFilePermissionError(FlatFileError):
    """The source refused access (HTTP 403): the plan does not cover this dataset or date. Not retried."""


def vendor_key(dataset: Dataset, session: dt.date) -> str:
    """The object key of `dataset`'s file for `session`: `<prefix>/<dataset>/<YYYY>/<MM>/<YYYY-MM-DD>.csv.gz`."""
    return f"{dataset.key_prefix}{session:%Y}/{session:%m}/{session.isoformat()}.csv.gz"


def session_from_key(key: str) -> dt.date:
    """The session date a key stands for; the file's own timestamps are checked against it, not trusted."""
    match = _KEY_DATE.search(key)
    if not match or match.group(3)[:4] != match.group(1) or match.group(3)[5:7] != match.group(2):
        raise ValueError(f"{key!r} is not a vendor flat-file key (<prefix>/<dataset>/YYYY/MM/YYYY-MM-DD.csv.gz)")
    return dt.date.fromisoformat(match.group(3))


def decompress(data: bytes, dataset: Dataset, session: dt.date, key: str) -> bytes:
    """Inflate a gzip file (all members), or raise a FlatFileError for an empty, truncated or corrupt one."""
    if not data:
        raise FlatFileError(dataset.name, session, key, "the file is empty (0 bytes)")
    try:
        inflater = zlib.decompressobj(wbits=31)
        parts = [inflater.decompress(data)]
        while inflater.eof and inflater.unused_data:  # concatenated gzip members
            rest = inflater.unused_data
            inflater = zlib.decompressobj(wbits=31)
            parts.append(inflater.decompress(rest))
    except zlib.error as exc:
        raise FlatFileError(dataset.name, session, key, f"not a valid gzip file ({exc})") from None
    if not inflater.eof:
        raise FlatFileError(dataset.name, session, key, "the gzip stream is truncated (download cut short?)")
    return b"".join(parts)


def read_header(path: Path, dataset: Dataset, session: dt.date, key: str) -> list[str]:
    """The file's column names, after checking they are exactly the dataset's (in any order)."""
    if path.stat().st_size == 0:
        raise FlatFileError(dataset.name, session, key, "the file is empty (0 bytes)")
    try:
        with gzip.open(path, "rb") as stream:
            first_line = stream.readline().rstrip(b"\r\n").decode("utf-8", errors="replace")
    except (OSError, EOFError, zlib.error) as exc:
        raise FlatFileError(dataset.name, session, key, f"not a valid gzip file ({exc})") from None
    if not first_line.strip():
        raise FlatFileError(dataset.name, session, key, "the file has no header row")
    columns = [c.strip().strip('"') for c in first_line.split(",")]
    expected = set(dataset.header)
    if set(columns) != expected or len(columns) != len(expected):
        missing = [c for c in dataset.header if c not in columns]
        extra = [c for c in columns if c not in expected]
        raise FlatFileError(
            dataset.name, session, key,
            f"header does not match {dataset.name}: missing {missing}, unexpected {extra}; "
            f"expected {','.join(dataset.header)}; got {first_line}",
        )  # fmt: skip
    return columns


_READ_DTYPES = {
    Kind.TICKER: pl.String,
    Kind.STRING: pl.String,
    Kind.FLOAT: pl.Float64,
    Kind.INT: pl.Int64,
    Kind.TIMESTAMP: pl.Int64,
    Kind.CODES: pl.String,
}


def read_flat_file(path: str | Path, dataset: Dataset, session: dt.date, key: str) -> pl.DataFrame:
    """A landed vendor file -> its typed lake frame, or a FlatFileError that names what is wrong.

    polars inflates and parses the file in one pass (faster than inflating first); only when that fails is the
    file read again, slowly, to say exactly what is wrong and where.
    """
    path = Path(path)
    kinds = dict(dataset.columns)
    read_schema = {name: _READ_DTYPES[kinds[name]] for name in read_header(path, dataset, session, key)}
    try:
        frame = pl.read_csv(
            path, schema=read_schema, has_header=True, quote_char='"', null_values=None, empty_string_is_null=False
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _diagnose(path, dataset, session, key, read_schema, exc) from None
    if frame.height == 0:
        raise FlatFileError(dataset.name, session, key, "the file has a header but no rows")
    for name in dataset.required:  # a short (ragged) row or an empty field reads as null
        if frame[name].null_count():
            row = int(frame[name].is_null().arg_true()[0]) + 1
            raise FlatFileError(dataset.name, session, key, f"column {name!r} is empty (short row?)", row=row)
    return to_lake_frame(frame, dataset)


def to_lake_frame(frame: pl.DataFrame, dataset: Dataset) -> pl.DataFrame:
    """Cast read columns to the lake schema: ns UTC timestamps, code lists, OCC contract fields for options."""
    exprs = []
    for name, kind in dataset.columns:
        if kind is Kind.TIMESTAMP:
            exprs.append(pl.col(name).cast(pl.Datetime("ns", "UTC")))
        elif kind is Kind.CODES:
            codes = pl.col(name).str.strip_chars()
            exprs.append(
                pl.when(codes.is_null() | (codes == ""))
                .then(pl.lit([], dtype=pl.List(pl.Int32)))
                .otherwise(codes.str.split(",").list.eval(pl.element().str.strip_chars().cast(pl.Int32)))
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


def _diagnose(path: Path, dataset: Dataset, session: dt.date, key: str, schema: dict, exc: Exception) -> FlatFileError:
    """Read the file again, as text, to find what failed: the gzip stream, the CSV shape, or one row's value."""
    try:
        text = decompress(path.read_bytes(), dataset, session, key)
    except FlatFileError as error:
        return error
    try:
        raw = pl.read_csv(text, infer_schema=False, null_values=None, empty_string_is_null=False,
                          quote_char='"')  # fmt: skip
    except Exception as inner:  # malformed CSV (wrong field count, bad quoting): polars' own message
        return FlatFileError(dataset.name, session, key, f"malformed CSV: {str(inner).splitlines()[0]}")
    for name, dtype in schema.items():
        if dtype is pl.String or name not in raw.columns:
            continue
        values = raw[name]
        parsed = values.replace("", None).cast(dtype, strict=False)
        bad = parsed.is_null() & values.is_not_null() & (values != "")
        if bad.any():
            row = int(bad.arg_true()[0])
            return FlatFileError(
                dataset.name, session, key,
                f"column {name!r} value {values[row]!r} is not a valid {dtype.__name__} "
                f"(ticker {raw['ticker'][row]!r})",
                row=row + 1,
            )  # fmt: skip
    return FlatFileError(dataset.name, session, key, f"cannot parse: {str(exc).splitlines()[0]}")

