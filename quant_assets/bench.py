"""`quant-assets bench ingest`: raw -> lake on one full-size day, as a ratio to `gzip -dc` of the same file."""

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quant_assets.datasets import DATASETS
from quant_assets.flatfiles import vendor_key

BENCH_DATASET = DATASETS["stocks_minute"]
BENCH_SESSION = dt.date(2026, 3, 10)  # after the switch to 6-decimal text, which makes files larger
TIME_BUDGET = 1.5  # x gzip -dc
MEMORY_BUDGET = 2**30  # bytes of peak resident memory
CHECKS_BUDGET = 0.25  # the quality gate may add this share to raw -> lake


def bench_file(folder: Path, seed: int) -> Path:
    """The benchmark's input: one full-size day of stock minute aggregates, generated once and kept."""
    from quant_assets.sample import SIZES, Universe, session_files

    path = folder / f"seed{seed}" / vendor_key(BENCH_DATASET, BENCH_SESSION)
    if not path.exists():
        print(f"generating {path} (full size, once) ...", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = session_files(BENCH_DATASET, BENCH_SESSION, Universe(seed, SIZES["full"]))
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def ingest_once(path: Path, lake_root: Path, validate: bool = True):
    """raw -> lake as the lake asset runs it: parse, quality gate (quarantine), write, metadata."""
    from quant_assets.ingest import build_partition

    key = vendor_key(BENCH_DATASET, BENCH_SESSION)
    return build_partition(path, BENCH_DATASET, BENCH_SESSION, key, lake_root, lake_root / "quarantine",
                           {"key": key}, validate=validate)  # fmt: skip


def _best(seconds: list[float]) -> float:
    return min(seconds)


def _naive_seconds(path: Path, lake_root: Path) -> float:
    """The hand-written-script way, for comparison: inferred CSV schema, polars' default Parquet settings."""
    import polars as pl

    started = time.perf_counter()
    pl.read_csv(path).write_parquet(lake_root / "naive.parquet")
    return time.perf_counter() - started


def _gzip_seconds(path: Path) -> float:
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        subprocess.run(["gzip", "-dc", str(path)], stdout=sink, check=True)
    return time.perf_counter() - started


def _peak_memory(path: Path, lake_root: Path) -> tuple[int, int]:
    """Peak RSS (bytes) of a fresh process that ingests `path`, and of one that only imports the code.

    Read from the child's own VmHWM: `ru_maxrss` of a child also counts the parent's pages it was forked from.
    """
    hwm = "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))"

    def run(code: str) -> int:
        out = subprocess.run([sys.executable, "-c", f"{code}\n{hwm}"], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1]) * 1024

    baseline = run("import quant_assets.lake")
    peak = run(
        "from pathlib import Path\nfrom quant_assets.bench import ingest_once\n"
        f"ingest_once(Path({str(path)!r}), Path({str(lake_root)!r}))"
    )
    return peak, baseline


def bench_ingest(folder: Path, repeat: int = 9, seed: int = 7) -> int:
    """Print the figures; exit status 1 if a budget is exceeded."""
    path = bench_file(folder, seed)
    lake_root = Path(tempfile.mkdtemp(prefix="bench-lake-", dir=folder))
    try:
        ingest_once(path, lake_root)  # warm the page cache and polars' thread pool
        _gzip_seconds(path)
        gzip_times, ingest_times, unchecked_times, naive_times = [], [], [], []
        for _ in range(repeat):  # interleaved, so all see the same machine load
            gzip_times.append(_gzip_seconds(path))
            started = time.perf_counter()
            stats = ingest_once(path, lake_root)
            ingest_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            ingest_once(path, lake_root, validate=False)
            unchecked_times.append(time.perf_counter() - started)
            naive_times.append(_naive_seconds(path, lake_root))
        peak, baseline = _peak_memory(path, lake_root)
    finally:
        shutil.rmtree(lake_root, ignore_errors=True)
    ratio = _best(ingest_times) / _best(gzip_times)
    figures = {
        "file": str(path),
        "compressed_mib": round(path.stat().st_size / 2**20, 1),
        "rows": stats.rows,
        "tickers": stats.tickers,
        "lake_mib": round(stats.bytes / 2**20, 1),
        "gzip_dc_s": round(_best(gzip_times), 3),
        "ingest_s": round(_best(ingest_times), 3),
        "ratio_to_gzip_dc": round(ratio, 2),
        "without_checks_s": round(_best(unchecked_times), 3),
        "checks_overhead": f"{_best(ingest_times) / _best(unchecked_times) - 1:+.1%}",
        "naive_read_csv_write_parquet_ratio": round(_best(naive_times) / _best(gzip_times), 2),
        "peak_rss_mib": round(peak / 2**20),
        "import_only_rss_mib": round(baseline / 2**20),
        "rows_per_s": round(stats.rows / _best(ingest_times)),
    }
    print(json.dumps(figures, indent=2))
    checks_ok = _best(ingest_times) / _best(unchecked_times) - 1 <= CHECKS_BUDGET
    ok = ratio <= TIME_BUDGET and peak < MEMORY_BUDGET
    print(f"budget: ratio <= {TIME_BUDGET} and peak RSS < {MEMORY_BUDGET // 2**20} MiB: {'met' if ok else 'EXCEEDED'}; "
          f"checks at most +{CHECKS_BUDGET:.0%}: {'met' if checks_ok else 'EXCEEDED'}")
    return 0 if ok and checks_ok else 1
