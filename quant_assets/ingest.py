"""raw -> lake for one session: stream the landed vendor file batch by batch through the quality gate into the lake
and quarantine partitions.

Three stages overlap: a thread inflates the next block of text, the caller's thread parses and checks the current
one, and polars' streaming sink encodes the Parquet row groups of the previous ones. Memory is bounded by the
batch size, whatever the file inflates to.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from quant_assets.datasets import Dataset
from quant_assets.flatfiles import DEFAULT_BATCH_BYTES, ReadLimits, read_batches
from quant_assets.lake import (
    PartitionWriter,
    partition_dir,
    partition_path,
    partition_provenance,
    provenance_metadata,
    remove_partition,
    sink_partition,
    sweep_temporaries,
    ticker_filter,
)
from quant_assets.locks import locked
from quant_assets.quality.gate import Gate, GateSummary, QualityGateError
from quant_assets.raw import LandedFile
from quant_assets.settings import DEFAULT_MAX_FAILURE_SHARE, DEFAULT_MAX_TICKER_LENGTH

# Bump when the lake content built from the same raw file changes (parsing, types, rules): partitions built by an
# older version are then rebuilt instead of skipped.
LAKE_CODE_VERSION = "2"
QUARANTINE_COLUMNS = ("vendor_row", "reason")


@dataclass(frozen=True)
class PartitionStats:
    """What one raw -> lake build produced: a few numbers, never the rows."""

    path: Path
    rows: int
    tickers: int
    quarantined: int
    bytes: int
    seconds: float
    first_time: dt.datetime | None
    last_time: dt.datetime | None
    gate: GateSummary


def build_identity(landed: LandedFile, tickers: Sequence[str]) -> dict[str, str]:
    """What a lake partition is built from: the raw file's bytes, the code version and the ticker filter."""
    return {"sha256": landed.sha256, "code_version": LAKE_CODE_VERSION, "ticker_filter": ",".join(tickers)}


def is_current(
    lake_root: str | os.PathLike, dataset: Dataset, landed: LandedFile, session: dt.date, tickers: Sequence[str] = ()
) -> bool:
    """Whether the lake partition was built from this very raw file, by this code, with this ticker filter."""
    provenance = partition_provenance(lake_root, dataset.name, session)
    if provenance is None:
        return False
    return all(provenance.get(k) == v for k, v in build_identity(landed, tickers).items())


def quarantine_schema(dataset: Dataset) -> dict[str, pl.DataType]:
    return {"vendor_row": pl.UInt32(), **dataset.lake_schema(), "reason": pl.Categorical()}


@dataclass(frozen=True)
class IngestOptions:
    """How a session is read and checked."""

    tickers: Sequence[str] = ()  # keep only these tickers (exact, or `*`/`?` globs); empty keeps all
    max_failure_share: float = DEFAULT_MAX_FAILURE_SHARE
    max_ticker_length: int = DEFAULT_MAX_TICKER_LENGTH
    limits: ReadLimits = ReadLimits()
    batch_bytes: int = DEFAULT_BATCH_BYTES
    validate: bool = True  # False skips the gate (the benchmark measures what the checks cost)

    def gate(self, dataset: Dataset, session: dt.date) -> Gate:
        return Gate(dataset, session, self.max_ticker_length)


def build_partition(
    landed: LandedFile,
    dataset: Dataset,
    session: dt.date,
    lake_root: str | os.PathLike,
    quarantine_root: str | os.PathLike,
    options: IngestOptions = IngestOptions(),
    force: bool = True,
) -> PartitionStats | None:
    """Stream a landed vendor file (rows of `options.tickers` only, if given) through the quality gate, and
    replace the session's lake partition with the rows that pass and its quarantine partition with those that do
    not.

    Runs of the same session take turns (a lock beside the partition folder); under the lock, temporary files that
    killed runs left are removed first. With `force=False`, a partition already built from this raw file by this
    code with this ticker filter is left alone and None is returned. A file defect raises a FlatFileError; a
    failing share above `options.max_failure_share` raises a QualityGateError after sending every row to the
    quarantine. Either way the lake partition is left as it was.
    """
    started = time.perf_counter()
    target = partition_path(lake_root, dataset.name, session)
    with locked(target.parent):
        sweep_temporaries(target.parent, older_than=0)
        sweep_temporaries(partition_dir(quarantine_root, dataset.name, session), older_than=0)
        if not force and is_current(lake_root, dataset, landed, session, options.tickers):
            return None
        return _build(landed, dataset, session, lake_root, quarantine_root, options, started)


def _build(landed, dataset, session, lake_root, quarantine_root, options: IngestOptions, started) -> PartitionStats:
    gate = options.gate(dataset, session)
    quarantine = PartitionWriter(partition_path(quarantine_root, dataset.name, session), quarantine_schema(dataset))
    seen = {"rows": 0, "tickers": set(), "first": None, "last": None, "quarantine_dropped": False}

    def clean_batches() -> Iterator[pl.DataFrame]:
        for frame, rows, defects in _batches(landed, dataset, session, options):
            clean, bad = frame, None
            if options.validate:
                # Above the share limit the session is likely rejected (a file stamped with the wrong day): stop
                # copying rows that a second pass writes anyway, so a rejected file costs no more memory than a
                # clean one.
                dropped = seen["quarantine_dropped"]
                clean, bad = gate.check(frame, rows, defects, max_share=-1.0 if dropped else options.max_failure_share)
                if bad is None and not dropped and gate.summary.share > options.max_failure_share:
                    quarantine.discard()
                    seen["quarantine_dropped"] = True
            if bad is not None:
                quarantine.write(bad)
            if clean.height:
                times = clean[dataset.time_column]
                seen["rows"] += clean.height
                seen["tickers"].update(clean["ticker"].rle().struct.field("value").unique().to_list())
                seen["first"] = min(filter(None, (seen["first"], times.min())))
                seen["last"] = max(filter(None, (seen["last"], times.max())))
            yield clean
        if not options.validate:
            gate.summary.rows = seen["rows"]
        reason = gate.summary.reject_reason(dataset, options.max_failure_share)
        if reason:  # raised inside the sink, so that the staged lake file is dropped
            raise QualityGateError(dataset.name, session, landed.key, reason, gate.summary)

    def metadata() -> dict[str, str]:
        details = {
            **landed.provenance(),
            **build_identity(landed, options.tickers),
            "rows": str(seen["rows"]),
            "tickers": str(len(seen["tickers"])),
            "quarantined": str(gate.summary.quarantined),
            "seconds": f"{time.perf_counter() - started:.3f}",  # what `quant-assets plan` estimates from
        }
        return provenance_metadata(dataset.name, session, details)

    try:
        path = sink_partition(
            clean_batches(), partition_path(lake_root, dataset.name, session), dataset.lake_schema(), metadata
        )
    except QualityGateError as error:
        quarantine.discard()
        rewrite_quarantine(landed, dataset, session, quarantine_root, options, f"partition rejected: {error.problem}")
        raise
    except BaseException:
        quarantine.discard()
        raise
    if seen["quarantine_dropped"]:  # the share fell back under the limit: write the failing rows in a second pass
        rewrite_quarantine(landed, dataset, session, quarantine_root, options, passing=None)
    elif quarantine.rows:
        quarantine.commit()
    else:
        quarantine.discard()
        remove_partition(quarantine_root, dataset.name, session)  # rows set aside by an earlier build
    summary = gate.summary
    return PartitionStats(
        path=path,
        rows=seen["rows"],
        tickers=len(seen["tickers"]),
        quarantined=summary.quarantined,
        bytes=path.stat().st_size,
        seconds=time.perf_counter() - started,
        first_time=seen["first"],
        last_time=seen["last"],
        gate=summary,
    )


def _batches(
    landed: LandedFile, dataset: Dataset, session: dt.date, options: IngestOptions
) -> Iterator[tuple[pl.DataFrame, pl.Series, pl.Series | None]]:
    """(rows, their vendor row numbers, their defects) of each batch of the file, of the chosen tickers only."""
    condition = ticker_filter(options.tickers)
    for batch in read_batches(landed.path, dataset, session, landed.key, options.batch_bytes, options.limits):
        frame, rows, defects = batch.frame, batch.vendor_rows, batch.defects
        if condition is not None:
            keep = frame.select(condition).to_series()
            frame, rows = frame.filter(keep), rows.filter(keep)
            defects = defects.filter(keep) if defects is not None else None
        yield frame, rows, defects


def rewrite_quarantine(
    landed: LandedFile,
    dataset: Dataset,
    session: dt.date,
    quarantine_root: str | os.PathLike,
    options: IngestOptions,
    passing: str | None,
) -> None:
    """Replace the quarantine partition in a second streamed pass over the file, in file order: the failing rows
    with their own reasons, and, if `passing` is a reason (a rejected partition), every other row with it. Written
    by the same streaming sink as the lake, so memory stays that of a clean build."""
    gate = options.gate(dataset, session)
    # Smaller batches than the first pass: every row here carries a reason too, and this pass must not need more
    # memory than a clean build.
    options = dataclasses.replace(options, batch_bytes=max(options.batch_bytes // 8, 2**20))

    def rows() -> Iterator[pl.DataFrame]:
        for frame, numbers, defects in _batches(landed, dataset, session, options):
            clean, bad = gate.check(frame, numbers, defects)
            if passing is not None:
                kept = numbers.filter(~numbers.is_in(bad["vendor_row"].implode())) if bad is not None else numbers
                clean = clean.with_columns(vendor_row=kept, reason=pl.lit(passing, dtype=pl.Categorical())).select(
                    list(quarantine_schema(dataset))
                )
                bad = pl.concat([bad, clean]).sort("vendor_row") if bad is not None else clean
            if bad is not None:
                yield bad

    sink_partition(rows(), partition_path(quarantine_root, dataset.name, session), quarantine_schema(dataset))
