"""The scaled-out deployment for real: a Postgres server (the instance of deploy/dagster.postgres.yaml) and a Dask
scheduler with two workers, each its own process, building the sessions of a session chain's range run. The lake
they write equals that of a run in one process, session by session; the run's events are in Postgres; and a failed
session is reported on its own, as in one process."""

import datetime as dt
import logging
import os
import re
import shutil
import time
from pathlib import Path

import cloudpickle
import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from quant_assets.bench import local_dask
from quant_assets.datasets import DATASETS
from quant_assets.defs.cluster import ResourceCopy, SessionCluster
from quant_assets.defs.resources import DataZones, QualitySettings
from quant_assets.flatfiles import vendor_key
from quant_assets.lake import partition_path
from quant_assets.local_postgres import Unavailable, local_postgres
from quant_assets.outcomes import failures
from quant_assets.quality.gate import QualityGateError
from quant_assets.sample import folder_writer, generate
from quant_assets.sources import LocalFlatFiles
from quant_assets_tests.conftest import PROJECT, s3_source, spine

DAY, MINUTE = DATASETS["stocks_daily"], DATASETS["stocks_minute"]
SESSIONS = ["2026-02-02", "2026-02-03", "2026-02-04", "2026-02-05", "2026-02-06"]
RANGE = {"dagster/asset_partition_range_start": SESSIONS[0], "dagster/asset_partition_range_end": SESSIONS[-1]}
PG_PASSWORD = "cluster-test-password"


def _skip(reason: str):
    print(f"skipped: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def postgres():
    """A Postgres server of its own (`quant_assets.local_postgres`), or a skip saying why there is none."""
    try:
        with local_postgres(PG_PASSWORD) as server:
            yield server
    except Unavailable as why:
        _skip(str(why))


@pytest.fixture(scope="module")
def pg_instance(postgres, tmp_path_factory):
    """A DagsterInstance from deploy/dagster.postgres.yaml, copied as a DAGSTER_HOME's dagster.yaml, with the
    DAGSTER_PG_* variables pointing at the test's server."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(PROJECT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": postgres["host"],
        "DAGSTER_PG_PORT": str(postgres["port"]),
        "DAGSTER_PG_USER": postgres["user"],
        "DAGSTER_PG_PASSWORD": postgres["password"],
        "DAGSTER_PG_DB": postgres["db"],
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        instance = dg.DagsterInstance.from_config(str(home))
        try:
            yield instance
        finally:
            instance.dispose()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A Dask scheduler and two single-threaded workers, each a process of its own started with the `dask`
    command (the benchmark's `local_dask`), in a working directory that is not the test's (paths must reach them
    absolute)."""
    with local_dask(2, tmp_path_factory.mktemp("dask")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def vendor(tmp_path_factory) -> Path:
    """Generated day and minute files of five sessions."""
    root = tmp_path_factory.mktemp("vendor")
    generate(
        [DAY, MINUTE], dt.date.fromisoformat(SESSIONS[0]), dt.date.fromisoformat(SESSIONS[-1]), folder_writer(root)
    )
    return root


def run_range(vendor: Path, data: Path | str, instance: dg.DagsterInstance, address: str = ""):
    resources = {
        "flatfiles": LocalFlatFiles(root=str(vendor)),
        "zones": DataZones(root=str(data)),
        "quality": QualitySettings(),
        "cluster": SessionCluster(address=address),
    }
    return dg.materialize(spine(DAY, MINUTE), resources=resources, instance=instance, tags=RANGE, raise_on_error=False)


def in_one_process(vendor: Path, data: Path):
    with dg.instance_for_test() as instance:
        return run_range(vendor, data, instance)


def events(result) -> list[tuple[str, str | None]]:
    return [
        (e.asset_key.to_user_string(), e.partition)
        for e in (
            event.step_materialization_data.materialization for event in result.get_asset_materialization_events()
        )
    ]


def failure_message(result) -> str:
    return "\n".join(e.event_specific_data.error.message for e in result.get_step_failure_events())


def test_a_range_built_by_dask_workers_equals_one_process_and_is_recorded_in_postgres(
    vendor, postgres, pg_instance, dask_cluster, tmp_path, monkeypatch
):
    local = in_one_process(vendor, tmp_path / "local")
    assert local.success
    monkeypatch.chdir(tmp_path)  # a relative data folder, made absolute before it travels to the workers
    result = run_range(vendor, "cluster", pg_instance, dask_cluster.address)
    assert result.success, failure_message(result)

    # The same partitions, frame for frame, and the same materialisations in the same order.
    for dataset in (DAY, MINUTE):
        for session in SESSIONS:
            day = dt.date.fromisoformat(session)
            expected = pl.read_parquet(partition_path(tmp_path / "local" / "lake", dataset.name, day))
            written = pl.read_parquet(partition_path(tmp_path / "cluster" / "lake", dataset.name, day))
            assert_frame_equal(written, expected)
    assert events(result) == events(local)
    assert len(events(result)) == 4 * len(SESSIONS)

    # The run and its events are in Postgres.
    assert type(pg_instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    [record] = pg_instance.get_run_records(dg.RunsFilter(run_ids=[result.run_id]))
    assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    for asset in ("raw_stocks_minute", "lake_stocks_minute", "raw_stocks_daily", "lake_stocks_daily"):
        stored = pg_instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=100)
        assert sorted(r.partition_key for r in stored.records if r.run_id == result.run_id) == SESSIONS
    import psycopg2

    connection = psycopg2.connect(
        host=postgres["host"],
        port=postgres["port"],
        user=postgres["user"],
        password=postgres["password"],
        dbname=postgres["db"],
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
                (result.run_id,),
            )
            assert cursor.fetchone()[0] == 4 * len(SESSIONS)
    finally:
        connection.close()

    # Each session was built by one of the two worker processes, and both took part: each partition's metadata
    # names its worker.
    records = pg_instance.fetch_materializations(dg.AssetKey("lake_stocks_minute"), limit=100).records
    built_on = {
        r.partition_key: int(re.search(r"\(pid (\d+)\)", r.asset_materialization.metadata["built_on"].value).group(1))
        for r in records
        if r.run_id == result.run_id
    }
    assert sorted(built_on) == SESSIONS
    assert set(built_on.values()) == dask_cluster.worker_pids
    assert os.getpid() not in built_on.values()


def test_a_missing_file_fails_only_its_session_through_the_cluster(vendor, pg_instance, dask_cluster, tmp_path_factory):
    broken = tmp_path_factory.mktemp("broken-vendor")
    shutil.copytree(vendor, broken, dirs_exist_ok=True)
    missing = dt.date.fromisoformat(SESSIONS[2])
    (broken / vendor_key(MINUTE, missing)).unlink()
    data = tmp_path_factory.mktemp("broken-data")

    local = in_one_process(broken, data / "local")
    result = run_range(broken, data / "cluster", pg_instance, dask_cluster.address)

    assert not result.success and not local.success
    message = failure_message(result)
    assert message == failure_message(local)  # the same report, line for line
    assert f"stocks_minute {missing}: {vendor_key(MINUTE, missing)}" in message
    assert "lake_stocks_minute not built: its input raw_stocks_minute failed for this session" in message
    assert events(result) == events(local)
    assert [p for a, p in events(result) if a == "lake_stocks_minute"] == [s for s in SESSIONS if s != SESSIONS[2]]
    assert [p for a, p in events(result) if a == "lake_stocks_daily"] == SESSIONS
    # The workers recorded the failure for the coverage ledger in the shared data folder, and the run's log has it.
    assert set(failures(data / "cluster" / "lake", MINUTE.name)) == {
        (missing, "raw_stocks_minute"),
        (missing, "lake_stocks_minute"),
    }
    errors = [e.user_message for e in pg_instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert any(line.startswith(f"stocks_minute {missing}: ") for line in errors)
    [record] = pg_instance.get_run_records(dg.RunsFilter(run_ids=[result.run_id]))
    assert record.dagster_run.status == dg.DagsterRunStatus.FAILURE


def test_results_come_back_in_the_order_of_the_sessions(dask_cluster):
    def _slow_identity(seconds: float) -> float:  # nested: sent by value, the workers need not import the tests
        time.sleep(seconds)
        return seconds

    delays = [0.8, 0.1, 0.4, 0.0]  # the later items finish first
    assert list(SessionCluster(address=dask_cluster.address).map_in_order(_slow_identity, delays)) == delays
    assert list(SessionCluster().map_in_order(_slow_identity, delays)) == delays


def test_a_resource_travels_as_a_copy_without_its_client():
    source = s3_source("http://127.0.0.1:9", "flatfiles")
    assert source.client is not None  # cached on the resource
    copy = cloudpickle.loads(cloudpickle.dumps(ResourceCopy.of(source))).build()
    assert copy._client is None and copy.describe() == source.describe()
    assert copy.secret_access_key == source.secret_access_key
    assert source.secret_access_key not in repr(ResourceCopy.of(source))  # the task's repr shows no secret
    zones = ResourceCopy.of(DataZones(root="relative/data")).build()
    assert Path(zones.root).is_absolute() and zones.root == str(Path("relative/data").resolve())


def test_a_session_error_comes_back_from_a_worker_whole():
    error = QualityGateError("stocks_daily", dt.date(2026, 2, 2), "k.csv.gz", "rejected", summary={"rows": 3})
    back = cloudpickle.loads(cloudpickle.dumps(error))
    assert type(back) is QualityGateError and str(back) == str(error)
    assert (back.dataset, back.session, back.key, back.problem, back.summary) == (
        "stocks_daily",
        "2026-02-02",
        "k.csv.gz",
        "rejected",
        {"rows": 3},
    )
