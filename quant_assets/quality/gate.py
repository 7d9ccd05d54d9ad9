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
        self,
        frame: pl.DataFrame,
        vendor_rows: pl.Series,
        defects: pl.Series | None = None,
        max_share: float = float("inf"),
    ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """(clean rows, quarantined rows or None) of one batch; quarantined rows carry vendor_row and reason.

        Once the session's failing share exceeds `max_share` (counting this batch), the failing rows are counted and
        sampled but not returned (None): a session about to be rejected does not pay for their copy."""
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
        counts = {name: failing.height - int(failing[name].sum()) for name in names}
        for name, count in counts.items():
            if count:
                self.summary.failures[name] = self.summary.failures.get(name, 0) + count
        self.summary.quarantined += failing.height
        combos = self._combinations(failing)
        self._remember(frame, vendor_rows, defects, failed, failing, combos, counts)
        if self.summary.share > max_share:  # counted and sampled: no copy of the failing rows, no reason per row
            return frame.filter(passed), None
        # The reason as a categorical: a whole file failing one rule repeats one text millions of times.
        reasons = self._reasons(combos, defects.filter(failed) if defects is not None else None)
        bad = frame.filter(failed).with_columns(vendor_row=vendor_rows.filter(failed), reason=reasons)
        return frame.filter(passed), bad.select("vendor_row", *frame.columns, "reason")

    def _combinations(self, failing: pl.DataFrame) -> pl.Series:
        """Per failing row, the set of rules it fails as a bit mask (bit i: rule i)."""
        bits = [(~pl.col(r.name)).cast(pl.UInt32) * (1 << i) for i, r in enumerate(self.rules)]
        return failing.select(pl.sum_horizontal(bits)).to_series()

    def _reasons(self, combos: pl.Series, defects: pl.Series | None) -> pl.Series:
        """Per failing row, the reasons of the rules it fails, in rule order, joined by "; " (categorical). Rows
        mostly fail the same few combinations of rules, so each combination's text is built once and looked up;
        the reader's own description replaces `complete_values`' generic reason where there is one."""
        seen = combos.unique().to_list()
        texts = ["; ".join(r.reason for i, r in enumerate(self.rules) if combo >> i & 1) for combo in seen]
        reasons = combos.replace_strict(seen, texts, return_dtype=pl.String).alias("reason")
        if defects is not None and COMPLETE_VALUES in self.summary.reasons:
            generic = self.summary.reasons[COMPLETE_VALUES]
            with_defect = pl.DataFrame({"reason": reasons, "_defect": defects}).select(
                pl.when(pl.col("_defect").is_not_null())
                .then(pl.col("reason").str.replace(generic, pl.col("_defect"), literal=True))
                .otherwise(pl.col("reason"))
            )
            reasons = with_defect.to_series().alias("reason")
        return reasons.cast(pl.Categorical())

    def _remember(
        self,
        frame: pl.DataFrame,
        vendor_rows: pl.Series,
        defects: pl.Series | None,
        failed: pl.Series,
        failing: pl.DataFrame,
        combos: pl.Series,
        counts: dict,
    ) -> None:
        """Keep a few sample rows per rule and a few of the dates the failing rows are stamped with. Only the
        sampled rows are copied, so a batch whose every row fails costs no more than a clean one."""
        positions = failed.arg_true()  # the failing rows' positions in the batch
        for name, count in counts.items():
            have = self.summary.samples.get(name)
            if not count or (have is not None and have.height >= SAMPLE_ROWS):
                continue
            index = (~failing[name]).arg_true().head(SAMPLE_ROWS)
            at = positions.gather(index)
            reasons = self._reasons(combos.gather(index), defects.gather(at) if defects is not None else None)
            more = frame[at].with_columns(vendor_row=vendor_rows.gather(at), reason=reasons.cast(pl.String))
            more = more.select("vendor_row", *frame.columns, "reason")
            self.summary.samples[name] = more if have is None else pl.concat([have, more]).head(SAMPLE_ROWS)
        if len(self.summary.failing_dates) < MAX_FAILING_DATES:
            stamps = frame[self.dataset.time_column].filter(failed).drop_nulls().dt.date().unique().sort()
            self.summary.failing_dates.update(stamps.head(MAX_FAILING_DATES).to_list())
