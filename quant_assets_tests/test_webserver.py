"""Through the webserver, as the UI does it: a backfill of a range is one run, and a rejected partition shows its
failed check with the failing rows."""

import datetime as dt
import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from quant_assets.datasets import DATASETS
from quant_assets.flatfiles import vendor_key
from quant_assets_tests.conftest import BIN, PROJECT, free_port, wait_for_port

ASSETS = [
    f"{layer}_{name}"
    for name in ("stocks_daily", "stocks_minute", "options_daily", "options_minute")
    for layer in ("raw", "lake")
]

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
    request = urllib.request.Request(
        url,
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.load(response)
    assert "errors" not in payload, payload
    return payload["data"]


CHECK = """
query($name: String!, $partition: String) {
  assetCheckExecutions(assetKey: {path: ["lake_stocks_daily"]}, checkName: $name, partition: $partition, limit: 1) {
    status
    partition
    evaluation { success severity description metadataEntries { label ... on MarkdownMetadataEntry { mdStr } } }
  }
}"""


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory, february):
    tmp_path = tmp_path_factory.mktemp("ui")
    vendor = tmp_path / "vendor"
    shutil.copytree(february, vendor)
    # A file for 2026-03-02 whose rows are all stamped 2026-02-20: the gate rejects the partition.
    bad = vendor / "us_stocks_sip/day_aggs_v1/2026/03/2026-03-02.csv.gz"
    bad.parent.mkdir(parents=True)
    shutil.copy(february / "us_stocks_sip/day_aggs_v1/2026/02/2026-02-20.csv.gz", bad)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {
        "DAGSTER_HOME": str(home),
        "QUANT_ASSETS_VENDOR_DIR": str(vendor),
        "QUANT_ASSETS_DATA": str(tmp_path / "data"),
        "QUANT_ASSETS_SENSORS": "stopped",  # the tests launch the backfills; the sensors would ingest everything
        "PATH": f"{BIN}:/usr/bin:/bin",
    }
    log = open(tmp_path / "dagster_dev.log", "w")
    process = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-m", "quant_assets.definitions", "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
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


def backfill(url: str, assets: list[str], start: str, end: str) -> dict:
    """Launch a backfill of `assets` over [start, end] as the UI's dialog does, and wait for it to end."""
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": [name]}, "partitions": {"range": {"start": start, "end": end}}} for name in assets
        ],
        "title": f"{start}...{end}",
    }
    launched = graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        state = graphql(url, STATUS, {"id": launched["backfillId"]})
        if state["partitionBackfillOrError"]["status"] in (
            "COMPLETED",
            "COMPLETED_SUCCESS",
            "COMPLETED_FAILED",
            "FAILED",
        ):
            return state
        time.sleep(3)
    raise AssertionError(f"backfill did not finish: {state}")


def test_a_backfill_from_the_ui_is_one_run(dagster_dev):
    url, data = dagster_dev
    state = backfill(url, ASSETS, "2026-02-02", "2026-02-27")
    assert state["partitionBackfillOrError"]["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), state
    runs = state["runsOrError"]["results"]
    assert len(runs) == 1 and runs[0]["status"] == "SUCCESS"
    tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        "2026-02-02",
        "2026-02-27",
    )
    for name in ("stocks_daily", "stocks_minute", "options_daily", "options_minute"):
        assert len(list((data / "lake" / name).glob("date=*/part-0.parquet"))) == 19


PARTITIONS = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { partitionStats { numMaterialized numFailed numPartitions } }
  }
}"""


def test_a_rejected_partition_shows_its_failed_check_with_sample_rows(dagster_dev):
    url, data = dagster_dev
    # The 27th is good, the 2nd of March is rejected: one run, the good session built in both layers. (Whether the
    # other test's February backfill ran first on this server depends on how the tests are spread over workers.)
    before = graphql(url, PARTITIONS, {"path": ["raw_stocks_daily"]})["assetNodeOrError"]["partitionStats"]
    new_sessions = 1 if (data / "raw" / vendor_key(DATASETS["stocks_daily"], dt.date(2026, 2, 27))).exists() else 2
    state = backfill(url, ["raw_stocks_daily", "lake_stocks_daily"], "2026-02-27", "2026-03-02")
    runs = state["runsOrError"]["results"]
    assert len(runs) == 1 and runs[0]["status"] == "FAILURE"
    stats = graphql(url, PARTITIONS, {"path": ["lake_stocks_daily"]})["assetNodeOrError"]["partitionStats"]
    assert stats["numFailed"] == 1, stats  # the rejected session shows as failed, not as missing or materialised
    raw_stats = graphql(url, PARTITIONS, {"path": ["raw_stocks_daily"]})["assetNodeOrError"]["partitionStats"]
    assert raw_stats["numFailed"] == 0, raw_stats
    assert raw_stats["numMaterialized"] == before["numMaterialized"] + new_sessions, (before, raw_stats)
    # Each session's result is on its own partition: the rejected one's is a blocking failure with its rows.
    [execution] = graphql(url, CHECK, {"name": "in_session", "partition": "2026-03-02"})["assetCheckExecutions"]
    evaluation = execution["evaluation"]
    assert execution["status"] == "FAILED" and execution["partition"] == "2026-03-02"
    assert evaluation["success"] is False and evaluation["severity"] == "ERROR"
    assert evaluation["description"].endswith(
        "window_start is not 00:00 of session 2026-03-02 (05:00 UTC); the session is rejected"
    )
    sample = {e["label"]: e.get("mdStr") for e in evaluation["metadataEntries"]}["sample"]
    assert sample.startswith("| vendor_row | ticker |") and "| 1 |" in sample and "2026-02-20 05:00:00" in sample
    [good] = graphql(url, CHECK, {"name": "in_session", "partition": "2026-02-27"})["assetCheckExecutions"]
    assert good["status"] == "SUCCEEDED" and good["evaluation"]["success"] is True
    [passed] = graphql(url, CHECK, {"name": "positive_prices", "partition": "2026-03-02"})["assetCheckExecutions"]
    assert passed["evaluation"]["success"] is True
    assert not (data / "lake" / "stocks_daily" / "date=2026-03-02").exists()
    assert (data / "quarantine" / "stocks_daily" / "date=2026-03-02" / "part-0.parquet").exists()
