"""Through the webserver that `make dev` serves (`quant-assets ui`), as the UI does it: a backfill of a range is one
run, and a rejected partition shows its failed check with the failing rows. And what the UI refuses: a page of
another site that sends a mutation (by POST or GET), a foreign Host, a foreign websocket."""

import datetime as dt
import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from quant_assets.datasets import DATASETS
from quant_assets.flatfiles import vendor_key
from quant_assets_tests.conftest import BIN, PROJECT, project_ui

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
    env = {
        "DAGSTER_HOME": str(home),
        "QUANT_ASSETS_VENDOR_DIR": str(vendor),
        "QUANT_ASSETS_DATA": str(tmp_path / "data"),
        "QUANT_ASSETS_SENSORS": "stopped",  # the tests launch the backfills; the sensors would ingest everything
        "PATH": f"{BIN}:/usr/bin:/bin",
    }
    with project_ui(tmp_path, env) as port:
        yield f"http://127.0.0.1:{port}/graphql", tmp_path / "data"


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


REPOSITORY = "query { repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
RUNS = "query { runsOrError { ... on Runs { results { runId status } } } }"
RUN = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
EVIL = "http://evil.example"


def send(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, str]:
    """(status, body) of a request, refused or not."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers or {}), timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def files(folder: Path) -> dict[str, int]:
    """Every file under the data folder with its modification time, but the alerts the failure sensor writes."""
    found = (p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).parts[0] != "alerts")
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in found}


def launch_params(url: str) -> dict:
    """launchRun's parameters for raw and lake stocks_daily of 2026-02-20, as the UI's launchpad sends them."""
    [repository] = graphql(url, REPOSITORY, {})["repositoriesOrError"]["nodes"]
    selector = {
        "repositoryLocationName": repository["location"]["name"],
        "repositoryName": repository["name"],
        "jobName": "ingest_us_equities",
        "assetSelection": [{"path": ["raw_stocks_daily"]}, {"path": ["lake_stocks_daily"]}],
    }
    return {"selector": selector, "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "2026-02-20"}]}}


def test_a_page_of_another_site_cannot_launch_a_run(dagster_dev):
    """The attack `dagster dev` let through: a foreign page sends launchRun by POST (JSON, or form-encoded with the
    query in the URL, which needs no CORS preflight) or by GET; each is refused, no run is launched and the data
    folder is untouched. The same mutation from the UI's own origin launches the run."""
    url, data = dagster_dev
    params = launch_params(url)
    runs_before = graphql(url, RUNS, {})["runsOrError"]["results"]
    files_before = files(data) if data.exists() else {}
    body = json.dumps({"query": LAUNCH_RUN, "variables": {"params": params}}).encode()
    in_url = f"{url}?{urllib.parse.urlencode({'query': LAUNCH_RUN, 'variables': json.dumps({'params': params})})}"
    attempts = [
        (url, body, {"Content-Type": "application/json", "Origin": EVIL}),
        (in_url, b"", {"Content-Type": "application/x-www-form-urlencoded", "Origin": EVIL}),
        (in_url, None, {"Origin": EVIL}),
        (in_url, None, {"Referer": f"{EVIL}/page.html"}),  # a GET from a link or an image: no Origin
        (in_url, None, {"Sec-Fetch-Site": "cross-site"}),
    ]
    for target, payload, headers in attempts:
        status, text = send(target, payload, headers)
        assert status == 403, (headers, status, text)
        assert text.startswith("refused: a request from a ") and "this Dagster UI answers only its own pages" in text
    assert "a page of http://evil.example (Origin)" in send(url, body, attempts[0][2])[1]
    # A mutation by GET is refused whatever its origin: the UI never sends one.
    assert send(in_url) == (405, "refused: a GraphQL mutation must be sent by POST, not GET")
    assert graphql(url, RUNS, {})["runsOrError"]["results"] == runs_before
    assert (files(data) if data.exists() else {}) == files_before

    origin = url.removesuffix("/graphql")
    status, text = send(url, body, {"Content-Type": "application/json", "Origin": origin})
    launched = json.loads(text)["data"]["launchRun"]
    assert status == 200 and launched["__typename"] == "LaunchRunSuccess", text
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 300
    while (run := graphql(url, RUN, {"id": run_id})["runOrError"])["status"] not in ("SUCCESS", "FAILURE"):
        assert time.monotonic() < deadline, run
        time.sleep(2)
    assert run["status"] == "SUCCESS"
    assert (data / "lake" / "stocks_daily" / "date=2026-02-20" / "part-0.parquet").exists()


def test_a_foreign_host_is_refused(dagster_dev):
    """DNS rebinding: a foreign name that resolves to 127.0.0.1 reaches the server with its own name in Host."""
    url, _ = dagster_dev
    port = urllib.parse.urlsplit(url).port
    query = json.dumps({"query": REPOSITORY}).encode()
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
        status, text = send(url, query, {"Content-Type": "application/json", "Host": host})
        assert (status, text) == (400, "Invalid host header"), host
    status, _ = send(url.removesuffix("/graphql") + "/", None, {"Host": f"evil.example:{port}"})
    assert status == 400  # the pages too, not only /graphql
    assert send(url, query, {"Content-Type": "application/json", "Host": f"localhost:{port}"})[0] == 200


def test_the_uis_own_origin_and_clients_without_one_are_served(dagster_dev):
    """The UI's own pages (on 127.0.0.1 or localhost), and clients that send no Origin (curl, Dagster's GraphQL
    client, these tests), get answers; so does a link into the UI from another site (not /graphql)."""
    url, _ = dagster_dev
    port = urllib.parse.urlsplit(url).port
    query = json.dumps({"query": REPOSITORY}).encode()
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", None):
        headers = {"Content-Type": "application/json", **({"Origin": origin} if origin else {})}
        status, text = send(url, query, headers)
        [repository] = json.loads(text)["data"]["repositoriesOrError"]["nodes"]
        assert status == 200 and repository["location"]["name"] == "quant_assets.definitions", origin
    same = {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
    assert send(f"{url}?query={urllib.parse.quote('{ shouldShowNux }')}", None, same)[0] == 200
    status, text = send(url.removesuffix("/graphql") + "/runs", None, {"Sec-Fetch-Site": "cross-site"})
    assert status == 200 and "<html" in text.lower()  # a link from an alert in a chat app still opens the UI


def test_the_subscriptions_websocket_refuses_other_sites(dagster_dev):
    """The UI's live updates come over a websocket on /graphql: a foreign page's handshake is refused (a browser
    lets a page read any websocket it opens), the UI's own is accepted."""
    import asyncio

    import websockets

    url, _ = dagster_dev
    ws = url.replace("http://", "ws://")

    async def handshake(origin: str) -> str:
        try:
            async with websockets.connect(ws, subprotocols=["graphql-ws"], origin=origin) as socket:
                await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
                return json.loads(await socket.recv())["type"]
        except websockets.InvalidStatus as error:
            return f"HTTP {error.response.status_code}"

    assert asyncio.run(handshake(EVIL)) == "HTTP 403"
    assert asyncio.run(handshake(url.removesuffix("/graphql"))) == "connection_ack"
