"""The market-data service's jobs: one asset per dataset (`quotes`, `news`, `fundamentals`, `earnings`,
`vendor_indicators`; the EOD prices are `rest_stocks_daily`), and one job and schedule per provider x data type x
scope, built from one registry (`JOBS`): adding a job is an entry, not a module.

A job is its asset with a fixed run config (the universe, the providers asked, the options); a schedule launches
it at the time its data is ready, in New York time, skipping the days (and hours) when there is nothing new. Every
schedule is off by default. Each run reports its summary (symbols asked, served per provider, failed with reason,
requests, cost, seconds) as the materialization's metadata, and a warning check (`<dataset>_all_served`) fails
when some symbols failed, so a failed provider is visible in the UI. After each run the audit zone keeps
`QUANT_ASSETS_AUDIT_RETENTION_DAYS` days. The work is in `service/`.
"""

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
from pydantic import Field

from quant_assets.clock import now
from quant_assets.datasets import DATASETS
from quant_assets.defs.partitions import session_partitions
from quant_assets.defs.resources import REST_POOL, DataZones
from quant_assets.defs.rest import PROVIDERS_TAG, SCOPE_TAG
from quant_assets.defs.universes import RESOURCE_KEY as UNIVERSES
from quant_assets.defs.universes import universe_for_run
from quant_assets.features.restate import read_enriched_daily
from quant_assets.providers.cache import ResponseCache
from quant_assets.providers.client import prune_audit
from quant_assets.providers.state import state_dir
from quant_assets.service import fundamentals, indicators, news, quotes
from quant_assets.service.summary import Collected
from quant_assets.sessions import is_session, previous_session, regular_hours
from quant_assets.tables import markdown_table

DAILY = DATASETS["stocks_daily"]
NEW_YORK = "America/New_York"
LOGGED = 20
ALL_SERVED = "all_served"
MATCHES_FEATURES = "matches_enriched_features"
SMA_TOLERANCE = 1e-3  # relative: the vendor rounds to 4 decimals
JOB_TAG = "quant_assets/service_job"
INDICATORS_TAG = "quant_assets/indicators"


class ServiceConfig(dg.Config):
    """What one run of a market-data job asks: a universe (or `market`), its providers in order, and options."""

    scope: str = Field(
        default="",
        description="The universe asked (news: `market` for market-wide news); empty: the job's own "
        "(its `quant_assets/scope` tag), else watchlist.",
    )
    providers: list[str] = Field(
        default=[],
        description="The providers asked, in order; empty: the job's (`quant_assets/providers` tag), else "
        "the dataset's own.",
    )
    force: bool = Field(default=False, description="Ask again what is held (cursors, as-of versions, snapshots).")
    workers: int = Field(default=4, description="Requests in flight at once (the rate limits pace them).")
    at: str = Field(default="", description="The run's time (ISO 8601; the schedule's tick): default now.")
    indicators: list[str] = Field(
        default=[],
        description="vendor_indicators: the indicators asked, e.g. SMA_20, EMA_12, RSI_14, MACD (empty: all).",
    )


@dataclass(frozen=True)
class ServiceDataset:
    """A dataset of the service: its asset's name, the providers it may ask (first: the default chain), whether it
    is partitioned by session, and what it is."""

    name: str
    providers: tuple[str, ...]
    description: str
    by_session: bool = False


SERVICE_DATASETS = {
    d.name: d
    for d in (
        ServiceDataset(
            quotes.DATASET,
            ("finnhub", "massive"),
            by_session=True,
            description="Snapshots of a universe's quotes during the session (Finnhub, then Massive's snapshot): "
            "data/lake/quotes/date=SESSION/<scope>-<HHMM>.parquet, one file per snapshot slot; Finnhub's all-zero "
            "quote is a row without prices, never a price of 0.",
        ),
        ServiceDataset(
            news.DATASET,
            ("massive", "finnhub"),
            description="Company news of a universe and market-wide news (scope `market`) from Massive and Finnhub, "
            "de-duplicated across vendors (one row per article with both ids), tickers canonical, Massive's "
            "sentiment kept; data/lake/news/date=DAY/ by publication day in New York; incremental (cursors).",
        ),
        ServiceDataset(
            fundamentals.FUNDAMENTALS,
            ("finnhub",),
            description="Basic financials per symbol as point-in-time as-of versions (a backtest reads what was "
            "known on its day): data/lake/fundamentals/.",
        ),
        ServiceDataset(
            fundamentals.EARNINGS,
            ("finnhub",),
            description="The earnings calendar and surprises per symbol, as as-of versions: data/lake/earnings/.",
        ),
        ServiceDataset(
            indicators.DATASET,
            ("alphavantage",),
            description="Alpha Vantage's SMA(20), EMA(12), RSI(14) and MACD per symbol, planned within the day's "
            "budget (25 requests on the free plan): the rest waits for the next days' runs; "
            "data/lake/vendor_indicators/indicator=NAME/. A warning check compares SMA(20) with "
            "enriched_stocks_daily's sma_20.",
        ),
    )  # fmt: skip
}


@dataclass(frozen=True)
class ServiceJob:
    """One job of the registry: `dataset` for `scope` from `providers` (in order), launched on `cron` (New York
    time; several strings for several ticks), with `options` for the dataset's collector. `sessions_only`: the
    schedule skips days that are not trading sessions; `market_hours`: and ticks outside regular hours."""

    name: str
    dataset: str
    scope: str
    providers: tuple[str, ...]
    cron: str | Sequence[str]
    description: str
    sessions_only: bool = True
    market_hours: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        """What the job is, as the tags of each of its runs (whoever launches it: the UI, a schedule, the CLI,
        `dagster job execute`): the asset reads its scope, providers and options from them."""
        tags = {JOB_TAG: self.name, SCOPE_TAG: self.scope, PROVIDERS_TAG: ",".join(self.providers)}
        if self.options.get("indicators"):
            tags[INDICATORS_TAG] = ",".join(self.options["indicators"])
        return tags

    def run_config(self, at: str = "", scope: str | None = None, force: bool = False) -> dict:
        """A run's config beyond the job's tags: its time, another scope, `force`."""
        config: dict[str, Any] = {"force": force} if force else {}
        if self.dataset == "rest_stocks_daily":
            return {"ops": {self.dataset: {"config": config | ({"universe": scope} if scope else {})}}}
        config |= {"at": at} if at else {}
        return {"ops": {self.dataset: {"config": config | ({"scope": scope} if scope else {})}}}


def resolved(config: ServiceConfig, tags: Mapping[str, str], spec: ServiceDataset) -> ServiceConfig:
    """`config` with what it leaves empty taken from the run's tags (the job's), then the dataset's defaults."""
    listed = lambda tag: [p for p in tags.get(tag, "").split(",") if p]  # noqa: E731
    return config.model_copy(
        update={
            "scope": config.scope or tags.get(SCOPE_TAG) or "watchlist",
            "providers": config.providers or listed(PROVIDERS_TAG) or list(spec.providers),
            "indicators": config.indicators or listed(INDICATORS_TAG),
        }
    )


QUOTE_TICKS = ("*/15 9-15 * * 1-5", "0 16 * * 1-5")
JOBS: tuple[ServiceJob, ...] = (
    ServiceJob("tiingo_daily_prices_watchlist", "rest_stocks_daily", "watchlist", ("tiingo", "massive", "yahoo"),
               "0 18 * * 1-5", "The watchlist's EOD bars, after Tiingo's 17:30 update."),
    ServiceJob("yahoo_daily_prices_indices", "rest_stocks_daily", "indices", ("massive", "yahoo"),
               "0 18 * * 1-5", "The indices' EOD bars (Tiingo has no indices): Massive, then the free fallback."),
    ServiceJob("finnhub_quote_active", "quotes", "active", ("finnhub", "massive"), QUOTE_TICKS,
               "The active portfolio's quotes every 15 minutes of the session.", market_hours=True),
    ServiceJob("finnhub_quote_indices", "quotes", "indices", ("finnhub", "massive"), QUOTE_TICKS,
               "The indices' quotes every 15 minutes (Finnhub's need a paid plan: Massive serves them otherwise).",
               market_hours=True),
    ServiceJob("finnhub_news_watchlist", "news", "watchlist", ("finnhub",), "0 6-20 * * 1-5",
               "The watchlist's company news from Finnhub, hourly.", sessions_only=False),
    ServiceJob("massive_news_watchlist", "news", "watchlist", ("massive",), "30 6-20 * * 1-5",
               "The watchlist's company news from Massive (with sentiment), hourly.", sessions_only=False),
    ServiceJob("finnhub_news_active", "news", "active", ("finnhub", "massive"), "*/30 6-20 * * 1-5",
               "The active portfolio's company news from both vendors, every 30 minutes.", sessions_only=False),
    ServiceJob("massive_news_market", "news", "market", ("massive",), "*/30 * * * *",
               "Market-wide news from Massive, every 30 minutes.", sessions_only=False),
    ServiceJob("finnhub_news_market", "news", "market", ("finnhub",), "*/30 * * * *",
               "Finnhub's general market news, every 30 minutes.", sessions_only=False),
    ServiceJob("finnhub_fundamentals_watchlist", "fundamentals", "watchlist", ("finnhub",), "0 6 * * 1-5",
               "The watchlist's basic financials, a new as-of version where they changed, before the open."),
    ServiceJob("finnhub_earnings_watchlist", "earnings", "watchlist", ("finnhub",), "30 6 * * 1-5",
               "The watchlist's earnings calendar and surprises, before the open."),
    ServiceJob("alphavantage_sma_watchlist", "vendor_indicators", "watchlist", ("alphavantage",), "30 18 * * 1-5",
               "The watchlist's SMA(20) from Alpha Vantage, as many symbols as the day's budget allows (25 a day "
               "on the free plan: a 100-symbol watchlist is current after four days).",
               options={"indicators": ["SMA_20"]}),
)  # fmt: skip


def _connect(context, names: Sequence[str], zones: DataZones, stack: ExitStack) -> dict[str, Any]:
    """The configured providers among `names`, in order, connected (closed with `stack`)."""
    cache = ResponseCache(state_dir(zones.root))
    stack.callback(cache.close)
    endpoints, unconfigured = {}, []
    for name in names:
        resource = getattr(context.resources, name, None)
        if resource is None or not resource.configured:
            unconfigured.append(name)
            continue
        endpoints[name] = stack.enter_context(resource.connect(zones.root, context.log.info, cache))
    if not endpoints:
        raise dg.Failure(
            f"none of the providers {', '.join(names)} is configured (a key or a base URL): see the providers' "
            "variables in docs/configuration.md",
            allow_retries=False,
        )
    if unconfigured:
        context.log.warning(f"not configured, not asked: {', '.join(unconfigured)}")
    return endpoints


def _run_time(config: ServiceConfig) -> dt.datetime:
    if not config.at:
        return now()
    at = dt.datetime.fromisoformat(config.at)
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def summary_metadata(collected: Collected, endpoints: dict[str, Any], seconds: float) -> dict[str, dg.MetadataValue]:
    """The run's summary as metadata: what was asked and served, what failed and why, requests and cost."""
    requests = {name: e.client.stats.as_dict() for name, e in endpoints.items()}
    summary = collected.as_dict()
    return {
        "symbols_asked": dg.MetadataValue.int(collected.asked),
        "skipped_as_held": dg.MetadataValue.int(collected.skipped),
        "served_by_provider": dg.MetadataValue.json(summary["served_by_provider"]),
        "failed": dg.MetadataValue.int(len(collected.failed)),
        "failed_sample": dg.MetadataValue.json(summary["failed_sample"]),
        "missing": dg.MetadataValue.int(len(collected.missing)),
        "rows_written": dg.MetadataValue.int(collected.rows),
        "files_written": dg.MetadataValue.int(len(collected.written)),
        "set_aside": dg.MetadataValue.int(len(collected.set_aside)),
        "set_aside_sample": dg.MetadataValue.json(summary["set_aside_sample"]),
        "notes": dg.MetadataValue.json(collected.notes),
        "requests": dg.MetadataValue.int(sum(r["requests"] for r in requests.values())),
        "cost": dg.MetadataValue.float(round(sum(r["cost"] for r in requests.values()), 6)),
        "seconds": dg.MetadataValue.float(round(seconds, 3)),
        "provider_requests": dg.MetadataValue.json(requests),
        "provider_breakers": dg.MetadataValue.json({n: e.client.breaker_state() for n, e in endpoints.items()}),
    }


def served_check(dataset: str, collected: Collected) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=ALL_SERVED,
        asset_key=dataset,
        passed=not collected.failed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "failed": dg.MetadataValue.int(len(collected.failed)),
            "failed_sample": dg.MetadataValue.json(collected.failed[:LOGGED]),
        },
    )


Collect = Callable[[dict[str, Any], list[str], DataZones, dt.datetime, ServiceConfig, Any], Collected]


def build_service_asset(spec: ServiceDataset, collect: Collect, extra_checks=(), more_checks=None):
    """The asset of `spec`: resolve the universe, connect its providers, `collect`, report and check."""
    checks = [
        dg.AssetCheckSpec(ALL_SERVED, asset=spec.name,
                          description="Warns when some symbols failed on every provider asked (named in the run; asked "
                          "again at the next run)."),
        *extra_checks,
    ]  # fmt: skip

    @dg.asset(
        name=spec.name,
        group_name="market_data",
        partitions_def=session_partitions(DAILY.calendar) if spec.by_session else None,
        kinds={"rest", "parquet"},
        pool=REST_POOL,
        required_resource_keys={"zones", UNIVERSES, *spec.providers},
        check_specs=checks,
        description=spec.description,
    )
    def service_asset(context: dg.AssetExecutionContext, config: ServiceConfig):
        zones: DataZones = context.resources.zones
        started = time.monotonic()
        config = resolved(config, context.run.tags, spec)
        at = _run_time(config)
        names = config.providers
        unknown = [n for n in names if n not in spec.providers]
        if unknown:
            raise dg.Failure(f"{spec.name}: cannot ask {', '.join(unknown)} (it asks {', '.join(spec.providers)})")
        if config.scope == "market":
            symbols, meta = [], {"universe": dg.MetadataValue.text("market")}
        else:
            version, meta = universe_for_run(context, getattr(context.resources, UNIVERSES), config.scope)
            symbols = list(version.members)
        with ExitStack() as stack:
            endpoints = _connect(context, names, zones, stack)
            collected = collect(endpoints, symbols, zones, at, config, context)
            metadata = meta | summary_metadata(collected, endpoints, time.monotonic() - started)
        pruned = prune_audit(zones.root, zones.audit_retention_days, at.date())
        metadata["audit_files_pruned"] = dg.MetadataValue.int(pruned)
        for line in collected.failed[:LOGGED]:
            context.log.warning(f"{spec.name}: {line}")
        context.log.info(
            f"{spec.name} {config.scope}: asked {collected.asked}, held {collected.skipped}, served "
            f"{collected.served}, failed {len(collected.failed)}, {collected.rows} rows in "
            f"{len(collected.written)} files, {metadata['requests'].value} requests"
        )
        if collected.failed and not collected.served and not collected.written:
            raise dg.Failure(
                f"{spec.name}: nothing was served, {len(collected.failed)} failed, e.g. {collected.failed[0]}",
                metadata=metadata, allow_retries=False,
            )  # fmt: skip
        results = [served_check(spec.name, collected)]
        if more_checks is not None:
            results += more_checks(zones, collected)
        return dg.MaterializeResult(metadata=metadata, check_results=results)

    return service_asset


def _collect_quotes(endpoints, symbols, zones, at, config, context) -> Collected:
    session = dt.date.fromisoformat(context.partition_key)
    if session != current_session(at):
        raise dg.Failure(
            f"quotes {session}: a snapshot is a quote of its time ({at.isoformat(timespec='minutes')}), which belongs "
            f"to session {current_session(at)}: run the current session's partition (or set `at`)",
            allow_retries=False,
        )
    return quotes.collect_quotes(
        endpoints, symbols, zones.lake_root, session, config.scope, at, workers=config.workers, force=config.force
    )


def _collect_news(endpoints, symbols, zones, at, config, context) -> Collected:
    if config.scope == "market":
        return news.collect_market_news(endpoints, zones.lake_root, at, force=config.force)
    return news.collect_company_news(
        endpoints, symbols, zones.lake_root, at, workers=config.workers, force=config.force
    )


def _collect_fundamentals(endpoints, symbols, zones, at, config, context) -> Collected:
    (provider,) = endpoints.values()
    return fundamentals.collect_fundamentals(
        provider, symbols, zones.lake_root, at, workers=config.workers, force=config.force
    )


def _collect_earnings(endpoints, symbols, zones, at, config, context) -> Collected:
    (provider,) = endpoints.values()
    return fundamentals.collect_earnings(provider, symbols, zones.lake_root, at, workers=config.workers,
                                         force=config.force)  # fmt: skip


def _collect_indicators(endpoints, symbols, zones, at, config, context) -> Collected:
    (provider,) = endpoints.values()
    day = at.astimezone(ZoneInfo(NEW_YORK)).date()
    closes = regular_hours(day)[1] if is_session(DAILY.calendar, day) else None
    if closes is None or at < closes:
        closes = regular_hours(previous_session(DAILY.calendar, day) or day)[1]
    asked = [indicators.Indicator.parse(n) for n in config.indicators] or list(indicators.DEFAULT_INDICATORS)
    return indicators.collect_indicators(provider, symbols, zones.lake_root, at, closes, asked, force=config.force)


def indicator_check(zones: DataZones, collected: Collected) -> list[dg.AssetCheckResult]:
    """Alpha Vantage's SMA(20) against enriched_stocks_daily's sma_20 where both have a ticker and a session."""
    vendor = indicators.read_indicators(zones.lake_root, ["SMA_20"]).collect()
    ours = pl.DataFrame()
    if vendor.height and (zones.enriched_root / DAILY.name).is_dir():  # enriched_stocks_daily's folder
        tickers = vendor["ticker"].unique().to_list()
        ours = (
            read_enriched_daily(zones.enriched_root, DAILY.name)
            .filter(pl.col("ticker").is_in(tickers))
            .select("ticker", pl.col("date").cast(pl.Date), "sma_20")
            .collect()
        )
    compared, off = (0, pl.DataFrame()) if not ours.height else indicators.compare_with_features(
        vendor, ours, {"SMA_20/SMA": "sma_20"}, SMA_TOLERANCE
    )  # fmt: skip
    metadata = {
        "compared": dg.MetadataValue.int(compared),
        "mismatches": dg.MetadataValue.int(off.height),
        "tolerance_relative": dg.MetadataValue.float(SMA_TOLERANCE),
    }
    if off.height:
        metadata["mismatch_sample"] = dg.MetadataValue.md(markdown_table(off.head(LOGGED)))
    return [
        dg.AssetCheckResult(
            check_name=MATCHES_FEATURES,
            asset_key=indicators.DATASET,
            passed=off.height == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
        )
    ]


COLLECTORS = {
    quotes.DATASET: _collect_quotes,
    news.DATASET: _collect_news,
    fundamentals.FUNDAMENTALS: _collect_fundamentals,
    fundamentals.EARNINGS: _collect_earnings,
    indicators.DATASET: _collect_indicators,
}


def service_assets() -> list[dg.AssetsDefinition]:
    out = []
    for name, spec in SERVICE_DATASETS.items():
        extra, more = (), None
        if name == indicators.DATASET:
            extra = [
                dg.AssetCheckSpec(
                    MATCHES_FEATURES, asset=name, additional_deps=[dg.AssetKey("enriched_stocks_daily")],
                    description="Warns where Alpha Vantage's SMA(20) and enriched_stocks_daily's sma_20 differ past a "
                    f"relative {SMA_TOLERANCE:g} on the same ticker and session (vendor prices are raw; ours are "
                    "adjusted where reference data is built, so a split or dividend in the window differs).",
                )
            ]  # fmt: skip
            more = indicator_check
        out.append(build_service_asset(spec, COLLECTORS[name], extra, more))
    return out


def _partitioned(job: ServiceJob) -> bool:
    return job.dataset == "rest_stocks_daily" or SERVICE_DATASETS[job.dataset].by_session


def build_job(job: ServiceJob) -> Any:
    """`job`'s asset, the job's scope, providers and options in its tags (`ServiceJob.tags`)."""
    return dg.define_asset_job(
        job.name,
        selection=dg.AssetSelection.assets(job.dataset),
        partitions_def=session_partitions(DAILY.calendar) if _partitioned(job) else None,
        description=f"{job.description} ({job.dataset} for {job.scope}, from {', '.join(job.providers)})",
        tags=job.tags(),
    )


def build_schedule(job: ServiceJob, target: Any) -> dg.ScheduleDefinition:
    """The job's schedule (stopped by default): at each tick, in New York time, the run of that tick, with the
    day's session as its partition where the dataset has one; days without a session (and, for quotes, ticks
    outside regular hours) are skipped with the reason."""

    def evaluate(context: dg.ScheduleEvaluationContext):
        tick = context.scheduled_execution_time.astimezone(ZoneInfo(NEW_YORK))
        day = tick.date()
        if job.sessions_only and not is_session(DAILY.calendar, day):
            return dg.SkipReason(f"{day} is not a trading session")
        if job.market_hours:
            opens, closes = regular_hours(day)
            if not opens <= tick <= closes:
                return dg.SkipReason(f"{tick:%H:%M} is outside the session's regular hours")
        return dg.RunRequest(
            run_key=f"{job.name}:{tick.isoformat()}",
            run_config=job.run_config(at=tick.isoformat()),
            partition_key=day.isoformat() if _partitioned(job) else None,
        )

    return dg.ScheduleDefinition(
        name=f"{job.name}_schedule",
        cron_schedule=job.cron if isinstance(job.cron, str) else list(job.cron),
        job=target,
        execution_fn=evaluate,
        execution_timezone=NEW_YORK,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"{job.name} at {job.cron if isinstance(job.cron, str) else ' and '.join(job.cron)} New York time"
        + (", trading sessions only" if job.sessions_only else ""),
    )


def service_defs() -> dg.Definitions:
    """The service datasets' assets, and every job of `JOBS` with its schedule (the EOD prices' jobs ask only
    those of their providers that are in rest_stocks_daily's chain, QUANT_ASSETS_DAILY_BARS_PROVIDERS)."""
    jobs = [build_job(job) for job in JOBS]
    schedules = [build_schedule(job, target) for job, target in zip(JOBS, jobs)]
    return dg.Definitions(assets=service_assets(), jobs=jobs, schedules=schedules)


def current_session(at: dt.datetime) -> dt.date:
    """The session a run at `at` belongs to: today's in New York while it is a session, else the last one."""
    day = at.astimezone(ZoneInfo(NEW_YORK)).date()
    return day if is_session(DAILY.calendar, day) else previous_session(DAILY.calendar, day) or day


def run_job(
    job: ServiceJob,
    instance: dg.DagsterInstance,
    scope: str | None = None,
    partition: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run `job` now on `instance` (so the UI shows it), for `scope` (default its own) and, where the dataset is
    partitioned by session, `partition` (default the current session); the run's summary as plain values."""
    from quant_assets.definitions import defs  # the code location, as the UI loads it

    config = job.run_config(scope=scope, force=force)
    key = (partition or current_session(now()).isoformat()) if _partitioned(job) else None
    result = defs.resolve_job_def(job.name).execute_in_process(
        run_config=config, instance=instance, partition_key=key, raise_on_error=False,
        tags={"quant_assets/trigger": "cli"},
    )  # fmt: skip
    summary: dict[str, Any] = {"job": job.name, "dataset": job.dataset, "scope": scope or job.scope,
                               "partition": key, "run_id": result.run_id, "success": result.success}  # fmt: skip
    for materialization in result.asset_materializations_for_node(job.dataset)[-1:]:
        summary |= {name: value.value for name, value in materialization.metadata.items()}
    if not result.success:
        failures = [e.step_failure_data for e in result.all_events if e.is_step_failure]
        user = failures[0].user_failure_data if failures else None
        if user is not None:  # a dg.Failure: its description and the run's summary
            summary |= {name: value.value for name, value in user.metadata.items()}
            summary["error"] = user.description
        else:
            summary["error"] = failures[0].error.message.strip() if failures and failures[0].error else "the run failed"
    return summary
