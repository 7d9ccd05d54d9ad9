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


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """The webserver's base URL and the data folder, with the daemon running and the ingest sensors stopped."""
    root = tmp_path_factory.mktemp("browser")
    vendor, data, home = root / "vendor", root / "data", root / "dagster_home"
    generate([DAY], dt.date(2026, 2, 17), dt.date(2026, 2, 27), folder_writer(vendor))
    for session in REJECTED:
        restamp(vendor / vendor_key(DAY, dt.date.fromisoformat(session)))
    home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    # Dagster's "Join the Dagster community" dialog pops up over a first visit from 127.0.0.1 unless the instance
    # has seen it (the file `dagster._core.nux.set_nux_seen` writes): closing it by a click raced with the page.
    (home / ".nux").mkdir()
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    env = {
        "DAGSTER_HOME": str(home),
        "QUANT_ASSETS_VENDOR_DIR": str(vendor),
        "QUANT_ASSETS_DATA": str(data),
        "QUANT_ASSETS_DATASETS": "stocks_daily",
        "QUANT_ASSETS_SENSORS": "stopped",  # the daemon starts with the UI: the ingest sensors must not run first
        "PATH": f"{BIN}:/usr/bin:/bin",
    }
    if "PYTHONPATH" in os.environ:  # a checkout other than the installed one
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    with project_ui(root, env) as port:
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


def check_execution(url: str, name: str, partition: str) -> dict:
    [execution] = graphql(f"{url}/graphql", CHECK, {"name": name, "partition": partition})["assetCheckExecutions"]
    return execution


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
