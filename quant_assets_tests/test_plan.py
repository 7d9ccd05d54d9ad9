"""`quant-assets plan` says what a run then does: the same sessions fetched, built, skipped and failed."""

import datetime as dt
import gzip
import json
import shutil

import dagster as dg

from quant_assets.datasets import DATASETS
from quant_assets.flatfiles import vendor_key
from quant_assets.lake import partition_path
from quant_assets.plan import BUILD, CURRENT, FETCH, MISSING, SessionWork, plan, seconds_per_byte, summary
from quant_assets.sources import LocalFlatFiles
from quant_assets_tests.conftest import materializations, materialize_spine, run_cli

DAY, MINUTE = DATASETS["stocks_daily"], DATASETS["stocks_minute"]
START, END = dt.date(2026, 2, 2), dt.date(2026, 2, 13)
RANGE = {"dagster/asset_partition_range_start": START.isoformat(), "dagster/asset_partition_range_end": END.isoformat()}


def test_plan_equals_what_the_run_then_does(february, tmp_path):
    vendor, data = tmp_path / "vendor", tmp_path / "data"
    for dataset in (DAY, MINUTE):
        shutil.copytree(february / dataset.key_prefix, vendor / dataset.key_prefix)
    source = LocalFlatFiles(root=str(vendor))
    with dg.instance_for_test() as instance:
        early = {"dagster/asset_partition_range_start": "2026-02-02", "dagster/asset_partition_range_end": "2026-02-06"}
        materialize_spine([DAY, MINUTE], source, data, instance=instance, tags=early)
    # the vendor replaces Feb 5's day file; Feb 6's minute partition is lost from the lake; Feb 10's day file is
    # not published; everything after Feb 6 is new
    replaced = vendor / vendor_key(DAY, dt.date(2026, 2, 5))
    replaced.write_bytes(gzip.compress(gzip.decompress(replaced.read_bytes()), compresslevel=1))
    shutil.rmtree(partition_path(data / "lake", MINUTE.name, dt.date(2026, 2, 6)).parent)
    (vendor / vendor_key(DAY, dt.date(2026, 2, 10))).unlink()

    env = {"QUANT_ASSETS_VENDOR_DIR": str(vendor), "QUANT_ASSETS_DATASETS": "stocks_daily,stocks_minute"}
    printed = run_cli(
        "quant-assets",
        "plan",
        "--start",
        "2026-02-01",
        "--end",
        "2026-02-13",
        "--data",
        str(data),
        "--json",
        cwd=tmp_path,
        env=env,
    )
    work = json.loads(printed.stdout)
    planned = {
        a: {(w["dataset"], w["session"]) for w in work if w["action"] == a} for a in (FETCH, BUILD, CURRENT, MISSING)
    }
    assert planned[BUILD] == {(MINUTE.name, "2026-02-06")}
    assert planned[MISSING] == {(DAY.name, "2026-02-10")}
    assert (DAY.name, "2026-02-05") in planned[FETCH] and (DAY.name, "2026-02-04") in planned[CURRENT]
    fetch_bytes = {w["key"]: w["bytes"] for w in work if w["action"] == FETCH}

    with dg.instance_for_test() as instance:
        result = materialize_spine([DAY, MINUTE], source, data, instance=instance, tags=RANGE, raise_on_error=False)
    done = {CURRENT: set(), BUILD: set(), FETCH: set()}
    downloaded = {}
    for dataset in (DAY, MINUTE):
        for event in materializations(result, f"raw_{dataset.name}"):
            if event.metadata["downloaded"].value:
                downloaded[event.metadata["key"].value] = event.metadata["size"].value
        for event in materializations(result, f"lake_{dataset.name}"):
            pair = (dataset.name, event.partition)
            if event.metadata["skipped"].value:
                done[CURRENT].add(pair)
            else:
                done[BUILD if pair in planned[BUILD] else FETCH].add(pair)
    failed = {(w["dataset"], w["session"]) for w in work} - done[CURRENT] - done[BUILD] - done[FETCH]
    assert done[CURRENT] == planned[CURRENT]
    assert done[FETCH] == planned[FETCH] and done[BUILD] == planned[BUILD]
    assert downloaded == fetch_bytes  # the same files, the same bytes
    assert failed == planned[MISSING]
    assert not result.success


def test_plan_summary_estimates_from_the_recorded_timings(february, tmp_path):
    vendor, data = tmp_path / "vendor", tmp_path / "data"
    shutil.copytree(february / DAY.key_prefix, vendor / DAY.key_prefix)
    source = LocalFlatFiles(root=str(vendor))
    before = plan([DAY], START, END, source.list_objects, data / "raw", data / "lake")
    assert seconds_per_byte(data / "lake", DAY) is None
    assert "no earlier build recorded a time" in summary(before, {DAY.name: None})
    with dg.instance_for_test() as instance:
        materialize_spine([DAY], source, data, instance=instance, partition_key="2026-02-02")
    rate = seconds_per_byte(data / "lake", DAY)
    assert rate is not None and rate > 0
    after = plan([DAY], START, END, source.list_objects, data / "raw", data / "lake")
    text = summary(after, {DAY.name: rate})
    sizes = sum(w.size for w in after if w.needs_run)
    assert f"about {rate * sizes:,.1f} s" in text
    assert "stocks_daily: 9 to fetch" in text and "1 current" in text


def test_plan_summary_puts_a_stretch_of_missing_sessions_on_one_line():
    days = [dt.date(2026, 3, d) for d in (2, 3, 4, 5)]
    work = [
        SessionWork(DAY.name, days[0], FETCH, "k0", 10, "not landed", '"e"', 10),
        *(SessionWork(DAY.name, d, MISSING, f"k{d.day}", reason="no file") for d in days[1:]),
    ]
    lines = summary(work, {DAY.name: None}).splitlines()
    assert (
        lines[0]
        == "stocks_daily: 1 to fetch (10 bytes), 0 to build from the raw zone, 0 current, 3 missing at the source"
    )
    assert lines[1] == "  2026-03-02  fetch   k0 10 bytes  (not landed)"
    assert lines[2] == "  2026-03-03..2026-03-05  missing (3 sessions: the source has no file for them)"
