"""Keeping the instance healthy: a sensor that marks runs whose process died (`kill -9`, an out-of-memory kill, a
reboot) as failed, so that a dead run never holds the run queue's one slot or blocks the schedules.

Dagster's run monitoring (on in `dagster.yaml`) frees such a run only after its `dagster/max_runtime`: the default
run launcher cannot tell whether a run's worker is alive. This sensor can, on the one machine this instance (SQLite)
lives on: every run records the pid of the process executing it, and a STARTED run whose process is gone is dead.
"""

import os
import time

import dagster as dg

GRACE_SECONDS = 30  # a run younger than this may not have recorded its process yet


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def run_pids(instance: dg.DagsterInstance, run_id: str) -> list[int]:
    """The pids of the processes that executed `run_id` (from its engine events)."""
    pids = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = record.dagster_event.event_specific_data if record.dagster_event else None
        pid = getattr(data, "metadata", {}).get("pid") if data is not None else None
        if pid is not None:
            pids.append(int(pid.value))
    return pids


@dg.sensor(
    name="dead_runs",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks STARTED runs whose process is no longer alive as failed (a killed run would otherwise hold "
    "the run queue's slot until its max runtime). Checks the pids the runs recorded, on this machine.",
)
def dead_runs(context: dg.SensorEvaluationContext):
    instance = context.instance
    failed = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        record = instance.get_run_record_by_id(run.run_id)
        started = record.start_time if record and record.start_time else time.time()
        pids = run_pids(instance, run.run_id)
        if time.time() - started < GRACE_SECONDS or not pids or any(_alive(pid) for pid in pids):
            continue
        message = f"the process of this run (pid {', '.join(map(str, pids))}) is no longer alive: it was killed"
        instance.report_run_failed(run, message)
        failed.append(run.run_id)
    if not failed:
        return dg.SkipReason("no dead runs")
    context.log.warning(f"marked dead runs as failed: {', '.join(failed)}")
    return dg.SkipReason(f"marked {len(failed)} dead runs as failed: {', '.join(failed)}")


def operations_defs() -> dg.Definitions:
    """The instance-keeping sensors (a function, so that no second `Definitions` sits at the code location's module
    scope)."""
    return dg.Definitions(sensors=[dead_runs])
