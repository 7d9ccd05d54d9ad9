"""Each real vendor defect, fed through generated files: the exact check outcome, quarantine content and error."""

import datetime as dt
import gzip
import shutil

import dagster as dg
import polars as pl
import pytest
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from quant_assets.datasets import DATASETS
from quant_assets.defs.chain import EVALUATED
from quant_assets.defs.partitions import session_partitions
from quant_assets.flatfiles import FlatFileError, vendor_key
from quant_assets.ingest import IngestOptions, build_partition
from quant_assets.lake import partition_path
from quant_assets.quality.gate import QualityGateError
from quant_assets.quality.rules import rule_catalogue
from quant_assets.raw import LandedFile
from quant_assets.sources import LocalFlatFiles
from quant_assets_tests.conftest import materialize_spine

MINUTE, DAY = DATASETS["stocks_minute"], DATASETS["stocks_daily"]
SESSION = dt.date(2026, 2, 20)
NS_DAY = 86_400 * 10**9


def edit(path, change):
    """Rewrite a vendor file through `change(header, rows) -> rows`, rows being lists of CSV fields."""
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    header = lines[0].split(",")
    rows = change(header, [line.split(",") for line in lines[1:]])
    path.write_bytes(gzip.compress(("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n").encode()))


def set_field(rows, header, row, column, value):
    rows[row][header.index(column)] = value
    return rows


@pytest.fixture
def vendor(february, tmp_path):
    root = tmp_path / "vendor"
    for dataset in (MINUTE, DAY):
        for session in (dt.date(2026, 2, 19), SESSION):
            key = vendor_key(dataset, session)
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(february / key, root / key)
    return root


def build(vendor, tmp_path, dataset=MINUTE, session=SESSION, share=0.01, **kwargs):
    key = vendor_key(dataset, session)
    return build_partition(
        LandedFile.of(vendor / key, key),
        dataset,
        session,
        tmp_path / "lake",
        tmp_path / "quarantine",
        IngestOptions(max_failure_share=share, **kwargs),
    )


def quarantine(tmp_path, dataset=MINUTE, session=SESSION) -> pl.DataFrame:
    return pl.read_parquet(partition_path(tmp_path / "quarantine", dataset.name, session))


def vendor_rows(vendor, dataset=MINUTE, session=SESSION) -> int:
    return gzip.decompress((vendor / vendor_key(dataset, session)).read_bytes()).decode().count("\n") - 1


ROW_DEFECTS = [
    (
        "high < low",
        lambda h, r: set_field(set_field(r, h, 5, "high", "1.0"), h, 5, "low", "2.0"),
        5,
        "high_low_consistent",
        "high below max(open, close) or low above min(open, close)",
    ),
    (
        "negative volume",
        lambda h, r: set_field(r, h, 7, "volume", "-100"),
        7,
        "non_negative_volume",
        "volume is negative or NaN",
    ),
    (
        "NaN price",
        lambda h, r: set_field(r, h, 9, "close", "NaN"),
        9,
        "positive_prices",
        "price is zero, negative or NaN",
    ),
    ("duplicate row", lambda h, r: r + [list(r[11])], None, "unique_ticker_time", "duplicate (ticker, window_start)"),
    (
        "17-digit timestamp",
        lambda h, r: set_field(r, h, 13, "window_start", r[13][h.index("window_start")][:17]),
        13,
        "nanosecond_timestamps",
        "window_start is not in nanoseconds (fewer than 19 digits)",
    ),
]


@pytest.mark.parametrize("label, change, row, rule, reason", ROW_DEFECTS, ids=[d[0] for d in ROW_DEFECTS])
def test_a_bad_row_is_quarantined_with_its_reason(vendor, tmp_path, label, change, row, rule, reason):
    edit(vendor / vendor_key(MINUTE, SESSION), change)
    total = vendor_rows(vendor)
    stats = build(vendor, tmp_path)
    bad = quarantine(tmp_path)
    assert bad.height == 1 and stats.gate.failures[rule] == 1 and stats.quarantined == 1
    vendor_row = row + 1 if row is not None else total  # the appended duplicate is the last row
    assert bad["vendor_row"].to_list() == [vendor_row]
    assert reason in bad["reason"][0]
    assert bad.columns == ["vendor_row", *MINUTE.lake_schema(), "reason"]
    # Nothing lost, nothing twice: lake + quarantine = the vendor file.
    lake = pl.read_parquet(stats.path)
    assert lake.height + bad.height == total
    assert lake.height == stats.rows


def test_a_17_digit_stamp_is_also_outside_the_session(vendor, tmp_path):
    edit(vendor / vendor_key(MINUTE, SESSION), ROW_DEFECTS[4][1])
    reason = quarantine_after(vendor, tmp_path)["reason"][0]
    assert reason == (
        "window_start is not in nanoseconds (fewer than 19 digits); window_start is outside session "
        "2026-02-20 (09:00-01:00 UTC)"
    )


def quarantine_after(vendor, tmp_path):
    build(vendor, tmp_path)
    return quarantine(tmp_path)


def test_the_ticker_na_is_a_ticker_not_a_null(vendor, tmp_path):
    stats = build(vendor, tmp_path, DAY)
    lake = pl.read_parquet(stats.path)
    assert "NA" in lake["ticker"].to_list() and "NULL" in lake["ticker"].to_list()
    assert stats.quarantined == 0
    assert not partition_path(tmp_path / "quarantine", DAY.name, SESSION).exists()


@pytest.mark.parametrize(
    "label, shift, message",
    [
        ("next day", NS_DAY, "window_start dates among failing rows: 2026-02-21"),
        ("1969-12-31", None, "window_start dates among failing rows: 1969-12-31"),
    ],
)
def test_a_whole_file_stamped_with_another_day_is_rejected(vendor, tmp_path, label, shift, message):
    def restamp(header, rows):
        i = header.index("window_start")
        for row in rows:
            row[i] = str(int(row[i]) + shift) if shift else "-18000000000000"  # 1969-12-31 19:00 ET
        return rows

    key = vendor_key(DAY, SESSION)
    edit(vendor / key, restamp)
    with pytest.raises(QualityGateError) as info:
        build(vendor, tmp_path, DAY)
    total = vendor_rows(vendor, DAY)
    text = str(info.value)
    assert text.startswith(
        f"stocks_daily 2026-02-20: {key}: quality gate: {total} of {total} rows (100.00%) "
        "failed checks, above the 1.00% limit"
    )
    assert "window_start is not 00:00 of session 2026-02-20 (05:00 UTC)" in text and message in text
    assert not partition_path(tmp_path / "lake", DAY.name, SESSION).parent.exists()  # not even a folder
    assert quarantine(tmp_path, DAY).height == total  # every row is set aside, nothing lost


def test_a_truncated_file_is_a_file_level_error(vendor, tmp_path):
    path = vendor / vendor_key(DAY, SESSION)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(FlatFileError, match="stocks_daily 2026-02-20: .*: the gzip stream is truncated"):
        build(vendor, tmp_path, DAY)
    assert not partition_path(tmp_path / "lake", DAY.name, SESSION).exists()


def test_the_failure_share_is_configurable(vendor, tmp_path):
    # 3 bad rows of ~3,800: quarantined at the default 1%, rejected at 0.05%.
    def three_bad(header, rows):
        for i in (3, 30, 300):
            set_field(rows, header, i, "volume", "-1")
        return rows

    edit(vendor / vendor_key(MINUTE, SESSION), three_bad)
    assert build(vendor, tmp_path).quarantined == 3
    with pytest.raises(QualityGateError, match=r"3 of 3,789 rows \(0.08%\) failed checks, above the 0.05% limit"):
        build(vendor, tmp_path / "strict", share=0.0005)


def run(vendor, data, partition, extra_assets=(), **quality):
    return materialize_spine(
        [MINUTE],
        LocalFlatFiles(root=str(vendor)),
        data,
        raise_on_error=False,
        quality=quality,
        extra=extra_assets,
        partition_key=partition,
    )


def evaluations(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@dg.asset(
    deps=["lake_stocks_minute"],
    partitions_def=session_partitions(MINUTE.calendar),
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def downstream_features():
    return dg.MaterializeResult()


def test_quarantined_rows_warn_and_downstream_still_runs(vendor, tmp_path):
    edit(vendor / vendor_key(MINUTE, SESSION), ROW_DEFECTS[1][1])
    result = run(vendor, tmp_path / "data", "2026-02-20", [downstream_features])
    assert result.success
    checks = evaluations(result)
    volume = checks["non_negative_volume"]
    assert not volume.passed and volume.severity == dg.AssetCheckSeverity.WARN
    assert volume.metadata["failed_rows"].value == 1
    assert (
        "volume is negative or NaN" in volume.metadata["sample"].value and "-100.0" in volume.metadata["sample"].value
    )
    assert checks["positive_prices"].passed and checks["volume_anomaly"].passed
    assert [m.asset_key.path[0] for m in result.get_asset_materialization_events()][-1] == "downstream_features"


def test_a_rejected_partition_fails_blocks_downstream_and_shows_sample_rows(vendor, tmp_path):
    def restamp(header, rows):
        i = header.index("window_start")
        for row in rows:
            row[i] = str(int(row[i]) + NS_DAY)
        return rows

    edit(vendor / vendor_key(MINUTE, SESSION), restamp)
    result = run(vendor, tmp_path / "data", "2026-02-20", [downstream_features])
    assert not result.success
    check = evaluations(result)["in_session"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR and check.partition == "2026-02-20"
    assert check.metadata["rejected"].value is True
    assert "window_start is outside session 2026-02-20" in check.metadata["sample"].value
    materialized = {m.asset_key.path[0] for m in result.get_asset_materialization_events()}
    assert materialized == {"raw_stocks_minute"}  # neither the lake nor what depends on it
    assert (tmp_path / "data" / "raw" / vendor_key(MINUTE, SESSION)).exists()  # the raw file is kept


def test_a_sudden_drop_in_rows_is_a_warning(vendor, tmp_path, february):
    data = tmp_path / "data"
    for day in (10, 11, 12, 13, 17, 18, 19):
        session = dt.date(2026, 2, day)
        key = vendor_key(MINUTE, session)
        (vendor / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(february / key, vendor / key)
        assert run(vendor, data, session.isoformat()).success
    edit(vendor / vendor_key(MINUTE, SESSION), lambda h, r: r[: len(r) // 3])  # a third of the file arrived
    result = run(vendor, data, "2026-02-20")
    assert result.success
    check = evaluations(result)["volume_anomaly"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.partition == "2026-02-20"
    assert check.description.startswith("rows ") and "below the median" in check.description


def test_the_pandera_schema_flags_the_rows_the_gate_quarantines(vendor, tmp_path):
    import pandera.errors

    from quant_assets.flatfiles import read_flat_file
    from quant_assets.quality.schemas import lake_schema

    edit(vendor / vendor_key(MINUTE, SESSION), ROW_DEFECTS[0][1])  # high < low in row 6
    edit(vendor / vendor_key(MINUTE, SESSION), ROW_DEFECTS[1][1])  # negative volume in row 8
    build(vendor, tmp_path)
    gate_rows = sorted(quarantine(tmp_path)["vendor_row"].to_list())
    frame = read_flat_file(vendor / vendor_key(MINUTE, SESSION), MINUTE, SESSION, vendor_key(MINUTE, SESSION))
    with pytest.raises(pandera.errors.SchemaErrors) as info:
        lake_schema(MINUTE, SESSION).validate(frame, lazy=True)
    cases = info.value.failure_cases.filter(pl.col("index").is_not_null())
    assert sorted(set((cases["index"] + 1).to_list())) == gate_rows == [6, 8]
    assert set(cases["check"].to_list()) == {ROW_DEFECTS[0][4], ROW_DEFECTS[1][4]}  # the rules' reasons


def test_a_range_run_records_each_sessions_check_results_on_its_partition(vendor, february, tmp_path):
    """One run over four sessions, the third rejected: every rule check has a result per session, on that
    session's partition, and the rejected session's is a blocking failure with its sample rows. A second run
    (every good session already current) keeps those results rather than leaving the checks unevaluated."""
    for day in (17, 18):
        key = vendor_key(MINUTE, dt.date(2026, 2, day))
        shutil.copy(february / key, vendor / key)

    def restamp(header, rows):
        i = header.index("window_start")
        for row in rows:
            row[i] = str(int(row[i]) + NS_DAY)
        return rows

    edit(vendor / vendor_key(MINUTE, dt.date(2026, 2, 19)), restamp)
    sessions = ["2026-02-17", "2026-02-18", "2026-02-19", "2026-02-20"]
    tags = {"dagster/asset_partition_range_start": sessions[0], "dagster/asset_partition_range_end": sessions[-1]}
    source, data = LocalFlatFiles(root=str(vendor)), tmp_path / "data"
    rules = list(rule_catalogue(MINUTE))
    key = dg.AssetCheckKey(dg.AssetKey("lake_stocks_minute"), "in_session")
    with dg.instance_for_test() as instance:
        first = materialize_spine([MINUTE], source, data, raise_on_error=False, tags=tags, instance=instance)
        assert not first.success
        found = {(e.check_name, e.partition): e for e in first.get_asset_check_evaluations()}
        assert sorted(found) == sorted(
            [(rule, s) for rule in rules for s in sessions]
            + [("volume_anomaly", s) for s in sessions if s != "2026-02-19"]
        )
        for session in sessions:
            [record] = instance.event_log_storage.get_asset_check_execution_history(
                key, limit=5, partition_filter=PartitionKeyFilter(key=session)
            )
            evaluation = record.evaluation
            if session == "2026-02-19":
                assert record.status == AssetCheckExecutionRecordStatus.FAILED
                assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
                assert evaluation.description.startswith("3,7") and "the session is rejected" in evaluation.description
                sample = evaluation.metadata["sample"].value
                assert "| vendor_row | ticker |" in sample and "window_start is outside session 2026-02-19" in sample
            else:
                assert record.status == AssetCheckExecutionRecordStatus.SUCCEEDED and evaluation.passed
                assert evaluation.target_materialization_data.run_id == first.run_id
        # Nothing was left planned ("skipped") for the rule checks of this run.
        for rule in rules:
            check = dg.AssetCheckKey(dg.AssetKey("lake_stocks_minute"), rule)
            records = instance.event_log_storage.get_asset_check_execution_history(check, limit=50)
            assert len(records) == 4 and {r.status for r in records} <= EVALUATED, rule

        second = materialize_spine([MINUTE], source, data, raise_on_error=False, tags=tags, instance=instance)
        again = {(e.check_name, e.partition): e for e in second.get_asset_check_evaluations()}
        assert sorted(again) == sorted(found)  # the rejected session again, the current ones as they were
        for (_, session), evaluation in again.items():
            if session != "2026-02-19":
                assert evaluation.passed and evaluation.metadata["evaluated_in_run"].value == first.run_id
        status = instance.event_log_storage.get_asset_check_partition_info([key])
        latest = {info.partition_key: (info.latest_execution_status, info.is_current) for info in status}
        assert latest["2026-02-18"] == (AssetCheckExecutionRecordStatus.SUCCEEDED, True)


def test_the_gate_stops_copying_failing_rows_once_the_session_is_over_its_share(vendor):
    """Below the limit a batch's failing rows come back with their reasons; past it they are only counted and
    sampled (the session is on its way to rejection), and the samples are the same rows either way."""
    from quant_assets.flatfiles import read_flat_file
    from quant_assets.quality.gate import Gate

    frame = read_flat_file(vendor / vendor_key(MINUTE, SESSION), MINUTE, SESSION, "key")
    negative = frame.with_row_index("i").with_columns(
        volume=pl.when(pl.col("i") % 100 == 7).then(-1.0).otherwise(pl.col("volume"))
    )
    first, second = negative.head(2000).drop("i"), negative.slice(2000).drop("i")
    numbers = pl.int_range(1, frame.height + 1, dtype=pl.UInt32, eager=True)

    gate = Gate(MINUTE, SESSION)
    clean, bad = gate.check(first, numbers.head(2000), max_share=0.05)  # 20 of 2,000 fail: 1%, under 5%
    assert clean.height == 1980 and bad["vendor_row"].to_list() == list(range(8, 2000, 100))
    assert bad["reason"].dtype == pl.Categorical and set(bad["reason"]) == {gate.summary.reasons["non_negative_volume"]}
    assert bad.columns == ["vendor_row", *frame.columns, "reason"]
    clean, bad = gate.check(second, numbers.slice(2000), max_share=0.001)  # 1% is over 0.1%: counted only
    assert bad is None and clean.height == second.height - second.filter(pl.col("volume") < 0).height
    failing = negative.filter(pl.col("volume") < 0).height
    assert gate.summary.quarantined == failing == gate.summary.failures["non_negative_volume"]
    assert gate.summary.rows == frame.height
    sample = gate.summary.sample("non_negative_volume")
    assert sample["vendor_row"].to_list() == list(range(8, 1000, 100))  # the first ten, from the first batch
    stamped = negative.filter(pl.col("volume") < 0)["window_start"].dt.date().unique().to_list()
    assert sample["reason"].dtype == pl.String and gate.summary.failing_dates == set(stamped)
