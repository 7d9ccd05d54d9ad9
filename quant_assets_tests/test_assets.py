"""raw_* and lake_* assets executed by Dagster's `materialize()`, against a local folder and moto's S3 server."""

import csv
import datetime as dt
import gzip
import shutil

import dagster as dg
import polars as pl
import pytest

from quant_assets.datasets import DATASETS
from quant_assets.flatfiles import vendor_key
from quant_assets.lake import partition_path, read_provenance
from quant_assets.quality.coverage import read_ledger
from quant_assets.raw import sha256_of
from quant_assets.sources import LocalFlatFiles
from quant_assets_tests.conftest import materializations, materialize_spine, run_cli, s3_client, s3_source

MINUTE, DAY = DATASETS["stocks_minute"], DATASETS["stocks_daily"]
SESSION = dt.date(2026, 2, 20)
RANGE_TAGS = {"dagster/asset_partition_range_start": "2026-02-12", "dagster/asset_partition_range_end": "2026-02-18"}


run = materialize_spine


def metadata(result, asset: str, partition: str) -> dict:
    [event] = [m for m in materializations(result, asset) if m.partition == partition]
    return {k: v.value for k, v in event.metadata.items()}


def failure_message(result) -> str:
    return "\n".join(e.event_specific_data.error.message for e in result.get_step_failure_events())


def vendor_rows(path):
    with gzip.open(path, "rt", newline="") as stream:
        return list(csv.DictReader(stream))


def test_one_partition_lands_raw_and_writes_the_lake(february, tmp_path):
    result = run([MINUTE, DAY], LocalFlatFiles(root=str(february)), tmp_path, partition_key=SESSION.isoformat())
    assert result.success
    key = vendor_key(MINUTE, SESSION)
    raw_file = tmp_path / "raw" / key
    assert raw_file.read_bytes() == (february / key).read_bytes()  # landed unchanged

    raw_meta = metadata(result, "raw_stocks_minute", "2026-02-20")
    assert raw_meta["key"] == key and raw_meta["size"] == raw_file.stat().st_size
    assert raw_meta["sha256"] == sha256_of(raw_file) and raw_meta["source"].startswith("local:")
    assert raw_meta["etag"] and raw_meta["downloaded"] is True

    lake_file = partition_path(tmp_path / "lake", "stocks_minute", SESSION)
    assert lake_file == tmp_path / "lake" / "stocks_minute" / "date=2026-02-20" / "part-0.parquet"
    frame = pl.read_parquet(lake_file)
    rows = vendor_rows(raw_file)
    # Every value of every row equals the vendor file's.
    assert frame["ticker"].to_list() == [r["ticker"] for r in rows]
    for column in ("volume", "open", "close", "high", "low"):
        assert frame[column].to_list() == [float(r[column]) for r in rows]
    assert frame["window_start"].cast(pl.Int64).to_list() == [int(r["window_start"]) for r in rows]
    assert frame.schema["window_start"] == pl.Datetime("ns", "UTC")

    lake_meta = metadata(result, "lake_stocks_minute", "2026-02-20")
    assert lake_meta["rows"] == len(rows) == lake_meta["dagster/row_count"]
    assert lake_meta["tickers"] == len({r["ticker"] for r in rows})
    assert lake_meta["bytes"] == lake_file.stat().st_size
    assert lake_meta["seconds"] >= 0 and lake_meta["source_sha256"] == raw_meta["sha256"]
    assert read_provenance(lake_file)["sha256"] == raw_meta["sha256"]


def test_a_range_runs_as_one_run_with_metadata_per_session(february, tmp_path):
    result = run([DAY], LocalFlatFiles(root=str(february)), tmp_path, tags=RANGE_TAGS)
    assert result.success
    sessions = ["2026-02-12", "2026-02-13", "2026-02-17", "2026-02-18"]  # the 16th is Presidents' Day
    assert sorted(m.partition for m in materializations(result, "lake_stocks_daily")) == sessions
    for session in sessions:
        rows = vendor_rows(february / vendor_key(DAY, dt.date.fromisoformat(session)))
        assert metadata(result, "lake_stocks_daily", session)["rows"] == len(rows)
        assert pl.read_parquet(
            partition_path(tmp_path / "lake", "stocks_daily", dt.date.fromisoformat(session))
        ).height == len(rows)
    assert not (tmp_path / "lake" / "stocks_daily" / "date=2026-02-16").exists()


def test_rematerialising_is_idempotent(february, tmp_path):
    source = LocalFlatFiles(root=str(february))
    run([MINUTE], source, tmp_path, partition_key="2026-02-20")
    path = partition_path(tmp_path / "lake", "stocks_minute", SESSION)
    first = pl.read_parquet(path)
    second_result = run([MINUTE], source, tmp_path, partition_key="2026-02-20")
    # Current in both layers: nothing fetched, built or materialised again (the first run's materializations stand).
    assert materializations(second_result, "raw_stocks_minute") == materializations(second_result, "lake_stocks_minute")
    assert materializations(second_result, "raw_stocks_minute") == []
    second = pl.read_parquet(path)
    assert second.equals(first)
    assert second.height == second.unique(["ticker", "window_start"]).height  # no duplicates
    assert sorted(p.name for p in path.parent.iterdir()) == ["part-0.parquet"]
    # Temporary files that killed runs left are removed by the next run of the session, even one that skips it:
    # under the session's lock no live writer can own them.
    killed = path.parent / ".part-0.parquet.tmp-killed"
    killed.write_bytes(b"x")
    raw_leftover = (tmp_path / "raw" / vendor_key(MINUTE, SESSION)).with_name(".2026-02-20.csv.gz.tmp-killed")
    raw_leftover.write_bytes(b"x" * 1000)
    third = run([MINUTE], source, tmp_path, partition_key="2026-02-20")
    assert materializations(third, "lake_stocks_minute") == []
    assert sorted(p.name for p in path.parent.iterdir()) == ["part-0.parquet"]
    assert not raw_leftover.exists()


def test_ticker_filter_keeps_only_the_chosen_tickers(february, tmp_path):
    run(
        [MINUTE],
        LocalFlatFiles(root=str(february)),
        tmp_path,
        partition_key="2026-02-20",
        tickers=["NA", "BRK.B", "Q*"],
    )
    frame = pl.read_parquet(partition_path(tmp_path / "lake", "stocks_minute", SESSION))
    tickers = set(frame["ticker"])
    assert {"NA", "BRK.B"} <= tickers and all(t in ("NA", "BRK.B") or t.startswith("Q") for t in tickers)
    assert any(t.startswith("Q") for t in tickers)
    # The raw file is still landed whole.
    assert (tmp_path / "raw" / vendor_key(MINUTE, SESSION)).read_bytes() == (
        february / vendor_key(MINUTE, SESSION)
    ).read_bytes()


def test_s3_source_end_to_end(s3_endpoint, bucket, february, tmp_path):
    client = s3_client(s3_endpoint)
    for dataset in (DAY, MINUTE):
        key = vendor_key(dataset, SESSION)
        client.put_object(Bucket=bucket, Key=key, Body=(february / key).read_bytes())
    result = run([DAY, MINUTE], s3_source(s3_endpoint, bucket), tmp_path, partition_key="2026-02-20")
    assert result.success
    assert metadata(result, "raw_stocks_daily", "2026-02-20")["source"] == f"s3:{s3_endpoint}/{bucket}"
    local = run([DAY], LocalFlatFiles(root=str(february)), tmp_path / "local", partition_key="2026-02-20")
    assert local.success
    assert pl.read_parquet(partition_path(tmp_path / "lake", "stocks_daily", SESSION)).equals(
        pl.read_parquet(partition_path(tmp_path / "local" / "lake", "stocks_daily", SESSION))
    )


@pytest.fixture
def vendor_copy(february, tmp_path):
    """A writable copy of the generated vendor folder."""
    root = tmp_path / "vendor"
    shutil.copytree(february / "us_stocks_sip" / "day_aggs_v1", root / "us_stocks_sip" / "day_aggs_v1")
    return root


def corrupt(path, how: str):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "header":
        text = gzip.decompress(data).replace(b",transactions\n", b",vwap\n", 1)
        path.write_bytes(gzip.compress(text))


@pytest.mark.parametrize(
    "how, problem",
    [
        ("truncated", "the download is corrupt: the gzip stream is truncated"),
        ("empty", "the download is corrupt: the file is empty (0 bytes)"),
        ("header", "header does not match stocks_daily"),
    ],
)
def test_bad_files_fail_clearly_and_leave_no_lake_partition(vendor_copy, tmp_path, how, problem):
    key = vendor_key(DAY, SESSION)
    corrupt(vendor_copy / key, how)
    result = run(
        [DAY],
        LocalFlatFiles(root=str(vendor_copy)),
        tmp_path / "data",
        raise_on_error=False,
        partition_key="2026-02-20",
    )
    assert not result.success
    message = failure_message(result)
    assert f"stocks_daily 2026-02-20: {key}: {problem}" in message
    assert not (tmp_path / "data" / "lake" / "stocks_daily" / "date=2026-02-20").exists()
    if how == "header":  # a whole gzip stream: landed, then refused by the lake
        assert (tmp_path / "data" / "raw" / key).read_bytes() == (vendor_copy / key).read_bytes()
    else:  # not a whole gzip stream: never landed, but the bytes are kept
        assert not (tmp_path / "data" / "raw" / key).exists()
        [kept] = (tmp_path / "data" / "raw" / "_rejected").rglob("*.csv.gz")
        assert kept.read_bytes() == (vendor_copy / key).read_bytes()


def test_a_replaced_bad_file_keeps_the_good_partition(vendor_copy, tmp_path):
    source, data = LocalFlatFiles(root=str(vendor_copy)), tmp_path / "data"
    assert run([DAY], source, data, partition_key="2026-02-20").success
    good = pl.read_parquet(partition_path(data / "lake", "stocks_daily", SESSION))
    corrupt(vendor_copy / vendor_key(DAY, SESSION), "truncated")
    assert not run([DAY], source, data, raise_on_error=False, partition_key="2026-02-20").success
    assert pl.read_parquet(partition_path(data / "lake", "stocks_daily", SESSION)).equals(good)
    # The good raw version stays landed; the corrupt replacement is kept aside, not landed.
    assert (
        sha256_of(data / "raw" / vendor_key(DAY, SESSION))
        == read_provenance(partition_path(data / "lake", "stocks_daily", SESSION))["sha256"]
    )
    assert list((data / "raw" / "_rejected").rglob("*.csv.gz")) and not list((data / "raw" / "_replaced").rglob("*"))


def test_a_range_gets_past_bad_sessions_and_a_second_run_skips_finished_work(february, tmp_path):
    """Three bad sessions in a range of eight: no vendor file, a truncated file, a row with an empty price."""
    vendor, data = tmp_path / "vendor", tmp_path / "data"
    shutil.copytree(february / MINUTE.key_prefix, vendor / MINUTE.key_prefix)
    missing, truncated, empty_price = dt.date(2026, 2, 10), dt.date(2026, 2, 11), dt.date(2026, 2, 12)
    (vendor / vendor_key(MINUTE, missing)).unlink()
    corrupt(vendor / vendor_key(MINUTE, truncated), "truncated")
    path = vendor / vendor_key(MINUTE, empty_price)
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    fields = lines[7].split(",")
    fields[3] = ""  # close
    lines[7] = ",".join(fields)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    tags = {"dagster/asset_partition_range_start": "2026-02-05", "dagster/asset_partition_range_end": "2026-02-17"}
    good = ["2026-02-05", "2026-02-06", "2026-02-09", "2026-02-12", "2026-02-13", "2026-02-17"]

    with dg.instance_for_test() as instance:
        first = run(
            [MINUTE], LocalFlatFiles(root=str(vendor)), data, raise_on_error=False, tags=tags, instance=instance
        )
        assert not first.success  # nobody can mistake it for full success
        message = failure_message(first)
        assert f"stocks_minute 2026-02-10: {vendor_key(MINUTE, missing)}: the source has no file" in message
        assert (
            f"stocks_minute 2026-02-11: {vendor_key(MINUTE, truncated)}: the download is corrupt: the gzip "
            "stream is truncated"
        ) in message
        assert "2026-02-12" not in message
        # Every other session went through both layers, in the same run.
        assert sorted(m.partition for m in materializations(first, "lake_stocks_minute")) == good
        assert sorted(instance.get_materialized_partitions(dg.AssetKey("lake_stocks_minute"))) == good
        for session in good:
            assert partition_path(data / "lake", "stocks_minute", dt.date.fromisoformat(session)).exists()
        assert not partition_path(data / "lake", "stocks_minute", truncated).exists()
        # The row is a row defect: quarantined with its reason, the rest of the day is in the lake.
        bad = pl.read_parquet(partition_path(data / "quarantine", "stocks_minute", empty_price))
        assert bad["vendor_row"].to_list() == [7] and bad["reason"].to_list() == ["column 'close' is empty"]
        lake = pl.read_parquet(partition_path(data / "lake", "stocks_minute", empty_price))
        assert lake.height == len(lines) - 2

        ledger = run_cli(
            "quant-assets",
            "coverage",
            "--data",
            str(data),
            "--datasets",
            "stocks_minute",
            cwd=tmp_path,
            env={"QUANT_ASSETS_VENDOR_DIR": str(vendor)},
        ).stdout
        status = dict(zip(read_ledger(data / "lake")["session"].cast(pl.String), read_ledger(data / "lake")["status"]))
        assert status["2026-02-10"] == "missing" and status["2026-02-11"] == "failed"  # never landed
        assert status["2026-02-12"] == "quarantined" and status["2026-02-13"] == "present"
        assert "| stocks_minute | 2026-02-11 | failed |" in ledger and "the gzip stream is truncated" in ledger

        second = run(
            [MINUTE], LocalFlatFiles(root=str(vendor)), data, raise_on_error=False, tags=tags, instance=instance
        )
        assert not second.success
        done = {m.partition: m.metadata for m in materializations(second, "lake_stocks_minute")}
        assert sorted(done) == good and all(m["skipped"].value for m in done.values())
        assert all(m.metadata["downloaded"].value is False for m in materializations(second, "raw_stocks_minute"))
        logs = "\n".join(e.message for e in instance.all_logs(second.run_id) if e.message)
        assert (
            "lake_stocks_minute: 0 sessions built, 6 skipped (already current; recorded again: a session of the run "
            "failed), 2 failed, of 8" in logs
        )


def test_403_fails_the_run_with_a_permission_error(plan_limited_s3, tmp_path):
    p = plan_limited_s3
    source = s3_source(
        p["endpoint"], p["bucket"], access_key_id=p["access_key_id"], secret_access_key=p["secret_access_key"]
    )
    result = run([MINUTE], source, tmp_path, raise_on_error=False, partition_key="2026-02-03")
    assert not result.success
    message = failure_message(result)
    assert "stocks_minute 2026-02-03: us_stocks_sip/minute_aggs_v1/2026/02/2026-02-03.csv.gz: 403 Forbidden" in message
    assert p["secret_access_key"] not in message
    assert not (tmp_path / "lake" / "stocks_minute").exists()
