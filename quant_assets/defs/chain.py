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

Per session the chain keeps only small summaries (metadata, check summaries), never data, so the memory of a run
does not grow with the number of sessions in its range. Failures are also written under the lake
(`outcomes.py`) for the coverage ledger.
"""

import datetime as dt
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from quant_assets.datasets import Calendar, Dataset
from quant_assets.defs.partitions import session_partitions
from quant_assets.defs.resources import DataZones, QualitySettings
from quant_assets.errors import SessionError
from quant_assets.flatfiles import vendor_key
from quant_assets.outcomes import clear_failure, record_failure
from quant_assets.sessions import parse_session
from quant_assets.sources import FlatFileSource

warnings.filterwarnings("ignore", message=".*backfill_policy.*", category=dg.BetaWarning)
BACKFILL_POLICY = dg.BackfillPolicy.single_run()
# An unpartitioned follower (a restatement) runs after any of its dependencies changes, one run at a time.
ON_CHANGE = dg.AutomationCondition.any_deps_updated() & ~dg.AutomationCondition.in_progress()
SKIPPED = "skipped"  # a session's metadata key: True when it was already current and nothing was redone


class SessionConfig(dg.Config):
    """Run configuration of the session chain (launchpad, or `--config-json` on the CLI)."""

    force: bool = False  # rebuild sessions that are already current (same raw file, same code version)


@dataclass
class ChainContext:
    """What a layer's build function gets besides the session."""

    context: dg.AssetExecutionContext
    flatfiles: FlatFileSource
    zones: DataZones
    quality: QualitySettings
    force: bool

    @property
    def log(self):
        return self.context.log


@dataclass(frozen=True)
class Built:
    """A layer's result for one session: the partition's metadata and a small summary for the layer's checks."""

    metadata: dict[str, Any]
    summary: Any = None


@dataclass(frozen=True)
class SessionLayer:
    """One per-session asset: its spec, its checks, and how to build one session of it.

    `build(chain, session)` returns a Built or raises a SessionError. `check_results(summaries, failures)` turns
    the run's summaries (partition key -> Built.summary, including those of failed sessions when the error
    carries one) into check results. Upstream layers are the spec's deps that are layers of the same chain.
    """

    dataset: Dataset
    spec: dg.AssetSpec
    build: Callable[[ChainContext, dt.date], Built]
    check_specs: Sequence[dg.AssetCheckSpec] = ()
    check_results: Callable[[dict[str, Any], dict[str, SessionError]], list[dg.AssetCheckResult]] | None = None

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
):
    """The events of a partitioned asset's range run: each built session's metadata (`built`, by partition key)
    and the check results; then, if some sessions had no input (`missing`), a failure that names them, the others
    staying materialised."""
    if missing:
        for key, metadata in built.items():
            yield dg.AssetMaterialization(asset_key=asset, partition=key, metadata=metadata)
        yield from check_results
        raise dg.Failure(
            description=f"{len(missing)} sessions {why}: " + ", ".join(s.isoformat() for s in missing)
            + "; every other session is materialised",
            allow_retries=False,
        )  # fmt: skip
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
        description=f"The per-session layers of the {calendar.value} calendar, run session by session: a failed "
        "session stops only its own later layers.",
    )
    def chain(
        context: dg.AssetExecutionContext,
        config: SessionConfig,
        flatfiles: FlatFileSource,
        zones: DataZones,
        quality: QualitySettings,
    ):
        selected = [layer for layer in layers if layer.key in context.selected_asset_keys]
        ctx = ChainContext(context, flatfiles, zones, quality, config.force)
        runs = {layer.key: LayerRun() for layer in selected}
        started = time.perf_counter()
        for partition_key in context.partition_keys:
            session = parse_session(partition_key)
            for layer in selected:
                run = runs[layer.key]
                failed_upstream = [k for k in upstream[layer.key] if k in runs and partition_key in runs[k].failures]
                try:
                    if failed_upstream:
                        cause = runs[failed_upstream[0]].failures[partition_key]
                        raise SessionError(
                            layer.dataset.name,
                            session,
                            cause.key,
                            f"not built: {failed_upstream[0].to_user_string()} failed ({cause.problem})",
                        )
                    built = layer.build(ctx, session)
                except Exception as exc:  # recorded for this session only; the others go on
                    error = _as_session_error(layer, session, exc)
                    run.failures[partition_key] = error
                    if getattr(error, "summary", None) is not None:
                        run.summaries[partition_key] = error.summary
                    record_failure(zones.lake_root, layer.dataset.name, session, layer.key.to_user_string(), str(error))
                    context.log.error(str(error))
                    continue
                run.metadata[partition_key] = built.metadata
                if built.summary is not None:
                    run.summaries[partition_key] = built.summary
                clear_failure(zones.lake_root, layer.dataset.name, session, layer.key.to_user_string())
        seconds = time.perf_counter() - started
        yield from _finish(context, selected, runs, seconds)

    return chain


def _finish(context: dg.AssetExecutionContext, layers: Sequence[SessionLayer], runs: dict, seconds: float):
    total = len(context.partition_keys)
    failed_any = any(run.failures for run in runs.values())
    for layer in layers:
        run = runs[layer.key]
        built = len(run.metadata) - run.skipped
        context.log.info(
            f"{layer.key.to_user_string()}: {built} sessions built, {run.skipped} skipped (already "
            f"current), {len(run.failures)} failed, of {total}"
        )
        if layer.check_results is not None:
            yield from layer.check_results(run.summaries, run.failures)
        if failed_any:  # name exactly the partitions that were built
            for partition_key, metadata in run.metadata.items():
                yield dg.AssetMaterialization(asset_key=layer.key, partition=partition_key, metadata=metadata)
        else:
            for partition_key, metadata in run.metadata.items():
                context.add_asset_metadata(metadata, asset_key=layer.key, partition_key=partition_key)
            yield dg.MaterializeResult(asset_key=layer.key, metadata={"run_seconds": round(seconds, 2)})
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
