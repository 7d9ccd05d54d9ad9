"""The DuckDB catalog's Dagster wiring: the `catalog` asset (views over every zone, `data/catalog.duckdb`), kept
current by declarative automation after any layer that changes a zone, and its job. The work is in `catalog.py`."""

from collections.abc import Iterable

import dagster as dg

from quant_assets.catalog import build_catalog, describe
from quant_assets.defs.resources import DataZones

ASSET = "catalog"
JOB = "refresh_catalog"
# After any upstream layer materialises; the views read files by glob, so a new session needs no refresh, but a
# new zone, a restatement or a new reference version changes which files the views name.
AFTER_ANY_LAYER = dg.AutomationCondition.any_deps_updated() & ~dg.AutomationCondition.in_progress()


def catalog_defs(upstream: Iterable[dg.AssetKey]) -> dg.Definitions:
    """The `catalog` asset over the zones of `upstream` (the assets that write them), and `refresh_catalog`."""

    @dg.asset(
        name=ASSET,
        group_name="research",
        deps=sorted(set(upstream), key=lambda k: k.to_user_string()),
        kinds={"duckdb"},
        required_resource_keys={"zones"},
        automation_condition=AFTER_ANY_LAYER,
        description="data/catalog.duckdb: DuckDB views (not copies) over every zone: each lake dataset and its "
        "quarantine, the enriched zones with restatements applied, the reference tables (newest, every version, "
        "and `<table>_as_of(day)`), adjustment_factors, stocks_daily_adjusted (raw x factor), the coverage ledger, "
        "rest_stocks_daily and the market-data datasets. Open it with `duckdb data/catalog.duckdb` or "
        "`duckdb.connect(...)` from any working directory.",
    )
    def catalog(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        zones: DataZones = context.resources.zones
        path, names = build_catalog(zones.root)
        counts = describe(path, names)
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(path.resolve())),
                "views": dg.MetadataValue.int(len(counts)),
                "rows_by_view": dg.MetadataValue.json(dict(counts)),
                "macros": dg.MetadataValue.json([n for n in names if n not in dict(counts)]),
            }
        )

    job = dg.define_asset_job(JOB, selection=[ASSET], description="Rewrite data/catalog.duckdb's views.")
    return dg.Definitions(assets=[catalog], jobs=[job])
