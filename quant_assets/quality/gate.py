"""The quality gate: validate a parsed vendor file, set failing rows aside with their reasons, and reject the whole
partition when too many rows fail.

    data/quarantine/<dataset>/date=YYYY-MM-DD/part-0.parquet     vendor_row, the lake columns, reason

Every row the gate sees ends up in exactly one place: the lake partition or the quarantine partition. A rejected
partition sends all its rows to the quarantine and leaves the lake as it was.
"""

import datetime as dt
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandera.errors
import polars as pl

from quant_assets.datasets import Dataset
from quant_assets.flatfiles import FlatFileError
from quant_assets.lake import atomic_write_parquet, partition_dir, partition_path
from quant_assets.quality.rules import rules_for
from quant_assets.quality.schemas import lake_schema

DEFAULT_MAX_FAILURE_SHARE = 0.01
SAMPLE_ROWS = 10


@dataclass(frozen=True)
class GateResult:
    """The outcome of validating one session's rows."""

    rows: pl.DataFrame  # the parsed file, in file order
    bad: pl.Series  # per row: failed at least one rule
    quarantined: pl.DataFrame  # the failing rows: vendor_row, lake columns, reason, rules
    failures: dict[str, int] = field(default_factory=dict)  # rule name -> failing rows
    reasons: dict[str, str] = field(default_factory=dict)  # rule name -> what a failing row says

    @classmethod
    def passing(cls, frame: pl.DataFrame, reasons: dict[str, str] | None = None) -> "GateResult":
        """The result for a frame in which no row failed."""
        none = frame.head(0).with_row_index("vendor_row", offset=1)
        none = none.with_columns(rules=pl.lit([], dtype=pl.List(pl.String)), reason=pl.lit(""))
        return cls(frame, pl.repeat(False, frame.height, dtype=pl.Boolean, eager=True).alias("bad"), none, {}, reasons or {})

    @property
    def share(self) -> float:
        return self.quarantined.height / self.rows.height if self.rows.height else 0.0

    @property
    def clean(self) -> pl.DataFrame:
        """The rows that pass every rule: the lake partition."""
        return self.rows.filter(~self.bad) if self.quarantined.height else self.rows

    def sample(self, rule: str | None = None, n: int = SAMPLE_ROWS) -> pl.DataFrame:
        """Up to `n` quarantined rows (those failing `rule`, if given), for check metadata."""
        rows = self.quarantined
        if rule is not None:
            rows = rows.filter(pl.col("rules").list.contains(rule))
        return rows.drop("rules").head(n)

    def all_rows_for_quarantine(self, reason: str) -> pl.DataFrame:
        """Every row, for a rejected partition: failing rows with their reasons, the others with `reason`."""
        passed = self.rows.with_row_index("vendor_row", offset=1).filter(~self.bad)
        passed = passed.with_columns(rules=pl.lit([], dtype=pl.List(pl.String)), reason=pl.lit(reason))
        return pl.concat([self.quarantined, passed.select(self.quarantined.columns)]).sort("vendor_row")


class QualityGateError(FlatFileError):
    """A partition rejected as a whole: too many failing rows, or a defect of the whole file."""

    def __init__(self, dataset: str, session: dt.date, key: str, problem: str, result: GateResult):
        super().__init__(dataset, session, key, problem)
        self.result = result


def split(frame: pl.DataFrame, dataset: Dataset, session: dt.date) -> GateResult:
    """Validate `frame` with the dataset's pandera schema and split it, in file order, into clean rows and
    quarantined rows, each with the reasons it failed."""
    rules = rules_for(dataset, session)  # in schema order: a failure's check_number is its rule's position
    reasons = {rule.name: rule.reason for rule in rules}
    try:
        lake_schema(dataset, session).validate(frame, lazy=True)
        cases = None
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    if cases is None or cases.height == 0:
        return GateResult.passing(frame, reasons)
    structural = cases.filter(pl.col("index").is_null())
    if structural.height:  # a column or type problem: nothing row-level to set aside
        raise ValueError(f"lake schema of {dataset.name} violated: {structural.to_dicts()}")

    cases = cases.select(pl.col("index").cast(pl.UInt32), "check_number").unique().sort("index", "check_number")
    cases = cases.with_columns(rule=pl.col("check_number").replace_strict(range(len(rules)), [r.name for r in rules]))
    per_row = cases.group_by("index", maintain_order=True).agg(rules=pl.col("rule"))  # in rule order
    bad = np.zeros(frame.height, dtype=bool)
    bad[per_row["index"].to_numpy()] = True
    bad = pl.Series("bad", bad)
    quarantined = (
        frame.with_row_index("vendor_row", offset=1)
        .filter(bad)
        .with_columns(rules=per_row["rules"])
        .with_columns(reason=pl.col("rules").list.eval(pl.element().replace_strict(reasons)).list.join("; "))
    )
    failures = dict(cases.group_by("rule").len().iter_rows())
    return GateResult(frame, bad, quarantined, failures, reasons)


def reject_reason(result: GateResult, dataset: Dataset, max_failure_share: float) -> str | None:
    """Why the whole partition is rejected, or None when it passes the gate."""
    if result.share <= max_failure_share:
        return None
    time = dataset.time_column
    parts = [f"{count:,} rows: {result.reasons[rule]}" for rule, count in sorted(result.failures.items())]
    stamps = result.quarantined[time].dt.date().unique().sort()
    seen = ", ".join(str(d) for d in stamps.head(3).to_list()) + (" ..." if stamps.len() > 3 else "")
    return (
        f"quality gate: {result.quarantined.height:,} of {result.rows.height:,} rows ({result.share:.2%}) failed "
        f"checks, above the {max_failure_share:.2%} limit ({'; '.join(parts)}); {time} dates among failing rows: "
        f"{seen}"
    )


def write_quarantine(rows: pl.DataFrame, root: str | os.PathLike, dataset: str, session: dt.date) -> Path | None:
    """Replace the quarantine partition with `rows` (vendor_row, lake columns, reason); none removes it."""
    if rows.height == 0:
        shutil.rmtree(partition_dir(root, dataset, session), ignore_errors=True)
        return None
    path = partition_path(root, dataset, session)
    atomic_write_parquet(rows.drop("rules", strict=False), path)
    return path
