"""The platform from Python (a notebook, a script): ingest a range and get its summary, backfill what the coverage
lacks, read what was built without knowing the storage, and see what the instance did.

    from quant_assets import api
    summary = api.ingest("stocks_daily", "2026-02-02", "2026-02-27")   # runs through Dagster: the UI shows it
    print(summary)                                                      # processed, succeeded, failed dates, ...
    bars = api.read("stocks_daily", "2026-02-02", "2026-02-27", tickers=["AAPL"], adjusted=True).collect()

`ingest` and `backfill` run the dataset's session chain (raw -> lake) on the instance of `DAGSTER_HOME` (an
ephemeral one when it is not set), with the settings of the environment (`quant_assets.settings`), as one run over
the range; every chain run, from here, the UI or the CLI, carries the same summary in its tags
(`quant_assets/summary/<dataset>`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import polars as pl

from quant_assets.datasets import DATASETS, Dataset, parse_dataset_names
from quant_assets.lake import scan, sessions_in
from quant_assets.sessions import sessions

__all__ = ["IngestSummary", "backfill", "ingest", "read", "statistics"]


@dataclasses.dataclass
class IngestSummary:
    """What one `ingest` or `backfill` did over its range of sessions."""

    dataset: str
    start: dt.date
    end: dt.date
    dates_processed: int  # the sessions of the range
    succeeded: int  # built now or already current
    failed: int
    skipped: int  # already current (or, incrementally, rejected before with the same file): nothing asked
    records: int  # lake rows written by this call
    bytes: int  # lake bytes written by this call
    elapsed_seconds: float
    failed_dates: list[dt.date]
    run_id: str | None  # None when there was nothing to do
    message: str

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.dates_processed if self.dates_processed else 1.0

    def __str__(self) -> str:
        failed = ", ".join(d.isoformat() for d in self.failed_dates) or "none"
        return (
            f"{self.dataset} {self.start}..{self.end}: {self.dates_processed} sessions, {self.succeeded} succeeded "
            f"({self.success_rate:.0%}), {self.failed} failed ({failed}), {self.skipped} skipped; {self.records:,} "
            f"records, {self.bytes:,} bytes in {self.elapsed_seconds:.1f} s; {self.message}"
        )


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"no dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def _day(value: str | dt.date) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def _instance(instance: dg.DagsterInstance | None) -> dg.DagsterInstance:
    if instance is not None:
        return instance
    try:
        return dg.DagsterInstance.get()
    except dg.DagsterInvariantViolationError:  # DAGSTER_HOME unset: runs are not kept
        return dg.DagsterInstance.ephemeral()


def ingest(
    dataset: str,
    start: str | dt.date,
    end: str | dt.date,
    symbols: Sequence[str] | None = None,
    incremental: bool = True,
    instance: dg.DagsterInstance | None = None,
) -> IngestSummary:
    """Land and build `dataset` for the sessions of [start, end] through Dagster, as one run, and summarise it.

    `symbols` keeps only those tickers in the lake (the `QUANT_ASSETS_TICKERS` filter, for this call).
    `incremental` (the default) asks only what is not current: a session whose lake partition matches its raw
    file, code and filter is skipped, and one whose unchanged file was rejected before is not asked again (it
    stays failed until the vendor replaces the file, or `incremental=False` forces every session). A session the
    source has no file for is failed without a run. With nothing to do no run is launched, and the summary says so.
    """
    from quant_assets.definitions import build_definitions
    from quant_assets.defs.chain import SUMMARY_TAG
    from quant_assets.defs.ingest import CHAIN_NAMES, JOB_NAMES
    from quant_assets.defs.resources import DataZones, resources_from
    from quant_assets.outcomes import failures
    from quant_assets.plan import plan
    from quant_assets.settings import from_env

    started = time.monotonic()
    chosen = _dataset(dataset)
    first, last = _day(start), _day(end)
    settings = from_env()
    if symbols is not None:
        settings = dataclasses.replace(settings, tickers=list(symbols))
    zones = DataZones(root=settings.data, tickers=settings.tickers)
    with dg.build_resources({"flatfiles": resources_from(settings)["flatfiles"]}) as resources:
        work = plan([chosen], first, last, resources.flatfiles.list_objects, zones.raw_root, zones.lake_root,
                    settings.tickers)  # fmt: skip
    rejected = {day for day, layer in failures(zones.lake_root, chosen.name) if layer == f"lake_{chosen.name}"}
    missing = [w.session for w in work if w.action == "missing"]
    if incremental:
        known_bad = [w.session for w in work if w.action == "build" and w.session in rejected]
        todo = [w.session for w in work if w.action in ("fetch", "build") and w.session not in known_bad]
        skipped = [w.session for w in work if w.action == "current"] + known_bad
    else:
        known_bad, todo, skipped = [], [w.session for w in work if w.action != "missing"], []
    days = sessions(chosen.calendar, first, last)
    summary = IngestSummary(chosen.name, first, last, len(days), 0, 0, len(skipped), 0, 0, 0.0, [], None, "")
    chain: dict = {}
    if todo:
        datasets = parse_dataset_names(settings.datasets)
        defs = build_definitions(datasets if chosen in datasets else [*datasets, chosen], settings)
        tags = {"dagster/asset_partition_range_start": todo[0].isoformat(),
                "dagster/asset_partition_range_end": todo[-1].isoformat(), "quant_assets/trigger": "api"}  # fmt: skip
        config = {"ops": {CHAIN_NAMES[chosen.calendar]: {"config": {"force": not incremental}}}}
        run = _instance(instance)
        result = defs.resolve_job_def(JOB_NAMES[chosen.calendar]).execute_in_process(
            run_config=config, instance=run, tags=tags, raise_on_error=False,
            asset_selection=[dg.AssetKey(f"raw_{chosen.name}"), dg.AssetKey(f"lake_{chosen.name}")],
        )  # fmt: skip
        summary.run_id = result.run_id
        record = run.get_run_by_id(result.run_id)
        chain = json.loads(record.tags.get(f"{SUMMARY_TAG}/{chosen.name}", "{}")) if record else {}
    failed = sorted({*missing, *known_bad, *(dt.date.fromisoformat(d) for d in chain.get("failed_dates", []))})
    summary.failed_dates, summary.failed = failed, len(failed)
    summary.succeeded = len(days) - len(failed)
    summary.records, summary.bytes = chain.get("records", 0), chain.get("bytes", 0)
    summary.elapsed_seconds = round(time.monotonic() - started, 3)
    parts = [f"{len(todo)} sessions asked in run {summary.run_id}" if todo else "nothing to do: no run launched"]
    parts += [f"{len(skipped) - len(known_bad)} already current"] if skipped else []
    parts += [f"{len(known_bad)} rejected before with the same file, not asked again"] if known_bad else []
    parts += [f"{len(missing)} without a file at the source"] if missing else []
    summary.message = "; ".join(parts)
    return summary


def backfill(
    dataset: str, start: str | dt.date, end: str | dt.date, instance: dg.DagsterInstance | None = None
) -> IngestSummary:
    """`ingest` of only the sessions of [start, end] the coverage lacks (no current lake partition): a range with
    gaps becomes one run over the gaps; what is current is not asked."""
    return ingest(dataset, start, end, incremental=True, instance=instance)


def read(
    dataset: str,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    tickers: Sequence[str] | None = None,
    adjusted: bool = False,
    data: str | Path | None = None,
) -> pl.LazyFrame:
    """A polars LazyFrame over `dataset` between `start` and `end` (both included; all sessions when None), for
    `tickers` (all when None), from the right zone of the data folder (`QUANT_ASSETS_DATA` by default):

    - a lake dataset (`stocks_daily`, `options_minute`, ...): the lake's typed rows, with their `date`;
      `adjusted=True` multiplies prices and volume by the adjustment factors (as the features use them) and adds
      `price_factor` and `volume_factor`;
    - `enriched_<dataset>` (`enriched_stocks_daily`, ...): the enriched zone, restatements applied;
    - `rest_stocks_daily`: the REST providers' daily bars.
    """
    from quant_assets.features.restate import read_enriched_daily
    from quant_assets.reference.factors import adjust, read_factors
    from quant_assets.settings import from_env

    root = Path(data) if data is not None else Path(from_env().data)
    first = _day(start) if start is not None else None
    last = _day(end) if end is not None else None
    if dataset.startswith("enriched_"):
        name = dataset.removeprefix("enriched_")
        held = [s for s in sessions_in(root / "enriched", name) if _within(s, first, last)]
        frame = read_enriched_daily(root / "enriched", name, held) if name == "stocks_daily" else scan(
            root / "enriched", name, held)  # fmt: skip
    elif dataset == "rest_stocks_daily":
        held = [s for s in sessions_in(root / "lake", dataset) if _within(s, first, last)]
        frame = scan(root / "lake", dataset, held)
    else:
        chosen = _dataset(dataset)
        held = [s for s in sessions_in(root / "lake", chosen.name) if _within(s, first, last)]
        frame = scan(root / "lake", chosen.name, held)
    if tickers is not None:
        frame = frame.filter(pl.col("ticker").is_in(list(tickers)))
    if adjusted:
        factors = read_factors(root / "reference", tickers=list(tickers) if tickers is not None else None)
        frame = adjust(frame.sort("ticker", "date"), factors)
    return frame


def _within(session: dt.date, first: dt.date | None, last: dt.date | None) -> bool:
    return (first is None or session >= first) and (last is None or session <= last)


def statistics(instance: dg.DagsterInstance | None = None, limit: int = 1000) -> dict:
    """What the instance's last `limit` runs did: runs by status, and, from the chain runs' summaries, sessions
    downloaded and ingested, records and failures per dataset, with the failed dates."""
    from quant_assets.defs.chain import SUMMARY_TAG

    runs = _instance(instance).get_runs(limit=limit)
    by_status: dict[str, int] = {}
    datasets: dict[str, dict] = {}
    for run in runs:
        by_status[run.status.value] = by_status.get(run.status.value, 0) + 1
        for tag, text in run.tags.items():
            if not tag.startswith(f"{SUMMARY_TAG}/"):
                continue
            one = json.loads(text)
            total = datasets.setdefault(one["dataset"], {"runs": 0, "sessions": 0, "built": 0, "skipped": 0,
                                                          "failed": 0, "records": 0, "bytes": 0, "failed_dates": []})  # fmt: skip
            total["runs"] += 1
            for key in ("sessions", "built", "skipped", "failed", "records", "bytes"):
                total[key] += one.get(key, 0)
            total["failed_dates"] = sorted(set(total["failed_dates"]) | set(one.get("failed_dates", [])))
    return {"runs": len(runs), "runs_by_status": by_status, "datasets": datasets}
