"""The coverage ledger: exactly one status per dataset and session, from the calendar, the source's listing, the raw
zone, the lake and the failure records of the last runs.

    present      the lake holds a partition built from the current raw file, with no row set aside
    quarantined  the same, with some rows set aside in the quarantine
    missing      the calendar expects a session the source has no file for
    rejected     the file landed, but the lake refused it (quality gate, file defect) the last time it was built
    failed       landing the file failed the last time (403, download error)
    stale        the lake partition was built from another version of the raw file, or by older lake code
    pending      the source has the file, but it is not landed or not in the lake yet
    replaced     the source's ETag differs from the landed one: the vendor replaced the file since
    unexpected   the source has a file for a day that is not a session

The span runs from the first to the last file the source has, so a gap inside it is missing; a file not yet
published at the end is the freshness check's business. Stored as Parquet at
`<lake>/_coverage/coverage.parquet`. A pure module.
"""

import datetime as dt
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

from quant_assets.datasets import Dataset
from quant_assets.flatfiles import ObjectInfo, files_by_session
from quant_assets.ingest import LAKE_CODE_VERSION
from quant_assets.lake import partition_path, partition_provenance, write_parquet
from quant_assets.outcomes import failures
from quant_assets.raw import read_landed
from quant_assets.sessions import sessions
from quant_assets.tables import markdown_table

STATUSES = ("present", "quarantined", "missing", "rejected", "failed", "stale", "pending", "replaced", "unexpected")
MEANINGS = {
    "present": "in the lake, no row set aside",
    "quarantined": "in the lake, some rows set aside",
    "missing": "the source has no file",
    "rejected": "the lake refused the file",
    "failed": "landing the file failed",
    "stale": "built from an older file or code",
    "pending": "not landed or not in the lake yet",
    "replaced": "the vendor replaced the file since",
    "unexpected": "a file for a day that is not a session",
}
LEDGER_SCHEMA = {
    "dataset": pl.String,
    "session": pl.Date,
    "status": pl.String,
    "key": pl.String,
    "source_etag": pl.String,
    "landed_etag": pl.String,
    "ingested": pl.Boolean,
    "lake_rows": pl.Int64,
    "quarantined_rows": pl.Int64,
    "error": pl.String,
}


def session_status(
    expected: bool,
    info: ObjectInfo | None,
    landed,
    lake: dict | None,
    raw_failure: dict | None,
    lake_failure: dict | None,
) -> str:
    """The one status of a dataset x session (see the module docstring), in order of what needs attention."""
    if info is None:
        return "missing"
    if not expected:
        return "unexpected"
    if landed is not None and landed.etag != info.etag:
        return "replaced"
    if landed is None:
        return "failed" if raw_failure else "pending"
    if lake_failure and lake_failure["at"] >= landed.landed_at:
        return "rejected"
    if lake is None:
        return "pending"
    if lake.get("sha256") != landed.sha256 or lake.get("code_version") != LAKE_CODE_VERSION:
        return "stale"
    return "quarantined" if int(lake.get("quarantined", 0)) else "present"


def dataset_ledger(
    dataset: Dataset,
    objects: Iterable[ObjectInfo],
    raw_root: Path,
    lake_root: Path,
    quarantine_root: Path,
    progress=lambda items, what: items,
) -> pl.DataFrame:
    """The ledger rows of one dataset, given the source's listing of its prefix; `progress(items, what)` may wrap
    the sessions (a progress bar)."""
    files = files_by_session(dataset, objects)
    if not files:
        return pl.DataFrame(schema=LEDGER_SCHEMA)
    expected = set(sessions(dataset.calendar, min(files), max(files)))
    failed = failures(lake_root, dataset.name)
    rows = []
    for session in progress(sorted(expected | set(files)), dataset.name):
        info = files.get(session)
        landed = read_landed(raw_root, dataset, session)
        lake = partition_provenance(lake_root, dataset.name, session)
        raw_failure = failed.get((session, f"raw_{dataset.name}"))
        lake_failure = failed.get((session, f"lake_{dataset.name}"))
        status = session_status(session in expected, info, landed, lake, raw_failure, lake_failure)
        error = (raw_failure or lake_failure or {}).get("error") if status in ("failed", "rejected") else None
        rows.append(
            {
                "dataset": dataset.name,
                "session": session,
                "status": status,
                "key": info.key if info else None,
                "source_etag": info.etag if info else None,
                "landed_etag": landed.etag if landed else None,
                "ingested": lake is not None,
                "lake_rows": int(lake["rows"]) if lake and "rows" in lake else None,
                "quarantined_rows": _quarantined_rows(quarantine_root, dataset, session, lake),
                "error": error,
            }
        )
    return pl.DataFrame(rows, schema=LEDGER_SCHEMA)


def _quarantined_rows(quarantine_root: Path, dataset: Dataset, session: dt.date, lake: dict | None) -> int:
    """Rows set aside: from the lake file's provenance, or from the quarantine of a rejected partition."""
    if lake is not None and "quarantined" in lake:
        return int(lake["quarantined"])
    path = partition_path(quarantine_root, dataset.name, session)
    return pl.scan_parquet(path).select(pl.len()).collect().item() if path.exists() else 0


def ledger_path(lake_root: str | os.PathLike) -> Path:
    return Path(lake_root) / "_coverage" / "coverage.parquet"


def write_ledger(ledger: pl.DataFrame, lake_root: str | os.PathLike) -> Path:
    path = ledger_path(lake_root)
    write_parquet(ledger, path)
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


def status_table(ledger: pl.DataFrame) -> pl.DataFrame:
    """`status_counts` with only the statuses that occur, narrow enough for the UI's metadata column."""
    counts = status_counts(ledger)
    return counts.select("dataset", "first", "last", *(s for s in STATUSES if counts[s].sum()))


def monthly(ledger: pl.DataFrame) -> pl.DataFrame:
    """The coverage over time: one row per month and dataset (months in order), its sessions, and how many are in
    each status that occurs in the ledger."""
    shown = _occurring(ledger)
    if not shown:  # an empty ledger: the source has no files for the enabled datasets yet
        return pl.DataFrame(schema={"month": pl.String, "dataset": pl.String, "sessions": pl.UInt32})
    counts = (
        ledger.with_columns(month=pl.col("session").dt.strftime("%Y-%m"))
        .group_by("month", "dataset", "status")
        .len()
        .pivot("status", index=["month", "dataset"], values="len")
    )
    return (
        counts.with_columns(pl.col(shown).fill_null(0), sessions=pl.sum_horizontal(shown))
        .select("month", "dataset", "sessions", *shown)
        .sort("month", "dataset")
    )


def legend(ledger: pl.DataFrame) -> str:
    """What each status shown in `monthly` means, one line each."""
    return "\n".join(f"- {status}: {MEANINGS[status]}" for status in _occurring(ledger))


def _occurring(ledger: pl.DataFrame) -> list[str]:
    """The statuses that occur in `ledger`, in STATUSES order."""
    present = set(ledger["status"].unique().to_list())
    return [s for s in STATUSES if s in present]


def problems(ledger: pl.DataFrame, limit: int = 30) -> pl.DataFrame:
    """The sessions that are not simply present, newest first."""
    return (
        ledger.filter(pl.col("status") != "present")
        .sort("session", descending=True)
        .select("dataset", "session", "status", "key", "quarantined_rows", "error")
        .head(limit)
    )


def summary(ledger: pl.DataFrame) -> str:
    """The plain-text summary the CLI prints, as the `coverage` asset's metadata shows it: counts per status, the
    sessions by month with the statuses' meanings, and the problem sessions."""
    if ledger.height == 0:
        return "the coverage ledger is empty: the source has no files for the enabled datasets"
    issues = problems(ledger)
    attention = markdown_table(issues) if issues.height else "every session in the span is present"
    return "\n\n".join(
        [markdown_table(status_table(ledger)), markdown_table(monthly(ledger)), legend(ledger), attention]
    )


def build_ledger(
    datasets: Sequence[Dataset],
    list_objects,
    raw_root: Path,
    lake_root: Path,
    quarantine_root: Path,
    progress=lambda items, what: items,
) -> pl.DataFrame:
    """The ledger of `datasets`; `list_objects(prefix)` is the source's listing."""
    frames = [
        dataset_ledger(d, list_objects(d.key_prefix), raw_root, lake_root, quarantine_root, progress) for d in datasets
    ]
    return pl.concat(frames) if frames else pl.DataFrame(schema=LEDGER_SCHEMA)
