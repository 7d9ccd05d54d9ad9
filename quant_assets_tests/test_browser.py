"""The UI as a user meets it: in headless Chromium, backfill a range of `lake_stocks_daily` from the asset's page and
find the rejected session's failed check, with its sample rows, on that session's partition in the Checks tab. The
same flow over GraphQL (the launch mutation the UI's dialog sends) always runs, browser or not.

The server is what `make dev` runs, `quant-assets ui` (Dagster's webserver behind the project's Host and Origin
checks, and the daemon, which launches the backfills), over a temporary DAGSTER_HOME: the UI working in a browser
proves the checks let its own pages through, and a page of another site opened in the same browser launches
nothing. The vendor folder holds stocks_daily for 2026-02-17 to 2026-02-27, whose files for the 18th and the 25th
are stamped with the next day, so the gate rejects them. The sensors that would ingest those files on their own
start stopped (QUANT_ASSETS_SENSORS), and every sensor is stopped over GraphQL before a test runs.
"""

import datetime as dt
import gzip
import http.server
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from quant_assets.datasets import DATASETS
from quant_assets.flatfiles import vendor_key
from quant_assets.sample import folder_writer, generate
from quant_assets_tests.conftest import BIN, PROJECT, project_ui
from quant_assets_tests.test_webserver import CHECK, LAUNCH, STATUS, graphql

DAY = DATASETS["stocks_daily"]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REJECTED = ("2026-02-18", "2026-02-25")
SHOTS = Path(os.environ.get("QUANT_ASSETS_SCREENSHOTS", "/tmp"))

SENSORS = """
query {
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes { name location { name } sensors { name sensorState { id selectorId status } } }
    }
  }
}"""
STOP_SENSOR = """
mutation($id: String, $origin: String, $selector: String) {
  stopSensor(id: $id, jobOriginId: $origin, jobSelectorId: $selector) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on PythonError { message }
  }
}"""
CHECK_JOBS = """
query {
  assetNodeOrError(assetKey: {path: ["lake_stocks_daily"]}) {
    ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks { name jobNames } } } }
  }
}"""
LAKE_METADATA = """
query($partitions: [String!]!) {
  assetNodeOrError(assetKey: {path: ["lake_stocks_daily"]}) {
    ... on AssetNode {
      latestMaterializationByPartition(partitions: $partitions) {
        partition
        metadataEntries { label __typename ... on IntMetadataEntry { intValue } }
      }
    }
  }
}"""
BACKFILLS = """
query {
  partitionBackfillsOrError(limit: 10) {
    ... on PartitionBackfills { results { id status title partitionNames } }
  }
}"""


def restamp(path: Path) -> None:
    """Stamp every row of a day file with the next day: the gate rejects the whole session."""
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    column = lines[0].split(",").index("window_start")
    rows = [line.split(",") for line in lines[1:]]
    for row in rows:
        row[column] = str(int(row[column]) + 86_400 * 10**9)
    path.write_bytes(gzip.compress(("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n").encode()))


def ui_env(root: Path) -> dict[str, str]:
    """The environment of a UI over `root/vendor` (stocks_daily only) writing to `root/data`, with a new
    DAGSTER_HOME of the project's dagster.yaml under `root`, the ingest sensors starting stopped."""
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    # Dagster's "Join the Dagster community" dialog pops up over a first visit from 127.0.0.1 unless the instance
    # has seen it (the file `dagster._core.nux.set_nux_seen` writes): closing it by a click raced with the page.
    (home / ".nux").mkdir()
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    env = {
        "DAGSTER_HOME": str(home),
        "QUANT_ASSETS_VENDOR_DIR": str(root / "vendor"),
        "QUANT_ASSETS_DATA": str(root / "data"),
        "QUANT_ASSETS_DATASETS": "stocks_daily",
        "QUANT_ASSETS_SENSORS": "stopped",  # the daemon starts with the UI: the ingest sensors must not run first
        "PATH": f"{BIN}:/usr/bin:/bin",
    }
    if "PYTHONPATH" in os.environ:  # a checkout other than the installed one
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """The webserver's base URL and the data folder, with the daemon running and the ingest sensors stopped."""
    root = tmp_path_factory.mktemp("browser")
    vendor, data = root / "vendor", root / "data"
    generate([DAY], dt.date(2026, 2, 17), dt.date(2026, 2, 27), folder_writer(vendor))
    for session in REJECTED:
        restamp(vendor / vendor_key(DAY, dt.date.fromisoformat(session)))
    with project_ui(root, ui_env(root)) as port:
        url = f"http://127.0.0.1:{port}"
        assert graphql(f"{url}/graphql", "query { shouldShowNux }", {}) == {"shouldShowNux": False}
        [repository] = graphql(f"{url}/graphql", SENSORS, {})["repositoriesOrError"]["nodes"]
        for sensor in repository["sensors"]:
            state = sensor["sensorState"]
            stopped = graphql(
                f"{url}/graphql",
                STOP_SENSOR,
                {"id": state["id"], "origin": state["id"], "selector": state["selectorId"]},
            )["stopSensor"]
            assert stopped["__typename"] == "StopSensorMutationResult", stopped
        yield url, data, root / "ui.log"


def wait_for_backfill(url: str, backfill_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = graphql(f"{url}/graphql", STATUS, {"id": backfill_id})
        runs = state["runsOrError"]["results"]
        done = state["partitionBackfillOrError"]["status"] in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED")
        if done and runs and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
            return state
        time.sleep(2)
    raise AssertionError(f"backfill {backfill_id} did not finish: {state}")


def launched_backfill(url: str, session: str, timeout: float = 120) -> str:
    """The id of the backfill whose partitions include `session`, once the UI has launched it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backfills = graphql(f"{url}/graphql", BACKFILLS, {})["partitionBackfillsOrError"]["results"]
        found = [b["id"] for b in backfills if session in (b["partitionNames"] or [])]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no backfill of {session} was launched")


def check_execution(url: str, name: str, partition: str) -> dict | None:
    """The check's latest execution on `partition`, or None when it was never evaluated there."""
    executions = graphql(f"{url}/graphql", CHECK, {"name": name, "partition": partition})["assetCheckExecutions"]
    assert len(executions) <= 1, executions
    return executions[0] if executions else None


def check_statuses(url: str, sessions: list[str]) -> dict[str, dict[str, str]]:
    """Per check of lake_stocks_daily, the status of each of `sessions` that has one, as the Checks tab reads them
    (its sidebar's badge and each check's Partitions view: ranges of sessions of one status)."""
    node = graphql(f"{url}/graphql", CHECK_STATUSES, {})["assetNodeOrError"]
    return {
        check["name"]: {
            session: r["status"]
            for r in check["partitionStatuses"]["ranges"]
            for session in sessions
            if r["startKey"] <= session <= r["endKey"]
        }
        for check in node["assetChecksOrError"]["checks"]
        if check["partitionStatuses"] is not None  # an unpartitioned check (freshness)
    }


def assert_sessions(url: str, data: Path, sessions: list[str], rejected: str) -> None:
    """The lake holds the good sessions and not the rejected one, whose checks failed on its own partition with
    sample rows; every good session passed on its own."""
    for session in sessions:
        lake = data / "lake" / "stocks_daily" / f"date={session}" / "part-0.parquet"
        assert lake.exists() == (session != rejected), session
    failed = check_execution(url, "in_session", rejected)
    evaluation = failed["evaluation"]
    assert failed["status"] == "FAILED" and failed["partition"] == rejected
    assert not evaluation["success"] and evaluation["severity"] == "ERROR"
    assert evaluation["description"].endswith(
        f"window_start is not 00:00 of session {rejected} (05:00 UTC); the session is rejected"
    )
    sample = {e["label"]: e.get("mdStr") for e in evaluation["metadataEntries"]}["sample"]
    assert sample.startswith("| vendor_row | ticker |") and f"{rejected}" in sample
    for session in sessions:
        if session != rejected:
            execution = check_execution(url, "in_session", session)
            assert execution["status"] == "SUCCEEDED" and execution["partition"] == session, execution


def test_a_backfill_over_graphql_records_each_sessions_checks(ui):
    """The request the UI's launch dialog sends, for raw and lake over 2026-02-17...2026-02-20 (the 18th rejected)."""
    url, data, _ = ui
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": [name]}, "partitions": {"range": {"start": "2026-02-17", "end": "2026-02-20"}}}
            for name in ("raw_stocks_daily", "lake_stocks_daily")
        ],
        "title": "graphql",
    }
    launched = graphql(f"{url}/graphql", LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    state = wait_for_backfill(url, launched["backfillId"])
    [run] = state["runsOrError"]["results"]
    assert run["status"] == "FAILURE"  # one run; it fails naming the rejected session, the others are built
    assert_sessions(url, data, ["2026-02-17", "2026-02-18", "2026-02-19", "2026-02-20"], "2026-02-18")
    # Every built partition records its counts as numbers, which the asset's Plots chart.
    built = ["2026-02-17", "2026-02-19", "2026-02-20"]
    found = graphql(f"{url}/graphql", LAKE_METADATA, {"partitions": built})["assetNodeOrError"]
    for event in found["latestMaterializationByPartition"]:
        numbers = {
            e["label"]: e.get("intValue") for e in event["metadataEntries"] if e["__typename"] == "IntMetadataEntry"
        }
        assert {"rows", "tickers", "quarantined_rows"} <= set(numbers) and numbers["rows"] > 0, event
    assert sorted(e["partition"] for e in found["latestMaterializationByPartition"]) == built
    # The freshness check is in its own job, not in the ingest job. (A backfill of the assets still plans it:
    # Dagster's asset backfills take every check of the selected assets.)
    checks = graphql(f"{url}/graphql", CHECK_JOBS, {})["assetNodeOrError"]["assetChecksOrError"]["checks"]
    jobs = {c["name"]: c["jobNames"] for c in checks}
    assert "freshness_checks" in jobs["fresh"] and "ingest_us_equities" not in jobs["fresh"]
    assert "ingest_us_equities" in jobs["in_session"]


def browser_or_skip(playwright, *args: str):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); the GraphQL test covers the flow")
    try:
        return playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *args])
    except Exception as error:  # a browser that cannot start here: say why
        print(f"chromium did not start: {error}")
        pytest.skip(f"chromium did not start: {error}")


def test_a_backfill_from_the_ui_shows_the_rejected_sessions_failed_check(ui):
    """As a user: from the lake asset's page to its group, *Materialize all*, the range 2026-02-23...2026-02-27
    typed into the partition box, *Launch backfill*; then the asset's Checks tab, `in_session`, its Partitions,
    the rejected session (the 25th): failed, with its rows."""
    from playwright.sync_api import sync_playwright

    url, data, _ = ui
    with sync_playwright() as playwright:
        browser = browser_or_skip(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)  # generous: the suite runs two workers on two cores
            page.goto(f"{url}/assets/lake_stocks_daily")
            # The asset's own Materialize would leave raw_stocks_daily out; its group materialises both layers.
            page.get_by_role("link", name="stocks", exact=True).first.click()
            page.get_by_role("button", name="Materialize selected…").wait_for()
            page.mouse.click(700, 300)  # an empty spot of the graph: nothing selected, the button says "all"
            page.get_by_role("button", name="Materialize all…").click()
            page.get_by_text("Show all partitions").click()  # the dialog starts with the last 90 days
            partitions = page.locator(".bp5-dialog input[type=text]").first
            partitions.fill("[2026-02-23...2026-02-27]")
            partitions.press("Enter")
            page.get_by_text("5 partitions").wait_for()
            page.screenshot(path=SHOTS / "quant_assets_launch_backfill.png")
            page.get_by_role("button", name="Launch backfill").click()

            [run] = wait_for_backfill(url, launched_backfill(url, "2026-02-25"))["runsOrError"]["results"]
            assert run["status"] == "FAILURE"  # one run for the range, failing on the rejected session
            sessions = ["2026-02-23", "2026-02-24", "2026-02-25", "2026-02-26", "2026-02-27"]
            assert_sessions(url, data, sessions, "2026-02-25")

            page.goto(f"{url}/assets/lake_stocks_daily?view=checks")
            page.get_by_text("in_session", exact=True).first.click()
            page.locator("button[role=tab]#partitions").click()
            page.get_by_text("2026-02-25", exact=True).first.click()
            detail = page.get_by_text("the session is rejected")
            detail.wait_for()
            assert "61 of 61 rows: window_start is not 00:00 of session 2026-02-25 (05:00 UTC)" in detail.inner_text()
            page.get_by_text("[Show Markdown]").click()
            page.get_by_text("vendor_row").first.wait_for()
            body = page.inner_text("body")
            assert "Failed" in body and "2026-02-26 05:00:00" in body  # a sample row, stamped with the next day
            page.screenshot(path=SHOTS / "quant_assets_rejected_check.png")
        finally:
            browser.close()


# A page of another site: it sends the UI's launch mutation by POST with the query in the URL (a request a page may
# send without a CORS preflight, which Dagster reads like a JSON body), by GET from an image, and opens the
# subscriptions' websocket, then titles itself "sent".
FOREIGN_PAGE = """<!doctype html><html><head><title>loading</title></head><body><script>
const ui = "UI";
const query = new URLSearchParams({query: MUTATION, variables: VARIABLES});
const tries = [
  fetch(ui + "/graphql?" + query, {method: "POST", mode: "no-cors"}).catch(() => null),
  new Promise((done) => { const image = new Image(); image.onload = image.onerror = done;
                          image.src = ui + "/graphql?" + query; }),
  new Promise((done) => { const socket = new WebSocket(ui.replace("http", "ws") + "/graphql", "graphql-ws");
                          socket.onerror = socket.onclose = done; }),
];
Promise.all(tries).then(() => { document.title = "sent"; });
</script></body></html>"""


def test_a_page_of_another_site_in_the_same_browser_launches_nothing(ui):
    """In Chromium, with evil.example resolving to 127.0.0.1: a page of http://evil.example:PORT sends the launch
    mutation three ways (each refused by the server, not only hidden by the browser: the UI's log names it, and no
    backfill exists); and http://evil.example:UI_PORT (DNS rebinding: the foreign name for the UI's address) gets
    400, while the UI itself on 127.0.0.1 still works in the same browser."""
    from playwright.sync_api import sync_playwright

    url, _, log = ui
    params = {
        "partitionsByAssets": [{"assetKey": {"path": ["raw_stocks_daily"]}, "partitionNames": ["2026-02-19"]}],
        "title": "from evil.example",
    }
    variables = json.dumps(json.dumps({"params": params}))
    page_text = FOREIGN_PAGE.replace("UI", url).replace("MUTATION", json.dumps(LAUNCH)).replace("VARIABLES", variables)

    class Foreign(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = page_text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Foreign)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    foreign = f"http://evil.example:{server.server_address[1]}"
    try:
        with sync_playwright() as playwright:
            browser = browser_or_skip(playwright, "--host-resolver-rules=MAP evil.example 127.0.0.1")
            try:
                page = browser.new_page()
                page.set_default_timeout(60_000)
                page.goto(f"{foreign}/")
                page.wait_for_function("document.title === 'sent'")
                rebound = page.goto(url.replace("127.0.0.1", "evil.example") + "/")
                assert rebound.status == 400 and page.inner_text("body") == "Invalid host header"
                assert page.goto(f"{url}/overview").status == 200
            finally:
                browser.close()
    finally:
        server.shutdown()
    backfills = graphql(f"{url}/graphql", BACKFILLS, {})["partitionBackfillsOrError"]["results"]
    assert "from evil.example" not in [b["title"] for b in backfills]
    refused = f"refused: a request from a page of {foreign} (Origin)"
    lines = log.read_text().splitlines()
    assert any(line.startswith(f"POST /graphql: {refused}") for line in lines), lines[-20:]
    assert any(line.startswith(f"WEBSOCKET /graphql: {refused}") for line in lines), lines[-20:]
    assert any(line.startswith("GET /graphql: refused: a request from a cross-site page") for line in lines)


# The job page's backfill: a vendor folder of 2026-03-02...03-05 with one row of the 3rd's file high below low (the
# lake rejects the session) and the 4th's gzip cut in half (the raw zone rejects the file as sent).
SPOILED = ("2026-03-02", "2026-03-05")
HIGH_LOW, TRUNCATED = "2026-03-03", "2026-03-04"
REPOSITORY = {"repositoryLocationName": "quant_assets.definitions", "repositoryName": "__repository__"}
BACKFILL_COUNTS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill {
      isAssetBackfill
      assetBackfillData {
        assetBackfillStatuses {
          ... on AssetPartitionsStatusCounts {
            assetKey { path } numPartitionsTargeted numPartitionsInProgress numPartitionsMaterialized
            numPartitionsFailed
          }
        }
      }
    }
  }
}"""
CHECK_NAMES = """
query {
  assetNodeOrError(assetKey: {path: ["lake_stocks_daily"]}) {
    ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks { name } } } }
  }
}"""
CHECK_STATUSES = """
query {
  assetNodeOrError(assetKey: {path: ["lake_stocks_daily"]}) {
    ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks {
      name partitionStatuses { ... on AssetCheckTimePartitionStatuses { ranges { status startKey endKey } } }
    } } } }
  }
}"""
START_SENSOR = """
mutation($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) { __typename ... on Sensor { sensorState { status } } }
}"""
SENSOR_TICKS = """
query($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor { sensorState { ticks(limit: 5) { status runIds skipReason error { message } } } }
  }
}"""
RUNS = """
query { runsOrError { ... on Runs { results { runId status tags { key value } } } } }"""


def swap_high_low(path: Path) -> None:
    """Swap high and low in the first row of a day file (high below low: a failed rule for that row)."""
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    header, row = lines[0].split(","), lines[1].split(",")
    high, low = header.index("high"), header.index("low")
    row[high], row[low] = row[low], row[high]
    if float(row[high]) >= float(row[low]):
        row[high] = str(float(row[low]) - 1)
    lines[1] = ",".join(row)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


@pytest.fixture(scope="module")
def spoiled_ui(tmp_path_factory):
    """A UI of its own over the spoiled March files, the sensors stopped."""
    root = tmp_path_factory.mktemp("spoiled")
    vendor, data = root / "vendor", root / "data"
    start, end = (dt.date.fromisoformat(s) for s in SPOILED)
    generate([DAY], start, end, folder_writer(vendor))
    swap_high_low(vendor / vendor_key(DAY, dt.date.fromisoformat(HIGH_LOW)))
    cut = vendor / vendor_key(DAY, dt.date.fromisoformat(TRUNCATED))
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    with project_ui(root, ui_env(root)) as port:
        yield f"http://127.0.0.1:{port}", data, root / "ui.log"


def job_page_params(sessions: list[str]) -> dict:
    """What the job page's launch dialog sends (Dagster 1.13's `LaunchAssetChoosePartitionsDialog`, target a job):
    a job backfill of the job's partition set, with its assets and the chosen partitions."""
    return {
        "tags": [{"key": "dagster/from_ui", "value": "true"}],
        "assetSelection": [{"path": ["raw_stocks_daily"]}, {"path": ["lake_stocks_daily"]}],
        "partitionNames": sessions,
        "fromFailure": False,
        "selector": {"partitionSetName": "ingest_us_equities_partition_set", "repositorySelector": REPOSITORY},
    }


def test_a_job_backfill_is_sent_as_the_asset_backfill_of_its_assets():
    """The rewrite itself: the job page's request becomes the asset backfill of the same assets, partitions and
    tags; a re-execution from failure, another mutation and a body that is not JSON pass as they are."""
    from quant_assets.ui import rewritten_launch

    sessions = ["2026-03-02", "2026-03-03"]
    body = json.dumps(
        {
            "operationName": "LaunchPartitionBackfill",
            "query": LAUNCH,
            "variables": {"params": job_page_params(sessions)},
        }
    )
    rewritten, replaced = rewritten_launch(body.encode())
    assert replaced == ["ingest_us_equities_partition_set"]
    params = json.loads(rewritten)["variables"]["params"]
    assert params == {k: v for k, v in job_page_params(sessions).items() if k != "selector"}
    retry = {**job_page_params(sessions), "fromFailure": True}
    assert rewritten_launch(json.dumps({"query": LAUNCH, "variables": {"params": retry}}).encode()) is None
    assert rewritten_launch(json.dumps({"query": STOP_SENSOR, "variables": {"id": "x"}}).encode()) is None
    assert rewritten_launch(b"query=mutation") is None


def spoiled_backfill_counts(url: str, backfill_id: str) -> dict[str, tuple[int, int, int, int]]:
    data = graphql(f"{url}/graphql", BACKFILL_COUNTS, {"id": backfill_id})["partitionBackfillOrError"]
    assert data["isAssetBackfill"], data
    return {
        s["assetKey"]["path"][0]: (
            s["numPartitionsTargeted"],
            s["numPartitionsInProgress"],
            s["numPartitionsMaterialized"],
            s["numPartitionsFailed"],
        )
        for s in data["assetBackfillData"]["assetBackfillStatuses"]
    }


def test_a_job_page_backfill_of_spoiled_files_tells_the_truth(spoiled_ui):
    """As a user: the `ingest_us_equities` job's page, *Materialize all*, 2026-03-02...03-05, *Launch backfill*
    (in Chromium; without it, the request that dialog sends). The backfill's page counts each asset's sessions:
    raw 3 landed and 1 failed (the cut file), lake 2 built and 2 failed; only `high_low_consistent` failed a rule,
    on the 3rd; the 4th's checks were not evaluated (no rule failed there); and the new-file sensor, started after
    the backfill, asks for neither rejected file."""
    from playwright.sync_api import sync_playwright

    url, _, _ = spoiled_ui
    sessions = ["2026-03-02", HIGH_LOW, TRUNCATED, "2026-03-05"]
    with sync_playwright() as playwright:
        browser = None if not CHROMIUM.exists() else browser_or_skip(playwright)
        try:
            page = None
            if browser is None:
                print(f"{CHROMIUM} is not installed: launching the job page's request over GraphQL")
                launched = graphql(f"{url}/graphql", LAUNCH, {"params": job_page_params(sessions)})
                backfill_id = launched["launchPartitionBackfill"]["backfillId"]
            else:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(120_000)
                page.goto(f"{url}/locations/__repository__@quant_assets.definitions/jobs/ingest_us_equities")
                page.get_by_role("button", name="Materialize all").first.click()
                page.get_by_text("Show all partitions").click()
                partitions = page.locator(".bp5-dialog input[type=text]").first
                partitions.fill(f"[{SPOILED[0]}...{SPOILED[1]}]")
                partitions.press("Enter")
                page.get_by_text("4 partitions").wait_for()
                page.get_by_role("button", name="Launch backfill").click()
                backfill_id = launched_backfill(url, HIGH_LOW)
            [run] = wait_for_backfill(url, backfill_id)["runsOrError"]["results"]
            assert run["status"] == "FAILURE"  # one run for the range; it fails naming the two sessions
            counts = spoiled_backfill_counts(url, backfill_id)
            assert counts == {"raw_stocks_daily": (4, 0, 3, 1), "lake_stocks_daily": (4, 0, 2, 2)}, counts
            if page is not None:  # the backfill's own page, where the UI lands after the launch
                page.goto(f"{url}/runs/b/{backfill_id}")
                page.get_by_text("100% completed").nth(1).wait_for()
                lines = [line.strip() for line in page.inner_text("body").splitlines() if line.strip()]
                header = lines.index("Asset name")
                assert lines[header : header + 5] == [
                    "Asset name",
                    "Partitions targeted",
                    "In progress",
                    "Succeeded",
                    "Failed",
                ]
                for asset, numbers in counts.items():  # a row: the name (twice: link and tooltip), then the counts
                    row = len(lines) - 1 - lines[::-1].index(asset)
                    assert lines[row + 1 : row + 6] == ["100% completed", *map(str, numbers)], lines[row : row + 6]
                page.screenshot(path=SHOTS / "quant_assets_job_backfill.png")

            names = graphql(f"{url}/graphql", CHECK_NAMES, {})["assetNodeOrError"]["assetChecksOrError"]["checks"]
            rules = sorted(c["name"] for c in names if c["name"] != "fresh")  # fresh: the data is months old
            for name in rules:
                for session in ("2026-03-02", "2026-03-05"):
                    assert check_execution(url, name, session)["status"] == "SUCCEEDED", (name, session)
                # the bad row's session: only its rule failed; a check of the built partition (volume_anomaly,
                # against the lake's history) has nothing to judge and is not evaluated
                execution = check_execution(url, name, HIGH_LOW)
                if name == "high_low_consistent":
                    assert execution["status"] == "FAILED", execution
                elif name == "volume_anomaly":
                    assert execution is None, execution
                else:
                    assert execution["status"] == "SUCCEEDED", (name, execution)
                # the cut file's session: no rule could judge it, so no check has an execution there
                assert check_execution(url, name, TRUNCATED) is None, name
            # What the Checks tab reads for its sidebar and each check's partitions: only the failing rule is
            # failed, on the bad row's session alone; nothing is "execution failed" or "skipped".
            statuses = check_statuses(url, ["2026-03-02", HIGH_LOW, TRUNCATED, "2026-03-05"])
            good = {"2026-03-02": "SUCCEEDED", "2026-03-05": "SUCCEEDED"}
            for name in rules:
                expected = {
                    "high_low_consistent": {**good, HIGH_LOW: "FAILED"},
                    "volume_anomaly": good,
                }.get(name, {**good, HIGH_LOW: "SUCCEEDED"})
                assert statuses[name] == expected, (name, statuses[name])
            failed = check_execution(url, "high_low_consistent", HIGH_LOW)["evaluation"]
            assert "high" in failed["description"] and "low" in failed["description"], failed
            if page is not None:
                page.goto(f"{url}/assets/lake_stocks_daily?view=checks")
                page.get_by_text("high_low_consistent", exact=True).first.click()
                page.locator("button[role=tab]#partitions").click()
                page.get_by_text(HIGH_LOW, exact=True).first.click()
                page.get_by_text("Failed").first.wait_for()
                page.screenshot(path=SHOTS / "quant_assets_high_low_check.png")
        finally:
            if browser is not None:
                browser.close()

    # The new-file sensor, started now, lists the four files: two landed and built, one landed and rejected by
    # the lake, one downloaded whole and rejected as sent. Its first tick asks for none of them.
    selector = {**REPOSITORY, "sensorName": "ingest_us_equities_new_files"}
    started = graphql(f"{url}/graphql", START_SENSOR, {"selector": selector})["startSensor"]
    assert started["__typename"] == "Sensor", started
    deadline, ticks = time.monotonic() + 180, []
    while time.monotonic() < deadline:
        state = graphql(f"{url}/graphql", SENSOR_TICKS, {"selector": selector})["sensorOrError"]["sensorState"]
        ticks = [t for t in state["ticks"] if t["status"] != "STARTED"]
        if ticks:
            break
        time.sleep(2)
    assert ticks, "the new-file sensor did not tick"
    assert ticks[0]["status"] == "SKIPPED" and ticks[0]["runIds"] == [], ticks[0]
    assert ticks[0]["skipReason"] == "no new or replaced files"
    runs = graphql(f"{url}/graphql", RUNS, {})["runsOrError"]["results"]
    assert [r["runId"] for r in runs] == [run["runId"]]  # the backfill's one run, nothing from the sensor
