"""`quant-assets bench ingest`: the spine's performance on full-size files, as ratios to references measured in
the same process (`gzip -dc` of the same file), so that figures from a noisy machine still compare.

1. raw -> lake of one full-size day of stock minute aggregates, with and without the quality gate, against
   `gzip -dc` of the same file, and the ingest's peak memory in a fresh process;
2. a range of full-size stock minute sessions through Dagster in one run (1 and 10 sessions), in fresh processes:
   peak memory of each, the fixed overhead of a run and the time per session;
3. one full-size day of stock trades streamed into the lake: rows, seconds, ratio to `gzip -dc`, peak memory;
4. a year of daily features for 12k tickers in one run (fresh process: seconds, peak memory) against a plain
   `scan_parquet` of the same lake, and a full-size minute session's VWAPs against its raw -> lake;
5. Qlib: a full build of 500 symbols x 2,500 sessions (8 fields) against a writer that follows `dump_all`'s rules
   with pandas, in the same process; appending one session of 12k symbols to a 10-year directory and to a 1-month
   one (the ratio shows whether the time depends on history), and the publication gate of that session; `qlib_day`
   through Dagster over a month and a year of 12k tickers in one run (fresh processes: seconds, peak memory), and
   `qlib_1min` for a full-size minute session against its raw -> lake.
6. cluster: the 10-session range of (2) with its sessions built by a local Dask cluster of two worker processes,
   one session at a time each (`SessionCluster`), against the same run in one process: the speed-up. No budget:
   it depends on the cores the machine has to spare.
7. year: a year of full-size day sessions through `dagster asset materialize`, then again with nothing to do, on
   the project's instance against Dagster's stock SQLite storage (`bench_year.py`).
"""

import datetime as dt
import functools
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from quant_assets.datasets import DATASETS, Dataset
from quant_assets.flatfiles import vendor_key
from quant_assets.progress import progress_bar
from quant_assets.sessions import sessions

MINUTE = DATASETS["stocks_minute"]
DAY = DATASETS["stocks_daily"]
TRADES = DATASETS["stocks_trades"]
BENCH_SESSION = dt.date(2026, 3, 10)  # after the switch to 6-decimal text, which makes files larger
RANGE_START = dt.date(2026, 3, 2)  # ten sessions from here for the Dagster range
TIME_BUDGET = 0.65  # raw -> lake, x gzip -dc
MEMORY_BUDGET = 2**30  # bytes of peak resident memory of one ingest
CHECKS_BUDGET = 0.25  # the quality gate may add this share to raw -> lake
RANGE_MEMORY_BUDGET = 0.15  # the 10-session run's peak may exceed the 1-session run's by this share
TICK_TIME_BUDGET = 1.0  # x gzip -dc
TICK_MEMORY_BUDGET = 1.5 * 2**30
QLIB_BUILD_BUDGET_S = 1.5  # 500 symbols x 2,500 sessions, 8 fields
QLIB_APPEND_BUDGET_S = 2.0  # one session of 12k symbols into a 10-year directory
QLIB_HISTORY_BUDGET = 1.3  # appending to 10 years / appending to 1 month


def bench_file(folder: Path, dataset: Dataset, session: dt.date, seed: int) -> Path:
    """A full-size generated vendor file, generated once and kept under `folder`."""
    from quant_assets.sample import folder_writer, generate

    root = folder / f"seed{seed}"
    path = root / vendor_key(dataset, session)
    if not path.exists():
        print(f"generating {path} (full size, once) ...", flush=True)
        generate([dataset], session, session, folder_writer(root), seed=seed, size="full")
    return path


def ingest_once(
    path: Path, lake_root: Path, dataset: Dataset = MINUTE, session: dt.date = BENCH_SESSION, validate: bool = True
):
    """raw -> lake as the lake asset runs it: stream, quality gate (quarantine), write, metadata. The file's
    provenance (its sha256) is computed by the raw landing, so it is hashed once here, outside what is timed."""
    from quant_assets.ingest import IngestOptions, build_partition

    landed = _landed(path, vendor_key(dataset, session))
    options = IngestOptions(validate=validate)
    return build_partition(landed, dataset, session, lake_root, lake_root / "quarantine", options)


@functools.cache
def _landed(path: Path, key: str):
    from quant_assets.raw import LandedFile

    return LandedFile.of(path, key, source="bench")


def _gzip_seconds(path: Path) -> float:
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        subprocess.run(["gzip", "-dc", str(path)], stdout=sink, check=True)
    return time.perf_counter() - started


HWM = "print('HWM', next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))"


def _fresh_process(code: str) -> tuple[int, str]:
    """Run `code` in a fresh interpreter; its peak RSS in bytes (VmHWM: `ru_maxrss` of a child also counts the
    parent's pages it was forked from) and its output."""
    out = subprocess.run([sys.executable, "-c", f"{code}\n{HWM}"], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"benchmark child failed:\n{out.stdout}\n{out.stderr[-3000:]}")
    hwm = next(line for line in out.stdout.splitlines() if line.startswith("HWM "))
    return int(hwm.split()[1]) * 1024, out.stdout


def _peak_ingest_memory(path: Path, lake_root: Path, dataset: Dataset, session: dt.date) -> int:
    peak, _ = _fresh_process(
        "import datetime as dt\nfrom pathlib import Path\nfrom quant_assets.bench import ingest_once\n"
        "from quant_assets.datasets import DATASETS\n"
        f"ingest_once(Path({str(path)!r}), Path({str(lake_root)!r}), DATASETS[{dataset.name!r}], "
        f"dt.date.fromisoformat({session.isoformat()!r}))"
    )
    return peak


def bench_minute_day(folder: Path, repeat: int, seed: int) -> dict:
    path = bench_file(folder, MINUTE, BENCH_SESSION, seed)
    lake_root = Path(tempfile.mkdtemp(prefix="bench-lake-", dir=folder))
    try:
        ingest_once(path, lake_root)  # warm the page cache and polars' thread pool
        _gzip_seconds(path)
        gzip_times, ingest_times, unchecked_times = [], [], []
        for _ in range(repeat):  # interleaved, so all see the same machine load
            gzip_times.append(_gzip_seconds(path))
            started = time.perf_counter()
            stats = ingest_once(path, lake_root)
            ingest_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            ingest_once(path, lake_root, validate=False)
            unchecked_times.append(time.perf_counter() - started)
        peak = _peak_ingest_memory(path, lake_root, MINUTE, BENCH_SESSION)
        baseline, _ = _fresh_process("import quant_assets.ingest")
    finally:
        shutil.rmtree(lake_root, ignore_errors=True)
    gzip_s, ingest_s, unchecked_s = min(gzip_times), min(ingest_times), min(unchecked_times)
    return {
        "file": str(path),
        "compressed_mib": round(path.stat().st_size / 2**20, 1),
        "rows": stats.rows,
        "tickers": stats.tickers,
        "lake_mib": round(stats.bytes / 2**20, 1),
        "gzip_dc_s": round(gzip_s, 3),
        "ingest_s": round(ingest_s, 3),
        "ratio_to_gzip_dc": round(ingest_s / gzip_s, 2),
        "without_checks_s": round(unchecked_s, 3),
        "checks_overhead": round(ingest_s / unchecked_s - 1, 3),
        "peak_rss_mib": round(peak / 2**20),
        "import_only_rss_mib": round(baseline / 2**20),
        "rows_per_s": round(stats.rows / ingest_s),
    }


RANGE_RUN = """
import datetime as dt, json, time, warnings
warnings.filterwarnings("ignore")
import dagster as dg
from quant_assets.datasets import DATASETS
from quant_assets.defs.cluster import SessionCluster
from quant_assets.defs.ingest import ingest_defs
from quant_assets.defs.resources import DataZones, QualitySettings
from quant_assets.sources import LocalFlatFiles
assets = ingest_defs([DATASETS["stocks_minute"]]).assets
resources = {{"flatfiles": LocalFlatFiles(root={vendor!r}), "zones": DataZones(root={data!r}),
             "quality": QualitySettings(), "cluster": SessionCluster(address={address!r})}}
tags = {{"dagster/asset_partition_range_start": {start!r}, "dagster/asset_partition_range_end": {end!r}}}
with dg.instance_for_test() as instance:
    started = time.perf_counter()
    result = dg.materialize(assets, resources=resources, instance=instance, tags=tags)
    print("SECONDS", time.perf_counter() - started, result.success)
"""


def bench_range(folder: Path, seed: int, count: int, address: str = "") -> dict:
    """Peak memory and seconds of one Dagster run over `count` full-size stock minute sessions, in a fresh
    process (raw landing from a local folder, lake with checks); with `address`, the sessions are built by that
    Dask cluster's workers."""
    days = sessions(MINUTE.calendar, RANGE_START, RANGE_START + dt.timedelta(days=30))[:count]
    for day in days:
        bench_file(folder, MINUTE, day, seed)
    data = Path(tempfile.mkdtemp(prefix="bench-range-", dir=folder))
    try:
        code = RANGE_RUN.format(
            vendor=str(folder / f"seed{seed}"),
            data=str(data),
            start=days[0].isoformat(),
            end=days[-1].isoformat(),
            address=address,
        )
        started = time.perf_counter()
        peak, out = _fresh_process(code)
        process_s = time.perf_counter() - started
    finally:
        shutil.rmtree(data, ignore_errors=True)
    run_s = float(next(line for line in out.splitlines() if line.startswith("SECONDS")).split()[1])
    return {
        "sessions": count,
        "peak_rss_mib": round(peak / 2**20),
        "run_s": round(run_s, 2),
        "process_s": round(process_s, 2),
    }


@dataclass(frozen=True)
class LocalDask:
    """A Dask cluster on this machine: its scheduler's address and its workers' process ids."""

    address: str
    worker_pids: frozenset[int]


@contextmanager
def local_dask(workers: int = 2, folder: Path | None = None):
    """A Dask scheduler with `workers` worker processes (one task at a time each) on this machine, started with the
    `dask` command of this environment (in `folder`, with their logs there, or quietly) and stopped on exit. The
    workers import the session chain's code before they are handed over, so a timed run does not pay for it."""
    from distributed import Client

    dask = str(Path(sys.executable).parent / "dask")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    processes, logs = [], []

    def start(name: str, *args: str) -> subprocess.Popen:
        output = subprocess.DEVNULL
        if folder is not None:
            output = open(folder / f"{name}.log", "wb")  # noqa: SIM115 (closed on exit)
            logs.append(output)
        process = subprocess.Popen([dask, *args], cwd=folder, stdout=output, stderr=subprocess.STDOUT)
        processes.append(process)
        return process

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
        options = ["--nthreads", "1", "--no-nanny", "--no-dashboard"]
        pids = [start(f"worker-{i}", "worker", address, *options, "--name", f"worker-{i}").pid for i in range(workers)]
        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
            client.run(importlib.import_module, "quant_assets.defs.ingest")
        yield LocalDask(address, frozenset(pids))
    finally:
        for process in reversed(processes):  # the workers, then the scheduler
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


def bench_cluster(folder: Path, seed: int, count: int = 10) -> dict:
    """The `count`-session range run with its sessions built by a local Dask cluster of two worker processes (one
    session at a time each), against the same run in one process (each run in a fresh process; the cluster's
    workers warm)."""
    one_process = bench_range(folder, seed, count)
    with local_dask(2) as cluster:
        on_cluster = bench_range(folder, seed, count, cluster.address)
    return {
        "sessions": count,
        "workers": 2,
        "one_process_run_s": one_process["run_s"],
        "cluster_run_s": on_cluster["run_s"],
        "speed_up": round(one_process["run_s"] / on_cluster["run_s"], 2),
        "one_process_peak_rss_mib": one_process["peak_rss_mib"],
        "cluster_driver_peak_rss_mib": on_cluster["peak_rss_mib"],
    }


def bench_ticks(folder: Path, seed: int) -> dict:
    path = bench_file(folder, TRADES, BENCH_SESSION, seed)
    lake_root = Path(tempfile.mkdtemp(prefix="bench-ticks-", dir=folder))
    try:
        gzip_s = _gzip_seconds(path)
        started = time.perf_counter()
        stats = ingest_once(path, lake_root, TRADES, BENCH_SESSION)
        ingest_s = time.perf_counter() - started
        gzip_s = min(gzip_s, _gzip_seconds(path))
        peak = _peak_ingest_memory(path, lake_root, TRADES, BENCH_SESSION)
    finally:
        shutil.rmtree(lake_root, ignore_errors=True)
    return {
        "file": str(path),
        "compressed_mib": round(path.stat().st_size / 2**20, 1),
        "rows": stats.rows,
        "quarantined": stats.quarantined,
        "gzip_dc_s": round(gzip_s, 2),
        "ingest_s": round(ingest_s, 2),
        "ratio_to_gzip_dc": round(ingest_s / gzip_s, 2),
        "peak_rss_mib": round(peak / 2**20),
    }


FEATURE_YEAR = (dt.date(2025, 1, 2), dt.date(2025, 12, 31))
FEATURE_TICKERS = 12_000
FEATURE_BUDGET_S = 20.0  # a year of daily features for ~12k tickers
VWAP_BUDGET = 1.0  # x the minute session's raw -> lake


def feature_lake(folder: Path, seed: int) -> Path:
    """A full-size day lake (12k tickers, a year and the lookback before it: random walks in the lake's layout) and
    factors for a few hundred of its tickers, written once under `folder`."""
    from quant_assets.features.daily import FeatureSet
    from quant_assets.lake import partition_path, write_parquet
    from quant_assets.reference.factors import FACTOR_SCHEMA, write_factors

    root = folder / f"features-seed{seed}"
    days = sessions(DAY.calendar, FEATURE_YEAR[0] - dt.timedelta(days=130), FEATURE_YEAR[1])
    days = days[days.index(sessions(DAY.calendar, *FEATURE_YEAR)[0]) - FeatureSet().lookback :]
    if (root / "done").exists():
        return root
    print(f"generating a year of full-size day aggregates under {root} (once) ...", flush=True)
    rng = np.random.default_rng(seed)
    tickers = pl.Series("ticker", [f"T{i:05d}" for i in range(FEATURE_TICKERS)])
    level = np.exp(rng.normal(3.3, 1.2, FEATURE_TICKERS))
    for day in days:
        level = level * np.exp(rng.normal(0, 0.02, FEATURE_TICKERS))
        traded = rng.random(FEATURE_TICKERS) < 0.97
        close = np.round(level, 2)
        open_ = np.round(level * np.exp(rng.normal(0, 0.005, FEATURE_TICKERS)), 2)
        frame = pl.DataFrame(
            {
                "ticker": tickers,
                "volume": np.round(rng.lognormal(10, 2, FEATURE_TICKERS)),
                "open": open_,
                "close": close,
                "high": np.maximum(open_, close) * 1.01,
                "low": np.minimum(open_, close) * 0.99,
            }
        ).filter(pl.Series(traded))
        write_parquet(frame, partition_path(root / "lake", DAY.name, day))
    split_days = [days[i] for i in rng.integers(0, len(days), 300)]
    factors = pl.DataFrame(
        {
            "ticker": tickers.sample(300, seed=seed),
            "ex_date": split_days,
            "split_factor": 0.5,
            "dividend_factor": 1.0,
            "cash_amount": None,
            "previous_close": None,
            "pending": False,
            "price_factor": 0.5,
            "volume_factor": 2.0,
        },
        schema=FACTOR_SCHEMA,
    )
    write_factors(root / "reference", factors, FEATURE_YEAR[0])
    (root / "done").touch()
    return root


FEATURE_RUN = """
import time, datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import polars as pl
from quant_assets.datasets import DATASETS
from quant_assets.features.daily import FeatureSet
from quant_assets.features.enrich import CHUNK, enrich_daily
from quant_assets.lake import partition_path, scan, write_parquet
from quant_assets.reference.factors import read_factors
from quant_assets.sessions import sessions
root, day = Path({root!r}), DATASETS["stocks_daily"]
year = sessions(day.calendar, dt.date.fromisoformat({start!r}), dt.date.fromisoformat({end!r}))
started = time.perf_counter()
held = scan(root / "lake", day.name).collect()
print("SCAN", time.perf_counter() - started, held.height)
del held
started = time.perf_counter()
factors, rows = read_factors(root / "reference"), 0
for first in range(0, len(year), CHUNK):
    chunk = year[first : first + CHUNK]
    for session, frame in enrich_daily(root / "lake", day.name, None, day.calendar, chunk, factors, FeatureSet()).items():
        write_parquet(frame, partition_path(root / "enriched", day.name, session))
        rows += frame.height
print("YEAR", time.perf_counter() - started, rows)
"""


def bench_features(folder: Path, seed: int) -> dict:
    """A year of daily features for 12k tickers in one run (a fresh process: time and peak memory), against a
    plain `scan_parquet` of the same lake; and the VWAPs of a full-size minute session against its raw -> lake."""
    from quant_assets.features.daily import session_vwap
    from quant_assets.features.enrich import _vwaps
    from quant_assets.features.intraday import minute_features, session_bars, sort_minutes
    from quant_assets.lake import scan
    from quant_assets.sessions import regular_hours

    root = feature_lake(folder, seed)
    month = FEATURE_RUN.format(root=str(root), start=FEATURE_YEAR[0].isoformat(), end="2025-01-31")
    month_peak, _ = _fresh_process(month)
    code = FEATURE_RUN.format(root=str(root), start=FEATURE_YEAR[0].isoformat(), end=FEATURE_YEAR[1].isoformat())
    peak, out = _fresh_process(code)
    values = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    year_s, rows = float(values["YEAR"][0]), int(values["YEAR"][1])
    scan_s = float(values["SCAN"][0])
    path = bench_file(folder, MINUTE, BENCH_SESSION, seed)
    lake_root = folder / "features-minute-lake"
    opens, closes = regular_hours(BENCH_SESSION)
    ingest_s, vwap_s, intraday_s = [], [], []
    for _ in range(3):
        started = time.perf_counter()
        ingest_once(path, lake_root)
        ingest_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        vwaps = _vwaps(lake_root, MINUTE.name, BENCH_SESSION)
        vwap_s.append(time.perf_counter() - started)
        started = time.perf_counter()  # enriched_stocks_minute: read, minute features, the bar sizes, the VWAPs
        minutes = sort_minutes(scan(lake_root, MINUTE.name, [BENCH_SESSION]).collect())
        minute_features(minutes, opens, closes)
        bars = session_bars(minutes, opens, closes)
        session_vwap(minutes, opens, closes).collect()
        intraday_s.append(time.perf_counter() - started)
    return {
        "year_sessions_rows": rows,
        "year_seconds": round(year_s, 2),
        "plain_scan_parquet_seconds": round(scan_s, 2),
        "ratio_to_scan_parquet": round(year_s / scan_s, 1),
        "year_peak_rss_mib": round(peak / 2**20),
        "month_peak_rss_mib": round(month_peak / 2**20),
        "minute_session_ingest_seconds": round(min(ingest_s), 3),
        "minute_session_vwap_seconds": round(min(vwap_s), 3),
        "vwap_ratio_to_ingest": round(min(vwap_s) / min(ingest_s), 3),
        "vwap_tickers": vwaps.height,
        "minute_session_intraday_seconds": round(min(intraday_s), 3),
        "intraday_ratio_to_ingest": round(min(intraday_s) / min(ingest_s), 3),
        "bars_60m": bars[60].height,
    }


def _qlib_frame(tickers: int, days: int, seed: int, presence: float = 0.96) -> pl.DataFrame:
    """Per-symbol day rows (ticker, slot, the 8 day fields): random walks, each ticker missing some sessions."""
    from quant_assets.qlib.fields import DAY_FIELDS

    rng = np.random.default_rng(seed)
    names = [f"T{i:05d}" for i in range(tickers)]
    keep = rng.random(tickers * days) < presence
    ticker = np.repeat(np.arange(tickers), days)[keep]
    slot = np.tile(np.arange(days), tickers)[keep]
    columns = {f: (100 + rng.standard_normal(keep.sum()).cumsum() % 50).astype(np.float64) for f in DAY_FIELDS}
    return pl.DataFrame({"ticker": pl.Series(names)[ticker], "slot": slot, **columns})


def _dump_all_rules(frame: pl.DataFrame, out: Path, fields) -> None:
    """The reference: Qlib's `dump_all` rules with pandas, per symbol (reindex to the calendar span, `<f`)."""
    import pandas as pd

    for (ticker,), rows in frame.partition_by("ticker", as_dict=True).items():
        data = rows.to_pandas().set_index("slot")
        data = data.reindex(pd.RangeIndex(data.index[0], data.index[-1] + 1))
        folder = out / "features" / ticker.lower()
        folder.mkdir(parents=True, exist_ok=True)
        for field in fields:
            np.hstack([[data.index[0]], data[field].to_numpy()]).astype("<f").tofile(folder / f"{field}.day.bin")


def _qlib_history(root: Path, tickers: int, days: int, seed: int) -> None:
    """A directory of `days` sessions from 2015-01-02 for `tickers` symbols, written a chunk of sessions at a
    time."""
    from quant_assets.datasets import Calendar
    from quant_assets.qlib.directory import QlibDirectory
    from quant_assets.qlib.fields import DAY_FIELDS

    directory = QlibDirectory(root, Calendar.XNYS, QLIB_HISTORY_START)
    step = max(1, 2_000_000 // tickers)
    for first in range(0, days, step):
        count = min(step, days - first)
        frame = _qlib_frame(tickers, count, seed + first).with_columns(pl.col("slot") + first)
        directory.write(frame, first, first + count, DAY_FIELDS)


QLIB_HISTORY_START = dt.date(2015, 1, 2)

QLIB_RANGE_RUN = """
import time, shutil
from pathlib import Path
import dagster as dg
from quant_assets.defs.qlib import build_qlib_day
from quant_assets.defs.resources import DataZones
root = Path({root!r})
shutil.rmtree(root / "qlib", ignore_errors=True)
asset = build_qlib_day([], start={start!r})
tags = {{"dagster/asset_partition_range_start": {start!r}, "dagster/asset_partition_range_end": {end!r}}}
with dg.instance_for_test() as instance:
    started = time.perf_counter()
    result = dg.materialize(
        [asset], resources={{"zones": DataZones(root=str(root))}}, tags=tags, instance=instance, raise_on_error=False
    )
    seconds = time.perf_counter() - started
    [gate] = result.get_asset_check_evaluations()
    print("RUN", seconds, len(result.get_asset_materialization_events()), gate.metadata["errors"].value)
"""

QLIB_MINUTE_RUN = """
import time, datetime as dt, shutil
from pathlib import Path
from quant_assets.datasets import Calendar
from quant_assets.lake import scan
from quant_assets.qlib.directory import QlibDirectory
from quant_assets.qlib.fields import MINUTE_FIELDS, minute_fields
from quant_assets.qlib.health import verify
from quant_assets.qlib.symbols import qlib_symbol
from quant_assets.reference.factors import read_factors
from quant_assets.sessions import regular_hours
lake, out, session = Path({lake!r}), Path({out!r}), dt.date.fromisoformat({session!r})
shutil.rmtree(out, ignore_errors=True)
factors = read_factors(Path({reference!r}))
started = time.perf_counter()
open_, close = regular_hours(session)
frame = minute_fields(scan(lake, "stocks_minute", [session]), session, factors, open_, close)
directory = QlibDirectory(out, Calendar.XNYS, session, "1min")
directory.write_sessions(frame, session, session, MINUTE_FIELDS)
print("WRITE", time.perf_counter() - started, frame.height, frame["ticker"].n_unique())
lo, hi = directory.session_range(session, session)
started = time.perf_counter()
report = verify(directory, sorted({{qlib_symbol(t) for t in frame["ticker"].unique()}}), lo, hi)
print("GATE", time.perf_counter() - started, report.passed)
following = directory.slots.session_of(hi)  # the same bars again as the next session: the everyday append
started = time.perf_counter()
directory.write_sessions(frame, following, following, MINUTE_FIELDS)
print("APPEND", time.perf_counter() - started)
"""


def bench_qlib_scale(folder: Path, seed: int) -> dict:
    """`qlib_day` through Dagster over a quarter (one chunk of sessions) and over a year of 12k tickers, each in one
    run in a fresh process (seconds, peak memory), from the enriched year of `--parts features` (computed here if
    missing); and
    `qlib_1min` work for a full-size minute session (fresh process) against the session's raw -> lake."""
    from quant_assets.features.enrich import CHUNK
    from quant_assets.lake import sessions_in

    root = feature_lake(folder, seed)
    year = sessions(DAY.calendar, *FEATURE_YEAR)
    if len(set(sessions_in(root / "enriched", DAY.name)) & set(year)) < len(year):
        _fresh_process(FEATURE_RUN.format(root=str(root), start=year[0].isoformat(), end=year[-1].isoformat()))
    runs = {}
    for name, end in (("one_quarter", year[CHUNK - 1].isoformat()), ("one_year", year[-1].isoformat())):
        peak, out = _fresh_process(QLIB_RANGE_RUN.format(root=str(root), start=year[0].isoformat(), end=end))
        seconds, written, errors = next(line.split()[1:] for line in out.splitlines() if line.startswith("RUN "))
        if int(written) != len(sessions(DAY.calendar, year[0], dt.date.fromisoformat(end))):
            raise RuntimeError(f"qlib_day over {name} did not write every session:\n{out[-3000:]}")
        # The benchmark's factors are made-up splits its random prices never made: the gate flags each as a step.
        runs[name] = {
            "sessions": int(written),
            "run_seconds": round(float(seconds), 2),
            "peak_rss_mib": round(peak / 2**20),
            "gate_errors": int(errors),
        }
    path = bench_file(folder, MINUTE, BENCH_SESSION, seed)
    lake_root = folder / "features-minute-lake"
    ingest_s = []
    for _ in range(2):
        started = time.perf_counter()
        ingest_once(path, lake_root)
        ingest_s.append(time.perf_counter() - started)
    minute_peak, out = _fresh_process(
        QLIB_MINUTE_RUN.format(
            lake=str(lake_root),
            out=str(folder / "qlib-minute"),
            session=BENCH_SESSION.isoformat(),
            reference=str(root / "reference"),
        )
    )
    values = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    shutil.rmtree(folder / "qlib-minute", ignore_errors=True)
    return {
        "day_range_runs": runs,
        "day_peak_growth_year_over_quarter": round(
            runs["one_year"]["peak_rss_mib"] / runs["one_quarter"]["peak_rss_mib"] - 1, 3
        ),
        "minute_session_rows": int(values["WRITE"][1]),
        "minute_session_symbols": int(values["WRITE"][2]),
        "minute_first_session_write_seconds": round(float(values["WRITE"][0]), 2),
        "minute_next_session_append_seconds": round(float(values["APPEND"][0]), 2),
        "minute_session_gate_seconds": round(float(values["GATE"][0]), 2),
        "minute_session_ingest_seconds": round(min(ingest_s), 2),
        "minute_append_ratio_to_ingest": round(float(values["APPEND"][0]) / min(ingest_s), 2),
        "minute_peak_rss_mib": round(minute_peak / 2**20),
    }


def bench_qlib(folder: Path, seed: int, tickers: int = 12_000) -> dict:
    from quant_assets.datasets import Calendar
    from quant_assets.qlib.directory import QlibDirectory
    from quant_assets.qlib.fields import DAY_FIELDS
    from quant_assets.qlib.health import verify
    from quant_assets.qlib.symbols import qlib_symbol

    root = folder / "qlib"
    shutil.rmtree(root, ignore_errors=True)
    frame = _qlib_frame(500, 2500, seed)
    build_s, reference_s = [], []
    for attempt in range(3):
        out = root / f"build-{attempt}"
        started = time.perf_counter()
        QlibDirectory(out, Calendar.XNYS, QLIB_HISTORY_START).write(frame, 0, 2500, DAY_FIELDS)
        build_s.append(time.perf_counter() - started)
        if attempt == 0:
            started = time.perf_counter()
            _dump_all_rules(frame, root / "reference", DAY_FIELDS)
            reference_s.append(time.perf_counter() - started)
    same = all(
        (root / "build-0" / p.relative_to(root / "reference")).read_bytes() == p.read_bytes()
        for p in (root / "reference" / "features").rglob("*.bin")
    )
    appends = {}
    for name, days in (("ten_years", 2520), ("one_month", 21)):
        directory_root = root / name
        _qlib_history(directory_root, tickers, days, seed)
        os.sync()  # the history's dirty pages written back now, not while the appends are timed
        directory = QlibDirectory(directory_root, Calendar.XNYS, QLIB_HISTORY_START)
        times, gates = [], []
        for k in range(5):
            session = directory.slots.session_of(days + k)
            rows = _qlib_frame(tickers, 1, seed + 99 + k).with_columns(slot=pl.lit(0, pl.Int64))
            started = time.perf_counter()
            directory.write_sessions(rows, session, session, DAY_FIELDS)
            times.append(time.perf_counter() - started)
            started = time.perf_counter()
            report = verify(directory, [qlib_symbol(t) for t in rows["ticker"]], days + k, days + k + 1)
            gates.append(time.perf_counter() - started)
            assert report.passed, report.errors[:3]
        appends[name] = {"sessions": days, "append_seconds": round(min(times), 3), "gate_seconds": round(min(gates), 3)}
    shutil.rmtree(root, ignore_errors=True)
    return {
        "build_rows": frame.height,
        "build_seconds": round(min(build_s), 3),
        "dump_all_rules_pandas_seconds": round(reference_s[0], 2),
        "build_speedup_over_reference": round(reference_s[0] / min(build_s), 1),
        "build_bytes_equal_reference": same,
        "append_tickers": tickers,
        **{f"append_{k}": v for k, v in appends.items()},
        "append_ratio_ten_years_to_one_month": round(
            appends["ten_years"]["append_seconds"] / appends["one_month"]["append_seconds"], 2
        ),
    }


def bench_ingest(
    folder: Path, repeat: int = 9, seed: int = 7, parts: tuple[str, ...] = ("day", "range", "ticks")
) -> int:
    """Print the figures as JSON and a verdict per budget; exit status 1 if a budget is exceeded."""
    figures, verdicts = {"machine": f"{os.cpu_count()} cores, {sys.platform}"}, []
    bar, started = progress_bar(len(parts), "bench", "part"), []

    def doing(part: str) -> bool:
        """Whether `part` is to run; if so, the progress bar names it (and counts the part before it as done)."""
        if part not in parts:
            return False
        if started:
            bar.update()
        started.append(part)
        bar.set_description(f"bench {part}")
        return True

    if doing("day"):
        day = figures["minute_day"] = bench_minute_day(folder, repeat, seed)
        verdicts += [
            (f"raw -> lake at most {TIME_BUDGET}x gzip -dc", day["ratio_to_gzip_dc"] <= TIME_BUDGET),
            (f"peak RSS under {MEMORY_BUDGET // 2**20} MiB", day["peak_rss_mib"] * 2**20 < MEMORY_BUDGET),
            (f"checks at most +{CHECKS_BUDGET:.0%}", day["checks_overhead"] <= CHECKS_BUDGET),
        ]
    if doing("range"):
        one, ten = bench_range(folder, seed, 1), bench_range(folder, seed, 10)
        per_session = (ten["run_s"] - one["run_s"]) / 9
        figures["dagster_range"] = {
            "one_session": one,
            "ten_sessions": ten,
            "peak_growth": round(ten["peak_rss_mib"] / one["peak_rss_mib"] - 1, 3),
            "per_session_s": round(per_session, 2),
            "fixed_run_overhead_s": round(one["run_s"] - per_session, 2),
            "process_start_and_import_s": round(one["process_s"] - one["run_s"], 2),
        }
        verdicts.append(
            (
                f"10-session peak within {RANGE_MEMORY_BUDGET:.0%} of 1-session peak",
                figures["dagster_range"]["peak_growth"] <= RANGE_MEMORY_BUDGET,
            )
        )
    if doing("cluster"):
        figures["dask_cluster"] = bench_cluster(folder, seed)
    if doing("ticks"):
        ticks = figures["stock_trades_day"] = bench_ticks(folder, seed)
        verdicts += [
            (f"tick streaming at most {TICK_TIME_BUDGET}x gzip -dc", ticks["ratio_to_gzip_dc"] <= TICK_TIME_BUDGET),
            (
                f"tick peak RSS under {TICK_MEMORY_BUDGET / 2**30:.1f} GiB",
                ticks["peak_rss_mib"] * 2**20 < TICK_MEMORY_BUDGET,
            ),
        ]
    if doing("features"):
        features = figures["features"] = bench_features(folder, seed)
        verdicts += [
            (f"a year of daily features under {FEATURE_BUDGET_S:g} s", features["year_seconds"] < FEATURE_BUDGET_S),
            (
                f"minute VWAPs at most {VWAP_BUDGET}x the session's raw -> lake",
                features["vwap_ratio_to_ingest"] <= VWAP_BUDGET,
            ),
            (
                f"minute features and bars at most {VWAP_BUDGET}x the session's raw -> lake",
                features["intraday_ratio_to_ingest"] <= VWAP_BUDGET,
            ),
        ]
    if doing("providers"):
        from quant_assets.bench_providers import bench_providers
        from quant_assets.bench_providers import verdicts as provider_verdicts

        figures["providers"] = bench_providers(folder)
        verdicts += provider_verdicts(figures["providers"])
    if doing("year"):
        from quant_assets.bench_year import bench_year
        from quant_assets.bench_year import verdicts as year_verdicts

        figures["year"] = bench_year(folder, seed)
        verdicts += year_verdicts(figures["year"])
    if doing("qlib"):
        qlib = figures["qlib"] = bench_qlib(folder, seed)
        qlib["at_scale"] = bench_qlib_scale(folder, seed)
        verdicts += [
            (f"Qlib full build under {QLIB_BUILD_BUDGET_S:g} s", qlib["build_seconds"] < QLIB_BUILD_BUDGET_S),
            ("Qlib full build byte-identical to dump_all's rules", qlib["build_bytes_equal_reference"]),
            (
                f"appending a session to 10 years under {QLIB_APPEND_BUDGET_S:g} s",
                qlib["append_ten_years"]["append_seconds"] < QLIB_APPEND_BUDGET_S,
            ),
            (
                f"append time 10 years / 1 month at most {QLIB_HISTORY_BUDGET}",
                qlib["append_ratio_ten_years_to_one_month"] <= QLIB_HISTORY_BUDGET,
            ),
        ]
    bar.close()
    print(json.dumps(figures, indent=2))
    for text, ok in verdicts:
        print(f"budget: {text}: {'met' if ok else 'EXCEEDED'}")
    return 0 if all(ok for _, ok in verdicts) else 1
