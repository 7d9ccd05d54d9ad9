"""The reference layer's Dagster wiring: splits, dividends and tickers from the Massive REST API as versioned
tables, the adjustment factors derived from them, the cross-source check of `lake_stocks_daily` against the REST
grouped daily bars, and their jobs and schedules. The work is in `providers/` and `reference/`."""

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl

from quant_assets.datasets import DATASETS, Dataset
from quant_assets.defs.resources import REST_POOL, DataZones, MassiveRest
from quant_assets.lake import partition_path, scan, sessions_in, ticker_filter
from quant_assets.names import shown
from quant_assets.providers.errors import ProviderError
from quant_assets.providers.massive import Massive
from quant_assets.reference.factors import (
    FACTOR_RANGE,
    checked_actions,
    distinct_actions,
    dividend_actions,
    factor_table,
    previous_closes,
    read_factors,
    refused_factors,
    write_factors,
)
from quant_assets.reference.factors import (
    TABLE as FACTORS,
)
from quant_assets.reference.reconcile import TOLERANCES, reconcile_with_rest
from quant_assets.reference.tickers import with_ticker_history
from quant_assets.reference.versions import latest_version, read_version, table_dir, write_version
from quant_assets.sessions import parse_session, sessions
from quant_assets.tables import markdown_table

GROUP = "reference"
DAILY = DATASETS["stocks_daily"]
SCHEDULE_ZONE = "America/New_York"
RECONCILES_WITH_REST = "reconciles_with_rest_daily"


class AsOfConfig(dg.Config):
    """Which day the refresh counts as (its version's date): today in New York unless set (YYYY-MM-DD)."""

    as_of: str = ""

    def date(self) -> dt.date:
        return dt.date.fromisoformat(self.as_of) if self.as_of else dt.datetime.now(ZoneInfo(SCHEDULE_ZONE)).date()


class SessionsConfig(dg.Config):
    """Which sessions a check compares: the run's partitions when it has them, else `start`..`end` (YYYY-MM-DD) of
    the lake's sessions; with neither, the newest session in the lake."""

    start: str = ""
    end: str = ""

    def sessions(self, context: dg.OpExecutionContext, lake_root: Path, dataset: Dataset) -> list[dt.date]:
        if context.has_partitions:
            return [parse_session(key) for key in context.partition_keys]
        held = sessions_in(lake_root, dataset.name)
        if not (self.start or self.end):
            return held[-1:]
        first = dt.date.fromisoformat(self.start) if self.start else dt.date.min
        last = dt.date.fromisoformat(self.end) if self.end else dt.date.max
        return [s for s in held if first <= s <= last]


def _provider_metadata(massive: Massive) -> dict[str, dg.MetadataValue]:
    """The client's requests and breaker, and the vendor's results set aside (count and the first reasons)."""
    client = massive.client
    return {
        "provider_requests": dg.MetadataValue.json(client.stats.as_dict()),
        "provider_breaker": dg.MetadataValue.json(client.breaker_state()),
        "records_set_aside": dg.MetadataValue.int(len(massive.set_aside)),
        "set_aside_sample": dg.MetadataValue.json(massive.set_aside[:20]),
    }


def _version_metadata(frame: pl.DataFrame, folder: Path, version: dt.date, written: bool) -> dict:
    return {
        "dagster/row_count": dg.MetadataValue.int(frame.height),
        "version": dg.MetadataValue.text(version.isoformat()),
        "new_version": dg.MetadataValue.bool(written),
        "path": dg.MetadataValue.path(str(folder / f"as_of={version.isoformat()}.parquet")),
    }


# A table's fetch: the provider and the version known before this refresh -> the new table and extra metadata.
Fetch = Callable[[Massive, pl.DataFrame | None], tuple[pl.DataFrame, dict]]


def build_reference_table(name: str, fetch: Fetch, description: str):
    @dg.asset(name=name, group_name=GROUP, kinds={"parquet", "rest"}, description=description, pool=REST_POOL)
    def reference_table(context: dg.AssetExecutionContext, config: AsOfConfig, massive: MassiveRest, zones: DataZones):
        as_of = config.date()
        folder = table_dir(zones.reference_root, name)
        with massive.connect(zones.root, context.log.info) as client:
            frame, extra = fetch(client, read_version(folder, as_of - dt.timedelta(days=1)))
            version, written = write_version(folder, frame, as_of)
            context.log.info(f"{name}: {frame.height} rows, version {version} ({'new' if written else 'unchanged'})")
            return dg.MaterializeResult(
                metadata={
                    **_version_metadata(frame, folder, version, written),
                    **{k: dg.MetadataValue.int(v) for k, v in extra.items()},
                    **_provider_metadata(client),
                }
            )

    return reference_table


def _tickers(massive: Massive, previous: pl.DataFrame | None) -> tuple[pl.DataFrame, dict]:
    frame, fetched, failed = with_ticker_history(massive.tickers(), previous, massive.ticker_events)
    if failed:  # kept with a null history, asked for again next time
        massive.client.log(f"ticker events of {len(failed)} tickers could not be fetched, e.g. {failed[0]}")
    return frame, {"ticker_events_fetched": fetched, "ticker_events_failed": len(failed)}


reference_splits = build_reference_table(
    "reference_splits",
    lambda massive, _: (massive.splits(), {}),
    "Every split from the Massive REST API (/v3/reference/splits), typed, with the vendor's fields. A version per "
    "as-of date where the content changed, under data/reference/reference_splits/.",
)
reference_dividends = build_reference_table(
    "reference_dividends",
    lambda massive, _: (massive.dividends(), {}),
    "Every dividend from the Massive REST API (/v3/reference/dividends), typed, with the vendor's fields (cash "
    "amount, ex/record/pay dates, type). Versioned like reference_splits.",
)
reference_tickers = build_reference_table(
    "reference_tickers",
    _tickers,
    "Active and delisted stock tickers from the Massive REST API (/v3/reference/tickers: names, exchange, FIGIs, "
    "delisting times), with each ticker's listing date and ticker changes from its ticker events "
    "(/vX/reference/tickers/{id}/events; asked only for tickers not in the previous version). Versioned like "
    "reference_splits.",
)


@dg.asset(
    name=FACTORS,
    group_name=GROUP,
    deps=[reference_splits, reference_dividends, dg.AssetKey(f"lake_{DAILY.name}")],
    kinds={"parquet", "polars"},
    description="Backward adjustment factors per ticker and ex-date from the splits and dividends (dividend factor "
    "1 - cash / previous raw close, from the lake); adjusted = raw x factor (see reference/factors.py for the "
    "conventions). One folder per ticker under data/reference/adjustment_factors/, a new version only for the "
    "tickers whose factors changed; the metadata lists them, so that later layers rewrite only those.",
)
def adjustment_factors(context: dg.AssetExecutionContext, config: AsOfConfig, zones: DataZones):
    as_of = config.date()
    root = zones.reference_root
    splits = read_version(table_dir(root, "reference_splits"), as_of)
    dividends = read_version(table_dir(root, "reference_dividends"), as_of)
    if splits is None or dividends is None:
        raise dg.Failure(
            f"adjustment_factors as of {as_of}: no version of reference_splits or reference_dividends known on that "
            "day; materialise them first"
        )
    splits, dividends, repeated = distinct_actions(splits, dividends)
    splits, dividends, unusable = checked_actions(splits, dividends)
    for action, ticker, ex_date, reason in unusable.head(20).iter_rows():
        context.log.warning(f"adjustment factors: {action} of {shown(ticker)} on {ex_date} set aside: {reason}")
    # Only actions in effect on the as-of day: an announced split must not adjust today's prices before it happens.
    announced = splits.filter(pl.col("execution_date") > as_of).height
    announced += dividends.filter(pl.col("ex_dividend_date") > as_of).height
    splits = splits.filter(pl.col("execution_date") <= as_of)
    dividends = dividends.filter(pl.col("ex_dividend_date") <= as_of)
    days = sessions(DAILY.calendar, dt.date(1990, 1, 2), as_of)
    held = set(sessions_in(zones.lake_root, DAILY.name))
    closes = previous_closes(dividends, lambda wanted: scan(zones.lake_root, DAILY.name, wanted), days, held)
    actions, skipped = dividend_actions(dividends, closes)
    table = factor_table(splits, actions)
    refused = refused_factors(table)
    if refused:  # never published: those tickers keep the factors known before
        context.log.error(
            f"adjustment factors: {len(refused)} tickers have factors that are not finite or outside "
            f"{FACTOR_RANGE[0]:g}..{FACTOR_RANGE[1]:g}, kept as they were: {', '.join(map(shown, refused[:10]))}"
        )
        kept = read_factors(root, as_of, tickers=refused)
        table = pl.concat([table.filter(~pl.col("ticker").is_in(refused)), kept]).sort("ticker", "ex_date")
    changed = write_factors(root, table, as_of)
    pending = table.filter(pl.col("pending"))
    context.log.info(f"adjustment factors as of {as_of}: {len(changed)} tickers changed, {pending.height} pending")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": dg.MetadataValue.int(table.height),
            "tickers": dg.MetadataValue.int(table["ticker"].n_unique()),
            "changed_tickers": dg.MetadataValue.json(changed),
            "changed_count": dg.MetadataValue.int(len(changed)),
            "as_of": dg.MetadataValue.text(as_of.isoformat()),
            "splits_version": dg.MetadataValue.text(str(latest_version(table_dir(root, "reference_splits"), as_of))),
            "dividends_version": dg.MetadataValue.text(
                str(latest_version(table_dir(root, "reference_dividends"), as_of))
            ),
            "pending_dividends": dg.MetadataValue.int(pending.height),
            "pending_sample": dg.MetadataValue.md(
                markdown_table(pending.select("ticker", "ex_date", "cash_amount").head(30))
            ),
            "skipped_dividends": dg.MetadataValue.int(skipped.height),
            "skipped_sample": dg.MetadataValue.md(markdown_table(skipped.head(30))),
            "repeated_records_dropped": dg.MetadataValue.int(repeated),
            "actions_set_aside": dg.MetadataValue.int(unusable.height),
            "set_aside_sample": dg.MetadataValue.md(markdown_table(unusable.head(30))),
            "refused_tickers": dg.MetadataValue.json(refused),
            "announced_actions": dg.MetadataValue.int(announced),
            "path": dg.MetadataValue.path(str(root / FACTORS)),
        }
    )


def build_rest_reconciliation_check(dataset: Dataset) -> dg.AssetChecksDefinition:
    """A warning check on `lake_<dataset>`: per ticker, the flat-file day bars against the REST grouped daily bars."""

    @dg.asset_check(
        asset=f"lake_{dataset.name}",
        name=RECONCILES_WITH_REST,
        description="Per ticker, the flat-file day bar against the Massive REST grouped daily bar (unadjusted) of the "
        f"same session: prices within {TOLERANCES['price']:.2%}, volume within {TOLERANCES['volume']:.0%}, and the "
        "same tickers. A warning: the two sources are corrected at different times.",
    )
    def reconciles_with_rest(
        context: dg.AssetCheckExecutionContext, config: SessionsConfig, zones: DataZones, massive: MassiveRest
    ):
        found, compared, skipped = [], 0, []
        with massive.connect(zones.root, context.log.info) as client:
            for session in config.sessions(context.op_execution_context, zones.lake_root, dataset):
                key = session.isoformat()
                if not partition_path(zones.lake_root, dataset.name, session).exists():
                    skipped.append(key)
                    continue
                lake = scan(zones.lake_root, dataset.name, [session]).collect()
                try:
                    rest = client.grouped_daily(session)
                except ProviderError as error:  # the lake is not wrong because the provider is down
                    context.log.warning(f"{RECONCILES_WITH_REST} {key}: not compared: {error}")
                    return dg.AssetCheckResult(
                        passed=False,
                        severity=dg.AssetCheckSeverity.WARN,
                        metadata={"not_compared_from": key, **_provider_metadata(client)},
                        description=f"not compared from {key} on: {error}",
                    )
                if (kept := ticker_filter(zones.tickers)) is not None:  # the lake keeps only these tickers
                    rest = rest.filter(kept)
                mismatches = reconcile_with_rest(lake, rest)
                compared += lake.height
                found.append(mismatches.with_columns(session=pl.lit(key)))
            provider = _provider_metadata(client)
        table = pl.concat(found) if found else pl.DataFrame()
        context.log.info(
            f"{RECONCILES_WITH_REST}: {compared} ticker-sessions compared over {len(found)} sessions, "
            f"{table.height} disagree, {len(skipped)} sessions not in the lake"
        )
        metadata = {
            "tickers_compared": dg.MetadataValue.int(compared),
            "tickers_mismatched": dg.MetadataValue.int(table.height),
            "sessions_skipped": dg.MetadataValue.json(skipped),
            **provider,
        }
        if table.height:
            metadata["mismatches"] = dg.MetadataValue.md(markdown_table(table.head(30)))
        return dg.AssetCheckResult(
            passed=table.height == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
            description=f"{table.height} tickers disagree with the REST daily bars" if table.height else None,
        )

    return reconciles_with_rest


def reference_defs(datasets: list[Dataset], rest_configured: bool) -> tuple[dg.Definitions, list]:
    """The reference assets with their daily job and schedule; with `stocks_daily` enabled, the factors; and, when
    a REST provider is configured, the REST reconciliation check with its job. Also returns the check, which the
    ingest jobs leave out: ingesting never waits on the provider.

    Without a configured provider the check is not defined at all: `dagster asset materialize --select
    lake_stocks_daily` runs every check of the asset, and would otherwise call the vendor with no key."""
    assets = [reference_splits, reference_dividends, reference_tickers]
    checks = []
    if DAILY in datasets:
        assets.append(adjustment_factors)
        if rest_configured:
            checks.append(build_rest_reconciliation_check(DAILY))
    refresh = dg.define_asset_job(
        "refresh_reference",
        selection=dg.AssetSelection.assets(*assets),
        description="Fetch splits, dividends and tickers from the REST API and rebuild the adjustment factors.",
    )
    jobs = [refresh]
    schedules = [
        dg.ScheduleDefinition(
            name="refresh_reference_daily",
            job=refresh,
            cron_schedule="30 12 * * *",
            execution_timezone=SCHEDULE_ZONE,
            default_status=dg.DefaultScheduleStatus.STOPPED,
            description="Refreshes reference data and factors at 12:30 New York, after the daily ingest (12:00) has "
            "brought the close that today's ex-dividend factors need, and before the features (13:00).",
        )
    ]
    if checks:
        reconcile = dg.define_asset_job(
            "reconcile_with_rest",
            selection=dg.AssetSelection.checks(*checks),
            description="Compare the lake's stocks_daily sessions with the REST grouped daily bars: the newest "
            "session, or start..end from the run config of the check.",
        )
        jobs.append(reconcile)
        schedules.append(
            dg.ScheduleDefinition(
                name="reconcile_with_rest_daily",
                job=reconcile,
                cron_schedule="45 12 * * 1-5",
                execution_timezone=SCHEDULE_ZONE,
                default_status=dg.DefaultScheduleStatus.STOPPED,
                description="Compares the newest lake session with the REST bars after the daily ingest.",
            )
        )
    return dg.Definitions(assets=assets, asset_checks=checks, jobs=jobs, schedules=schedules), checks
