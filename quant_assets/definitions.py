"""The code location: every asset, job, schedule and resource, built from the dataset registry in one place.

Settings come from environment variables; `settings.py` reads them and lists them all.
"""


import datetime as dt
from collections.abc import Sequence
from itertools import groupby

import dagster as dg

from quant_assets.assets import build_coverage_asset, build_lake_asset, build_raw_asset, lake_key, raw_key
from quant_assets.datasets import DATASETS, Calendar, Dataset
from quant_assets.quality.checks import build_freshness_check, build_reconciliation_check
from quant_assets.quality.freshness import DEFAULT_DEADLINE
from quant_assets.resources import DataZones, QualitySettings
from quant_assets.sessions import session_partitions, sessions
from quant_assets.settings import (
    datasets_from_env,
    freshness_deadline_from_env,
    quality_from_env,
    source_from_env,
    zones_from_env,
)
from quant_assets.sources import FlatFileSource

JOB_NAMES = {
    Calendar.XNYS: "ingest_us_equities",
    Calendar.EVERY_DAY: "ingest_crypto",
    Calendar.FOREX: "ingest_forex",
    Calendar.WEEKDAYS: "ingest_indices",
}
# The vendor documents day T's files as ready by about 11:00 ET on T+1, for every asset class.
SCHEDULE_HOUR = 12
SCHEDULE_ZONE = "America/New_York"


def previous_session_schedule(job, calendar: Calendar) -> dg.ScheduleDefinition:
    """Every day at 12:00 New York time, request the newest session of `calendar` that ended before today."""

    @dg.schedule(
        name=f"{job.name}_daily",
        job=job,
        cron_schedule=f"0 {SCHEDULE_HOUR} * * *",
        execution_timezone=SCHEDULE_ZONE,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Ingests the previous session once its files are published (T+1 about 11:00 ET).",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        today = context.scheduled_execution_time.date()
        previous = sessions(calendar, today - dt.timedelta(days=10), today - dt.timedelta(days=1))
        if not previous:
            return dg.SkipReason(f"no {calendar.value} session in the ten days before {today}")
        key = previous[-1].isoformat()
        return dg.RunRequest(run_key=key, partition_key=key)

    return _schedule


def build_definitions(
    datasets: Sequence[Dataset],
    source: FlatFileSource,
    zones: DataZones,
    quality: QualitySettings,
    deadline: dt.time = DEFAULT_DEADLINE,
) -> dg.Definitions:
    """raw_/lake_ assets of `datasets` with their quality checks, minute/day reconciliation where both are enabled,
    a freshness check per lake asset (`deadline` New York time on the next session), the coverage asset, one
    ingest job and daily schedule per calendar, the freshness and coverage jobs and schedules, and resources."""
    assets, jobs, schedules = [build_coverage_asset(datasets)], [], []
    checks, fresh = [], []
    for dataset in datasets:
        assets += [build_raw_asset(dataset), build_lake_asset(dataset)]
        fresh.append(build_freshness_check(dataset, deadline))
        minute = DATASETS.get(f"{dataset.asset_class}_minute")
        if dataset.frequency == "day" and minute in datasets and "volume" in dataset.header:
            checks.append(build_reconciliation_check(dataset, minute))
    by_calendar = groupby(sorted(datasets, key=lambda d: list(Calendar).index(d.calendar)), key=lambda d: d.calendar)
    for calendar, members in by_calendar:
        members = list(members)
        job = dg.define_asset_job(
            JOB_NAMES[calendar],
            # The ingest runs the lake's own checks and reconciliation; freshness runs on its own schedule.
            selection=dg.AssetSelection.assets(*[key for d in members for key in (raw_key(d), lake_key(d))])
            - dg.AssetSelection.checks(*fresh),
            partitions_def=session_partitions(calendar),
            description=f"Land and parse {', '.join(d.name for d in members)} for the selected sessions.",
        )
        jobs.append(job)
        schedules.append(previous_session_schedule(job, calendar))
    freshness_job = dg.define_asset_job("freshness_checks", selection=dg.AssetSelection.checks(*fresh),
                                        description="Flag lake datasets whose newest due session is missing.")
    schedules.append(dg.ScheduleDefinition(
        name="freshness_checks_hourly", job=freshness_job, cron_schedule="5 * * * *",
        execution_timezone=SCHEDULE_ZONE, default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Runs the freshness checks every hour.",
    ))  # fmt: skip
    coverage_job = dg.define_asset_job("refresh_coverage", selection=["coverage"],
                                       description="Rebuild the coverage ledger from the source, raw zone and lake.")
    schedules.append(dg.ScheduleDefinition(
        name="refresh_coverage_daily", job=coverage_job, cron_schedule=f"30 {SCHEDULE_HOUR} * * *",
        execution_timezone=SCHEDULE_ZONE, default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Rebuilds the coverage ledger after the daily ingests.",
    ))  # fmt: skip
    return dg.Definitions(
        assets=assets,
        asset_checks=[*checks, *fresh],
        jobs=[*jobs, coverage_job, freshness_job],
        schedules=schedules,
        resources={"flatfiles": source, "zones": zones, "quality": quality},
        # One process per run: steps are polars-bound and use every core already, while a process per step
        # would pay the seconds of importing Dagster for each asset.
        executor=dg.in_process_executor,
        loggers={"console": dg.colored_console_logger.configured({"log_level": "INFO"})},
    )


defs = build_definitions(
    datasets_from_env(), source_from_env(), zones_from_env(), quality_from_env(), freshness_deadline_from_env()
)
