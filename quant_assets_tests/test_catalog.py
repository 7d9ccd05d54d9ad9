"""The DuckDB catalog over a data folder built as the demo builds it (February 2026: the lake with a quarantined
row, reference data and factors from the local Massive server, the enriched features, a restatement after a new
split), checked view by view against the zone each reads, from another working directory."""

import datetime as dt
import os
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from quant_assets.catalog import build_catalog, describe
from quant_assets.datasets import DATASETS
from quant_assets.defs.features import build_enriched_daily, build_restated_daily
from quant_assets.defs.reference import adjustment_factors, reference_dividends, reference_splits, reference_tickers
from quant_assets.defs.resources import DataZones, MassiveRest
from quant_assets.features.restate import read_enriched_daily
from quant_assets.lake import scan
from quant_assets.reference.factors import adjust, read_factors
from quant_assets.reference.versions import read_version
from quant_assets.sample_rest import LocalProvider
from quant_assets.sources import LocalFlatFiles
from quant_assets_tests.conftest import FEB, materialize_spine, run_cli

DAY = DATASETS["stocks_daily"]
TAGS = {"dagster/asset_partition_range_start": "2026-02-02", "dagster/asset_partition_range_end": "2026-02-27"}
REFERENCE = [reference_splits, reference_dividends, reference_tickers, adjustment_factors]


def refresh(data: Path, server: LocalProvider, as_of: dt.date) -> None:
    resources = {"zones": DataZones(root=str(data)), "massive": MassiveRest(base_url=server.url, per_second=500)}
    config = {"ops": {a.key.path[-1]: {"config": {"as_of": as_of.isoformat()}} for a in REFERENCE}}
    with dg.instance_for_test() as instance:
        assert dg.materialize(REFERENCE, resources=resources, run_config=config, instance=instance).success


@pytest.fixture(scope="module")
def built(tmp_path_factory, february) -> Path:
    data = tmp_path_factory.mktemp("catalog")
    vendor = data / "vendor"
    shutil.copytree(february, vendor)
    # One row of the 2026-02-20 file made high < low: quarantined, the session still published.
    [day_file] = vendor.glob("us_stocks_sip/day_aggs_v1/2026/02/2026-02-20.csv.gz")
    import gzip

    lines = gzip.decompress(day_file.read_bytes()).decode().splitlines()
    head, first, *rest = lines
    fields = first.split(",")
    fields[4], fields[5] = "1.0", "999999.0"  # high, low (ticker,volume,open,close,high,low,...)
    day_file.write_bytes(gzip.compress("\n".join([head, ",".join(fields), *rest, ""]).encode()))
    materialize_spine([DAY], LocalFlatFiles(root=str(vendor)), data, tags=TAGS, quality={"max_failure_share": 0.5})
    zones = {"zones": DataZones(root=str(data))}
    with LocalProvider(*FEB) as server:
        refresh(data, server, dt.date(2026, 2, 28))
        with dg.instance_for_test() as instance:
            assert dg.materialize([build_enriched_daily([DAY])], resources=zones, tags=TAGS, instance=instance).success
        server.data.announce_split("AAPL", dt.date(2026, 2, 26), 1, 4)  # found after the features were built
        refresh(data, server, dt.date(2026, 3, 2))
    with dg.instance_for_test() as instance:
        assert dg.materialize([build_restated_daily()], resources=zones, instance=instance).success
    build_catalog(data)
    return data


def query(data: Path, sql: str):
    with duckdb.connect(str(data / "catalog.duckdb"), read_only=True) as db:
        return db.sql(sql).pl()


def test_each_view_holds_what_its_zone_holds(built, tmp_path):
    lake = scan(built / "lake", DAY.name).collect()
    assert query(built, "SELECT count(*) AS n FROM lake_stocks_daily")["n"][0] == lake.height
    one = query(built, "SELECT close FROM lake_stocks_daily WHERE ticker = 'AAPL' AND date = DATE '2026-02-20'")
    assert (
        one["close"][0]
        == lake.filter((pl.col("ticker") == "AAPL") & (pl.col("date") == dt.date(2026, 2, 20)))["close"].item()
    )
    quarantined = pl.read_parquet(next((built / "quarantine" / DAY.name).glob("date=2026-02-20/*.parquet")))
    rows = query(built, "SELECT * FROM quarantine_stocks_daily")
    assert rows.height == quarantined.height == 1 and rows["date"][0] == dt.date(2026, 2, 20)
    for table in ("reference_splits", "reference_dividends", "reference_tickers"):
        newest = read_version(built / "reference" / table)
        assert query(built, f"SELECT count(*) AS n FROM {table}")["n"][0] == newest.height
    # Point in time: the split announced later is in the newest version, not in the one known on 2026-02-28.
    splits_then = query(built, "SELECT ticker FROM reference_splits_as_of(DATE '2026-02-28')")["ticker"].to_list()
    splits_now = query(built, "SELECT ticker FROM reference_splits")["ticker"].to_list()
    assert "AAPL" not in splits_then and "AAPL" in splits_now
    assert sorted(query(built, "SELECT DISTINCT as_of FROM reference_splits_versions")["as_of"].to_list()) == [
        dt.date(2026, 2, 28), dt.date(2026, 3, 2)]  # fmt: skip
    factors = read_factors(built / "reference")
    assert query(built, "SELECT count(*) AS n FROM adjustment_factors")["n"][0] == factors.height
    enriched = read_enriched_daily(built / "enriched", DAY.name).collect()
    assert query(built, "SELECT count(*) AS n FROM enriched_stocks_daily")["n"][0] == enriched.height
    counts = dict(describe(built / "catalog.duckdb", ["lake_stocks_daily", "quarantine_stocks_daily"]))
    assert counts == {"lake_stocks_daily": lake.height, "quarantine_stocks_daily": 1}
    # From another working directory, with the duckdb CLI's Python twin: absolute paths inside.
    os.chdir(tmp_path)
    assert query(built, "SELECT count(*) AS n FROM lake_stocks_daily")["n"][0] == lake.height


def test_adjusted_bars_are_raw_times_factor_as_the_features_use_them(built):
    lake = scan(built / "lake", DAY.name).collect()
    ours = adjust(
        lake.select("ticker", "date", "open", "high", "low", "close", "volume"), read_factors(built / "reference")
    )
    theirs = query(
        built, "SELECT ticker, date, open, high, low, close, volume, price_factor FROM stocks_daily_adjusted"
    )
    joined = ours.join(theirs, on=["ticker", "date"], suffix="_sql")
    assert joined.height == lake.height
    for column in ("open", "close", "volume", "price_factor"):
        assert (joined[column] - joined[f"{column}_sql"]).abs().max() < 1e-9, column
    brk = joined.filter((pl.col("ticker") == "BRK.B") & (pl.col("date") == dt.date(2026, 2, 18)))
    assert brk["price_factor_sql"].item() == pytest.approx(0.5)  # before the 2-for-1 split of the 19th


def test_restated_enriched_rows_win_and_a_one_session_query_reads_one_partition(built):
    restated = query(
        built, "SELECT factors_version FROM enriched_stocks_daily WHERE ticker = 'AAPL' AND date = DATE '2026-02-20'"
    )
    assert restated["factors_version"][0] == dt.date(2026, 3, 2)  # the restatement, not the session's own row
    other = query(built, "SELECT factors_version FROM enriched_stocks_daily WHERE ticker = 'SPY' LIMIT 1")
    assert other["factors_version"][0] == dt.date(2026, 2, 28)
    expected = read_enriched_daily(built / "enriched", DAY.name).filter(pl.col("ticker") == "AAPL").collect()
    sql = query(built, "SELECT * FROM enriched_stocks_daily WHERE ticker = 'AAPL' ORDER BY date")
    assert (
        sql.select("close", "factors_version").rows() == expected.sort("date").select("close", "factors_version").rows()
    )
    with duckdb.connect(str(built / "catalog.duckdb"), read_only=True) as db:
        plan = db.sql(
            "EXPLAIN ANALYZE SELECT count(*) FROM lake_stocks_daily WHERE date = DATE '2026-02-20'"
        ).fetchall()
    text = plan[0][1]
    assert "Scanning Files: 1/19" in text and text.count("part-0.parquet") == 1


def test_the_command_writes_the_catalog_and_lists_its_views(built, tmp_path):
    out = run_cli("quant-assets", "catalog", "--data", str(built), cwd=tmp_path).stdout
    assert f"catalog at {(built / 'catalog.duckdb').resolve()}" in out
    assert "lake_stocks_daily" in out and "stocks_daily_adjusted" in out and "reference_splits_as_of (macro)" in out
