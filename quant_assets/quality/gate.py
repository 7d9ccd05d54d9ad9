"""The quality gate: validate a session's rows batch by batch, set failing rows aside with their reasons, and reject
the whole partition when too many rows fail.

    data/quarantine/<dataset>/date=YYYY-MM-DD/part-0.parquet     vendor_row, the lake columns, reason

Every row the gate sees ends up in exactly one place: the lake partition or the quarantine partition. A rejected
partition sends all its rows to the quarantine and leaves the lake as it was. What the gate keeps about a session
is a small summary (counts, reasons, a few sample rows), never the rows themselves, so a run over a year of
sessions holds no more than a run over one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from quant_assets.datasets import Dataset
from quant_assets.errors import SessionError
from quant_assets.quality.rules import COMPLETE_VALUES, Rule, rules_for
from quant_assets.settings import DEFAULT_MAX_TICKER_LENGTH

SAMPLE_ROWS = 10
MAX_FAILING_DATES = 10


@dataclass
class GateSummary:
    """What the gate found in one session: small whatever the session's size."""

    rows: int = 0  # rows checked
    quarantined: int = 0  # rows that failed at least one rule
    failures: dict[str, int] = field(default_factory=dict)  # rule name -> failing rows
    reasons: dict[str, str] = field(default_factory=dict)  # rule name -> what a failing row says
    samples: dict[str, pl.DataFrame] = field(default_factory=dict)  # rule name -> up to SAMPLE_ROWS failing rows
    failing_dates: set[dt.date] = field(default_factory=set)  # dates of the failing rows' stamps (a few)

    @property
    def share(self) -> float:
        return self.quarantined / self.rows if self.rows else 0.0

    def sample(self, rule: str, n: int = SAMPLE_ROWS) -> pl.DataFrame | None:
        """Up to `n` quarantined rows that failed `rule` (vendor_row, lake columns, reason), for check metadata."""
        rows = self.samples.get(rule)
        return None if rows is None else rows.head(n)

    def reject_reason(self, dataset: Dataset, max_failure_share: float) -> str | None:
        """Why the whole partition is rejected, or None when it passes the gate."""
        if self.share <= max_failure_share:
            return None
        parts = [f"{count:,} rows: {self.reasons[rule]}" for rule, count in sorted(self.failures.items())]
        dates = sorted(self.failing_dates)
        seen = ", ".join(str(d) for d in dates[:3]) + (" ..." if len(dates) > 3 else "")
        return (
            f"quality gate: {self.quarantined:,} of {self.rows:,} rows ({self.share:.2%}) failed checks, above the "
            f"{max_failure_share:.2%} limit ({'; '.join(parts)}); {dataset.time_column} dates among failing rows: "
            f"{seen}"
        )


class QualityGateError(SessionError):
    """A partition rejected as a whole: too large a share of its rows failed the row rules."""

    def __init__(self, dataset: str, session: dt.date, key: str, problem: str, summary: GateSummary):
        super().__init__(dataset, session, key, problem)
        self.summary = summary


class Gate:
    """Checks the batches of one session in file order, and keeps the session's GateSummary.

    Each rule is a polars expression over a batch (evaluated together, in one parallel pass), except the
    duplicate rule, which remembers the keys of earlier batches. A null value (empty, short row, unparsable) fails
    only `complete_values`, whose reason is the reader's own description of the row's text.
    """

    def __init__(self, dataset: Dataset, session: dt.date, max_ticker_length: int = DEFAULT_MAX_TICKER_LENGTH):
        self.dataset = dataset
        self.rules: list[Rule] = rules_for(dataset, session, max_ticker_length)
        self.summary = GateSummary(reasons={rule.name: rule.reason for rule in self.rules})

    def check(
        self, frame: pl.DataFrame, vendor_rows: pl.Series, defects: pl.Series | None = None
    ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """(clean rows, quarantined rows or None) of one batch; quarantined rows carry vendor_row and reason."""
        self.summary.rows += frame.height
        names = [rule.name for rule in self.rules]
        exprs = [rule.valid.fill_null(True).alias(rule.name) for rule in self.rules if isinstance(rule.valid, pl.Expr)]
        checks = frame.select(exprs)
        for rule in self.rules:
            if not isinstance(rule.valid, pl.Expr):
                checks = checks.with_columns(pl.Series(rule.name, rule.valid(frame)))
        checks = checks.select(names)
        passed = checks.select(pl.all_horizontal(pl.all())).to_series()
        if passed.all():
            return frame, None
        failed = ~passed
        failing = checks.filter(failed)
        for name in names:
            count = failing.height - int(failing[name].sum())
            if count:
                self.summary.failures[name] = self.summary.failures.get(name, 0) + count
        reasons = []
        for rule in self.rules:
            reason = pl.lit(rule.reason)
            if rule.name == COMPLETE_VALUES and defects is not None:
                reason = pl.col("_defect").fill_null(reason)
            reasons.append(pl.when(~pl.col(rule.name)).then(reason))
        extra = {"_defect": defects.filter(failed)} if defects is not None else {}
        why = failing.with_columns(**extra).select(
            rules=pl.concat_list([pl.when(~pl.col(n)).then(pl.lit(n)) for n in names]).list.drop_nulls(),
            reason=pl.concat_list(reasons).list.drop_nulls().list.join("; "),
        )
        bad = pl.concat(
            [frame.filter(failed).with_columns(vendor_row=vendor_rows.filter(failed)), why], how="horizontal"
        )
        bad = bad.select("vendor_row", *frame.columns, "reason", "rules")
        self._remember(bad)
        self.summary.quarantined += bad.height
        return frame.filter(passed), bad.drop("rules")

    def _remember(self, bad: pl.DataFrame) -> None:
        """Keep a few sample rows per rule and a few of the dates the failing rows are stamped with."""
        for name in self.summary.failures:
            have = self.summary.samples.get(name)
            if have is not None and have.height >= SAMPLE_ROWS:
                continue
            more = bad.filter(pl.col("rules").list.contains(name)).head(SAMPLE_ROWS).drop("rules")
            self.summary.samples[name] = more if have is None else pl.concat([have, more]).head(SAMPLE_ROWS)
        if len(self.summary.failing_dates) < MAX_FAILING_DATES:
            stamps = bad[self.dataset.time_column].drop_nulls().dt.date().unique().sort().head(MAX_FAILING_DATES)
            self.summary.failing_dates.update(stamps.to_list())
