"""The provider benchmark (`quant-assets bench ingest --parts providers`): a watchlist of 1,000 tickers' daily bars
from the local Tiingo-like server, each answer 50 ms late, under a 25 requests/second limit the server enforces
(429 past it), through the hybrid source and into the lake, as `rest_stocks_daily` does it.

The reference is the time the limit allows: 1,000 requests at 25 a second are 40 s, whatever the latency, if the
requests overlap. Budgets: the first run within 1.15x of it; a second run served from the response cache sends 0
requests and takes under 2 s. Printed: requests, seconds, ratio to the limit-bound time, peak memory (RSS of this
process; the server runs in its own).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import resource
import shutil
import time
from pathlib import Path

import polars as pl

from quant_assets.providers.cache import ResponseCache
from quant_assets.providers.client import Policy, ProviderClient
from quant_assets.providers.hybrid import HybridSource
from quant_assets.providers.landing import merge_sessions, record_fetched
from quant_assets.providers.state import state_dir
from quant_assets.providers.tiingo import AUTH, NAME, Tiingo

TICKERS = 1000
PER_SECOND = 25
LATENCY = 0.05
WORKERS = 16
FIRST, LAST = dt.date(2026, 2, 2), dt.date(2026, 2, 6)  # five sessions: 1,000 requests whatever the span
RATIO_BUDGET = 1.15
CACHED_BUDGET_S = 2.0


def _serve(queue, stop) -> None:
    """The server's process: the full-size universe, warmed before it reports its port."""
    from quant_assets.samples.tiingo import TiingoServer

    server = TiingoServer(FIRST, LAST, size="full", latency=LATENCY, per_second=PER_SECOND)
    server.history.warm()
    server.start()
    queue.put((server.port, sorted(server.history.tickers)[:TICKERS]))
    stop.wait()
    queue.put(len(server.requests))
    server.stop()


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _run(url: str, data: Path, tickers: list[str]) -> dict:
    """One run: every ticker through the hybrid source, the rows merged into the sessions' partitions."""
    policy = Policy(rates=((PER_SECOND, 1.0),), rate_margin=0.08, attempts=5, backoff_initial=0.2)
    cache = ResponseCache(state_dir(data))
    started = time.perf_counter()
    with ProviderClient(NAME, url, "bench-key", policy, data, auth=AUTH, cache=cache) as client:
        source = HybridSource({NAME: Tiingo(client)}, ttl=3600, workers=WORKERS)
        frames, answered, failed = [], [], 0
        for fetched in source.fetch_all((t, FIRST, LAST) for t in tickers):
            if fetched.failed:
                failed += 1
                continue
            frames.append(fetched.frame)
            answered.append((fetched.symbol, FIRST, LAST, fetched.provider))
        written = merge_sessions(data / "lake", pl.concat(frames), tickers) if frames else {}
        record_fetched(data / "lake", answered, dt.datetime.now(dt.UTC))
        stats = client.stats.as_dict()
    cache.close()
    seconds = time.perf_counter() - started
    return {
        "requests": stats["requests"],
        "retries": stats["retries"],
        "cache_hits": stats["cache_hits"],
        "failed_tickers": failed,
        "sessions_written": len(written),
        "seconds": round(seconds, 2),
        "latency_p50_ms": stats["latency_p50_ms"],
        "waited_seconds": stats["waited_seconds"],
        "peak_rss_mib": _peak_rss_mib(),
    }


def bench_providers(folder: Path) -> dict:
    """Two runs against the local Tiingo-like server: over the network, then from the cache."""
    data = folder / "providers"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    context = multiprocessing.get_context("spawn")
    queue, stop = context.Queue(), context.Event()
    process = context.Process(target=_serve, args=(queue, stop), daemon=True)
    process.start()
    try:
        port, tickers = queue.get(timeout=600)
        url = f"http://127.0.0.1:{port}"
        limit_bound = len(tickers) / PER_SECOND
        network = _run(url, data, tickers)
        cached = _run(url, data, tickers)
        stop.set()
        served = queue.get(timeout=60)
    finally:
        stop.set()
        process.join(timeout=30)
    network["ratio_to_limit"] = round(network["seconds"] / limit_bound, 3)
    return {
        "tickers": len(tickers),
        "limit_per_second": PER_SECOND,
        "latency_ms": LATENCY * 1000,
        "limit_bound_seconds": limit_bound,
        "network": network,
        "cached": cached,
        "server_saw_requests": served,
    }


def verdicts(figures: dict) -> list[tuple[str, bool]]:
    network, cached = figures["network"], figures["cached"]
    return [
        (
            f"1,000 tickers within {RATIO_BUDGET}x of the {figures['limit_bound_seconds']:g} s the limit allows",
            network["ratio_to_limit"] <= RATIO_BUDGET and network["failed_tickers"] == 0,
        ),
        (
            f"the cached run sends 0 requests and takes under {CACHED_BUDGET_S:g} s",
            cached["requests"] == 0 and cached["seconds"] < CACHED_BUDGET_S,
        ),
    ]
