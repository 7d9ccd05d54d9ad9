"""The quality layer's Dagster wiring: a blocking check per row rule and the volume anomaly check on each lake
asset (results computed by the session chain from the gate's summaries, no second pass over the data), the
minute/day reconciliation and freshness checks, the coverage ledger asset, and their jobs and schedules."""

import datetime as dt
import warnings
from collections.abc import Sequence

import dagster as dg
import polars as pl

from quant_assets.datasets import DATASETS, Dataset
from quant_assets.defs.chain import NOT_IN_INGEST_RUNS, ON_CHANGE
from quant_assets.defs.resources import DataZones, QualitySettings
from quant_assets.lake import partition_path, scan
from quant_assets.quality.coverage import (
    STATUSES,
    build_ledger,
    legend,
    monthly,
    problems,
    status_counts,
    status_table,
    write_ledger,
)
from quant_assets.quality.freshness import due_session
from quant_assets.quality.gate import GateSummary
from quant_assets.quality.reconcile import PROBLEMS, reconcile
from quant_assets.quality.rules import rule_catalogue
from quant_assets.sessions import parse_session
from quant_assets.sources import FlatFileSource
from quant_assets.tables import markdown_table

warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*", category=dg.PreviewWarning)
VOLUME_ANOMALY = "volume_anomaly"
SCHEDULE_ZONE = "America/New_York"


def quality_check_specs(
    dataset: Dataset, asset_key: dg.AssetKey, partitions_def: dg.PartitionsDefinition
) -> list[dg.AssetCheckSpec]:
    """A blocking check per row rule (the checks of the dataset's pandera schema), and the anomaly check: all
    partitioned like the asset, so each session keeps its own result whatever the range of the run."""
    specs = [
        dg.AssetCheckSpec(
            name,
            asset=asset_key,
            blocking=True,
            partitions_def=partitions_def,
            description=f"Rows where {reason} are quarantined; if more than the allowed share of a session's rows "
            "fail the rules, the session is rejected and this check fails with ERROR severity for it.",
        )
        for name, reason in rule_catalogue(dataset).items()
    ]
    specs.append(
        dg.AssetCheckSpec(
            VOLUME_ANOMALY,
            asset=asset_key,
            partitions_def=partitions_def,
            description="The session's row and ticker counts against the median of earlier sessions: a sudden drop "
            "(a half-delivered file) is a warning.",
        )
    )
    return specs


def rule_check_results(
    dataset: Dataset, asset_key: dg.AssetKey, gate: GateSummary, rejected: bool
) -> list[dg.AssetCheckResult]:
    """One result per rule for one session.

    Passed: no row failed. Failed as a WARN: rows failed and were quarantined, the lake partition holds the rest.
    Failed as an ERROR (blocking downstream): the session was rejected with rows failing this rule.
    """
    results = []
    for name in rule_catalogue(dataset):
        failed = gate.failures.get(name, 0)
        metadata = {
            "failed_rows": dg.MetadataValue.int(failed),
            "rows_checked": dg.MetadataValue.int(gate.rows),
            "rejected": rejected,
        }
        sample = gate.sample(name)
        if sample is not None:
            metadata["sample"] = dg.MetadataValue.md(markdown_table(sample))
        description = None
        if failed:
            outcome = "the session is rejected" if rejected else "quarantined, the rest of the session is in the lake"
            description = f"{failed:,} of {gate.rows:,} rows: {gate.reasons[name]}; {outcome}"
        results.append(
            dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=name,
                passed=failed == 0,
                severity=dg.AssetCheckSeverity.ERROR if rejected and failed else dg.AssetCheckSeverity.WARN,
                metadata=metadata,
                description=description,
            )
        )
    return results


def anomaly_check_result(asset_key: dg.AssetKey, finding: dict) -> dg.AssetCheckResult:
    """The volume anomaly result of one session (`quality.anomaly.volume_anomalies`)."""
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=VOLUME_ANOMALY,
        passed=not finding["anomalies"],
        severity=dg.AssetCheckSeverity.WARN,
        metadata={k: v for k, v in finding.items() if k not in ("session", "anomalies")},
        description="; ".join(finding["anomalies"]) or None,
    )


def build_reconciliation_check(day: Dataset, minute: Dataset) -> dg.AssetChecksDefinition:
    """A check on `lake_<day>` that compares each session of the run with `lake_<minute>`, per ticker."""

    @dg.asset_check(
        asset=f"lake_{day.name}",
        additional_deps=[f"lake_{minute.name}"],
        name=f"reconciles_with_{minute.name}",
        description=f"Per ticker: the sum of {minute.name} volume is at most the day volume, minute highs and "
        "lows stay inside the day's, and the first and last minute prices agree with the day's open and close.",
    )
    def reconciliation(context: dg.AssetCheckExecutionContext, zones: DataZones, quality: QualitySettings):
        mismatches, compared, skipped = [], 0, []
        for key in context.op_execution_context.partition_keys:
            session = parse_session(key)
            if not all(partition_path(zones.lake_root, d.name, session).exists() for d in (minute, day)):
                skipped.append(key)
                continue
            minute_bars, day_bars = (scan(zones.lake_root, d.name, [session]).collect() for d in (minute, day))
            compared += day_bars.height
            found = reconcile(minute_bars, day_bars, quality.volume_tolerance, quality.price_tolerance)
            mismatches.append(found.with_columns(session=pl.lit(key)))
        found = pl.concat(mismatches) if mismatches else pl.DataFrame()
        counts = {name: 0 for name in PROBLEMS}
        if found.height:
            for problems in found["problems"]:
                for name in problems:
                    counts[name] += 1
        sample = found.head(20).with_columns(pl.col("problems").list.join(", ")) if found.height else found
        metadata = {
            "tickers_compared": dg.MetadataValue.int(compared),
            "tickers_mismatched": dg.MetadataValue.int(found.height),
            "mismatches_by_problem": dg.MetadataValue.json({PROBLEMS[k]: v for k, v in counts.items()}),
            "sessions_skipped": dg.MetadataValue.json(skipped),
        }
        if found.height:
            metadata["mismatches"] = dg.MetadataValue.md(markdown_table(sample.select("session", *sample.columns[:-1])))
        return dg.AssetCheckResult(
            passed=found.height == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
            description=None
            if not found.height
            else f"{found.height} ticker-sessions disagree between {minute.name} and {day.name}",
        )

    return reconciliation


def _materialises_assets(context: dg.AssetCheckExecutionContext) -> bool:
    """Whether the check's run also materialises assets (a backfill or an ingest run, not a run of checks)."""
    run = context.run
    if run.asset_selection:
        return True
    job_assets = context.op_execution_context.job_def.asset_layer.executable_asset_keys
    return run.asset_check_selection is None and bool(job_assets)


def build_freshness_check(dataset: Dataset, deadline_at: dt.time) -> dg.AssetChecksDefinition:
    """A check on `lake_<dataset>`: the newest session past its deadline must have a materialised partition.

    Evaluated only in runs that materialise no asset (its own job, `freshness_checks`, hourly): a backfill launched
    from the UI plans every check of the assets it selects, and a historical backfill would otherwise flag today's
    session as late on every run. In such a run the check yields nothing (Dagster shows it as skipped there) and its
    last real result stands."""
    asset_key = dg.AssetKey(f"lake_{dataset.name}")

    @dg.multi_asset_check(
        name=f"lake_{dataset.name}_fresh",
        specs=[
            dg.AssetCheckSpec(
                "fresh",
                asset=asset_key,
                description=f"The newest {dataset.calendar.value} session whose deadline ({deadline_at:%H:%M} "
                "America/New_York on the next session) has passed is materialised. Evaluated by the "
                "freshness_checks job only.",
            )
        ],
        can_subset=True,
        op_tags={NOT_IN_INGEST_RUNS: "true"},
    )
    def fresh(context: dg.AssetCheckExecutionContext):
        if _materialises_assets(context):  # an ingest run or a backfill: not this check's business
            context.log.info(f"{dataset.name}: freshness is evaluated by the freshness_checks job, not in this run")
            return
        now = dt.datetime.now(dt.UTC)
        session, due = due_session(dataset.calendar, now, deadline_at)
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[session.isoformat()]), limit=1
        ).records
        metadata = {"session": session.isoformat(), "deadline": due.isoformat()}
        if records:
            metadata["materialized_at"] = dt.datetime.fromtimestamp(records[0].timestamp, dt.UTC).isoformat()
            yield dg.AssetCheckResult(asset_key=asset_key, check_name="fresh", passed=True, metadata=metadata)
            return
        late = now - due
        metadata["late_by_hours"] = round(late.total_seconds() / 3600, 1)
        yield dg.AssetCheckResult(
            asset_key=asset_key,
            check_name="fresh",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
            description=f"{dataset.name} {session} is late: due {due:%Y-%m-%d %H:%M %Z}, not materialised",
        )

    return fresh


def build_coverage_asset(datasets: Sequence[Dataset]) -> dg.AssetsDefinition:
    @dg.asset(
        key="coverage",
        group_name="quality",
        deps=[f"lake_{d.name}" for d in datasets],
        kinds={"parquet"},
        automation_condition=ON_CHANGE,
        description="The coverage ledger: one status per dataset and session (present, quarantined, missing, "
        "rejected, failed, stale, pending, replaced, unexpected), from the calendar, the source's listing, the raw "
        "zone, the lake and the failure records. Stored at data/lake/_coverage/coverage.parquet; "
        "`quant-assets coverage` prints the same summary.",
    )
    def coverage(context: dg.AssetExecutionContext, flatfiles: FlatFileSource, zones: DataZones):
        ledger = build_ledger(datasets, flatfiles.list_objects, zones.raw_root, zones.lake_root, zones.quarantine_root)
        path = write_ledger(ledger, zones.lake_root)
        counts = status_counts(ledger)
        totals = {s: int(counts[s].sum()) for s in STATUSES} if counts.height else dict.fromkeys(STATUSES, 0)
        context.log.info(f"coverage: {totals}")
        return dg.MaterializeResult(
            metadata={
                "summary": dg.MetadataValue.md(markdown_table(status_table(ledger))),
                "by_month": dg.MetadataValue.md(f"{markdown_table(monthly(ledger))}\n\n{legend(ledger)}"),
                "problems": dg.MetadataValue.md(markdown_table(problems(ledger))),
                **{f"{status}_sessions": dg.MetadataValue.int(n) for status, n in totals.items()},
                "path": dg.MetadataValue.path(str(path)),
                "dagster/row_count": dg.MetadataValue.int(ledger.height),
            }
        )

    return coverage


def quality_defs(datasets: Sequence[Dataset], deadline: dt.time) -> tuple[dg.Definitions, list]:
    """Reconciliation checks (where a dataset's day and minute aggregates are both enabled), a freshness check per
    lake asset with its hourly job, and the coverage asset with its daily job. Also returns the freshness checks,
    which the ingest jobs leave out (they run on their own schedule)."""
    checks, fresh = [], []
    for dataset in datasets:
        fresh.append(build_freshness_check(dataset, deadline))
        minute = DATASETS.get(f"{dataset.asset_class}_minute")
        if dataset.frequency == "day" and minute in datasets and "volume" in dataset.header:
            checks.append(build_reconciliation_check(dataset, minute))
    freshness_job = dg.define_asset_job(
        "freshness_checks",
        selection=dg.AssetSelection.checks(*fresh),
        description="Flag lake datasets whose newest due session is missing.",
    )
    coverage_job = dg.define_asset_job(
        "refresh_coverage",
        selection=["coverage"],
        description="Rebuild the coverage ledger from the source, raw zone and lake.",
    )
    schedules = [
        dg.ScheduleDefinition(
            name="freshness_checks_hourly",
            job=freshness_job,
            cron_schedule="5 * * * *",
            execution_timezone=SCHEDULE_ZONE,
            default_status=dg.DefaultScheduleStatus.STOPPED,
            description="Runs the freshness checks every hour.",
        ),
        dg.ScheduleDefinition(
            name="refresh_coverage_daily",
            job=coverage_job,
            cron_schedule="30 12 * * *",
            execution_timezone=SCHEDULE_ZONE,
            default_status=dg.DefaultScheduleStatus.STOPPED,
            description="Rebuilds the coverage ledger after the daily ingests (12:30 New York).",
        ),
    ]
    defs = dg.Definitions(
        assets=[build_coverage_asset(datasets)],
        asset_checks=[*checks, *fresh],
        jobs=[freshness_job, coverage_job],
        schedules=schedules,
    )
    return defs, fresh
