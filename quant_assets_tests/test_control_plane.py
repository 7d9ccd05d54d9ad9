"""What a run over sessions that are already current costs, and what the UI shows after it: through the real
`dagster asset materialize` against the instance of the project's dagster.yaml (its pooled SQLite event log), and
the webserver that `make dev` serves, read as the UI reads it (GraphQL)."""

import csv
import gzip
import io
import json
import shutil

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType

from quant_assets.datasets import DATASETS
from quant_assets.defs.storage import PooledSqliteEventLogStorage
from quant_assets.flatfiles import vendor_key
from quant_assets.quality.rules import rule_catalogue
from quant_assets.sessions import parse_session
from quant_assets_tests.conftest import BIN, PROJECT, project_ui, run_cli
from quant_assets_tests.test_webserver import graphql

DAY = DATASETS["stocks_daily"]
SESSIONS = ["2026-02-02", "2026-02-03", "2026-02-04", "2026-02-05", "2026-02-06", "2026-02-09", "2026-02-10"]
CHANGED = "2026-02-05"
CHECKS = [*rule_catalogue(DAY), "volume_anomaly"]
SELECT = ["--select", "raw_stocks_daily,lake_stocks_daily"]
RANGE = ["--partition-range", f"{SESSIONS[0]}...{SESSIONS[-1]}"]
FORCE = json.dumps({"ops": {"us_equities_sessions": {"config": {"force": True}}}})

LATEST = """
query($partitions: [String!]) {
  assetNodeOrError(assetKey: {path: ["lake_stocks_daily"]}) {
    ... on AssetNode {
      assetMaterializations(partitions: $partitions) { partition runId }
      assetPartitionStatuses { ... on TimePartitionStatuses { ranges { status startKey endKey } } }
    }
  }
}"""
CHECK = """
query($name: String!, $partition: String) {
  assetCheckExecutions(assetKey: {path: ["lake_stocks_daily"]}, checkName: $name, partition: $partition, limit: 1) {
    runId status partition evaluation { success targetMaterialization { runId } }
  }
}"""


@pytest.fixture(scope="module")
def project(tmp_path_factory, february):
    """A DAGSTER_HOME with the project's dagster.yaml, its webserver, and `materialize(*args)`: the CLI's run
    over the February range, returning its run id."""
    tmp_path = tmp_path_factory.mktemp("control")
    vendor = tmp_path / "vendor"
    shutil.copytree(february, vendor)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    env = {
        "DAGSTER_HOME": str(home),
        "QUANT_ASSETS_VENDOR_DIR": str(vendor),
        "QUANT_ASSETS_DATA": str(tmp_path / "data"),
        "QUANT_ASSETS_DATASETS": "stocks_daily",
        "QUANT_ASSETS_SENSORS": "stopped",
        "PATH": f"{BIN}:/usr/bin:/bin",
    }
    with pytest.MonkeyPatch.context() as patch:  # dagster.yaml names its folder by DAGSTER_HOME
        patch.setenv("DAGSTER_HOME", str(home))
        instance = dg.DagsterInstance.from_config(str(home))
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)

    def materialize(*args: str) -> str:
        before = {r.run_id for r in instance.get_runs()}
        run_cli(
            "dagster",
            "asset",
            "materialize",
            "-m",
            "quant_assets.definitions",
            *SELECT,
            *RANGE,
            *args,
            cwd=tmp_path,
            env=env,
        )
        [run_id] = {r.run_id for r in instance.get_runs()} - before
        return run_id

    with project_ui(tmp_path, env) as port:
        yield f"http://127.0.0.1:{port}/graphql", instance, vendor, materialize


def events(instance: dg.DagsterInstance, run_id: str, kind: DagsterEventType) -> list:
    return [e.dagster_event.event_specific_data for e in instance.all_logs(run_id, of_type=kind)]


def materialized(instance, run_id) -> set[tuple[str, str]]:
    return {
        (m.materialization.asset_key.path[0], m.materialization.partition)
        for m in events(instance, run_id, DagsterEventType.ASSET_MATERIALIZATION)
    }


def ui_latest(url: str) -> tuple[dict[str, str], list]:
    """Per session, the run of the UI's latest lake materialization; and the partition status ranges."""
    node = graphql(url, LATEST, {"partitions": SESSIONS})["assetNodeOrError"]
    latest = {}
    for m in node["assetMaterializations"]:  # newest first
        latest.setdefault(m["partition"], m["runId"])
    return latest, node["assetPartitionStatuses"]["ranges"]


def ui_checks(url: str, session: str) -> dict[str, dict]:
    return {
        name: graphql(url, CHECK, {"name": name, "partition": session})["assetCheckExecutions"][0] for name in CHECKS
    }


def change_volume(path) -> None:
    """The vendor replaces a file: one row's volume differs, every row still good."""
    with gzip.open(path, "rt", newline="") as handle:
        rows = list(csv.reader(handle))
    rows[1][rows[0].index("volume")] = str(int(float(rows[1][rows[0].index("volume")])) + 1)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_bytes(gzip.compress(out.getvalue().encode()))


def test_a_run_with_nothing_to_do_writes_no_materialization_and_the_ui_still_shows_every_session(project):
    url, instance, vendor, materialize = project
    first = materialize()
    built = {(layer, s) for layer in ("raw_stocks_daily", "lake_stocks_daily") for s in SESSIONS}
    assert materialized(instance, first) == built
    assert len(events(instance, first, DagsterEventType.ASSET_CHECK_EVALUATION)) == len(CHECKS) * len(SESSIONS)

    # Again, every session current: no materialization and no check evaluation at all. The checks Dagster planned
    # for the range are withdrawn, so each session's latest check execution is still the first run's.
    noop = materialize()
    assert instance.get_run_by_id(noop).status == dg.DagsterRunStatus.SUCCESS
    assert materialized(instance, noop) == set()
    assert events(instance, noop, DagsterEventType.ASSET_CHECK_EVALUATION) == []
    for name in CHECKS:
        key = dg.AssetCheckKey(dg.AssetKey("lake_stocks_daily"), name)
        runs = {r.run_id for r in instance.event_log_storage.get_asset_check_execution_history(key, limit=100)}
        assert runs == {first}, name  # nothing left planned (skipped) for the no-op run
    logs = [e.user_message for e in instance.all_logs(noop)]
    assert (
        f"lake_stocks_daily: 0 sessions built, {len(SESSIONS)} skipped (already current; their earlier "
        f"materializations stand), 0 failed, of {len(SESSIONS)}" in logs
    )
    assert not any("already built from this raw file" in line for line in logs)  # no line per session

    latest, ranges = ui_latest(url)
    assert latest == dict.fromkeys(SESSIONS, first)
    assert [r["status"] for r in ranges] == ["MATERIALIZED"]
    assert (ranges[0]["startKey"], ranges[0]["endKey"]) == (SESSIONS[0], SESSIONS[-1])
    for session in (SESSIONS[0], CHANGED, SESSIONS[-1]):
        for name, execution in ui_checks(url, session).items():
            assert execution["status"] == "SUCCEEDED" and execution["evaluation"]["success"], (session, name)
            assert execution["runId"] == execution["evaluation"]["targetMaterialization"]["runId"] == first

    # The vendor replaces one file: the range materialises exactly that session, in both layers.
    change_volume(vendor / vendor_key(DAY, parse_session(CHANGED)))
    partial = materialize()
    assert materialized(instance, partial) == {("raw_stocks_daily", CHANGED), ("lake_stocks_daily", CHANGED)}
    latest, ranges = ui_latest(url)
    assert latest == {**dict.fromkeys(SESSIONS, first), CHANGED: partial}
    assert [r["status"] for r in ranges] == ["MATERIALIZED"]
    checks = ui_checks(url, CHANGED)
    assert {c["runId"] for c in checks.values()} == {partial}
    assert {c["evaluation"]["targetMaterialization"]["runId"] for c in checks.values()} == {partial}
    unchanged = ui_checks(url, SESSIONS[0]).values()
    assert {(c["runId"], c["evaluation"]["targetMaterialization"]["runId"]) for c in unchanged} == {(first, first)}

    # Forced: every lake session is built and recorded again (the raw files are current, not fetched again).
    forced = materialize("--config-json", FORCE)
    assert materialized(instance, forced) == {("lake_stocks_daily", s) for s in SESSIONS}
    latest, _ = ui_latest(url)
    assert latest == dict.fromkeys(SESSIONS, forced)
    for execution in ui_checks(url, SESSIONS[-1]).values():
        assert execution["runId"] == forced and execution["evaluation"]["targetMaterialization"]["runId"] == forced
