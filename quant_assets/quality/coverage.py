"""The coverage ledger: one status per dataset and session, from the calendar, the source's listing, the raw zone
and the lake.

    present      the source has the file (ingested or not yet: see `ingested`)
    missing      the calendar expects a session the source has no file for
    unexpected   the source has a file for a day that is not a session
    quarantined  rows of the session were set aside (or the whole partition was rejected)
    replaced     the source's ETag differs from the one ingested: the vendor replaced the file since

The span runs from the first to the last file the source has, so a gap inside it is missing; a file not yet
published at the end is the freshness check's business. Stored as Parquet at
`<lake>/_coverage/coverage.parquet`.
"""

import datetime as dt
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

from quant_assets.datasets import Dataset
from quant_assets.flatfiles import session_from_key
from quant_assets.lake import atomic_write_parquet, partition_path
from quant_assets.quality.checks import markdown_table, partition_counts
from quant_assets.raw import read_landed
from quant_assets.sessions import sessions
from quant_assets.sources import ObjectInfo

STATUSES = ("present", "missing", "unexpected", "quarantined", "replaced")
SYMBOLS = {"present": "█", "missing": "·", "unexpected": "U", "quarantined": "Q", "replaced": "R"}
LEDGER_SCHEMA = {
    "dataset": pl.String, "session": pl.Date, "status": pl.String, "key": pl.String, "source_etag": pl.String,
    "landed_etag": pl.String, "ingested": pl.Boolean, "lake_rows": pl.Int64, "quarantined_rows": pl.Int64,
}  # fmt: skip


def ledger_path(lake_root: str | os.PathLike) -> Path:
    return Path(lake_root) / "_coverage" / "coverage.parquet"


def dataset_ledger(
    dataset: Dataset, objects: Iterable[ObjectInfo], raw_root: Path, lake_root: Path, quarantine_root: Path
) -> pl.DataFrame:
    """The ledger rows of one dataset, given the source's listing of its prefix."""
    files: dict[dt.date, ObjectInfo] = {}
    for info in objects:
        try:
            files[session_from_key(info.key)] = info
        except ValueError:
            continue  # not a daily file (a README, a partial upload)
    if not files:
        return pl.DataFrame(schema=LEDGER_SCHEMA)
    expected = set(sessions(dataset.calendar, min(files), max(files)))
    rows = []
    for session in sorted(expected | set(files)):
        info = files.get(session)
        landed = read_landed(raw_root, dataset, session)
        counts = partition_counts(lake_root, dataset, session)
        quarantined = _quarantined_rows(quarantine_root, dataset, session)
        if info is None:
            status = "missing"
        elif session not in expected:
            status = "unexpected"
        elif landed and landed.etag != info.etag:
            status = "replaced"
        elif quarantined:
            status = "quarantined"
        else:
            status = "present"
        rows.append({
            "dataset": dataset.name, "session": session, "status": status, "key": info.key if info else None,
            "source_etag": info.etag if info else None, "landed_etag": landed.etag if landed else None,
            "ingested": counts is not None, "lake_rows": counts[0] if counts else None,
            "quarantined_rows": quarantined,
        })  # fmt: skip
    return pl.DataFrame(rows, schema=LEDGER_SCHEMA)


def _quarantined_rows(quarantine_root: Path, dataset: Dataset, session: dt.date) -> int:
    path = partition_path(quarantine_root, dataset.name, session)
    return pl.scan_parquet(path).select(pl.len()).collect().item() if path.exists() else 0


def write_ledger(ledger: pl.DataFrame, lake_root: str | os.PathLike) -> Path:
    path = ledger_path(lake_root)
    atomic_write_parquet(ledger, path)
    return path


def read_ledger(lake_root: str | os.PathLike) -> pl.DataFrame:
    return pl.read_parquet(ledger_path(lake_root))


def status_counts(ledger: pl.DataFrame) -> pl.DataFrame:
    """One row per dataset: its span and the number of sessions in each status."""
    counts = ledger.group_by("dataset", "status").len().pivot("status", index="dataset", values="len")
    for status in STATUSES:
        if status not in counts.columns:
            counts = counts.with_columns(pl.lit(0, dtype=pl.UInt32).alias(status))
    spans = ledger.group_by("dataset").agg(first=pl.col("session").min(), last=pl.col("session").max())
    return spans.join(counts, on="dataset").select("dataset", "first", "last", *STATUSES).fill_null(0).sort("dataset")


def strips(ledger: pl.DataFrame) -> str:
    """A chart in text: per dataset and month, one symbol per session (█ present, · missing, Q quarantined,
    R replaced, U unexpected)."""
    lines = []
    for (dataset,), rows in sorted(ledger.sort("session").group_by("dataset"), key=lambda g: g[0]):
        for (month,), days in rows.group_by(pl.col("session").dt.strftime("%Y-%m"), maintain_order=True):
            lines.append(f"{dataset:<16} {month}  {''.join(SYMBOLS[s] for s in days['status'])}")
    legend = "  ".join(f"{symbol} {status}" for status, symbol in SYMBOLS.items())
    return "\n".join([*lines, "", legend])


def problems(ledger: pl.DataFrame, limit: int = 30) -> pl.DataFrame:
    """The sessions that are not simply present, newest first."""
    return (
        ledger.filter(pl.col("status") != "present")
        .sort("session", descending=True)
        .select("dataset", "session", "status", "key", "quarantined_rows")
        .head(limit)
    )


def summary(ledger: pl.DataFrame) -> str:
    """The plain-text summary the CLI prints: counts per status, the problem sessions, and the strips."""
    if ledger.height == 0:
        return "the coverage ledger is empty: the source has no files for the enabled datasets"
    issues = problems(ledger)
    attention = markdown_table(issues) if issues.height else "every session in the span is present"
    return "\n\n".join([markdown_table(status_counts(ledger)), attention, strips(ledger)])


def build_ledger(
    datasets: Sequence[Dataset], list_objects, raw_root: Path, lake_root: Path, quarantine_root: Path
) -> pl.DataFrame:
    """The ledger of `datasets`; `list_objects(prefix)` is the source's listing."""
    frames = [dataset_ledger(d, list_objects(d.key_prefix), raw_root, lake_root, quarantine_root) for d in datasets]
    return pl.concat(frames) if frames else pl.DataFrame(schema=LEDGER_SCHEMA)
