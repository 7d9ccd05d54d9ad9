"""`quant-assets bench ingest --parts year`: a year of full-size `stocks_daily` files through Dagster as a user runs
it, `dagster asset materialize --select raw_stocks_daily,lake_stocks_daily --partition-range 2025-01-02...2025-12-31`,
each run a fresh process on a fresh instance:

1. the first run (every session landed and built), then the same command with nothing to do (every session
   current), on the project's instance (dagster.yaml: the pooled SQLite event log) and, as the reference, on
   Dagster's stock SQLite storage (`storage: sqlite`), in the same process;
2. the no-op as the planner does it (`quant_assets.api.ingest`: nothing current is asked, no run is launched);
3. the same two runs on deploy/dagster.postgres.yaml, against a Postgres server of the benchmark's own, when
   this machine has the server's binaries (`local_postgres`);
4. a profiled first run: the share of its time in Dagster's event storage (`store_event`) and in the data work
   (the layers' builds);
5. per run: seconds (process included), the run's own seconds, the raw -> lake seconds of its sessions, the
   overhead per session beyond that work, asset events written, and the process's peak memory.

The year of files (~57 MB of gzip, 250 sessions of ~12k tickers) is generated once, cached under <data>/bench.
"""

import concurrent.futures
import datetime as dt
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quant_assets.datasets import DATASETS
from quant_assets.flatfiles import vendor_key
from quant_assets.sessions import sessions

DAY = DATASETS["stocks_daily"]
YEAR = (dt.date(2025, 1, 2), dt.date(2025, 12, 31))
FIRST_BUDGET_S = 20.0  # the first year run, process included
NOOP_BUDGET_S = 5.0  # the run with nothing to do, process included
MEMORY_GROWTH_BUDGET = 0.15  # the year's peak within this share of a one-session run's
PROJECT = Path(__file__).resolve().parents[1]
STOCK_SQLITE = "storage:\n  sqlite:\n    base_dir:\n      env: DAGSTER_HOME\ntelemetry:\n  enabled: false\n"

# The run, in a fresh interpreter: Dagster's own CLI entry point, then the process's peak RSS (VmHWM).
CLI = """
import sys, time
started = time.perf_counter()
sys.argv = ["dagster", "asset", "materialize", "-m", "quant_assets.definitions",
            "--select", "raw_stocks_daily,lake_stocks_daily", "--partition-range", {range!r}]
profile = {profile!r}
if profile:
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
from dagster._cli import main
try:
    main()
except SystemExit as stop:
    code = stop.code
if profile:
    profiler.disable()
    profiler.dump_stats(profile)
print("HWM", next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))
"""
PLANNED = """
from quant_assets.api import ingest
print("SUMMARY", ingest("stocks_daily", {start!r}, {end!r}).message)
print("HWM", next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))
"""


def year_files(root: Path, seed: int) -> list[dt.date]:
    """The year's full-size day files under `root` (generated once, two processes at a time), and its sessions."""
    days = sessions(DAY.calendar, *YEAR)
    missing = [d for d in days if not (root / vendor_key(DAY, d)).exists()]
    if missing:
        print(f"generating {len(missing)} full-size stocks_daily files under {root} (once) ...", flush=True)
        with concurrent.futures.ProcessPoolExecutor(2) as pool:
            list(pool.map(_generate, [root] * len(missing), missing, [seed] * len(missing)))
    return days


def _generate(root: Path, day: dt.date, seed: int) -> None:
    from quant_assets.sample import folder_writer, generate

    generate([DAY], day, day, folder_writer(root), seed=seed, size="full")


def _environment(home: Path, vendor: Path, data: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "QUANT_ASSETS_VENDOR_DIR": str(vendor),
        "QUANT_ASSETS_DATA": str(data),
        "QUANT_ASSETS_START_DATE": YEAR[0].isoformat(),
        "QUANT_ASSETS_DATASETS": DAY.name,
        "QUANT_ASSETS_SENSORS": "stopped",
    }


def _run(code: str, env: dict[str, str], cwd: Path) -> tuple[float, int, str]:
    """Seconds (the whole process), peak RSS in bytes and output of `code` in a fresh interpreter."""
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if out.returncode or "HWM" not in out.stdout:
        raise RuntimeError(f"benchmark run failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    hwm = next(line for line in out.stdout.splitlines() if line.startswith("HWM "))
    return seconds, int(hwm.split()[1]) * 1024, out.stdout


def _run_figures(
    home: Path, data: Path, seconds: float, peak: int, sessions_count: int, env: dict | None = None
) -> dict:
    """What the newest run of the instance under `home` did: its own seconds, its events, its sessions' build
    seconds (the lake's provenance), the overhead per session beyond them."""
    import dagster as dg
    from dagster._core.events import DagsterEventType

    from quant_assets.lake import partition_provenance

    settings = {"DAGSTER_HOME": str(home), **{k: v for k, v in (env or {}).items() if k.startswith("DAGSTER_PG_")}}
    previous = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)  # the instance's dagster.yaml names its settings by environment variable
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            record = instance.get_run_records(limit=1)[0]
            assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS, record.dagster_run.status
            logs = instance.all_logs(record.dagster_run.run_id)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
    kinds = [e.dagster_event.event_type_value for e in logs if e.dagster_event]
    run_s = record.end_time - record.start_time
    built = [
        e.dagster_event.event_specific_data.materialization.partition
        for e in logs
        if e.dagster_event
        and e.dagster_event.event_type_value == DagsterEventType.ASSET_MATERIALIZATION.value
        and e.dagster_event.event_specific_data.materialization.asset_key.path[0] == f"lake_{DAY.name}"
    ]
    data_s = sum(
        float(partition_provenance(data / "lake", DAY.name, dt.date.fromisoformat(k))["seconds"]) for k in built
    )
    return {
        "seconds": round(seconds, 2),
        "run_s": round(run_s, 2),
        "process_s": round(seconds - run_s, 2),
        "lake_build_s": round(data_s, 2),
        "overhead_per_session_ms": round((run_s - data_s) / sessions_count * 1000, 1),
        "events": len(logs),
        "materializations": kinds.count(DagsterEventType.ASSET_MATERIALIZATION.value),
        "check_evaluations": kinds.count(DagsterEventType.ASSET_CHECK_EVALUATION.value),
        "peak_rss_mib": round(peak / 2**20),
    }


def _instance(folder: Path, name: str, dagster_yaml: str) -> tuple[Path, Path]:
    root = Path(tempfile.mkdtemp(prefix=f"year-{name}-", dir=folder))
    (root / "home").mkdir()
    (root / "home" / "dagster.yaml").write_text(dagster_yaml)
    return root / "home", root / "data"


def _postgres_runs(folder: Path, vendor: Path, span: str, count: int) -> dict:
    """The first run and the no-op on deploy/dagster.postgres.yaml, against a Postgres server of the benchmark's
    own (`local_postgres`), or why there is none."""
    from quant_assets.local_postgres import Unavailable, local_postgres

    try:
        with local_postgres("bench-year") as server:
            home, data = _instance(folder, "postgres", (PROJECT / "deploy" / "dagster.postgres.yaml").read_text())
            env = {
                **_environment(home, vendor, data),
                "DAGSTER_PG_HOST": server["host"],
                "DAGSTER_PG_PORT": str(server["port"]),
                "DAGSTER_PG_USER": server["user"],
                "DAGSTER_PG_PASSWORD": server["password"],
                "DAGSTER_PG_DB": server["db"],
                "DAGSTER_EVENT_BATCH_SIZE": "1000",  # as deploy/README.md sets it
            }
            try:
                runs = {}
                for label in ("first_run", "nothing_to_do"):
                    seconds, peak, _ = _run(CLI.format(range=span, profile=""), env, home.parent)
                    runs[label] = _run_figures(home, data, seconds, peak, count, env)
                return runs
            finally:
                shutil.rmtree(home.parent, ignore_errors=True)
    except Unavailable as why:
        return {"skipped": str(why)}


def _storage_share(profile: Path) -> dict:
    stats = pstats.Stats(str(profile), stream=io.StringIO())
    entries = {f"{Path(k[0]).name}:{k[2]}": v for k, v in stats.stats.items()}  # (cc, nc, tt, ct, callers)
    total = max(v[3] for v in entries.values())

    def cumulative(name: str) -> float:
        return sum(v[3] for k, v in entries.items() if k.endswith(name))

    return {
        "profiled_seconds": round(total, 2),
        "event_storage_share": round(cumulative("sqlite_event_log.py:store_event") / total, 3),
        "session_builds_share": round(cumulative("chain.py:build_session") / total, 3),
    }


def bench_year(folder: Path, seed: int) -> dict:
    vendor = folder / f"seed{seed}"
    days = year_files(vendor, seed)
    span = f"{days[0].isoformat()}...{days[-1].isoformat()}"
    figures: dict = {"sessions": len(days)}
    project_yaml = (PROJECT / "dagster.yaml").read_text()
    for name, dagster_yaml in (("project", project_yaml), ("dagster_stock_sqlite", STOCK_SQLITE)):
        home, data = _instance(folder, name, dagster_yaml)
        env = _environment(home, vendor, data)
        try:
            seconds, peak, _ = _run(CLI.format(range=span, profile=""), env, home.parent)
            first = _run_figures(home, data, seconds, peak, len(days))
            seconds, peak, _ = _run(CLI.format(range=span, profile=""), env, home.parent)
            noop = _run_figures(home, data, seconds, peak, len(days))
            figures[name] = {"first_run": first, "nothing_to_do": noop}
            if name == "project":
                seconds, peak, out = _run(PLANNED.format(start=str(days[0]), end=str(days[-1])), env, home.parent)
                summary = next(line for line in out.splitlines() if line.startswith("SUMMARY "))[8:]
                figures[name]["nothing_to_do_planned"] = {
                    "seconds": round(seconds, 2),
                    "peak_rss_mib": round(peak / 2**20),
                    "summary": summary,
                }
        finally:
            shutil.rmtree(home.parent, ignore_errors=True)
    figures["postgres"] = _postgres_runs(folder, vendor, span, len(days))
    home, data = _instance(folder, "one", project_yaml)  # one session: the memory the year's peak is compared with
    try:
        _, peak, _ = _run(
            CLI.format(range=f"{days[0]}...{days[0]}", profile=""), _environment(home, vendor, data), home.parent
        )
        figures["project"]["one_session_peak_rss_mib"] = round(peak / 2**20)
    finally:
        shutil.rmtree(home.parent, ignore_errors=True)
    home, data = _instance(folder, "profiled", project_yaml)
    try:
        profile = home.parent / "first.prof"
        _run(CLI.format(range=span, profile=str(profile)), _environment(home, vendor, data), home.parent)
        figures["project"]["first_run_profile"] = _storage_share(profile)
    finally:
        shutil.rmtree(home.parent, ignore_errors=True)
    project, stock = figures["project"], figures["dagster_stock_sqlite"]
    figures["first_run_ratio_to_stock_sqlite"] = round(
        project["first_run"]["seconds"] / stock["first_run"]["seconds"], 3
    )
    figures["nothing_to_do_ratio_to_stock_sqlite"] = round(
        project["nothing_to_do"]["seconds"] / stock["nothing_to_do"]["seconds"], 3
    )
    return figures


def verdicts(year: dict) -> list[tuple[str, bool]]:
    project = year["project"]
    growth = project["first_run"]["peak_rss_mib"] / project["one_session_peak_rss_mib"] - 1
    return [
        (f"a year's first run at most {FIRST_BUDGET_S:g} s", project["first_run"]["seconds"] <= FIRST_BUDGET_S),
        (
            f"a year with nothing to do at most {NOOP_BUDGET_S:g} s (planned: no run)",
            project["nothing_to_do_planned"]["seconds"] <= NOOP_BUDGET_S,
        ),
        (
            f"a year with nothing to do at most {NOOP_BUDGET_S:g} s (dagster asset materialize)",
            project["nothing_to_do"]["seconds"] <= NOOP_BUDGET_S,
        ),
        (f"the year's peak within {MEMORY_GROWTH_BUDGET:.0%} of one session's", growth <= MEMORY_GROWTH_BUDGET),
    ]


if __name__ == "__main__":  # python -m quant_assets.bench_year <folder>: this part alone
    print(json.dumps(bench_year(Path(sys.argv[1]), 7), indent=2))
