"""Sensors that keep the lake current without anyone watching; on by default, so `make dev` (`quant-assets ui`, or `dagster dev`) runs them.

- `<job>_new_files` (one per calendar): lists the vendor source (local folder or S3) and requests a run for exactly
  the sessions whose files are new or were replaced (their ETag changed), with only the datasets whose file
  changed. A file counts as seen when its landed copy has the listed ETag, or when a run downloaded that very
  version whole and rejected it (a truncated gzip, kept under `_rejected/`); its cursor holds only the ETags of the
  files it requested that are not landed yet (so it stays short), and on its first look, files already landed
  unchanged count as seen. A file whose dataset and session a queued or running run covers is left to that run (and looked
  at again on the next tick). A file for a day that is not a session (a holiday) or before the first partition is
  ignored.
- `<job>_gaps` (one per calendar): over the last `QUANT_ASSETS_GAP_WINDOW` sessions, what a run would do
  (`plan.py`: the same calendar, source listing, raw zone and lake the coverage ledger reads) and requests range
  runs of at most `QUANT_ASSETS_GAP_MAX_SESSIONS` consecutive sessions for every session that is missing from the
  lake, stale, or rejected and whose file has since appeared or changed. A request's run key names its datasets,
  range and the files' ETags, and the instance launches a run key once: a session rejected again is not retried
  while its file and its run of consecutive sessions stay the same; one whose file failed to land (a network
  error, a cut-off download) is tried again once every `RETRY_HOURS` (6) hours, unless the run downloaded that
  very version whole and rejected it as sent (a truncated gzip): that one waits until the vendor replaces it, as
  does a session whose landed file the lake rejected (its failure recorded after the file landed), whichever run,
  a backfill or the sensor's own, rejected it.
  Sessions that a queued or running run covers are left to it.
- `run_failure_alerts`: on every failed run of this code location, writes an alert record to
  `data/alerts/YYYY-MM-DD/<run_id>.json` and, when `QUANT_ASSETS_ALERT_WEBHOOK_URL` is set (through
  `dagster.EnvVar`: a webhook URL is a secret), posts it there as JSON.

Runs requested by the sensors go through the instance's run queue (`dagster.yaml`), and the session chains' runs
take the `vendor_flatfiles` pool's one slot in turn.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg

from quant_assets.datasets import Calendar, Dataset
from quant_assets.defs.partitions import session_partitions
from quant_assets.defs.resources import AlertWebhook, DataZones
from quant_assets.flatfiles import ObjectInfo, files_by_session, session_from_key
from quant_assets.lake import replace_bytes
from quant_assets.outcomes import last_failure
from quant_assets.plan import BUILD, FETCH, changed_files, chunks, plan
from quant_assets.raw import read_landed, taken_etag
from quant_assets.sessions import is_session, parse_session, sessions, sessions_around
from quant_assets.sources import FlatFileSource

NEW_FILES_INTERVAL = 300  # seconds between two listings of the source
GAP_INTERVAL = 1800
RETRY_HOURS = 6  # a file that failed to land (a network error, a cut-off download) is tried again once per window
MAX_REQUESTS_PER_TICK = 100  # sessions requested by one new-file tick; the rest follow on the next ticks
ACTIVE = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _partitions_of(calendar: Calendar) -> tuple[dt.date, dt.date | None]:
    """The first and the newest partition of `calendar`, now."""
    partitions = session_partitions(calendar)
    last = partitions.get_last_partition_key()
    return parse_session(partitions.get_first_partition_key()), parse_session(last) if last else None


def _active_runs(instance: dg.DagsterInstance, job_name: str) -> dict[str, frozenset | None]:
    """What queued and running runs cover: partition key -> the assets they materialise for it (None: every asset
    of `job_name`). Runs of any job count (a backfill launched from the UI runs as Dagster's asset job)."""
    covered: dict[str, frozenset | None] = {}
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE)):
        if run.asset_selection is None and run.job_name != job_name:
            continue
        tags = run.tags
        start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
        keys = [tags["dagster/partition"]] if "dagster/partition" in tags else []
        keys += _keys_between(start, end) if start and end else []
        for key in keys:
            before = covered.get(key, frozenset())
            covered[key] = None if before is None or run.asset_selection is None else before | run.asset_selection
    return covered


def _covers(covered: Mapping[str, frozenset | None], session: dt.date, keys: Sequence) -> bool:
    """Whether an active run already materialises every asset of `keys` for `session`."""
    if session.isoformat() not in covered:
        return False
    assets = covered[session.isoformat()]
    return assets is None or all(k in assets for k in keys if isinstance(k, dg.AssetKey))


def _keys_between(start: str, end: str) -> list[str]:
    return [d.isoformat() for d in sessions(Calendar.EVERY_DAY, start, end)]  # a superset: only membership counts


def _selection(keys: Sequence[dg.AssetKey | dg.AssetCheckKey]) -> dict:
    """A run request's assets and checks: exactly these (Dagster would otherwise add every check of the assets)."""
    unique = list(dict.fromkeys(keys))  # two datasets may share a later layer (enriched_options_daily)
    return {
        "asset_selection": [k for k in unique if isinstance(k, dg.AssetKey)],
        "asset_check_keys": [k for k in unique if isinstance(k, dg.AssetCheckKey)],
    }


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def new_files_sensor(
    job_name: str,
    calendar: Calendar,
    datasets: Sequence[Dataset],
    keys: Mapping[str, list[dg.AssetKey | dg.AssetCheckKey]],
    status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """The new-file sensor of one calendar: `keys[dataset]` are the chain's assets a changed file of it runs."""

    @dg.sensor(
        name=f"{job_name}_new_files",
        job_name=job_name,
        minimum_interval_seconds=NEW_FILES_INTERVAL,
        default_status=status,
        description=f"Lists the vendor source every {NEW_FILES_INTERVAL // 60} minutes and requests a run for exactly "
        f"the sessions whose {', '.join(d.name for d in datasets)} files are new or replaced (ETag changed), with "
        "just those datasets; a file another run (a backfill) has landed already is not asked again, so a rejected "
        "file waits until the vendor changes it. Holidays and days before the first partition are ignored.",
    )
    def _sensor(context: dg.SensorEvaluationContext, flatfiles: FlatFileSource, zones: DataZones):
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        first, last = _partitions_of(calendar)
        listed: dict[str, str] = {}
        landed_etags: dict[str, str | None] = {}
        changed: dict[dt.date, list[tuple[Dataset, str, str]]] = {}
        for dataset in datasets:
            listing = [
                info
                for session, info in files_by_session(dataset, flatfiles.list_objects(dataset.key_prefix)).items()
                if is_session(calendar, session) and first <= session <= (last or session)
            ]
            listed.update((info.key, info.etag) for info in listing)
            infos = {info.key: info for info in listing}

            def landed_etag(key: str, dataset=dataset, infos=infos) -> str | None:
                if key not in landed_etags:
                    landed_etags[key] = taken_etag(zones.raw_root, dataset, infos[key])
                return landed_etags[key]

            for info in changed_files(listing, seen, landed_etag):
                changed.setdefault(session_from_key(info.key), []).append((dataset, info.key, info.etag))
            for info in listing:  # what the raw zone holds of every listed file, for the cursor's compaction
                landed_etag(info.key)
        requests = []
        cursor = {k: v for k, v in seen.items() if k in listed}  # forget files the source no longer has
        cursor.update((k, v) for k, v in listed.items() if k not in seen)  # first look, or unchanged since
        active = _active_runs(context.instance, job_name)
        deferred = [f for session in sorted(changed)[MAX_REQUESTS_PER_TICK:] for f in changed[session]]
        for session in sorted(changed)[:MAX_REQUESTS_PER_TICK]:
            # a file whose dataset a queued or running run covers (the gap sensor's, a backfill) is left to it, and
            # looked at again on the next tick, once that run has landed it
            files = [f for f in changed[session] if not _covers(active, session, keys[f[0].name])]
            deferred += [f for f in changed[session] if f not in files]
            if not files:
                continue
            selection = [key for dataset, _, _ in files for key in keys[dataset.name]]
            requests.append(
                dg.RunRequest(
                    run_key=f"new:{session}:{_digest(sorted((k, e) for _, k, e in files))}",
                    partition_key=session.isoformat(),
                    **_selection(selection),
                    tags={"quant_assets/trigger": "new_files", "quant_assets/files": ",".join(k for _, k, _ in files)},
                )
            )
            cursor.update((key, etag) for _, key, etag in files)
        for _, key, _ in deferred:  # not requested this tick: looked at again on the next one
            if key in seen:
                cursor[key] = seen[key]
            else:
                cursor.pop(key, None)
        # A file whose landed copy has the listed ETag needs no entry: `changed_files` never asks for it, whatever
        # the cursor says (a replaced file another run, a backfill, has landed already is not new either). The
        # cursor keeps only what the raw zone does not say (requested, not landed yet), so it stays a few lines
        # long whatever the source holds.
        cursor = {k: v for k, v in cursor.items() if landed_etags.get(k) != listed[k]}
        text = json.dumps(cursor, sort_keys=True)
        if not requests:
            return dg.SensorResult(skip_reason="no new or replaced files", cursor=text)
        context.log.info(f"requesting {len(requests)} sessions with new or replaced files")
        return dg.SensorResult(run_requests=requests, cursor=text)

    return _sensor


def _info(work) -> ObjectInfo:
    return ObjectInfo(work.key, work.etag, work.size)


def rejected_by_lake(zones: DataZones, dataset: Dataset, session: dt.date) -> bool:
    """Whether the lake rejected the landed raw file of `dataset`'s `session`: its failure is recorded after the
    file landed (a failure of an earlier file, or a file landed since, does not count)."""
    failure = last_failure(zones.lake_root, dataset.name, session, f"lake_{dataset.name}")
    landed = read_landed(zones.raw_root, dataset, session)
    if failure is None or landed is None:
        return False
    return dt.datetime.fromisoformat(failure["at"]) >= dt.datetime.fromisoformat(landed.landed_at)


def gap_requests(
    work,
    keys: Mapping[str, list[dg.AssetKey | dg.AssetCheckKey]],
    max_sessions: int,
    covered: Mapping[str, frozenset | None],
    retries: Mapping[tuple[str, dt.date], str] | None = None,
) -> list[dg.RunRequest]:
    """Range run requests for the sessions of `work` (plan items, in calendar order) that need a run and that no
    active run covers (`covered`), per dataset: consecutive sessions in runs of at most `max_sessions`, requests
    with the same range merged. A run key names the range, the datasets, the files' ETags and, for a session whose
    file failed to land, its retry window (`retries`: (dataset, session) -> window), so the instance launches it
    again once per window."""
    by_range: dict[tuple[dt.date, dt.date], list] = {}
    for dataset in sorted({w.dataset for w in work}):
        items = sorted((w for w in work if w.dataset == dataset), key=lambda w: w.session)
        streak: list = []
        for item in [*items, None]:
            if item is not None and item.needs_run and not _covers(covered, item.session, keys[item.dataset]):
                streak.append(item)
                continue
            for part in chunks(streak, max_sessions):
                by_range.setdefault((part[0].session, part[-1].session), []).extend(part)
            streak = []

    def identity(item) -> tuple[str, str, str]:
        return item.key, item.etag, (retries or {}).get((item.dataset, item.session), "")

    requests = []
    for (start, end), items in sorted(by_range.items()):
        datasets = sorted({w.dataset for w in items})
        requests.append(
            dg.RunRequest(
                run_key=f"gap:{start}..{end}:{','.join(datasets)}:{_digest(sorted(identity(w) for w in items))}",
                **_selection([key for name in datasets for key in keys[name]]),
                tags={
                    "dagster/asset_partition_range_start": start.isoformat(),
                    "dagster/asset_partition_range_end": end.isoformat(),
                    "quant_assets/trigger": "gaps",
                },
            )
        )
    return requests


def gap_sensor(
    job_name: str,
    calendar: Calendar,
    datasets: Sequence[Dataset],
    keys: Mapping[str, list[dg.AssetKey | dg.AssetCheckKey]],
    window: int,
    max_sessions: int,
    status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """The gap sensor of one calendar (see the module docstring)."""

    @dg.sensor(
        name=f"{job_name}_gaps",
        job_name=job_name,
        minimum_interval_seconds=GAP_INTERVAL,
        default_status=status,
        description=f"Every {GAP_INTERVAL // 60} minutes, compares the last {window} sessions of the calendar with "
        "the source, raw zone and lake (the coverage ledger's view) and requests range runs of at most "
        f"{max_sessions} sessions for the ones missing from the lake, stale, or rejected and whose file has since "
        "appeared or changed. A rejected file is not retried while it stays the same; one that failed to land on the "
        f"way is tried again every {RETRY_HOURS} hours.",
    )
    def _sensor(context: dg.SensorEvaluationContext, flatfiles: FlatFileSource, zones: DataZones):
        first, last = _partitions_of(calendar)
        if last is None:
            return dg.SkipReason("no partition yet")
        window_sessions = [s for s in sessions_around(calendar, last, last, before=window - 1) if s >= first]
        if not window_sessions:
            return dg.SkipReason("no session in the window")
        start = window_sessions[0]
        work = plan(datasets, start, last, flatfiles.list_objects, zones.raw_root, zones.lake_root, zones.tickers)
        by_name = {d.name: d for d in datasets}
        # a file a run downloaded whole and rejected as the vendor sent it, or landed and the lake rejected, waits
        # until the vendor replaces it
        work = [
            w
            for w in work
            if not (w.action == FETCH and taken_etag(zones.raw_root, by_name[w.dataset], _info(w)) == w.etag)
            and not (w.action == BUILD and rejected_by_lake(zones, by_name[w.dataset], w.session))
        ]
        now = dt.datetime.now(dt.UTC)
        window_of_retry = f"{now:%Y-%m-%d}T{now.hour - now.hour % RETRY_HOURS:02d}"
        retries = {
            (w.dataset, w.session): window_of_retry
            for w in work
            if w.action == FETCH and last_failure(zones.lake_root, w.dataset, w.session, f"raw_{w.dataset}")
        }
        requests = gap_requests(work, keys, max_sessions, _active_runs(context.instance, job_name), retries)
        if not requests:
            return dg.SkipReason(f"no gaps to fill from {start} to {last}")
        return requests

    return _sensor


def alert_record(run: dg.DagsterRun, message: str, failures: list[str], at: dt.datetime) -> dict:
    """What an alert says about a failed run."""
    tags = run.tags
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "failed_at": at.isoformat(timespec="seconds"),
        "partition": tags.get("dagster/partition"),
        "partition_range": [
            tags.get("dagster/asset_partition_range_start"),
            tags.get("dagster/asset_partition_range_end"),
        ]
        if "dagster/asset_partition_range_start" in tags
        else None,
        "message": message,
        "step_failures": failures,
    }


def _failure_text(event: dg.DagsterEvent) -> str:
    """What a step failure says: the `Failure` description the session chain raises (naming every failed session),
    else the error's message."""
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    return data.error.message.strip() if data.error else (event.message or "")


def alert_path(data_root: str | Path, run_id: str, at: dt.datetime) -> Path:
    return Path(data_root) / "alerts" / f"{at:%Y-%m-%d}" / f"{run_id}.json"


@dg.run_failure_sensor(
    name="run_failure_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="On every failed run, writes an alert record to data/alerts/YYYY-MM-DD/<run_id>.json and, when "
    "QUANT_ASSETS_ALERT_WEBHOOK_URL is set, posts it to that webhook as JSON.",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, zones: DataZones, alerts: AlertWebhook):
    run = context.dagster_run
    failures = [_failure_text(event) for event in context.get_step_failure_events()]  # each names its sessions
    record_of_run = context.instance.get_run_record_by_id(run.run_id)
    ended = record_of_run.end_time if record_of_run and record_of_run.end_time else None
    at = dt.datetime.fromtimestamp(ended, dt.UTC) if ended else dt.datetime.now(dt.UTC)  # a retried tick: same path
    record = alert_record(run, context.failure_event.message or "", failures, at)
    path = alert_path(zones.root, run.run_id, at)
    if path.exists():  # the tick was retried: the alert is out already
        return
    record["webhook"] = alerts.post(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_bytes(path, json.dumps(record, indent=2).encode())
    context.log.info(
        f"alert for failed run {run.run_id} ({run.job_name}) written to {path}; webhook: {record['webhook']}"
    )


AUTOMATION_SENSOR = "default_automation_condition_sensor"  # Dagster's own name for it: the UI and docs use it


def sensor_defs(
    chains: Mapping[Calendar, tuple[str, list[Dataset], dict[str, list[dg.AssetKey | dg.AssetCheckKey]]]],
    window: int,
    max_sessions: int,
    running: bool = True,
) -> dg.Definitions:
    """The new-file and gap sensors of each calendar's ingest job (on by default; `running=False` starts them
    stopped), and the run-failure alerts."""
    status = dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED
    # Declarative automation (enriched and Qlib follow the lake) runs by the daemon's automation sensor, which Dagster
    # creates stopped: defined here with the same status as the other sensors, so `make dev` has it on.
    automation = dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR, target=dg.AssetSelection.all(), default_status=status,
        description="Evaluates every asset's AutomationCondition (enriched and Qlib follow the lake; the catalog "
        "follows every layer); on by default, as the other sensors (QUANT_ASSETS_SENSORS=stopped starts it stopped).",
    )  # fmt: skip
    sensors = [run_failure_alerts, automation]
    for calendar, (job_name, datasets, keys) in chains.items():
        sensors.append(new_files_sensor(job_name, calendar, datasets, keys, status))
        sensors.append(gap_sensor(job_name, calendar, datasets, keys, window, max_sessions, status))
    return dg.Definitions(sensors=sensors)
