"""The coverage ledger, minute/day reconciliation and freshness, on generated files and real Dagster runs."""

import datetime as dt
import shutil
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
import pytest

from quant_assets.datasets import DATASETS, Calendar
from quant_assets.defs.cluster import SessionCluster
from quant_assets.defs.quality import build_coverage_asset, build_freshness_check, build_reconciliation_check
from quant_assets.defs.resources import DataZones, QualitySettings
from quant_assets.flatfiles import vendor_key
from quant_assets.quality.coverage import read_ledger
from quant_assets.quality.freshness import deadline, due_session
from quant_assets.quality.reconcile import reconcile
from quant_assets.sample import SIZES, Universe, folder_writer, generate, session_files
from quant_assets.sources import LocalFlatFiles
from quant_assets_tests.conftest import run_cli, spine
from quant_assets_tests.test_quality import NS_DAY, edit

DAY, MINUTE = DATASETS["stocks_daily"], DATASETS["stocks_minute"]
D = dt.date
NY = dt.timezone(dt.timedelta(hours=-5))


def materialize(assets, vendor, data, checks=(), **kwargs):
    resources = {
        "flatfiles": LocalFlatFiles(root=str(vendor)),
        "zones": DataZones(root=str(data)),
        "quality": QualitySettings(),
        "cluster": SessionCluster(),
    }
    with dg.instance_for_test() as instance:
        return dg.materialize([*assets, *checks], resources=resources, instance=instance, **kwargs)


@pytest.fixture
def vendor(february, tmp_path):
    root = tmp_path / "vendor"
    shutil.copytree(february / DAY.key_prefix, root / DAY.key_prefix)
    return root


def test_ledger_shows_missing_unexpected_rejected_replaced_and_pending_sessions(vendor, tmp_path):
    data = tmp_path / "data"
    # The vendor forgot one session, and shipped a tiny file on Presidents' Day.
    (vendor / vendor_key(DAY, D(2026, 2, 11))).unlink()
    holiday = vendor / vendor_key(DAY, D(2026, 2, 16))
    holiday.write_bytes(session_files(DAY, D(2026, 2, 13), Universe(7, SIZES["small"])))
    raw_lake = spine(DAY)
    tags = {"dagster/asset_partition_range_start": "2026-02-12", "dagster/asset_partition_range_end": "2026-02-20"}
    # One session's file is stamped with the next day: the partition is rejected and quarantined.
    edit(
        vendor / vendor_key(DAY, D(2026, 2, 18)),
        lambda h, r: [row[:6] + [str(int(row[6]) + NS_DAY)] + row[7:] for row in r],
    )
    assert not materialize(raw_lake, vendor, data, tags=tags, raise_on_error=False).success
    # After ingestion, the vendor replaces another session's file.
    replaced = vendor / vendor_key(DAY, D(2026, 2, 19))
    edit(replaced, lambda h, r: r[:-1])

    result = materialize([build_coverage_asset([DAY])], vendor, data)
    ledger = read_ledger(data / "lake")
    status = dict(zip(ledger["session"].cast(pl.String), ledger["status"]))
    assert status["2026-02-11"] == "missing"
    assert status["2026-02-16"] == "unexpected"
    assert status["2026-02-18"] == "rejected"
    assert status["2026-02-19"] == "replaced"
    assert status["2026-02-12"] == status["2026-02-20"] == "present"
    assert status["2026-02-02"] == status["2026-02-27"] == "pending"  # listed, not yet ingested
    assert "2026-02-14" not in status  # a weekend is neither expected nor present
    row = ledger.filter(pl.col("session") == D(2026, 2, 18)).row(0, named=True)
    assert row["quarantined_rows"] == 61 and row["lake_rows"] is None
    present = ledger.filter(pl.col("session") == D(2026, 2, 12)).row(0, named=True)
    assert present["ingested"] and present["lake_rows"] > 0 and present["landed_etag"] == present["source_etag"]
    assert not ledger.filter(pl.col("session") == D(2026, 2, 2))["ingested"][0]
    rejected = ledger.filter(pl.col("session") == D(2026, 2, 18)).row(0, named=True)
    assert "quality gate: 61 of 61 rows (100.00%) failed checks" in rejected["error"]

    [event] = result.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert meta["missing_sessions"].value == 1 and meta["unexpected_sessions"].value == 1
    assert meta["rejected_sessions"].value == 1 and meta["replaced_sessions"].value == 1
    assert meta["pending_sessions"].value == 12 and meta["present_sessions"].value == 4
    assert meta["summary"].value == (
        "| dataset | first | last | present | missing | rejected | pending | replaced | unexpected |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        "| stocks_daily | 2026-02-02 | 2026-02-27 | 4 | 1 | 1 | 12 | 1 | 1 |"
    )  # only the statuses that occur, so the table fits the UI's metadata column
    # By month, the month first (the date axis), only the statuses that occur, each explained below the table.
    by_month = meta["by_month"].value
    assert by_month.startswith(
        "| month | dataset | sessions | present | missing | rejected | pending | replaced | unexpected |\n|---|"
    )
    assert "| 2026-02 | stocks_daily | 20 | 4 | 1 | 1 | 12 | 1 | 1 |" in by_month
    assert "- rejected: the lake refused the file" in by_month and "stale" not in by_month
    # The CLI prints the same summary.
    out = run_cli(
        "quant-assets",
        "coverage",
        "--data",
        str(data),
        "--datasets",
        "stocks_daily",
        cwd=tmp_path,
        env={"QUANT_ASSETS_VENDOR_DIR": str(vendor)},
    ).stdout
    assert meta["summary"].value in out and by_month in out
    assert "| stocks_daily | 2026-02-19 | replaced |" in out


def test_reconcile_flags_each_kind_of_disagreement():
    minute = pl.DataFrame(
        {
            "ticker": ["A", "A", "B", "B", "C"],
            "volume": [10.0, 5.0, 1.0, 1.0, 3.0],
            "open": [10.0, 10.5, 20.0, 21.0, 5.0],
            "close": [10.5, 11.0, 21.0, 22.0, 5.0],
            "high": [10.6, 11.2, 21.5, 30.0, 5.0],
            "low": [9.9, 10.4, 19.0, 20.5, 5.0],
            "window_start": [1, 2, 1, 2, 1],
        }
    )
    day = pl.DataFrame(
        {
            "ticker": ["A", "B", "C"],
            "volume": [15.0, 2.0, 2.0],
            "open": [10.0, 20.0, 5.0],
            "close": [11.0, 25.0, 5.0],
            "high": [11.2, 22.0, 5.0],
            "low": [9.9, 19.5, 5.0],
        }
    )
    found = reconcile(minute, day, volume_tolerance=1e-6, price_tolerance=0.01)
    assert dict(zip(found["ticker"], found["problems"].to_list())) == {
        "B": ["high", "low", "close"],
        "C": ["volume"],
    }


def test_reconciliation_check_passes_on_consistent_files_and_reports_mismatches(february, tmp_path):
    vendor = tmp_path / "vendor"
    for dataset in (DAY, MINUTE):
        for session in (D(2026, 2, 19), D(2026, 2, 20)):
            key = vendor_key(dataset, session)
            (vendor / key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(february / key, vendor / key)

    # The day file says BRK.B closed 10% higher than its last minute bar did.
    def lift_close(header, rows):
        for row in rows:
            if row[0] == "BRK.B":
                row[3] = f"{float(row[3]) * 1.1:.2f}"
                row[4] = f"{max(float(row[4]), float(row[3])):.2f}"
        return rows

    edit(vendor / vendor_key(DAY, D(2026, 2, 20)), lift_close)
    assets = spine(DAY, MINUTE)
    check = build_reconciliation_check(DAY, MINUTE)
    tags = {"dagster/asset_partition_range_start": "2026-02-19", "dagster/asset_partition_range_end": "2026-02-20"}
    result = materialize(assets, vendor, tmp_path / "data", [check], tags=tags)
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "reconciles_with_stocks_minute"]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["tickers_mismatched"].value == 1
    assert evaluation.metadata["tickers_compared"].value > 100
    assert "| 2026-02-20 | BRK.B |" in evaluation.metadata["mismatches"].value
    assert "close" in evaluation.metadata["mismatches"].value


def test_due_session_follows_the_calendar():
    # Friday 13 February is due at noon on Tuesday the 17th: Monday is Presidents' Day.
    assert deadline(Calendar.XNYS, D(2026, 2, 13)) == dt.datetime(2026, 2, 17, 12, tzinfo=ZoneInfo("America/New_York"))
    before = dt.datetime(2026, 2, 17, 11, 59, tzinfo=NY)
    after = dt.datetime(2026, 2, 17, 12, 0, tzinfo=NY)
    assert due_session(Calendar.XNYS, before)[0] == D(2026, 2, 12)
    assert due_session(Calendar.XNYS, after)[0] == D(2026, 2, 13)
    assert due_session(Calendar.EVERY_DAY, dt.datetime(2026, 2, 15, 12, 0, tzinfo=NY))[0] == D(2026, 2, 14)
    assert due_session(Calendar.XNYS, dt.datetime(2026, 2, 17, 12, 0, tzinfo=NY), dt.time(9, 30))[0] == D(2026, 2, 13)


def test_freshness_check_is_late_until_the_due_session_is_materialised(tmp_path):
    session, due = due_session(Calendar.XNYS, dt.datetime.now(dt.UTC))
    vendor = tmp_path / "vendor"
    generate([DAY], session, session, folder_writer(vendor))
    fresh = build_freshness_check(DAY, dt.time(12, 0))
    resources = {
        "flatfiles": LocalFlatFiles(root=str(vendor)),
        "zones": DataZones(root=str(tmp_path / "data")),
        "quality": QualitySettings(),
        "cluster": SessionCluster(),
    }
    with dg.instance_for_test() as instance:
        late = dg.materialize(
            [*spine(DAY), fresh], resources=resources, instance=instance, selection=dg.AssetSelection.checks(fresh)
        )
        [evaluation] = late.get_asset_check_evaluations()
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
        assert evaluation.description.startswith(f"stocks_daily {session} is late: due {due:%Y-%m-%d %H:%M}")
        # an ingest run or a backfill that selects the check too (as the UI's "Materialize all" does) skips it
        ingest = dg.materialize(
            [*spine(DAY), fresh], resources=resources, instance=instance, partition_key=session.isoformat()
        )
        assert ingest.success
        assert [e.check_name for e in ingest.get_asset_check_evaluations() if e.check_name == "fresh"] == []
        on_time = dg.materialize(
            [*spine(DAY), fresh], resources=resources, instance=instance, selection=dg.AssetSelection.checks(fresh)
        )
        [evaluation] = on_time.get_asset_check_evaluations()
        assert evaluation.passed and evaluation.metadata["session"].value == session.isoformat()
