"""REST daily bars' Dagster wiring: `rest_stocks_daily`, the daily bars of a universe from the hybrid chain of
providers (cache, then the providers of `QUANT_ASSETS_DAILY_BARS_PROVIDERS` in order), partitioned by the same
sessions as the flat files; its checks (against `lake_stocks_daily` where both hold a ticker, and the providers'
health); its job. The work is in `providers/` (`hybrid.py`, `landing.py`).
"""

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import dagster as dg
import polars as pl
from pydantic import Field

from quant_assets.clock import now
from quant_assets.datasets import DATASETS
from quant_assets.defs.chain import BACKFILL_POLICY, range_results
from quant_assets.defs.partitions import session_partitions
from quant_assets.defs.resources import REST_POOL, DataZones
from quant_assets.defs.universes import RESOURCE_KEY as UNIVERSES
from quant_assets.defs.universes import universe_for_run
from quant_assets.lake import partition_path, scan
from quant_assets.providers.cache import ResponseCache
from quant_assets.providers.client import prune_audit
from quant_assets.providers.health import provider_health
from quant_assets.providers.hybrid import HybridSource
from quant_assets.providers.landing import DATASET, merge_sessions, read_ledger, record_fetched, requests_for
from quant_assets.providers.state import state_dir
from quant_assets.reference.reconcile import reconcile_with_rest
from quant_assets.sessions import parse_session
from quant_assets.tables import markdown_table

DAILY = DATASETS["stocks_daily"]
ASSET = DATASET
SCOPE_TAG = "quant_assets/scope"  # a market-data job's universe and providers (`defs/service.py` tags its jobs)
PROVIDERS_TAG = "quant_assets/providers"
RECONCILES = "reconciles_with_lake"
HEALTHY = "providers_healthy"
LOGGED = 20  # failed tickers logged per run
BATCH = 200  # tickers fetched before their rows are merged into the partitions: memory is bounded by a batch


class RestBarsConfig(dg.Config):
    """Which universe a run fetches, and how."""

    universe: str = Field(
        default="",
        description="The universe whose members' bars are fetched; empty: the job's (its "
        "`quant_assets/scope` tag), else watchlist.",
    )
    force: bool = Field(
        default=False, description="Ask every member again for every session, past the ledger and the cache."
    )
    cache_hours: float = Field(default=12.0, description="How long a provider's answer is served from the cache.")
    workers: int = Field(default=8, description="Requests in flight at once (the rate limits pace them).")
    providers: list[str] = Field(
        default=[],
        description="The chain's providers this run asks, in order (empty: the whole chain); one not in "
        "QUANT_ASSETS_DAILY_BARS_PROVIDERS is not asked. Empty: the job's (`quant_assets/providers` tag), else "
        "the whole chain.",
    )


def bars_providers(context: dg.AssetExecutionContext, names: Sequence[str]):
    """The configured providers of `names`, in order, as (name, resource): a provider is configured when it has a
    key or a base URL of one's own (Yahoo's needs neither)."""
    chosen = []
    for name in names:
        resource = getattr(context.resources, name, None)
        if resource is not None and resource.configured:
            chosen.append((name, resource))
    return chosen


@contextmanager
def connected(providers, data_root, log, cache: ResponseCache) -> Iterator[dict[str, object]]:
    """Each provider's endpoints over its own client, all closed on exit."""
    with ExitStack() as stack:
        yield {name: stack.enter_context(resource.connect(data_root, log, cache)) for name, resource in providers}


def build_rest_daily(chain: Sequence[str]) -> dg.AssetsDefinition:
    lake_key = dg.AssetKey(f"lake_{DAILY.name}")

    @dg.asset(
        name=ASSET,
        group_name="rest",
        partitions_def=session_partitions(DAILY.calendar),
        backfill_policy=BACKFILL_POLICY,
        kinds={"rest", "parquet"},
        pool=REST_POOL,
        required_resource_keys={"zones", UNIVERSES, *chain},
        check_specs=[
            dg.AssetCheckSpec(
                RECONCILES,
                asset=ASSET,
                additional_deps=[lake_key],
                description=(
                    "Warns where lake_stocks_daily and rest_stocks_daily both hold a ticker on a session and their raw "
                    "bars differ past reconcile.TOLERANCES."
                ),
            ),
            dg.AssetCheckSpec(
                HEALTHY,
                asset=ASSET,
                description=(
                    "Warns when a provider of the chain is degraded (breaker not closed, over 20% of its calls failed, or "
                    "80% of its day's budget spent): quant-assets providers for the details."
                ),
            ),
        ],  # fmt: skip
        description="Daily bars of a universe's members (config `universe`, default watchlist) from the hybrid "
        f"chain of REST providers (the cache, then {', '.join(chain)}), with raw and vendor-adjusted prices, the "
        "day's dividend and split factor, and the provider each row came from; in lake_stocks_daily's schema plus "
        "those columns, under data/lake/rest_stocks_daily/date=YYYY-MM-DD/. A run asks only what its members lack "
        "in its sessions (a ledger), so an added symbol costs its own history; a removed one keeps its rows.",
    )
    def rest_daily(context: dg.AssetExecutionContext, config: RestBarsConfig):
        zones: DataZones = context.resources.zones
        tags = context.run.tags
        universe = config.universe or tags.get(SCOPE_TAG) or "watchlist"
        version, universe_meta = universe_for_run(context, getattr(context.resources, UNIVERSES), universe)
        wanted_providers = config.providers or [p for p in tags.get(PROVIDERS_TAG, "").split(",") if p]
        asked = [p for p in wanted_providers if p in chain] if wanted_providers else list(chain)
        if len(asked) < len(wanted_providers):
            dropped = ", ".join(p for p in wanted_providers if p not in chain)
            context.log.warning(f"{ASSET}: not in the chain ({', '.join(chain)}), not asked: {dropped}")
        providers = bars_providers(context, asked)
        if not providers:
            raise dg.Failure(
                f"{ASSET}: none of the providers {', '.join(chain)} is configured (a key or a base URL): see "
                "QUANT_ASSETS_DAILY_BARS_PROVIDERS and the providers' variables in docs/configuration.md",
                allow_retries=False,
            )
        sessions = sorted(parse_session(k) for k in context.partition_keys)
        wanted = requests_for(version.members, sessions, read_ledger(zones.lake_root), config.force)
        context.log.info(
            f"{ASSET}: universe {version.universe} version {version.version} ({len(version.members)} members): "
            f"{len(wanted)} to fetch for {sessions[0]}..{sessions[-1]} from {', '.join(n for n, _ in providers)}"
        )
        cache = ResponseCache(state_dir(zones.root))
        written, failed, aside, counts = {}, [], [], {"fetched": 0, "cached": 0, "fell_back": 0}
        by_provider: dict[str, int] = {}
        try:
            with connected(providers, zones.root, context.log.info, cache) as endpoints:
                source = HybridSource(endpoints, config.cache_hours * 3600, config.force, config.workers)
                for first in range(0, len(wanted), BATCH):
                    batch = wanted[first : first + BATCH]
                    frames, answered = [], []
                    for fetched in source.fetch_all(batch):
                        if fetched.failed:
                            failed.append(fetched.error())
                            continue
                        counts["fetched"] += 1
                        counts["cached"] += fetched.cached
                        counts["fell_back"] += fetched.fell_back
                        by_provider[fetched.provider] = by_provider.get(fetched.provider, 0) + 1
                        aside += fetched.set_aside
                        frames.append(fetched.frame.filter(pl.col("date").is_in(sessions)))
                        answered.append((fetched.symbol, fetched.start, fetched.end, fetched.provider))
                    if frames:
                        rows = pl.concat(frames, how="vertical_relaxed")
                        written |= merge_sessions(zones.lake_root, rows, [t for t, *_ in answered])
                    record_fetched(zones.lake_root, answered, dt.datetime.now(dt.UTC))
                stats = {name: e.client.stats.as_dict() for name, e in endpoints.items()}
                breakers = {name: e.client.breaker_state() for name, e in endpoints.items()}
        finally:
            cache.close()
        for line in failed[:LOGGED]:
            context.log.error(f"{ASSET}: {line}")
        if wanted and len(failed) == len(wanted):
            raise dg.Failure(
                f"{ASSET}: every one of the {len(wanted)} members failed on every provider, e.g. {failed[0]}",
                allow_retries=False,
            )
        pruned = prune_audit(zones.root, zones.audit_retention_days, now().date())
        run_meta = {
            "audit_files_pruned": dg.MetadataValue.int(pruned),
            **universe_meta,
            "members_fetched": dg.MetadataValue.int(counts["fetched"]),
            "members_from_cache": dg.MetadataValue.int(counts["cached"]),
            "members_fallen_back": dg.MetadataValue.int(counts["fell_back"]),
            "members_by_provider": dg.MetadataValue.json(by_provider),
            "members_failed": dg.MetadataValue.int(len(failed)),
            "failed_sample": dg.MetadataValue.json(failed[:LOGGED]),
            "records_set_aside": dg.MetadataValue.int(len(aside)),
            "set_aside_sample": dg.MetadataValue.json(aside[:LOGGED]),
            "provider_requests": dg.MetadataValue.json(stats),
            "provider_breakers": dg.MetadataValue.json(breakers),
        }
        built = {}
        for session in sessions:
            done = written.get(session)
            path = partition_path(zones.lake_root, DATASET, session)
            if done is None and not path.exists():
                continue
            meta = dict(run_meta)
            if done is not None:
                meta |= {
                    "dagster/row_count": dg.MetadataValue.int(done["rows"]),
                    "tickers": dg.MetadataValue.int(done["tickers"]),
                    "rows_by_provider": dg.MetadataValue.json(done["by"]),
                    "path": dg.MetadataValue.path(str(done["path"])),
                }
            built[session.isoformat()] = meta
        missing = [s for s in sessions if s.isoformat() not in built]
        checks = [
            reconcile_check(zones, sessions),
            health_check(zones.root, [n for n, _ in providers]),
        ]
        yield from range_results(context, ASSET, built, missing, "have no bars from any provider", checks)

    return rest_daily


def reconcile_check(zones: DataZones, sessions: Sequence[dt.date]) -> dg.AssetCheckResult:
    """`rest_stocks_daily` against `lake_stocks_daily` where both hold a ticker on a session (raw bars)."""
    compared, found = 0, []
    for session in sessions:
        rest_path = partition_path(zones.lake_root, DATASET, session)
        lake_path = partition_path(zones.lake_root, DAILY.name, session)
        if not (rest_path.exists() and lake_path.exists()):
            continue
        rest = pl.read_parquet(rest_path)
        lake = scan(zones.lake_root, DAILY.name, [session]).filter(pl.col("ticker").is_in(rest["ticker"])).collect()
        both = rest.filter(pl.col("ticker").is_in(lake["ticker"]))
        compared += both.height
        off = reconcile_with_rest(lake, both)
        found.append(off.with_columns(session=pl.lit(session)))
    mismatches = pl.concat(found) if found else pl.DataFrame()
    metadata = {
        "tickers_compared": dg.MetadataValue.int(compared),
        "mismatches": dg.MetadataValue.int(mismatches.height),
    }
    if mismatches.height:
        metadata["mismatch_sample"] = dg.MetadataValue.md(markdown_table(mismatches.head(20)))
    return dg.AssetCheckResult(
        check_name=RECONCILES,
        asset_key=ASSET,
        passed=mismatches.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )


def health_check(data_root, names: Sequence[str]) -> dg.AssetCheckResult:
    """Whether every provider of the chain is healthy (`providers/health.py`), with each one's summary."""
    rows = [r for r in provider_health(data_root) if r["provider"] in names]
    bad = [r for r in rows if r["status"] != "ok"]
    table = pl.DataFrame(
        [
            {
                "provider": r["provider"],
                "status": r["status"],
                "calls": r["calls"],
                "failure_rate": r["failure_rate"],
                "p95_ms": r["latency_p95_ms"],
                "cache_hits": r["cache_hits"],
                "spent_today": r["spent_today"],
                "budget": r["daily_budget"],
                "breaker": r["breaker"],
                "warnings": "; ".join(r["warnings"]),
            }
            for r in rows
        ]
    )
    return dg.AssetCheckResult(
        check_name=HEALTHY,
        asset_key=ASSET,
        passed=not bad,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "providers": dg.MetadataValue.md(markdown_table(table)) if rows else dg.MetadataValue.text("none used"),
            "degraded": dg.MetadataValue.json([f"{r['provider']}: {'; '.join(r['warnings'])}" for r in bad]),
        },
    )


def rest_defs(chain: Sequence[str]) -> dg.Definitions:
    """`rest_stocks_daily`, its checks and its job (`fetch_rest_daily`, a range of sessions in one run)."""
    asset = build_rest_daily(chain)
    job = dg.define_asset_job(
        "fetch_rest_daily",
        selection=dg.AssetSelection.assets(asset),
        partitions_def=session_partitions(DAILY.calendar),
        description=f"{ASSET} for a range of sessions: the universe's members' daily bars from the REST providers.",
    )
    return dg.Definitions(assets=[asset], jobs=[job])
