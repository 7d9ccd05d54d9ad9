"""The spine's layers: `raw_<dataset>` (the vendor file landed as-is) and `lake_<dataset>` (typed Parquet through the
quality gate), one pair per enabled dataset, with the ingest job and daily schedule of each calendar.

Each layer is a thin wrapper around a pure function (`raw.land`, `ingest.build_partition`); the session chain
(`chain.py`) runs them session by session.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from quant_assets.datasets import Calendar, Dataset
from quant_assets.defs.chain import SKIPPED, Built, ChainContext, SessionLayer, build_session_chain
from quant_assets.defs.partitions import session_partitions
from quant_assets.defs.quality import anomaly_check_result, quality_check_specs, rule_check_results
from quant_assets.errors import SessionError
from quant_assets.flatfiles import CorruptFile, limits_for, vendor_key
from quant_assets.ingest import LAKE_CODE_VERSION, IngestOptions, build_partition
from quant_assets.lake import partition_path, partition_provenance
from quant_assets.quality.anomaly import volume_anomalies
from quant_assets.quality.gate import GateSummary
from quant_assets.raw import land, mark_corrupt, read_landed
from quant_assets.sessions import NEIGHBOUR_DAYS, previous_session

JOB_NAMES = {
    Calendar.XNYS: "ingest_us_equities",
    Calendar.EVERY_DAY: "ingest_crypto",
    Calendar.FOREX: "ingest_forex",
    Calendar.WEEKDAYS: "ingest_indices",
}
CHAIN_NAMES = {
    Calendar.XNYS: "us_equities_sessions",
    Calendar.EVERY_DAY: "crypto_sessions",
    Calendar.FOREX: "forex_sessions",
    Calendar.WEEKDAYS: "indices_sessions",
}
# The vendor documents day T's files as ready by about 11:00 ET on T+1, for every asset class.
SCHEDULE_HOUR = 12
SCHEDULE_ZONE = "America/New_York"
MAX_RUNTIME_SECONDS = 12 * 3600


def raw_key(dataset: Dataset) -> dg.AssetKey:
    return dg.AssetKey(f"raw_{dataset.name}")


def lake_key(dataset: Dataset) -> dg.AssetKey:
    return dg.AssetKey(f"lake_{dataset.name}")


def raw_layer(dataset: Dataset) -> SessionLayer:
    def build(chain: ChainContext, session: dt.date) -> Built:
        landed = land(chain.flatfiles, dataset, session, chain.zones.raw_root)
        verb = "downloaded" if landed.downloaded else "already current"
        chain.log.info(f"{dataset.name} {session}: {landed.key} {verb} ({landed.size:,} bytes)")
        return Built(
            {
                "key": landed.key,
                "etag": landed.etag,
                "size": dg.MetadataValue.int(landed.size),
                "sha256": landed.sha256,
                "source": landed.source,
                "downloaded": landed.downloaded,
                SKIPPED: not landed.downloaded,
                "replaced_etag": landed.replaced_etag,
                "path": dg.MetadataValue.path(landed.path),
            }
        )

    spec = dg.AssetSpec(
        raw_key(dataset),
        group_name=dataset.asset_class,
        kinds={"s3", "csv"},
        skippable=True,
        description=f"{dataset.description} Landed unchanged under data/raw/{dataset.key_prefix}, with its "
        "object key, ETag, size and sha256 recorded. Unchanged files are not downloaded again.",
        metadata={"vendor_prefix": dataset.key_prefix, "header": ",".join(dataset.header)},
    )
    return SessionLayer(dataset, spec, build)


@dataclass(frozen=True)
class LakeSummary:
    """What the lake's checks need of one built session."""

    gate: GateSummary
    anomaly: dict


def lake_layer(dataset: Dataset) -> SessionLayer:
    key = lake_key(dataset)

    def build(chain: ChainContext, session: dt.date) -> Built:
        zones, quality = chain.zones, chain.quality
        landed = read_landed(zones.raw_root, dataset, session)
        if landed is None:
            raise SessionError(
                dataset.name,
                session,
                vendor_key(dataset, session),
                f"not landed in the raw zone; materialize raw_{dataset.name} for {session} first",
            )
        try:
            options = IngestOptions(
                tickers=zones.tickers,
                max_failure_share=quality.max_failure_share,
                max_ticker_length=quality.max_ticker_length,
                limits=limits_for(dataset, quality.max_rows, quality.max_inflated_gb),
                batch_bytes=zones.batch_mb * 2**20,
            )
            stats = build_partition(
                landed, dataset, session, zones.lake_root, zones.quarantine_root, options, force=chain.force
            )
        except CorruptFile as error:  # landed by an older version, or damaged on disk since: fetch it again
            mark_corrupt(zones.raw_root, dataset, session, error.problem)
            raise
        if stats is None:
            provenance = partition_provenance(zones.lake_root, dataset.name, session) or {}
            rows, tickers = int(provenance.get("rows", 0)), int(provenance.get("tickers", 0))
            chain.log.info(
                f"{dataset.name} {session}: already built from this raw file (sha256 "
                f"{landed.sha256[:12]}) by lake code version {LAKE_CODE_VERSION}; skipped"
            )
            path = partition_path(zones.lake_root, dataset.name, session)
            return Built(
                {
                    SKIPPED: True,
                    "rows": dg.MetadataValue.int(rows),
                    "tickers": dg.MetadataValue.int(tickers),
                    "quarantined_rows": dg.MetadataValue.int(int(provenance.get("quarantined", 0))),
                    "source_sha256": landed.sha256,
                    "dagster/row_count": dg.MetadataValue.int(rows),
                    "path": dg.MetadataValue.path(str(path)),
                }
            )
        anomaly = volume_anomalies(
            zones.lake_root,
            dataset,
            session,
            stats.rows,
            stats.tickers,
            quality.anomaly_window,
            quality.max_volume_drop,
        )
        chain.log.info(
            f"{dataset.name} {session}: {stats.rows:,} rows, {stats.tickers:,} tickers, "
            f"{stats.quarantined:,} quarantined, in {stats.seconds:.2f}s"
        )
        metadata = {
            SKIPPED: False,
            "rows": dg.MetadataValue.int(stats.rows),
            "tickers": dg.MetadataValue.int(stats.tickers),
            "quarantined_rows": dg.MetadataValue.int(stats.quarantined),
            "bytes": dg.MetadataValue.int(stats.bytes),
            "seconds": dg.MetadataValue.float(round(stats.seconds, 3)),
            "first_time": str(stats.first_time),
            "last_time": str(stats.last_time),
            "source_key": landed.key,
            "source_sha256": landed.sha256,
            "path": dg.MetadataValue.path(str(stats.path)),
            "dagster/row_count": dg.MetadataValue.int(stats.rows),
        }
        return Built(metadata, LakeSummary(stats.gate, anomaly))

    def check_results(summary, error: SessionError | None) -> list[dg.AssetCheckResult]:
        """A built session's rule and anomaly results, or a rejected one's rule results (its error carries the
        gate's summary; it has no counts to compare)."""
        if isinstance(summary, LakeSummary):
            return [*rule_check_results(dataset, key, summary.gate, False), anomaly_check_result(key, summary.anomaly)]
        return rule_check_results(dataset, key, summary, error is not None)

    spec = dg.AssetSpec(
        key,
        deps=[raw_key(dataset)],
        group_name=dataset.asset_class,
        kinds={"parquet", "polars"},
        skippable=True,
        code_version=LAKE_CODE_VERSION,
        description=f"{dataset.description} Typed Parquet, one file per session under "
        f"data/lake/{dataset.name}/date=YYYY-MM-DD/; prices and volumes float64, timestamps ns UTC, tickers "
        "exactly as the vendor spells them. Rows that fail the quality rules are quarantined under "
        f"data/quarantine/{dataset.name}/. A session already built from the same raw file by the same code "
        "version is skipped unless the run's config says `force: true`.",
        metadata={"columns": dg.MetadataValue.json({k: str(v) for k, v in dataset.lake_schema().items()})},
    )
    checks = quality_check_specs(dataset, key, session_partitions(dataset.calendar))
    return SessionLayer(dataset, spec, build, checks, check_results)


def previous_session_schedule(
    job,
    calendar: Calendar,
    at: str = f"0 {SCHEDULE_HOUR}",
    description: str = "Ingests the previous session once its files are published (T+1 about 11:00 ET).",
) -> dg.ScheduleDefinition:
    """Every day at `at` ("minute hour", 12:00 by default) New York time, request the newest session of `calendar`
    that ended before today."""

    @dg.schedule(
        name=f"{job.name}_daily",
        job=job,
        cron_schedule=f"{at} * * *",
        execution_timezone=SCHEDULE_ZONE,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=description,
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        today = context.scheduled_execution_time.date()
        previous = previous_session(calendar, today)
        if previous is None:
            return dg.SkipReason(f"no {calendar.value} session in the {NEIGHBOUR_DAYS} days before {today}")
        key = previous.isoformat()
        return dg.RunRequest(run_key=key, partition_key=key)

    return _schedule


def session_chains(datasets: Sequence[Dataset]) -> dict[Calendar, list[SessionLayer]]:
    """The spine's layers of `datasets`, by calendar, in dependency order."""
    chains: dict[Calendar, list[SessionLayer]] = {}
    for calendar in Calendar:
        members = [d for d in datasets if d.calendar is calendar]
        if members:
            chains[calendar] = [raw_layer(d) for d in members] + [lake_layer(d) for d in members]
    return chains


def _entity_keys(layer: SessionLayer) -> list[dg.AssetKey | dg.AssetCheckKey]:
    return [layer.key, *(spec.key for spec in layer.check_specs)]


def _following(layers: Sequence[SessionLayer], dataset: Dataset) -> list[SessionLayer]:
    """The layers of `dataset` and, in the chain, every layer downstream of them (enriched_options_daily reads
    lake_stocks_daily too), in chain order."""
    chosen = {layer.key for layer in layers if layer.dataset.name == dataset.name}
    for layer in layers:  # dependency order: one pass reaches every descendant
        if any(dep.asset_key in chosen for dep in layer.spec.deps):
            chosen.add(layer.key)
    return [layer for layer in layers if layer.key in chosen]


def chain_keys(
    datasets: Sequence[Dataset], extra_layers: dict[Calendar, list[SessionLayer]] | None = None
) -> dict[Calendar, tuple[str, list[Dataset], dict[str, list[dg.AssetKey]]]]:
    """Per calendar: its ingest job's name, its datasets, and the chain's asset and check keys of each dataset
    (raw, lake and the layers that follow them, with their checks), what a run for a changed file of that dataset
    selects: exactly the job's own checks, never the freshness check that runs on its own schedule."""
    found = {}
    for calendar, layers in session_chains(datasets).items():
        layers = layers + list((extra_layers or {}).get(calendar, []))
        members = [d for d in datasets if d.calendar is calendar]
        keys = {d.name: [key for layer in _following(layers, d) for key in _entity_keys(layer)] for d in members}
        found[calendar] = (JOB_NAMES[calendar], members, keys)
    return found


def ingest_defs(
    datasets: Sequence[Dataset],
    extra_layers: dict[Calendar, list[SessionLayer]] | None = None,
    excluded_checks: Sequence = (),
) -> dg.Definitions:
    """One session chain (multi-asset), ingest job and daily schedule per calendar of `datasets`."""
    assets, jobs, schedules = [], [], []
    for calendar, layers in session_chains(datasets).items():
        layers = layers + list((extra_layers or {}).get(calendar, []))
        assets.append(build_session_chain(calendar, layers, CHAIN_NAMES[calendar]))
        members = [layer.dataset.name for layer in layers if layer.key.path[0].startswith("raw_")]
        job = dg.define_asset_job(
            JOB_NAMES[calendar],
            selection=dg.AssetSelection.assets(*[layer.key for layer in layers])
            - dg.AssetSelection.checks(*excluded_checks),
            partitions_def=session_partitions(calendar),
            description=f"Land and parse {', '.join(members)} for the selected sessions.",
            # With run monitoring on (dagster.yaml), a run still going after this long is marked failed, so a
            # killed run frees the run queue; a year of tick files fits well inside it.
            tags={"dagster/max_runtime": str(MAX_RUNTIME_SECONDS)},
        )
        jobs.append(job)
        schedules.append(previous_session_schedule(job, calendar))
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules)
