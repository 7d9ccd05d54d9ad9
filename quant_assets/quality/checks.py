"""Dagster asset checks from the quality rules: one blocking check per rule of a dataset's pandera schema, and a
volume anomaly check. Their results are computed while the lake partition is built, from the same validation, so
the checks cost no second pass over the data.
"""

import datetime as dt
import statistics
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import polars as pl

from quant_assets.datasets import Dataset
from quant_assets.lake import partition_path, read_provenance
from quant_assets.quality.gate import GateResult
from quant_assets.quality.rules import rule_catalogue
from quant_assets.sessions import sessions

VOLUME_ANOMALY = "volume_anomaly"


def quality_check_specs(dataset: Dataset, asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """A blocking check per row rule (the checks of the dataset's pandera schema), and the anomaly check."""
    specs = [
        dg.AssetCheckSpec(name, asset=asset_key, blocking=True,
                          description=f"Rows where {reason} are quarantined; more than the allowed share "
                          "rejects the partition.")  # fmt: skip
        for name, reason in rule_catalogue(dataset).items()
    ]
    specs.append(dg.AssetCheckSpec(
        VOLUME_ANOMALY, asset=asset_key,
        description="Row and ticker counts against the median of earlier sessions: a sudden drop (a half-delivered "
        "file) is a warning.",
    ))  # fmt: skip
    return specs


def markdown_table(frame: pl.DataFrame) -> str:
    """A frame as a markdown table, for Dagster metadata."""
    columns = frame.columns
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def rule_check_results(
    dataset: Dataset, asset_key: dg.AssetKey, gates: Mapping[str, GateResult], rejected: set[str]
) -> list[dg.AssetCheckResult]:
    """One result per rule over the sessions of a run.

    Passed: no row failed. Failed as a WARN: rows failed and were quarantined, the lake partition holds the rest.
    Failed as an ERROR (blocking downstream): a session was rejected with rows failing this rule.
    """
    results = []
    for name in rule_catalogue(dataset):
        per_session = {s: g.failures.get(name, 0) for s, g in sorted(gates.items())}
        failed = sum(per_session.values())
        blocking = any(per_session[s] for s in rejected if s in per_session)
        samples = [g.sample(name).with_columns(session=pl.lit(s)) for s, g in gates.items() if per_session[s]]
        metadata = {
            "failed_rows": dg.MetadataValue.int(failed),
            "rows_checked": dg.MetadataValue.int(sum(g.rows.height for g in gates.values())),
            "failed_rows_by_session": dg.MetadataValue.json({s: n for s, n in per_session.items() if n}),
            "rejected_sessions": dg.MetadataValue.json(sorted(s for s in rejected if per_session.get(s))),
        }
        if samples:
            sample = pl.concat(samples, how="diagonal_relaxed").head(10)
            metadata["sample"] = dg.MetadataValue.md(markdown_table(sample.select("session", *sample.columns[:-1])))
        results.append(dg.AssetCheckResult(
            asset_key=asset_key, check_name=name, passed=failed == 0,
            severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
            metadata=metadata,
            description=None if failed == 0 else _describe(name, failed, gates, per_session),
        ))  # fmt: skip
    return results


def _describe(rule: str, failed: int, gates: Mapping[str, GateResult], per_session: dict[str, int]) -> str:
    sessions_failing = [s for s, n in per_session.items() if n]
    reason = gates[sessions_failing[-1]].reasons[rule]  # the wording names the session it is about
    more = f" (in {len(sessions_failing)} sessions; the last shown)" if len(sessions_failing) > 1 else ""
    return f"{failed:,} rows: {reason}{more}"


def partition_counts(lake_root: str | Path, dataset: Dataset, session: dt.date) -> tuple[int, int] | None:
    """(rows, tickers) of a lake partition, from its Parquet metadata; None if there is none."""
    path = partition_path(lake_root, dataset.name, session)
    if not path.exists():
        return None
    info = read_provenance(path)
    if "rows" not in info:
        return None
    return int(info["rows"]), int(info["tickers"])


def volume_anomalies(
    lake_root: str | Path, dataset: Dataset, session: dt.date, rows: int, tickers: int, window: int, max_drop: float
) -> dict:
    """Compare a session's counts with the median of up to `window` earlier sessions; flag a drop of more than
    `max_drop` (a share) in either."""
    earlier = sessions(dataset.calendar, session - dt.timedelta(days=window * 2 + 10), session - dt.timedelta(days=1))
    history = [c for s in reversed(earlier) if (c := partition_counts(lake_root, dataset, s))][:window]
    if len(history) < 3:
        return {"session": session.isoformat(), "rows": rows, "tickers": tickers, "history": len(history),
                "anomalies": []}  # fmt: skip
    median_rows = statistics.median(h[0] for h in history)
    median_tickers = statistics.median(h[1] for h in history)
    anomalies = []
    for name, value, median in (("rows", rows, median_rows), ("tickers", tickers, median_tickers)):
        if median and value < (1 - max_drop) * median:
            anomalies.append(f"{name} {value:,} is {1 - value / median:.0%} below the median {median:,.0f} "
                             f"of the last {len(history)} sessions")  # fmt: skip
    return {"session": session.isoformat(), "rows": rows, "tickers": tickers, "history": len(history),
            "median_rows": median_rows, "median_tickers": median_tickers, "anomalies": anomalies}  # fmt: skip


def anomaly_check_result(asset_key: dg.AssetKey, findings: list[dict]) -> dg.AssetCheckResult:
    flagged = [f for f in findings if f["anomalies"]]
    return dg.AssetCheckResult(
        asset_key=asset_key, check_name=VOLUME_ANOMALY, passed=not flagged, severity=dg.AssetCheckSeverity.WARN,
        metadata={"sessions": dg.MetadataValue.json(findings), "flagged_sessions": len(flagged)},
        description="; ".join(f"{f['session']}: {', '.join(f['anomalies'])}" for f in flagged) or None,
    )  # fmt: skip


def build_reconciliation_check(day: Dataset, minute: Dataset) -> dg.AssetChecksDefinition:
    """A check on `lake_<day>` that compares each session of the run with `lake_<minute>`, per ticker."""
    from quant_assets.quality.reconcile import PROBLEMS, reconcile
    from quant_assets.resources import DataZones, QualitySettings
    from quant_assets.sessions import parse_session

    @dg.asset_check(
        asset=f"lake_{day.name}",
        additional_deps=[f"lake_{minute.name}"],
        name=f"reconciles_with_{minute.name}",
        description=f"Per ticker: the sum of {minute.name} volume is at most the day volume, minute highs and "
        "lows stay inside the day's, and the first and last minute prices agree with the day's open and close.",
    )
    def reconciliation(context: dg.AssetCheckExecutionContext, zones: DataZones, quality: QualitySettings):
        mismatches, compared, skipped = [], 0, []
        for key in context.op_execution_context.partition_keys:
            session = parse_session(key)
            paths = [partition_path(zones.lake_root, d.name, session) for d in (minute, day)]
            if not all(p.exists() for p in paths):
                skipped.append(key)
                continue
            minute_bars, day_bars = (pl.read_parquet(p) for p in paths)
            compared += day_bars.height
            found = reconcile(minute_bars, day_bars, quality.volume_tolerance, quality.price_tolerance)
            mismatches.append(found.with_columns(session=pl.lit(key)))
        found = pl.concat(mismatches) if mismatches else pl.DataFrame()
        counts = {name: 0 for name in PROBLEMS}
        if found.height:
            for problems in found["problems"]:
                for name in problems:
                    counts[name] += 1
        sample = found.head(20).with_columns(pl.col("problems").list.join(", ")) if found.height else found
        metadata = {
            "tickers_compared": dg.MetadataValue.int(compared),
            "tickers_mismatched": dg.MetadataValue.int(found.height),
            "mismatches_by_problem": dg.MetadataValue.json({PROBLEMS[k]: v for k, v in counts.items()}),
            "sessions_skipped": dg.MetadataValue.json(skipped),
        }
        if found.height:
            metadata["mismatches"] = dg.MetadataValue.md(markdown_table(sample.select("session", *sample.columns[:-1])))
        return dg.AssetCheckResult(
            passed=found.height == 0, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
            description=None if not found.height else f"{found.height} ticker-sessions disagree between "
            f"{minute.name} and {day.name}",
        )  # fmt: skip

    return reconciliation


def build_freshness_check(dataset: Dataset, deadline_at: dt.time) -> dg.AssetChecksDefinition:
    """A check on `lake_<dataset>`: the newest session past its deadline must have a materialised partition."""
    from quant_assets.quality.freshness import due_session

    asset_key = dg.AssetKey(f"lake_{dataset.name}")

    @dg.asset_check(
        asset=asset_key,
        name="fresh",
        description=f"The newest {dataset.calendar.value} session whose deadline ({deadline_at:%H:%M} "
        "America/New_York on the next session) has passed is materialised.",
    )
    def fresh(context: dg.AssetCheckExecutionContext):
        now = dt.datetime.now(dt.UTC)
        session, due = due_session(dataset.calendar, now, deadline_at)
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[session.isoformat()]), limit=1
        ).records
        metadata = {"session": session.isoformat(), "deadline": due.isoformat()}
        if records:
            metadata["materialized_at"] = dt.datetime.fromtimestamp(records[0].timestamp, dt.UTC).isoformat()
            return dg.AssetCheckResult(passed=True, metadata=metadata)
        late = now - due
        metadata["late_by_hours"] = round(late.total_seconds() / 3600, 1)
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
            description=f"{dataset.name} {session} is late: due {due:%Y-%m-%d %H:%M %Z}, not materialised",
        )  # fmt: skip

    return fresh
