"""`raw_<dataset>` and `lake_<dataset>` assets, generated from the dataset registry.

Each asset is a thin wrapper: it takes the sessions of the run from the partition (one key or a range), calls the
pure function for each (`raw.land`, `ingest.build_partition`), and records per-session metadata. A range runs as one
run (`BackfillPolicy.single_run`); a session that fails does not stop the others in the same step, the sessions
that succeeded are recorded as materialised, and the step then fails naming every failed session (so steps
downstream of it do not run for that range).
"""


import datetime as dt
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dagster as dg

from quant_assets.datasets import Dataset
from quant_assets.flatfiles import FlatFileError, vendor_key
from quant_assets.ingest import build_partition
from quant_assets.quality.checks import (
    anomaly_check_result,
    markdown_table,
    quality_check_specs,
    rule_check_results,
    volume_anomalies,
)
from quant_assets.quality.coverage import STATUSES, build_ledger, problems, status_counts, strips, write_ledger
from quant_assets.quality.gate import GateResult, QualityGateError
from quant_assets.raw import land, raw_path, read_landed
from quant_assets.resources import DataZones, QualitySettings
from quant_assets.sessions import parse_session, session_partitions
from quant_assets.sources import FlatFileSource

warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
BACKFILL_POLICY = dg.BackfillPolicy.single_run()


def raw_key(dataset: Dataset) -> dg.AssetKey:
    return dg.AssetKey(f"raw_{dataset.name}")


def lake_key(dataset: Dataset) -> dg.AssetKey:
    return dg.AssetKey(f"lake_{dataset.name}")


@dataclass
class SessionRun:
    """What the sessions of one run produced: metadata of those that succeeded, errors of those that failed."""

    succeeded: dict[str, dict] = field(default_factory=dict)
    failures: dict[str, FlatFileError] = field(default_factory=dict)


def for_each_session(
    context: dg.AssetExecutionContext, dataset: Dataset, step: Callable[[dt.date], dict]
) -> SessionRun:
    """Run `step(session)` for every session of the run; its dict becomes that partition's metadata.

    A session that fails is collected, not raised, so one bad day in a year-long backfill does not hide the state
    of the other days. An unexpected error is reported as a FlatFileError naming the dataset, session and key.
    """
    outcome = SessionRun()
    for partition_key in context.partition_keys:
        session = parse_session(partition_key)
        try:
            metadata = step(session)
        except FlatFileError as error:
            outcome.failures[partition_key] = error
        except Exception as error:  # a source outage after retries, a bug: still name the session
            problem = f"{type(error).__name__}: {error}"
            outcome.failures[partition_key] = FlatFileError(dataset.name, session, vendor_key(dataset, session), problem)
        else:
            outcome.succeeded[partition_key] = metadata
            context.add_asset_metadata(metadata, partition_key=partition_key)
            continue
        context.log.error(str(outcome.failures[partition_key]))
    return outcome


def raise_for(dataset: Dataset, context: dg.AssetExecutionContext, outcome: SessionRun):
    """Fail the step naming every failed session, if any failed (a generator: `yield from` it).

    The sessions that succeeded are yielded as materialisations first: the step's failure would otherwise mark the
    whole range as failed although their files are in place.
    """
    if not outcome.failures:
        return
    for partition_key, metadata in outcome.succeeded.items():
        yield dg.AssetMaterialization(asset_key=context.asset_key, partition=partition_key, metadata=metadata)
    failures = outcome.failures
    lines = "\n".join(f"- {error}" for error in failures.values())
    raise dg.Failure(
        description=f"{len(failures)} of {len(context.partition_keys)} sessions of {dataset.name} failed:\n{lines}",
        metadata={"failed_sessions": dg.MetadataValue.json(sorted(failures))},
    )


def session_asset_args(dataset: Dataset) -> dict:
    """What every per-session asset of `dataset` shares: its group, its calendar's partitions, one-run backfills."""
    return {
        "group_name": dataset.asset_class,
        "partitions_def": session_partitions(dataset.calendar),
        "backfill_policy": BACKFILL_POLICY,
    }


def build_raw_asset(dataset: Dataset) -> dg.AssetsDefinition:
    @dg.asset(
        key=raw_key(dataset),
        **session_asset_args(dataset),
        kinds={"s3", "csv"},
        description=f"{dataset.description} Landed unchanged under data/raw/{dataset.key_prefix}, with its "
        "object key, ETag, size and sha256 recorded. Unchanged files are not downloaded again.",
        metadata={"vendor_prefix": dataset.key_prefix, "header": ",".join(dataset.header)},
    )
    def raw_asset(context: dg.AssetExecutionContext, flatfiles: FlatFileSource, zones: DataZones):
        def step(session: dt.date) -> dict:
            landed = land(flatfiles, dataset, session, zones.raw_root)
            verb = "downloaded" if landed.downloaded else "already current"
            context.log.info(f"{dataset.name} {session}: {landed.key} {verb} ({landed.size:,} bytes)")
            return {
                "key": landed.key,
                "etag": landed.etag,
                "size": dg.MetadataValue.int(landed.size),
                "sha256": landed.sha256,
                "source": landed.source,
                "downloaded": landed.downloaded,
                "replaced_etag": landed.replaced_etag,
                "path": dg.MetadataValue.path(landed.path),
            }

        yield from raise_for(dataset, context, for_each_session(context, dataset, step))
        yield dg.MaterializeResult()

    return raw_asset


def build_lake_asset(dataset: Dataset) -> dg.AssetsDefinition:
    key = lake_key(dataset)

    @dg.asset(
        key=key,
        **session_asset_args(dataset),
        deps=[raw_key(dataset)],
        kinds={"parquet", "polars"},
        check_specs=quality_check_specs(dataset, key),
        description=f"{dataset.description} Typed Parquet, one file per session under "
        f"data/lake/{dataset.name}/date=YYYY-MM-DD/; prices and volumes float64, timestamps ns UTC, tickers "
        "exactly as the vendor spells them. Rows that fail the quality rules are quarantined under "
        f"data/quarantine/{dataset.name}/.",
        metadata={"columns": dg.MetadataValue.json({k: str(v) for k, v in dataset.lake_schema().items()})},
    )
    def lake_asset(context: dg.AssetExecutionContext, zones: DataZones, quality: QualitySettings):
        gates: dict[str, GateResult] = {}
        rejected: set[str] = set()
        anomalies: list[dict] = []

        def step(session: dt.date) -> dict:
            landed = read_landed(zones.raw_root, dataset, session)
            if landed is None:
                raise FlatFileError(
                    dataset.name, session, vendor_key(dataset, session),
                    f"not landed in the raw zone; materialize raw_{dataset.name} for {session} first",
                )  # fmt: skip
            try:
                stats = build_partition(
                    raw_path(zones.raw_root, dataset, session), dataset, session, landed.key, zones.lake_root,
                    zones.quarantine_root, landed.provenance(), zones.tickers, quality.max_failure_share,
                )  # fmt: skip
            except QualityGateError as error:
                gates[session.isoformat()] = error.result
                rejected.add(session.isoformat())
                raise
            gates[session.isoformat()] = stats.gate
            anomalies.append(volume_anomalies(zones.lake_root, dataset, session, stats.rows, stats.tickers,
                                              quality.anomaly_window, quality.max_volume_drop))  # fmt: skip
            context.log.info(f"{dataset.name} {session}: {stats.rows:,} rows, {stats.tickers:,} tickers, "
                             f"{stats.gate.quarantined.height:,} quarantined, in {stats.seconds:.2f}s")  # fmt: skip
            return {
                "rows": dg.MetadataValue.int(stats.rows),
                "tickers": dg.MetadataValue.int(stats.tickers),
                "quarantined_rows": dg.MetadataValue.int(stats.gate.quarantined.height),
                "bytes": dg.MetadataValue.int(stats.bytes),
                "seconds": dg.MetadataValue.float(round(stats.seconds, 3)),
                "first_time": str(stats.first_time),
                "last_time": str(stats.last_time),
                "source_key": landed.key,
                "source_sha256": landed.sha256,
                "path": dg.MetadataValue.path(str(stats.path)),
                "dagster/row_count": dg.MetadataValue.int(stats.rows),
            }

        outcome = for_each_session(context, dataset, step)
        yield from rule_check_results(dataset, key, gates, rejected)
        yield anomaly_check_result(key, anomalies)
        yield from raise_for(dataset, context, outcome)
        yield dg.MaterializeResult()

    return lake_asset


def build_coverage_asset(datasets: Sequence[Dataset]) -> dg.AssetsDefinition:
    @dg.asset(
        key="coverage",
        group_name="quality",
        deps=[lake_key(d) for d in datasets],
        kinds={"parquet"},
        automation_condition=dg.AutomationCondition.any_deps_updated() & ~dg.AutomationCondition.in_progress(),
        description="The coverage ledger: for each dataset and session, present / missing / unexpected / "
        "quarantined / replaced, from the calendar, the source's listing, the raw zone and the lake. Stored at "
        "data/lake/_coverage/coverage.parquet; `quant-assets coverage` prints the same summary.",
    )
    def coverage(context: dg.AssetExecutionContext, flatfiles: FlatFileSource, zones: DataZones):
        ledger = build_ledger(datasets, flatfiles.list_objects, zones.raw_root, zones.lake_root, zones.quarantine_root)
        path = write_ledger(ledger, zones.lake_root)
        counts = status_counts(ledger)
        totals = {s: int(counts[s].sum()) for s in STATUSES} if counts.height else dict.fromkeys(STATUSES, 0)
        context.log.info(f"coverage: {totals}")
        return dg.MaterializeResult(metadata={
            "summary": dg.MetadataValue.md(markdown_table(counts)),
            "chart": dg.MetadataValue.md(f"```\n{strips(ledger)}\n```"),
            "problems": dg.MetadataValue.md(markdown_table(problems(ledger))),
            **{f"{status}_sessions": dg.MetadataValue.int(n) for status, n in totals.items()},
            "path": dg.MetadataValue.path(str(path)),
            "dagster/row_count": dg.MetadataValue.int(ledger.height),
        })  # fmt: skip

    return coverage
