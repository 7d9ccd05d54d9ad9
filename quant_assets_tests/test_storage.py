"""The project's event log (`quant_assets.defs.storage`) against Dagster's stock SQLite storage: a run over a range
of partitions records the same events, asset records and check executions on both, and the webserver's watch of
a run's log sees every event as it is written."""

import os
import threading
import time

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from quant_assets.defs.storage import PooledSqliteEventLogStorage, withdraw_planned_checks

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01")
RANGE = {ASSET_PARTITION_RANGE_START_TAG: "2026-01-01", ASSET_PARTITION_RANGE_END_TAG: "2026-01-12"}
CHECK = dg.AssetCheckKey(dg.AssetKey("prices"), "positive")
KEYS = [f"2026-01-{day:02d}" for day in range(1, 13)]
POOLED = "storage:\n  custom:\n    module: quant_assets.defs.storage\n    class: PooledSqliteStorage\n"
STOCK = "storage:\n  sqlite:\n"
BASE = "    config:\n      base_dir: {home}\n"
STOCK_BASE = "    base_dir: {home}\n"


@dg.asset(
    partitions_def=DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[dg.AssetCheckSpec("positive", asset="prices", partitions_def=DAYS)],
)
def prices(context: dg.AssetExecutionContext):
    """A range run: one output over its partitions (a batch of materializations), and a check result for all but
    the last partition."""
    for key in context.partition_keys:
        context.add_asset_metadata({"rows": int(key[-2:])}, partition_key=key)
    checks = [
        dg.AssetCheckEvaluation(
            asset_key=context.asset_key, check_name="positive", passed=key != KEYS[3], partition=key
        )
        for key in context.partition_keys[:-1]
    ]
    yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(CHECK))
    yield from checks
    yield dg.MaterializeResult()


def instance_at(tmp_path, name: str, storage: str) -> dg.DagsterInstance:
    home = tmp_path / name
    home.mkdir()
    config = POOLED + BASE if storage == "pooled" else STOCK + STOCK_BASE
    (home / "dagster.yaml").write_text(config.format(home=home) + "telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(home))


def recorded(instance: dg.DagsterInstance, run_id: str) -> dict:
    """What the run left, without ids and times: its event types in order, the asset's materialized partitions
    and their metadata, its last run, and each partition's latest check execution."""
    key = dg.AssetKey("prices")
    check = dg.AssetCheckKey(key, "positive")
    materializations = instance.fetch_materializations(key, limit=100).records
    history = instance.event_log_storage.get_asset_check_execution_history(check, limit=100)
    return {
        "events": [e.dagster_event.event_type_value for e in instance.all_logs(run_id) if e.dagster_event],
        "materialized": sorted(
            (r.partition_key, r.asset_materialization.metadata["rows"].value) for r in materializations
        ),
        "planned": len(instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED)),
        "last_run": instance.get_asset_records([key])[0].asset_entry.last_run_id == run_id,
        "checks": sorted((r.partition, r.status.value, r.run_id == run_id) for r in history),
        "partition_info": sorted(
            (i.partition_key, i.latest_execution_status.value, i.is_current)
            for i in instance.event_log_storage.get_asset_check_partition_info([check])
        ),
    }


def run_range(instance: dg.DagsterInstance) -> str:
    job = dg.Definitions(assets=[prices]).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, tags=RANGE)
    assert result.success
    return result.run_id


def test_a_range_run_records_the_same_on_the_pooled_storage_as_on_dagsters(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    stock = instance_at(tmp_path, "stock", "stock")
    pooled = instance_at(tmp_path, "pooled", "pooled")
    assert isinstance(pooled.event_log_storage, PooledSqliteEventLogStorage)
    assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "1000"  # the pooled storage turns Dagster's batches on

    batches: list[int] = []
    write_batch = PooledSqliteEventLogStorage.store_event_batch

    def counted(storage, events):
        batches.append(len(events))
        write_batch(storage, events)

    monkeypatch.setattr(PooledSqliteEventLogStorage, "store_event_batch", counted)
    expected = recorded(stock, run_range(stock))
    got = recorded(pooled, run_range(pooled))
    assert batches and max(batches) >= len(KEYS)  # the planned events and the output's materializations
    assert got == expected
    assert got["planned"] == len(KEYS)  # one planned materialization per partition of the range
    assert [k for k, _ in got["materialized"]] == KEYS
    assert ("2026-01-04", "FAILED", True) in got["checks"]
    # the last partition's check was planned and not evaluated: left planned (skipped once the run succeeded)
    assert ("2026-01-12", "PLANNED", True) in got["checks"]


def test_a_withdrawn_planned_check_leaves_the_last_evaluation_as_the_latest(tmp_path):
    instance = instance_at(tmp_path, "pooled", "pooled")
    first = run_range(instance)
    second = run_range(instance)
    check = dg.AssetCheckKey(dg.AssetKey("prices"), "positive")
    withdraw_planned_checks(instance, second, {check: [KEYS[-1]]})
    history = instance.event_log_storage.get_asset_check_execution_history(check, limit=100)
    by_run = {(r.run_id, r.partition): r.status.value for r in history}
    assert (second, KEYS[-1]) not in by_run and (first, KEYS[-1]) in by_run  # only the newer run's plan went
    assert by_run[(second, KEYS[0])] == "SUCCEEDED"  # evaluated rows are never withdrawn
    withdraw_planned_checks(instance, second, {check: KEYS})
    assert len(instance.event_log_storage.get_asset_check_execution_history(check, limit=100)) == len(history)


def test_the_webserver_watch_of_a_run_sees_each_event_and_reading_does_not_wake_it(tmp_path):
    instance = instance_at(tmp_path, "pooled", "pooled")
    storage = instance.event_log_storage
    run = instance.create_run_for_job(
        dg.Definitions(assets=[prices]).resolve_implicit_global_asset_job_def(), tags=RANGE
    )
    seen: list[str] = []
    arrived = threading.Event()

    def callback(event, cursor):
        seen.append(event.message)
        arrived.set()

    storage.watch(run.run_id, None, callback)
    try:
        for number in range(3):
            arrived.clear()
            instance.report_engine_event(f"engine event {number}", run)
            assert arrived.wait(10), f"the watch did not see event {number}"
            deadline = time.monotonic() + 5
            while f"engine event {number}" not in seen and time.monotonic() < deadline:
                time.sleep(0.05)
            assert f"engine event {number}" in seen
        path = storage.path_for_shard(run.run_id)
        touched = os.stat(path).st_mtime_ns
        storage.get_records_for_run(run.run_id)  # a read does not change the file, so it wakes no watcher
        time.sleep(0.5)
        assert os.stat(path).st_mtime_ns == touched
        count = len(seen)
        time.sleep(1)
        assert len(seen) == count  # nothing new, no callback
    finally:
        storage.end_watch(run.run_id, callback)
        instance.dispose()
