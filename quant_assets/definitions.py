"""The code location: every asset, job, schedule and resource, built from the dataset registry in one place.

Settings come from environment variables, each with a default that runs on a fresh clone:

    QUANT_ASSETS_DATASETS     datasets to enable, comma-separated, or `all`
                              (default: stocks_daily,stocks_minute,options_daily,options_minute)
    QUANT_ASSETS_SOURCE       `local` (default) or `s3`
    QUANT_ASSETS_VENDOR_DIR   the local source folder (default: data/vendor)
    QUANT_ASSETS_DATA         the data folder with raw/, lake/, quarantine/ (default: data)
    QUANT_ASSETS_TICKERS      keep only these tickers in the lake, comma-separated, globs allowed (default: all)
    QUANT_ASSETS_START_DATE   first partition (default: 2020-01-02)
    QUANT_ASSETS_MAX_FAILURE_SHARE   share of rows that may be quarantined before a partition is rejected (0.01)
    QUANT_ASSETS_MAX_VOLUME_DROP     warn when rows or tickers drop this share below the trailing median (0.5)
    QUANT_ASSETS_FRESHNESS_DEADLINE  a session is late if not in the lake by this time (New York) on the next
                                     session (12:00)
    MASSIVE_S3_ENDPOINT       S3 endpoint (default: https://files.massive.com)
    MASSIVE_S3_BUCKET         S3 bucket (default: flatfiles)
    MASSIVE_S3_ACCESS_KEY_ID, MASSIVE_S3_SECRET_ACCESS_KEY
                              vendor S3 credentials, read through dagster.EnvVar (only with the s3 source)
"""


import datetime as dt
import os
from collections.abc import Sequence
from itertools import groupby

import dagster as dg

from quant_assets.assets import build_coverage_asset, build_lake_asset, build_raw_asset, lake_key, raw_key
from quant_assets.datasets import DATASETS, Calendar, Dataset, parse_dataset_names
from quant_assets.quality.checks import build_freshness_check, build_reconciliation_check
from quant_assets.quality.freshness import DEFAULT_DEADLINE
from quant_assets.resources import DataZones, QualitySettings
from quant_assets.sessions import calendar_timezone, session_partitions, sessions
from quant_assets.sources import (
    ACCESS_KEY_ENV,
    DEFAULT_BUCKET,
    DEFAULT_ENDPOINT,
    SECRET_KEY_ENV,
    FlatFileSource,
    LocalFlatFiles,
    S3FlatFiles,
)

JOB_NAMES = {
    Calendar.XNYS: "ingest_us_equities",
    Calendar.EVERY_DAY: "ingest_crypto",
    Calendar.FOREX: "ingest_forex",
    Calendar.WEEKDAYS: "ingest_indices",
}
# The vendor documents day T's files as ready by about 11:00 ET on T+1.
SCHEDULE_HOUR = 12


def source_from_env() -> FlatFileSource:
    """The flat-file source that `QUANT_ASSETS_SOURCE` selects."""
    kind = os.environ.get("QUANT_ASSETS_SOURCE", "local").strip().lower()
    if kind == "local":
        return LocalFlatFiles(root=os.environ.get("QUANT_ASSETS_VENDOR_DIR", "data/vendor"))
    if kind == "s3":
        return S3FlatFiles(
            endpoint_url=os.environ.get("MASSIVE_S3_ENDPOINT", DEFAULT_ENDPOINT),
            bucket=os.environ.get("MASSIVE_S3_BUCKET", DEFAULT_BUCKET),
            access_key_id=dg.EnvVar(ACCESS_KEY_ENV),
            secret_access_key=dg.EnvVar(SECRET_KEY_ENV),
        )
    raise ValueError(f"QUANT_ASSETS_SOURCE must be 'local' or 's3', not {kind!r}")


def quality_from_env() -> QualitySettings:
    return QualitySettings(
        max_failure_share=float(os.environ.get("QUANT_ASSETS_MAX_FAILURE_SHARE", "0.01")),
        max_volume_drop=float(os.environ.get("QUANT_ASSETS_MAX_VOLUME_DROP", "0.5")),
    )


def zones_from_env() -> DataZones:
    tickers = [t.strip() for t in os.environ.get("QUANT_ASSETS_TICKERS", "").split(",") if t.strip()]
    return DataZones(root=os.environ.get("QUANT_ASSETS_DATA", "data"), tickers=tickers)


def previous_session_schedule(job, calendar: Calendar) -> dg.ScheduleDefinition:
    """Every day at 12:00 (calendar time zone), request the newest session that ended before today."""

    @dg.schedule(
        name=f"{job.name}_daily",
        job=job,
        cron_schedule=f"0 {SCHEDULE_HOUR} * * *",
        execution_timezone=calendar_timezone(calendar),
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
        execution_timezone="America/New_York", default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Runs the freshness checks every hour.",
    ))  # fmt: skip
    coverage_job = dg.define_asset_job("refresh_coverage", selection=["coverage"],
                                       description="Rebuild the coverage ledger from the source, raw zone and lake.")
    schedules.append(dg.ScheduleDefinition(
        name="refresh_coverage_daily", job=coverage_job, cron_schedule=f"30 {SCHEDULE_HOUR} * * *",
        execution_timezone="America/New_York", default_status=dg.DefaultScheduleStatus.STOPPED,
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
    parse_dataset_names(os.environ.get("QUANT_ASSETS_DATASETS")),
    source_from_env(),
    zones_from_env(),
    quality_from_env(),
    dt.time.fromisoformat(os.environ.get("QUANT_ASSETS_FRESHNESS_DEADLINE", "12:00")),
)
