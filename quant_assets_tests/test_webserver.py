"""A backfill launched through the webserver, as the UI does it, runs a whole range as one run."""

import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from quant_assets_tests.conftest import BIN, PROJECT, free_port, wait_for_port

ASSETS = [f"{layer}_{name}" for name in ("stocks_daily", "stocks_minute", "options_daily", "options_minute")
          for layer in ("raw", "lake")]  # fmt: skip

LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on UnauthorizedError { message }
  }
}"""
STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}"""


def graphql(url: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps({"query": query, "variables": variables}).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.load(response)
    assert "errors" not in payload, payload
    return payload["data"]


@pytest.fixture
def dagster_dev(tmp_path, february):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {"DAGSTER_HOME": str(home), "QUANT_ASSETS_VENDOR_DIR": str(february),
           "QUANT_ASSETS_DATA": str(tmp_path / "data"), "PATH": f"{BIN}:/usr/bin:/bin"}  # fmt: skip
    log = open(tmp_path / "dagster_dev.log", "w")
    process = subprocess.Popen([str(BIN / "dagster"), "dev", "-m", "quant_assets.definitions", "-h", "127.0.0.1",
                                "-p", str(port)], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for_port(port, timeout=180)
        yield f"http://127.0.0.1:{port}/graphql", tmp_path / "data"
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_a_backfill_from_the_ui_is_one_run(dagster_dev):
    url, data = dagster_dev
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": [name]}, "partitions": {"range": {"start": "2026-02-02", "end": "2026-02-27"}}}
            for name in ASSETS
        ],
        "title": "February",
    }
    launched = graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        state = graphql(url, STATUS, {"id": backfill_id})
        if state["partitionBackfillOrError"]["status"] in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED",
                                                             "FAILED"):  # fmt: skip
            break
        time.sleep(3)
    assert state["partitionBackfillOrError"]["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), state
    runs = state["runsOrError"]["results"]
    assert len(runs) == 1 and runs[0]["status"] == "SUCCESS"
    tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        "2026-02-02", "2026-02-27")
    for name in ("stocks_daily", "stocks_minute", "options_daily", "options_minute"):
        assert len(list((data / "lake" / name).glob("date=*/part-0.parquet"))) == 19
