"""`quant_assets.api` from Python as a notebook uses it: ingest a range with one session missing at the source and
one rejected (through Dagster, on an instance whose runs we read back), a second call with nothing to do, `read`
over the lake and `statistics` of the instance."""

import datetime as dt
import gzip
import shutil

import dagster as dg
import polars as pl
import pytest

from quant_assets import api
from quant_assets.defs.chain import SUMMARY_TAG
from quant_assets.lake import scan

MISSING, REJECTED = dt.date(2026, 2, 10), dt.date(2026, 2, 18)


@pytest.fixture
def folder(tmp_path, february, monkeypatch):
    vendor = tmp_path / "vendor"
    shutil.copytree(february, vendor)
    (vendor / "us_stocks_sip/day_aggs_v1/2026/02/2026-02-10.csv.gz").unlink()
    spoiled = vendor / "us_stocks_sip/day_aggs_v1/2026/02/2026-02-18.csv.gz"
    head, *rows = gzip.decompress(spoiled.read_bytes()).decode().splitlines()
    bad = []
    for row in rows:  # every row's high below its low: far past the 1% a session may quarantine
        fields = row.split(",")
        fields[4], fields[5] = "1.0", "2.0"
        bad.append(",".join(fields))
    spoiled.write_bytes(gzip.compress("\n".join([head, *bad, ""]).encode()))
    monkeypatch.setenv("QUANT_ASSETS_VENDOR_DIR", str(vendor))
    monkeypatch.setenv("QUANT_ASSETS_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def test_ingest_names_exactly_the_failed_dates_and_a_second_call_does_nothing(folder):
    with dg.instance_for_test() as instance:
        first = api.ingest("stocks_daily", "2026-02-01", "2026-02-28", instance=instance)
        lake = scan(folder / "lake", "stocks_daily").collect()
        assert (first.dates_processed, first.succeeded, first.failed) == (19, 17, 2)
        assert first.failed_dates == [MISSING, REJECTED] and first.success_rate == pytest.approx(17 / 19)
        assert first.records == lake.height and first.bytes > 0 and first.skipped == 0
        run = instance.get_run_by_id(first.run_id)
        assert run is not None and run.tags["quant_assets/trigger"] == "api"
        tagged = run.tags[f"{SUMMARY_TAG}/stocks_daily"]
        assert '"failed_dates":["2026-02-10","2026-02-18"]' in tagged and f'"records":{lake.height}' in tagged

        again = api.ingest("stocks_daily", "2026-02-01", "2026-02-28", instance=instance)
        assert again.run_id is None and (again.skipped, again.records) == (18, 0)
        assert again.failed_dates == [MISSING, REJECTED] and again.succeeded == 17
        assert again.message == (
            "nothing to do: no run launched; 17 already current; 1 rejected before with the same file, not asked "
            "again; 1 without a file at the source"
        )
        assert "17 succeeded (89%), 2 failed (2026-02-10, 2026-02-18)" in str(again)
        stats = api.statistics(instance)
        assert stats["runs"] == 1 and stats["datasets"]["stocks_daily"]["failed_dates"] == [
            "2026-02-10", "2026-02-18"]  # fmt: skip


def test_read_gives_the_lake_over_a_range_for_some_tickers_adjusted_or_not(folder):
    with dg.instance_for_test() as instance:
        api.ingest("stocks_daily", "2026-02-02", "2026-02-06", symbols=["AAPL", "BRK.B", "SPY"], instance=instance)
    rows = api.read("stocks_daily", "2026-02-03", "2026-02-05", tickers=["AAPL", "SPY"], data=folder).collect()
    assert sorted(set(rows["ticker"])) == ["AAPL", "SPY"] and sorted(set(rows["date"])) == [
        dt.date(2026, 2, 3), dt.date(2026, 2, 4), dt.date(2026, 2, 5)]  # fmt: skip
    adjusted = api.read("stocks_daily", "2026-02-03", "2026-02-05", tickers=["AAPL"], adjusted=True, data=folder)
    frame = adjusted.collect()
    assert frame["price_factor"].to_list() == [1.0, 1.0, 1.0]  # no reference data here: factor 1
    assert (
        frame.sort("date")["close"].to_list() == rows.filter(pl.col("ticker") == "AAPL").sort("date")["close"].to_list()
    )
    with pytest.raises(ValueError, match="no dataset 'stocks_weekly'"):
        api.read("stocks_weekly", data=folder)
