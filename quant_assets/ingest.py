"""raw -> lake for one session: parse the landed vendor file, pass it through the quality gate, write the lake and
quarantine partitions."""

import datetime as dt
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from quant_assets.datasets import Dataset
from quant_assets.flatfiles import read_flat_file
from quant_assets.lake import commit_partition, discard, stage_partition, ticker_filter, write_partition
from quant_assets.quality.gate import (
    DEFAULT_MAX_FAILURE_SHARE,
    GateResult,
    QualityGateError,
    reject_reason,
    split,
    write_quarantine,
)


# Writes the Parquet file while the quality gate validates the same rows: both release the GIL, and in the common
# case (no failing row) the staged file is exactly the partition.
_STAGING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage-parquet")


@dataclass(frozen=True)
class PartitionStats:
    """What one raw -> lake build produced."""

    path: Path
    rows: int
    tickers: int
    bytes: int
    seconds: float
    first_time: dt.datetime | None
    last_time: dt.datetime | None
    gate: GateResult


def ticker_count(frame: pl.DataFrame) -> int:
    """Distinct tickers. Files are ticker-major, so counting among runs is much cheaper than hashing every row."""
    return frame.get_column("ticker").rle().struct.field("value").n_unique()


def build_partition(
    raw_file: str | os.PathLike,
    dataset: Dataset,
    session: dt.date,
    key: str,
    lake_root: str | os.PathLike,
    quarantine_root: str | os.PathLike,
    provenance: dict[str, str],
    tickers: Sequence[str] = (),
    max_failure_share: float = DEFAULT_MAX_FAILURE_SHARE,
    validate: bool = True,
) -> PartitionStats:
    """Parse a landed vendor file (rows of `tickers` only, if given), quarantine the rows that fail the dataset's
    rules, and replace the session's lake partition with the rest.

    A file that does not parse raises a FlatFileError; one whose failing share is above `max_failure_share`
    raises a QualityGateError after sending all its rows to the quarantine. Either way the lake partition is left
    as it was. `validate=False` skips the gate (the benchmark uses it to measure what the checks cost).
    """
    started = time.perf_counter()
    frame = read_flat_file(raw_file, dataset, session, key)
    condition = ticker_filter(tickers)
    if condition is not None:
        frame = frame.filter(condition)
    n_tickers = ticker_count(frame)
    details = {**provenance, "rows": str(frame.height), "tickers": str(n_tickers), "quarantined": "0"}
    staged = _STAGING.submit(stage_partition, frame, lake_root, dataset.name, session, details)
    try:
        result = split(frame, dataset, session) if validate else GateResult.passing(frame)
    except BaseException:
        discard(staged.result())
        raise
    speculative = staged.result()
    reason = reject_reason(result, dataset, max_failure_share)
    if reason or result.quarantined.height:
        discard(speculative)  # it holds rows that must not reach the lake
    if reason:
        write_quarantine(result.all_rows_for_quarantine(f"partition rejected: {reason}"), quarantine_root,
                         dataset.name, session)  # fmt: skip
        raise QualityGateError(dataset.name, session, key, reason, result)
    write_quarantine(result.quarantined, quarantine_root, dataset.name, session)
    clean = result.clean
    if result.quarantined.height:
        n_tickers = ticker_count(clean)
        details = {**details, "rows": str(clean.height), "tickers": str(n_tickers),
                   "quarantined": str(result.quarantined.height)}  # fmt: skip
        path = write_partition(clean, lake_root, dataset.name, session, details)
    else:
        path = commit_partition(speculative, lake_root, dataset.name, session)
    times = clean.get_column(dataset.time_column)
    return PartitionStats(
        path=path,
        rows=clean.height,
        tickers=n_tickers,
        bytes=path.stat().st_size,
        seconds=time.perf_counter() - started,
        first_time=times.min(),
        last_time=times.max(),
        gate=result,
    )
