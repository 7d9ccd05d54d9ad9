"""The session chain: every per-session layer of one calendar (raw, lake, and the layers to come) in one Dagster
step, so that in a run over a range each good session flows through every selected layer whatever happens to the
other sessions.

Why one step (a `multi_asset` with `can_subset=True`) rather than one step per layer: Dagster records a
single-run, multi-session step as all-or-nothing. A step that fails skips every step downstream of it for every
session of the range, and a step that succeeds marks every partition of its range as materialised, failed ones
included (dagster-io/dagster#17836). Within one step the chain can take each session through its layers in order,
materialise exactly the (asset, session) pairs that were built (`AssetMaterialization` with a partition), stop a
session's later layers when an earlier one fails, and at the end fail the step naming every failed session: the
run ends FAILURE, the failed partitions are not materialised, and the good ones are, in every layer. The layers
communicate through files (raw zone, lake), so a subset of layers (`--select lake_stocks_daily`) runs the same way.

A session already current (same raw file, same code version, same ticker filter) is not rebuilt, and not
materialised again: its earlier materialization stands, so a run with nothing to do writes no materialization.
Dagster plans every check of the run's range when the run is created, and a planned check with no result shows as
skipped (or, in a failed run, as failed), so the checks a run did not evaluate on a session (a current session, a
file that could not be read) have their planned executions withdrawn (`storage.withdraw_planned_checks`): the
session's latest check results are again the ones that judged its materialization, and nothing is written. Three
cases record a current session's materialization again (`_why_restate`), and then its earlier check results too:
a run where a session failed (Dagster marks every session of a failed run that it did not materialise as failed),
a backfill's run (the backfill counts a session done only when its run materialises it), and a run with steps
after this one (they run only when this step yields its output, which materialises the whole range). Planning
before the run (`quant-assets plan`, `quant_assets.api.ingest`, the sensors) asks only for what is not current, and
launches no run when nothing is to do.

The layers log nothing routine per session (the partition's metadata holds it; a log line is an event write);
the run logs its progress every PROGRESS_SECONDS, warnings, and a line per failed session.

Per session the chain keeps only small summaries (metadata, check summaries), never data, so the memory of a run
does not grow with the number of sessions in its range. Failures are also written under the lake
(`outcomes.py`) for the coverage ledger. The sessions are built in the run's process one after the other, or spread
over a Dask cluster's workers (`cluster.py`) and applied in session order.
"""

import datetime as dt
import functools
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

# Dagster's public API cannot attach a check result to one partition (partitioned checks are a preview in 1.13), so
# the per-session check events are built from these internal types. Checked against dagster 1.13.x (pyproject pins
# <1.14); test_quality and test_browser fail if they change.
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData
from dagster._core.events import DagsterEventType
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster_shared.record import copy

from quant_assets.datasets import Calendar, Dataset
from quant_assets.defs.cluster import (
    LogLines,
    ResourceCopy,
    SessionCluster,
    worker_name,
)
from quant_assets.defs.partitions import session_partitions
from quant_assets.defs.resources import FLATFILES_POOL, DataZones, QualitySettings
from quant_assets.defs.storage import withdraw_planned_checks, withdraws_planned_checks
from quant_assets.errors import SessionError
from quant_assets.flatfiles import vendor_key
from quant_assets.outcomes import clear_failure, record_failure
from quant_assets.reference.factors import TABLE as FACTORS
from quant_assets.sessions import parse_session
from quant_assets.sources import FlatFileSource

warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
BACKFILL_POLICY = dg.BackfillPolicy.single_run()
# An unpartitioned follower (a restatement) runs after any of its dependencies changes, one run at a time.
ON_CHANGE = dg.AutomationCondition.any_deps_updated() & ~dg.AutomationCondition.in_progress()
# A partitioned follower (features, Qlib) builds a session once its upstream partition of that session is updated
# (a new session, or an older one re-materialised), when no upstream is missing or still running, and never past a
# failed blocking check. Unpartitioned inputs (the factors) do not trigger it: their changes are restatements.
FOLLOW = (
    dg.AutomationCondition.any_deps_updated().ignore(dg.AssetSelection.assets(FACTORS))
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
).with_label("follow upstream sessions")
BACKFILL_TAG = "dagster/backfill"
# An op tag of a check that yields nothing in a run that materialises assets (the freshness checks): its step
# following the chain is no reason to yield the chain's outputs.
NOT_IN_INGEST_RUNS = "quant_assets/not_in_ingest_runs"
SKIPPED = "skipped"  # a session's metadata key: True when it was already current and nothing was redone
EVALUATED = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}
HISTORY_PAGE = 1000  # check executions read at a time when restated sessions take their earlier results


class SessionConfig(dg.Config):
    """Run configuration of the session chain (launchpad, or `--config-json` on the CLI)."""

    force: bool = False  # rebuild sessions that are already current (same raw file, same code version)


@dataclass
class ChainContext:
    """What a layer's build function gets besides the session: the resources, and a log (the step's log in the
    run's process; on a cluster worker, a `LogLines` whose lines the step logs when the session comes back)."""

    log: Any
    flatfiles: FlatFileSource
    zones: DataZones
    quality: QualitySettings
    force: bool


@dataclass(frozen=True)
class Built:
    """A layer's result for one session: the partition's metadata and a small summary for the layer's checks."""

    metadata: dict[str, Any]
    summary: Any = None


@dataclass(frozen=True)
class SessionLayer:
    """One per-session asset: its spec, its checks, and how to build one session of it.

    `build(chain, session)` returns a Built or raises a SessionError. `check_results(summary, error)` turns one
    session's summary (Built.summary, or the summary a failed session's error carries) into that session's check
    results; the chain attaches them to the session's partition (the check specs are partitioned like the asset).
    Upstream layers are the spec's deps that are layers of the same chain.
    """

    dataset: Dataset
    spec: dg.AssetSpec
    build: Callable[[ChainContext, dt.date], Built]
    check_specs: Sequence[dg.AssetCheckSpec] = ()
    check_results: Callable[[Any, SessionError | None], list[dg.AssetCheckResult]] | None = None

    @property
    def key(self) -> dg.AssetKey:
        return self.spec.key


@dataclass
class LayerRun:
    """What one layer did over the sessions of a run: small, whatever the range."""

    metadata: dict[str, dict] = field(default_factory=dict)  # partition key -> metadata, built sessions
    summaries: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, SessionError] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        return sum(1 for m in self.metadata.values() if m.get(SKIPPED))


def _as_session_error(layer: SessionLayer, session: dt.date, error: Exception) -> SessionError:
    if isinstance(error, SessionError):
        return error
    return SessionError(
        layer.dataset.name, session, vendor_key(layer.dataset, session), f"{type(error).__name__}: {error}"
    )


def range_results(
    context: dg.AssetExecutionContext,
    asset: str,
    built: dict[str, dict],
    missing: Sequence[dt.date],
    why: str,
    check_results: Sequence[dg.AssetCheckResult] = (),
    also: dict[str, dict] | None = None,
    failed: Sequence[SessionError] = (),
):
    """The events of a partitioned asset's range run: each built session's metadata (`built`, by partition key)
    and the check results; then, if some sessions had no input (`missing`) or failed (`failed`: an unreadable
    input, each error naming its file), a failure that names them, the others staying materialised. `also`:
    sessions outside the run that it built again too (by partition key)."""
    for key, metadata in (also or {}).items():
        yield dg.AssetMaterialization(asset_key=asset, partition=key, metadata=metadata)
    if missing or failed:
        for key, metadata in built.items():
            yield dg.AssetMaterialization(asset_key=asset, partition=key, metadata=metadata)
        yield from check_results
        problems = [f"{len(missing)} sessions {why}: " + ", ".join(s.isoformat() for s in missing)] if missing else []
        problems += [f"{error.session} failed: {error}" for error in failed]
        raise dg.Failure(description="; ".join(problems) + "; every other session is materialised", allow_retries=False)
    for key, metadata in built.items():
        context.add_asset_metadata(metadata, partition_key=key)
    yield dg.MaterializeResult(check_results=list(check_results))


def build_session_chain(calendar: Calendar, layers: Sequence[SessionLayer], name: str) -> dg.AssetsDefinition:
    """The multi-asset that runs `layers` (in dependency order) session by session over a run's range."""
    keys = {layer.key for layer in layers}
    upstream = {layer.key: [d.asset_key for d in layer.spec.deps if d.asset_key in keys] for layer in layers}

    @dg.multi_asset(
        name=name,
        specs=[layer.spec for layer in layers],
        check_specs=[spec for layer in layers for spec in layer.check_specs],
        partitions_def=session_partitions(calendar),
        backfill_policy=BACKFILL_POLICY,
        can_subset=True,
        pool=FLATFILES_POOL,  # landing calls the vendor: runs side by side take turns (dagster.yaml)
        description=f"The per-session layers of the {calendar.value} calendar, run session by session: a failed "
        "session stops only its own later layers.",
    )
    def chain(
        context: dg.AssetExecutionContext,
        config: SessionConfig,
        flatfiles: FlatFileSource,
        zones: DataZones,
        quality: QualitySettings,
        cluster: SessionCluster,
    ):
        selected = [layer for layer in layers if layer.key in context.selected_asset_keys]
        ctx = ChainContext(QuietLog(context.log), flatfiles, zones, quality, config.force)
        runs = {layer.key: LayerRun() for layer in selected}
        started = time.perf_counter()
        progress = Progress(context.log, len(context.partition_keys), started)
        built_sessions = _each_session(context, cluster, ctx, selected, upstream)
        for partition_key, results in zip(context.partition_keys, built_sessions, strict=True):
            progress.add(partition_key, results.values())
            for key, result in results.items():
                run = runs[key]
                if isinstance(result, SessionError):
                    run.failures[partition_key] = result
                    if getattr(result, "summary", None) is not None:
                        run.summaries[partition_key] = result.summary
                    continue
                run.metadata[partition_key] = result.metadata
                if result.summary is not None:
                    run.summaries[partition_key] = result.summary
        seconds = time.perf_counter() - started
        yield from _finish(context, selected, runs, seconds)

    return chain


Results = dict[dg.AssetKey, Built | SessionError]
PROGRESS_SECONDS = 10.0  # a range run logs where it is at most this often, not a line per session


class QuietLog:
    """A layer's log in the run's process: warnings and errors go to the step's log; a session's routine lines
    (rows, bytes, "already current") do not, since its partition's metadata holds the same and a line per session
    and layer is an event write each. The run logs its progress instead (`Progress`)."""

    def __init__(self, log) -> None:
        self._log = log

    def debug(self, message: object) -> None:
        pass

    info = debug

    def warning(self, message: object) -> None:
        self._log.warning(message)

    def error(self, message: object) -> None:
        self._log.error(message)


class Progress:
    """Where a range run is: a line every PROGRESS_SECONDS and one at the end, counting the sessions done, built,
    already current (nothing redone) and failed."""

    def __init__(self, log, total: int, started: float) -> None:
        self.log, self.total, self.started, self.shown = log, total, started, started
        self.done = self.built = self.current = self.failed = 0

    def add(self, partition_key: str, results: Iterable[Built | SessionError]) -> None:
        results = list(results)
        self.done += 1
        if any(isinstance(r, SessionError) for r in results):
            self.failed += 1
        elif results and all(r.metadata.get(SKIPPED) for r in results):
            self.current += 1
        else:
            self.built += 1
        now = time.perf_counter()
        if now - self.shown >= PROGRESS_SECONDS or self.done == self.total:
            self.shown = now
            self.log.info(
                f"{self.done} of {self.total} sessions done (through {partition_key}): {self.built} built, "
                f"{self.current} already current, {self.failed} failed, in {now - self.started:.1f}s"
            )


@dataclass(frozen=True)
class LayerTask:
    """What a cluster worker needs of a SessionLayer to build it (a Dagster AssetSpec does not unpickle)."""

    key: dg.AssetKey
    dataset: Dataset
    build: Callable[[ChainContext, dt.date], Built]


def build_session(
    ctx: ChainContext, layers: Sequence[SessionLayer | LayerTask], upstream: dict[dg.AssetKey, list], partition_key: str
) -> Results:
    """Every layer of `layers`, in order, for one session: each layer's Built, or its SessionError (recorded for
    the coverage ledger and logged). A layer whose upstream layer failed for this session is not built."""
    session = parse_session(partition_key)
    results: Results = {}
    for layer in layers:
        failed_upstream = [k for k in upstream[layer.key] if isinstance(results.get(k), SessionError)]
        try:
            if failed_upstream:
                cause = results[failed_upstream[0]]
                raise SessionError(
                    layer.dataset.name,
                    session,
                    cause.key,
                    f"{layer.key.to_user_string()} not built: its input {failed_upstream[0].to_user_string()} "
                    f"failed for this session ({cause.problem})",
                )
            built = layer.build(ctx, session)
        except Exception as exc:  # recorded for this session only; the others go on
            results[layer.key] = _failed(ctx.zones, ctx.log, layer, session, exc)
            continue
        clear_failure(ctx.zones.lake_root, layer.dataset.name, session, layer.key.to_user_string())
        results[layer.key] = built
    return results


def _failed(
    zones: DataZones, log, layer: SessionLayer | LayerTask, session: dt.date, exc: BaseException
) -> SessionError:
    """`exc` as the layer's SessionError for `session`, recorded for the coverage ledger and logged."""
    error = _as_session_error(layer, session, exc)
    record_failure(zones.lake_root, layer.dataset.name, session, layer.key.to_user_string(), str(error))
    log.warning(str(error))  # a data defect, expected: the run's failure names every failed session
    return error


def _each_session(
    context: dg.AssetExecutionContext,
    cluster: SessionCluster,
    ctx: ChainContext,
    layers: Sequence[SessionLayer],
    upstream: dict[dg.AssetKey, list],
) -> Iterator[Results]:
    """Each session's results, in the order of the run's partition keys: built here one after the other, or on
    the cluster's workers (every session submitted at once), whose log lines are logged here as each session is
    applied."""
    keys = context.partition_keys
    if not cluster.address:
        yield from cluster.map_in_order(functools.partial(build_session, ctx, layers, upstream), keys)
        return
    resources = tuple(ResourceCopy.of(r) for r in (ctx.flatfiles, ctx.zones, ctx.quality))
    shipped = [LayerTask(layer.key, layer.dataset, layer.build) for layer in layers]
    task = functools.partial(_build_on_worker, resources, ctx.force, shipped, upstream)
    for partition_key, outcome in zip(keys, cluster.map_in_order(task, keys), strict=True):
        if isinstance(outcome, BaseException):  # the cluster lost the session: its worker died on every try
            session = parse_session(partition_key)
            yield {layer.key: _failed(ctx.zones, context.log, layer, session, outcome) for layer in layers}
            continue
        worker, lines, results = outcome
        lines.replay(context.log, logging.WARNING)
        yield {  # which worker built it, in the partition's metadata (a log line per session is an event each)
            key: Built({**result.metadata, "built_on": worker}, result.summary) if isinstance(result, Built) else result
            for key, result in results.items()
        }


def _build_on_worker(
    resources: tuple[ResourceCopy, ...],
    force: bool,
    layers: Sequence[LayerTask],
    upstream: dict[dg.AssetKey, list],
    partition_key: str,
) -> tuple[str, LogLines, dict]:
    """`build_session` as a Dask task: the resources built again from their copies, the log kept as lines."""
    flatfiles, zones, quality = (copy.build() for copy in resources)
    log = LogLines()
    results = build_session(ChainContext(log, flatfiles, zones, quality, force), layers, upstream, partition_key)
    return worker_name(), log, results


SUMMARY_TAG = "quant_assets/summary"  # + "/<dataset>": a chain run's summary of each lake layer, as JSON
SUMMARY_DATES = 50  # failed dates a summary names at most


def layer_summary(run: LayerRun, dataset: str, partition_keys: Sequence[str], seconds: float) -> dict[str, Any]:
    """What a run did for one lake layer: sessions processed, succeeded (built or already current), built,
    skipped as current, failed with their dates, records and bytes written, seconds, success rate."""

    def value(metadata: dict, name: str) -> int:
        item = metadata.get(name)
        return int(getattr(item, "value", item) or 0)

    built = {k: m for k, m in run.metadata.items() if not m.get(SKIPPED)}
    succeeded = len(run.metadata)
    return {
        "dataset": dataset,
        "sessions": len(partition_keys),
        "succeeded": succeeded,
        "built": len(built),
        "skipped": run.skipped,
        "failed": len(run.failures),
        "failed_dates": sorted(run.failures)[:SUMMARY_DATES],
        "records": sum(value(m, "rows") for m in built.values()),
        "bytes": sum(value(m, "bytes") for m in built.values()),
        "seconds": round(seconds, 2),
        "success_rate": round(succeeded / len(partition_keys), 4) if partition_keys else 1.0,
    }


def _finish(context: dg.AssetExecutionContext, layers: Sequence[SessionLayer], runs: dict, seconds: float):
    total = len(context.partition_keys)
    failed_any = any(run.failures for run in runs.values())
    summaries = {
        f"{SUMMARY_TAG}/{layer.dataset.name}": json.dumps(
            layer_summary(runs[layer.key], layer.dataset.name, context.partition_keys, seconds), separators=(",", ":")
        )
        for layer in layers
        if layer.key.path[0].startswith("lake_")
    }
    if summaries:  # on the run, so the UI's run page, the CLI and `quant_assets.api` show it
        context.instance.add_run_tags(context.run_id, summaries)
    restated = "a session of the run failed" if failed_any else _why_restate(context, {layer.key for layer in layers})
    for layer in layers:
        run = runs[layer.key]
        built = len(run.metadata) - run.skipped
        recorded = f"recorded again: {restated}" if restated else "their earlier materializations stand"
        context.log.info(
            f"{layer.key.to_user_string()}: {built} sessions built, {run.skipped} skipped (already "
            f"current; {recorded}), {len(run.failures)} failed, of {total}"
        )
        if restated and not failed_any:  # the output, for the steps after this one: every session of the range
            for partition_key, metadata in run.metadata.items():
                context.add_asset_metadata(metadata, asset_key=layer.key, partition_key=partition_key)
            yield dg.MaterializeResult(asset_key=layer.key, metadata={"run_seconds": round(seconds, 2)})
        else:  # exactly the sessions built (and, if some failed, those already current)
            for partition_key, metadata in run.metadata.items():
                if restated or not metadata.get(SKIPPED):
                    yield dg.AssetMaterialization(asset_key=layer.key, partition=partition_key, metadata=metadata)
        yield from _session_checks(context, layer, run, bool(restated))
    if failed_any:
        failures = [error for layer in layers for error in runs[layer.key].failures.values()]
        lines = "\n".join(f"- {error}" for error in failures)
        raise dg.Failure(
            description=f"{len(failures)} (asset, session) builds of {total} sessions failed; every other session "
            f"is materialised:\n{lines}",
            metadata={
                layer.key.to_user_string(): dg.MetadataValue.json(sorted(runs[layer.key].failures))
                for layer in layers
                if runs[layer.key].failures
            },
            allow_retries=False,
        )


def _why_restate(context: dg.AssetExecutionContext, keys: set[dg.AssetKey]) -> str | None:
    """Why this successful run must record its already-current sessions again, or None.

    Part of a backfill: the backfill counts a session done only when a run of it materialises the session, and
    marks the rest failed. Followed by another step of the same run (`lake_stocks_daily+`, a reconciliation
    check): Dagster runs a later step only when this one yields its output, and an output materialises every
    session of the range. (A freshness check, which yields nothing in such a run anyway, does not count.)
    """
    if context.run.tags.get(BACKFILL_TAG):
        return "the run is part of a backfill"
    outputs = {context.assets_def.get_output_name_for_asset_key(key) for key in keys}
    structure = context.job_def.graph.dependency_structure
    for output, inputs in structure.output_to_downstream_inputs_for_node(context.op_handle.name).items():
        waiting = [i.node.name for i in inputs if not i.node.definition.tags.get(NOT_IN_INGEST_RUNS)]
        if waiting and output.output_name in outputs:
            return f"{waiting[0]} follows in this run"
    return None


def _session_checks(context: dg.AssetExecutionContext, layer: SessionLayer, run: LayerRun, restated: bool):
    """Each session's check results as evaluations of its own partition, pointing at the materialisation they
    judged, so a range run records one result per check and session (not one for the range and "skipped" for the
    rest) and a rejected session's failure shows on its partition.

    Dagster planned every check of the run's range with the run; a planned check left without a result would show
    as skipped, or in a failed run as failed. So a check this run did not evaluate on a session (a session already
    current, a file that could not be read, a check that needs a built session) has its planned execution
    withdrawn (`withdraw_planned_checks`): the session's latest execution is again its last real evaluation, or
    none, and Dagster shows its checks as not evaluated there. Nothing is written for it. Only when the run records
    a current session's materialization again (`restated`) does that session get its earlier results again, as
    evaluations of the new materialization (metadata `evaluated_in_run`)."""
    specs = {s.key: s for s in layer.check_specs if s.key in context.selected_asset_check_keys}
    if not specs or layer.check_results is None:
        return
    for key in specs:  # the checks' outputs, which steps downstream of a blocking check wait for
        yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(key))
    withdraw = withdraws_planned_checks(context.instance)
    targets = _latest_materializations(context.instance, layer.key, context.partition_keys)
    skipped = [k for k in context.partition_keys if k not in run.summaries and run.metadata.get(k, {}).get(SKIPPED)]
    earlier = (
        _earlier_evaluations(context.instance, list(specs), skipped) if skipped and (restated or not withdraw) else {}
    )
    unevaluated: dict[dg.AssetCheckKey, list[str]] = {key: [] for key in specs}
    for partition_key in context.partition_keys:
        summary = run.summaries.get(partition_key)
        if summary is not None:
            results = [
                _evaluation(r, layer.key, partition_key)
                for r in layer.check_results(summary, run.failures.get(partition_key))
            ]
        else:
            results = earlier.get(partition_key, [])
        evaluated = set()
        for evaluation in results:
            if evaluation.asset_check_key in specs:
                evaluated.add(evaluation.asset_check_key)
                yield copy(
                    evaluation,
                    blocking=specs[evaluation.asset_check_key].blocking,
                    target_materialization_data=targets.get(partition_key),
                )
        for key in specs.keys() - evaluated:
            unevaluated[key].append(partition_key)
    if withdraw:
        withdraw_planned_checks(context.instance, context.run_id, {k: v for k, v in unevaluated.items() if v})


def _evaluation(result: dg.AssetCheckResult, asset_key: dg.AssetKey, partition_key: str) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=result.asset_key or asset_key,
        check_name=result.check_name,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
        partition=partition_key,
    )


def _latest_materializations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition_keys: Sequence[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """The newest materialisation of each partition: this run's for a built session, the one still in the lake for
    a rejected session (the lake keeps the previous partition), none for a session never built."""
    latest = instance.event_log_storage.get_latest_storage_id_by_partition(
        asset_key, DagsterEventType.ASSET_MATERIALIZATION, set(partition_keys)
    )
    if not latest:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, storage_ids=list(latest.values())), limit=len(latest)
    ).records
    return {
        r.partition_key: AssetCheckEvaluationTargetMaterializationData(
            storage_id=r.storage_id, run_id=r.run_id, timestamp=r.timestamp
        )
        for r in records
        if r.partition_key is not None
    }


def _earlier_evaluations(
    instance: dg.DagsterInstance, keys: Sequence[dg.AssetCheckKey], partition_keys: Sequence[str]
) -> dict[str, list[dg.AssetCheckEvaluation]]:
    """Per partition of `partition_keys`, the latest evaluation of each check, noting the run that made it; none
    where the latest one rejected the session (a later run built it, so that no longer describes the lake). One
    pass over each check's history, newest first, a page at a time, until every partition is found: a year of
    skipped sessions costs a few queries per check, not one per session."""
    found: dict[str, list[dg.AssetCheckEvaluation]] = {key: [] for key in partition_keys}
    storage = instance.event_log_storage
    for key in keys:
        wanted, cursor = set(partition_keys), None
        while wanted:
            records = storage.get_asset_check_execution_history(
                key, limit=HISTORY_PAGE, cursor=cursor, status=EVALUATED
            )
            for record in records:
                if record.partition not in wanted:
                    continue
                wanted.discard(record.partition)
                evaluation = record.evaluation
                if evaluation is None or (not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR):
                    continue
                metadata = {**evaluation.metadata, "evaluated_in_run": dg.MetadataValue.text(record.run_id)}
                found[record.partition].append(copy(evaluation, metadata=metadata))
            if len(records) < HISTORY_PAGE:
                break
            cursor = records[-1].id
    return found
