"""The sensors, evaluated with Dagster's testing APIs on a real instance (`instance_for_test`), against a real moto S3
server and a local folder; the run-failure alert posts to a real local HTTP server."""

import datetime as dt
import gzip
import json
import shutil
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from quant_assets.datasets import DATASETS, Calendar
from quant_assets.defs.ingest import JOB_NAMES, chain_keys, lake_key, raw_key
from quant_assets.defs.resources import AlertWebhook, DataZones, resources_from
from quant_assets.defs.sensors import gap_requests, gap_sensor, new_files_sensor, run_failure_alerts
from quant_assets.flatfiles import vendor_key
from quant_assets.lake import partition_path
from quant_assets.plan import FETCH, SessionWork
from quant_assets.raw import read_landed
from quant_assets.settings import from_env
from quant_assets.sources import LocalFlatFiles
from quant_assets_tests.conftest import materialize_spine, s3_client, s3_source, spine

DAY = DATASETS["stocks_daily"]
JOB = JOB_NAMES[Calendar.XNYS]
KEYS = chain_keys([DAY])[Calendar.XNYS][2]  # as the code location wires the sensors
ASSETS = [raw_key(DAY), lake_key(DAY)]
HOLIDAY = dt.date(2026, 2, 16)  # Presidents' Day
FORCE = {"ops": {"us_equities_sessions": {"config": {"force": True}}}}


def _evaluate(sensor, instance, cursor, flatfiles, data):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"flatfiles": flatfiles, "zones": DataZones(root=str(data))}
    )
    return sensor(context)


def _requests(result) -> list[dg.RunRequest]:
    if isinstance(result, dg.SensorResult):
        return list(result.run_requests or [])
    return [] if isinstance(result, dg.SkipReason) else list(result)


def test_new_file_sensor_requests_exactly_new_and_replaced_files_on_s3(s3_endpoint, bucket, february, tmp_path):
    client = s3_client(s3_endpoint)
    days = [dt.date(2026, 2, d) for d in (2, 3, 4)]
    for day in days:
        client.put_object(Bucket=bucket, Key=vendor_key(DAY, day), Body=(february / vendor_key(DAY, day)).read_bytes())
    # a file for a holiday: not a session, never requested
    holiday_body = (february / vendor_key(DAY, days[0])).read_bytes()
    client.put_object(Bucket=bucket, Key=vendor_key(DAY, HOLIDAY), Body=holiday_body)
    source, data = s3_source(s3_endpoint, bucket), tmp_path / "data"
    sensor = new_files_sensor(JOB, Calendar.XNYS, [DAY], KEYS)

    with dg.instance_for_test() as instance:
        # Feb 2 already landed unchanged: a first look at the source does not request it again
        materialize_spine([DAY], source, data, instance=instance, partition_key="2026-02-02")
        first = _evaluate(sensor, instance, None, source, data)
        requests = _requests(first)
        assert [r.partition_key for r in requests] == ["2026-02-03", "2026-02-04"]
        assert all(r.asset_selection == ASSETS for r in requests)
        # exactly the chain's own checks: never the freshness check, which runs in its own job
        checks = {key.name for key in requests[0].asset_check_keys}
        assert {"in_session", "complete_values", "volume_anomaly"} <= checks and "fresh" not in checks
        assert all(r.tags["quant_assets/trigger"] == "new_files" for r in requests)

        # the requests run as they are
        request = requests[0]
        materialize_spine(
            [DAY],
            source,
            data,
            instance=instance,
            partition_key=request.partition_key,
            selection=request.asset_selection,
        )
        assert partition_path(data / "lake", DAY.name, dt.date(2026, 2, 3)).exists()

        # nothing changed: nothing requested
        second = _evaluate(sensor, instance, first.cursor, source, data)
        assert _requests(second) == [] and second.skip_reason is not None
        # the cursor holds only what the raw zone does not say: Feb 4, requested and not landed yet (Feb 3 is)
        assert json.loads(second.cursor) == {
            vendor_key(DAY, dt.date(2026, 2, 4)): json.loads(first.cursor)[vendor_key(DAY, dt.date(2026, 2, 4))]
        }

        # the vendor replaces Feb 3: exactly one re-run of that session, with a new run key
        other = (february / vendor_key(DAY, dt.date(2026, 2, 5))).read_bytes()
        client.put_object(Bucket=bucket, Key=vendor_key(DAY, days[1]), Body=other)
        third = _evaluate(sensor, instance, second.cursor, source, data)
        [rerun] = _requests(third)
        assert rerun.partition_key == "2026-02-03" and rerun.run_key != request.run_key
        assert _requests(_evaluate(sensor, instance, third.cursor, source, data)) == []

        # a new session's file: one request for it; the holiday's file is still ignored
        client.put_object(
            Bucket=bucket, Key=vendor_key(DAY, dt.date(2026, 2, 5)), Body=other
        )  # same bytes as the replaced Feb 3
        [new] = _requests(_evaluate(sensor, instance, third.cursor, source, data))
        assert new.partition_key == "2026-02-05"


def test_new_file_sensor_leaves_a_session_to_the_run_that_covers_it(february, tmp_path):
    vendor, data = tmp_path / "vendor", tmp_path / "data"
    key = vendor_key(DAY, dt.date(2026, 2, 2))
    (vendor / key).parent.mkdir(parents=True)
    shutil.copy(february / key, vendor / key)
    source = LocalFlatFiles(root=str(vendor))
    sensor = new_files_sensor(JOB, Calendar.XNYS, [DAY], KEYS)
    range_tags = {
        "dagster/asset_partition_range_start": "2026-02-02",
        "dagster/asset_partition_range_end": "2026-02-06",
    }

    def running(assets) -> dg.DagsterRun:  # a UI backfill's run: Dagster's asset job, with an asset selection
        run = dg.DagsterRun(
            job_name="__ASSET_JOB",
            status=dg.DagsterRunStatus.STARTED,
            run_id=str(uuid.uuid4()),
            asset_selection=frozenset(assets),
            tags=range_tags,
        )
        instance.add_run(run)
        return run

    with dg.instance_for_test() as instance:
        [request] = _requests(_evaluate(sensor, instance, None, source, data))
        assert request.partition_key == "2026-02-02"
        # a run in progress over another dataset does not land this file: still requested
        other = running([dg.AssetKey("raw_stocks_minute"), dg.AssetKey("lake_stocks_minute")])
        [again] = _requests(_evaluate(sensor, instance, None, source, data))
        assert again.run_key == request.run_key
        instance.delete_run(other.run_id)
        # one that covers the session's stocks_daily lands it: no second request, and the file stays unseen
        backfill = running(ASSETS)
        covered = _evaluate(sensor, instance, None, source, data)
        assert _requests(covered) == [] and json.loads(covered.cursor) == {}
        instance.delete_run(backfill.run_id)
        # once it has landed the file, the next look finds nothing new
        materialize_spine([DAY], source, data, instance=instance, partition_key="2026-02-02")
        assert _requests(_evaluate(sensor, instance, covered.cursor, source, data)) == []


def _febuary_folder(february, tmp_path, leave_out=()):
    vendor = tmp_path / "vendor"
    for path in (february / DAY.key_prefix).rglob("*.csv.gz"):
        if not any(day.isoformat() in path.name for day in leave_out):
            target = vendor / path.relative_to(february)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    return vendor


def _range(request: dg.RunRequest) -> tuple[str, str]:
    return request.tags["dagster/asset_partition_range_start"], request.tags["dagster/asset_partition_range_end"]


def test_gap_sensor_requests_bounded_backfills_for_gaps_whose_file_appeared_on_s3(
    s3_endpoint, bucket, february, tmp_path
):
    missing = dt.date(2026, 2, 10)
    client, data = s3_client(s3_endpoint), tmp_path / "data"
    for path in (february / DAY.key_prefix).rglob("*.csv.gz"):
        if missing.isoformat() not in path.name:
            client.put_object(Bucket=bucket, Key=path.relative_to(february).as_posix(), Body=path.read_bytes())
    source = s3_source(s3_endpoint, bucket)
    # a window that reaches back to February from today; at most 5 sessions per run
    sensor = gap_sensor(JOB, Calendar.XNYS, [DAY], KEYS, window=400, max_sessions=5)
    with dg.instance_for_test() as instance:
        range_tags = {
            "dagster/asset_partition_range_start": "2026-02-02",
            "dagster/asset_partition_range_end": "2026-02-06",
        }
        materialize_spine([DAY], source, data, instance=instance, tags=range_tags)
        requests = _requests(_evaluate(sensor, instance, None, source, data))
        # Feb 9 alone (Feb 10 has no file: a run over it would fail), then Feb 11..27 without the holiday, by 5
        assert [_range(r) for r in requests] == [
            ("2026-02-09", "2026-02-09"),
            ("2026-02-11", "2026-02-18"),
            ("2026-02-19", "2026-02-25"),
            ("2026-02-26", "2026-02-27"),
        ]
        assert all(r.asset_selection == ASSETS and r.partition_key is None for r in requests)

        # one request runs as it is; the next look no longer requests its sessions
        materialize_spine([DAY], source, data, instance=instance, tags=requests[1].tags, selection=ASSETS)
        again = _requests(_evaluate(sensor, instance, None, source, data))
        assert [_range(r) for r in again] == [_range(r) for r in requests if r is not requests[1]]
        assert [r.run_key for r in again] == [r.run_key for r in requests if r is not requests[1]]  # stable keys

        # the missing file appears: Feb 9 and Feb 10 become one run
        key = vendor_key(DAY, missing)
        client.put_object(Bucket=bucket, Key=key, Body=(february / key).read_bytes())
        after = _requests(_evaluate(sensor, instance, None, source, data))
        assert _range(after[0]) == ("2026-02-09", "2026-02-10")

        # sessions with a run in progress are left to that run
        queued = dg.DagsterRun(
            job_name=JOB, status=dg.DagsterRunStatus.STARTED, tags=requests[2].tags, run_id=str(uuid.uuid4())
        )
        instance.add_run(queued)
        later = _requests(_evaluate(sensor, instance, None, source, data))
        assert ("2026-02-19", "2026-02-25") not in [_range(r) for r in later]


def test_gap_sensor_retries_a_session_the_lake_rejected_only_when_its_file_changes(february, tmp_path):
    bad_day = dt.date(2026, 2, 4)
    vendor, data = _febuary_folder(february, tmp_path), tmp_path / "data"
    key = vendor_key(DAY, bad_day)
    good_bytes = (vendor / key).read_bytes()
    # Feb 5's bars under Feb 4's key: the file lands, and the gate rejects every row (wrong session)
    (vendor / key).write_bytes((vendor / vendor_key(DAY, dt.date(2026, 2, 5))).read_bytes())
    source = LocalFlatFiles(root=str(vendor))
    sensor = gap_sensor(JOB, Calendar.XNYS, [DAY], KEYS, window=400, max_sessions=30)
    with dg.instance_for_test() as instance:
        tags = {"dagster/asset_partition_range_start": "2026-02-02", "dagster/asset_partition_range_end": "2026-02-27"}
        materialize_spine([DAY], source, data, instance=instance, tags=tags, raise_on_error=False)
        assert not partition_path(data / "lake", DAY.name, bad_day).exists()
        # the lake rejected the landed file (whichever run did it, here a backfill): nothing is asked for it
        assert read_landed(DataZones(root=str(data)).raw_root, DAY, bad_day).etag == source.head(key).etag
        assert _requests(_evaluate(sensor, instance, None, source, data)) == []
        # the vendor publishes a good file: the sensor asks for that session, and the run fills the gap
        (vendor / key).write_bytes(good_bytes)
        [fixed] = _requests(_evaluate(sensor, instance, None, source, data))
        assert _range(fixed) == (bad_day.isoformat(), bad_day.isoformat())
        materialize_spine([DAY], source, data, instance=instance, tags=fixed.tags, selection=fixed.asset_selection)
        assert partition_path(data / "lake", DAY.name, bad_day).exists()
        assert _requests(_evaluate(sensor, instance, None, source, data)) == []


def test_a_file_that_failed_to_land_is_tried_again_once_per_retry_window():
    work = [SessionWork(DAY.name, dt.date(2026, 2, d), FETCH, f"k{d}", 1, "not landed", '"e"', 1) for d in (2, 3)]
    failed = (DAY.name, dt.date(2026, 2, 3))
    first = gap_requests(work, KEYS, 10, {}, {failed: "2026-02-27T06"})
    same = gap_requests(work, KEYS, 10, {}, {failed: "2026-02-27T06"})
    later = gap_requests(work, KEYS, 10, {}, {failed: "2026-02-27T12"})
    assert [_range(r) for r in first] == [("2026-02-02", "2026-02-03")]
    assert first[0].run_key == same[0].run_key != later[0].run_key


class _Webhook:
    """A local HTTP server that records the JSON bodies posted to it."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/secret-token"

    def close(self):
        self.server.shutdown()


@pytest.fixture
def webhook():
    server = _Webhook()
    yield server
    server.close()


def test_a_failed_run_writes_one_alert_record_and_posts_it_once(february, tmp_path, webhook):
    vendor, data = _febuary_folder(february, tmp_path, leave_out=[dt.date(2026, 2, 3)]), tmp_path / "data"
    source = LocalFlatFiles(root=str(vendor))
    with dg.instance_for_test() as instance:
        tags = {"dagster/asset_partition_range_start": "2026-02-02", "dagster/asset_partition_range_end": "2026-02-04"}
        result = materialize_spine([DAY], source, data, instance=instance, tags=tags, raise_on_error=False)
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        [failure] = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        resources = {"zones": DataZones(root=str(data)), "alerts": AlertWebhook(url=webhook.url)}
        for _ in range(2):  # a tick evaluated twice (retried) alerts once
            context = dg.build_run_status_sensor_context(
                sensor_name="run_failure_alerts",
                dagster_event=failure.dagster_event,
                dagster_instance=instance,
                dagster_run=run,
                resources=resources,
            ).for_run_failure()
            run_failure_alerts(context)

    [record_path] = (data / "alerts").rglob("*.json")
    record = json.loads(record_path.read_text())
    assert record_path.name == f"{result.run_id}.json"
    assert record["run_id"] == result.run_id and record["job"] == run.job_name
    assert record["partition_range"] == ["2026-02-02", "2026-02-04"]
    assert any("2026-02-03" in text for text in record["step_failures"])
    assert record["webhook"] == "HTTP 200"
    [posted] = webhook.received
    assert {k: v for k, v in posted.items()} == {k: v for k, v in record.items() if k != "webhook"}
    assert "secret-token" not in record_path.read_text()


def test_the_webhook_url_is_read_only_through_an_env_var(monkeypatch):
    monkeypatch.setenv("QUANT_ASSETS_ALERT_WEBHOOK_URL", "https://hooks.example/T000/secret")
    alerts = resources_from(from_env())["alerts"]
    assert isinstance(alerts.url, dg.EnvVar) and "secret" not in repr(alerts)
    monkeypatch.delenv("QUANT_ASSETS_ALERT_WEBHOOK_URL")
    assert resources_from(from_env())["alerts"].url is None
    assert AlertWebhook().post({"x": 1}) == "not configured"


def test_features_follow_new_and_re_materialised_lake_sessions_by_automation(february, tmp_path):
    from quant_assets.defs.features import build_enriched_daily

    # the code location's graph (the lake is partitioned like the features), evaluated for the features only
    enriched = dg.Definitions(
        assets=[*spine(DAY), build_enriched_daily([DAY])],
        resources={**resources_from(from_env()), "zones": DataZones(root=str(tmp_path))},
    )
    only = dg.AssetSelection.assets("enriched_stocks_daily")
    source, data = LocalFlatFiles(root=str(february)), tmp_path / "data"
    with dg.instance_for_test() as instance:
        tags = {"dagster/asset_partition_range_start": "2026-02-02", "dagster/asset_partition_range_end": "2026-02-04"}
        materialize_spine([DAY], source, data, instance=instance, tags=tags)
        instance.report_runless_asset_event(dg.AssetMaterialization("adjustment_factors"))
        first = dg.evaluate_automation_conditions(defs=enriched, instance=instance, asset_selection=only)
        # the newest lake session, and an older one re-materialised (forced): exactly those two follow
        materialize_spine([DAY], source, data, instance=instance, partition_key="2026-02-05")
        materialize_spine([DAY], source, data, instance=instance, partition_key="2026-02-03", run_config=FORCE)
        second = dg.evaluate_automation_conditions(
            defs=enriched, instance=instance, asset_selection=only, cursor=first.cursor
        )
        requested = second.get_requested_partitions(dg.AssetKey("enriched_stocks_daily"))
        assert requested == {"2026-02-03", "2026-02-05"}
        # nothing new: nothing requested
        third = dg.evaluate_automation_conditions(
            defs=enriched, instance=instance, asset_selection=only, cursor=second.cursor
        )
        assert third.total_requested == 0
        # a range in which the gate rejects Feb 10 (its file holds Feb 11's bars): its blocking checks fail, and
        # only the good session follows
        vendor = _febuary_folder(february, tmp_path)
        (vendor / vendor_key(DAY, dt.date(2026, 2, 10))).write_bytes(
            (february / vendor_key(DAY, dt.date(2026, 2, 11))).read_bytes()
        )
        tags = {"dagster/asset_partition_range_start": "2026-02-09", "dagster/asset_partition_range_end": "2026-02-10"}
        bad = materialize_spine(
            [DAY], LocalFlatFiles(root=str(vendor)), data, instance=instance, tags=tags, raise_on_error=False
        )
        assert not bad.success
        fourth = dg.evaluate_automation_conditions(
            defs=enriched, instance=instance, asset_selection=only, cursor=third.cursor
        )
        assert fourth.get_requested_partitions(dg.AssetKey("enriched_stocks_daily")) == {"2026-02-09"}


def test_a_file_a_backfill_already_rejected_is_not_run_again_by_the_new_file_sensor(february, tmp_path):
    """The vendor replaces a file with a spoiled one and a backfill (not the sensor) lands and rejects it: the sensor,
    whose cursor still holds the old ETag, asks nothing for it; once the vendor fixes the file, it asks once."""
    vendor = tmp_path / "vendor"
    day = dt.date(2026, 2, 2)
    key = vendor_key(DAY, day)
    (vendor / key).parent.mkdir(parents=True)
    shutil.copy(february / key, vendor / key)
    source, data = LocalFlatFiles(root=str(vendor)), tmp_path / "data"
    sensor = new_files_sensor(JOB, Calendar.XNYS, [DAY], KEYS)
    with dg.instance_for_test() as instance:
        materialize_spine([DAY], source, data, instance=instance, partition_key=day.isoformat())
        seen = _evaluate(sensor, instance, None, source, data)
        assert _requests(seen) == []
        head, *rows = gzip.decompress((vendor / key).read_bytes()).decode().splitlines()
        spoiled = [",".join([*r.split(",")[:4], "1.0", "2.0", *r.split(",")[6:]]) for r in rows]  # high < low
        (vendor / key).write_bytes(gzip.compress("\n".join([head, *spoiled, ""]).encode()))
        backfill = materialize_spine([DAY], source, data, instance=instance, partition_key=day.isoformat(),
                                     raise_on_error=False)  # fmt: skip
        assert not backfill.success  # rejected
        after = _evaluate(sensor, instance, seen.cursor, source, data)
        assert _requests(after) == []  # the same file: not run again
        shutil.copy(february / key, vendor / key)  # the vendor fixes it
        asked = _evaluate(sensor, instance, after.cursor, source, data)
        [fixed] = _requests(asked)
        assert fixed.partition_key == day.isoformat()
        materialize_spine([DAY], source, data, instance=instance, partition_key=day.isoformat())  # the run it asked
        # The vendor replaces it with a file cut in half: the download fails verification, so nothing lands and
        # the raw zone still holds the old version; its bytes are kept whole under _rejected/, so the sensor does
        # not ask for it again either, until the vendor replaces it once more.
        whole = (february / key).read_bytes()
        (vendor / key).write_bytes(whole[: len(whole) // 2])
        cut = materialize_spine([DAY], source, data, instance=instance, partition_key=day.isoformat(),
                                raise_on_error=False)  # fmt: skip
        assert not cut.success
        assert read_landed(DataZones(root=str(data)).raw_root, DAY, day).etag != source.head(key).etag  # not landed
        truncated = _evaluate(sensor, instance, asked.cursor, source, data)
        assert _requests(truncated) == []
        (vendor / key).write_bytes(gzip.compress(gzip.decompress(whole), compresslevel=1))  # a new, whole version
        [again] = _requests(_evaluate(sensor, instance, truncated.cursor, source, data))
        assert again.partition_key == day.isoformat()


def test_the_gap_sensor_leaves_a_file_rejected_as_sent_until_the_vendor_replaces_it(february, tmp_path):
    """A file cut in half at the vendor: a backfill downloads it whole and rejects it (kept under _rejected/). The
    gap sensor asks nothing for it, in this retry window or a later one; once the vendor replaces it, it asks."""
    day = dt.date(2026, 2, 4)
    vendor, data = _febuary_folder(february, tmp_path), tmp_path / "data"
    whole = (vendor / vendor_key(DAY, day)).read_bytes()
    (vendor / vendor_key(DAY, day)).write_bytes(whole[: len(whole) // 2])
    source = LocalFlatFiles(root=str(vendor))
    sensor = gap_sensor(JOB, Calendar.XNYS, [DAY], KEYS, window=400, max_sessions=30)
    with dg.instance_for_test() as instance:
        tags = {"dagster/asset_partition_range_start": "2026-02-02", "dagster/asset_partition_range_end": "2026-02-27"}
        assert not materialize_spine([DAY], source, data, instance=instance, tags=tags, raise_on_error=False).success
        assert not partition_path(data / "lake", DAY.name, day).exists()
        assert _requests(_evaluate(sensor, instance, None, source, data)) == []
        (vendor / vendor_key(DAY, day)).write_bytes(whole)  # the vendor's new, whole version
        [fixed] = _requests(_evaluate(sensor, instance, None, source, data))
        assert _range(fixed) == (day.isoformat(), day.isoformat())
