"""The `fundamentals` and `earnings` datasets, point-in-time: what a backtest on a day may know is what had been
fetched by that day, so each dataset keeps versions, never overwrites them.

    <lake>/fundamentals/asof=YYYY-MM-DD/part-0.parquet
    <lake>/fundamentals/_fetched.parquet
    <lake>/earnings/asof=YYYY-MM-DD/part-0.parquet
    <lake>/earnings/_fetched.parquet

A version is all of one symbol's rows as fetched on one day. The `asof=` folder is that day (the New York date of
the run's `now`): the day a backtest asks about, and the only key a reader filters on. It is named `asof`, not
`known`, because readers ask "as of day D" (`fundamentals_as_of`); the exact instant each row became known is its
`known_from` column (UTC). A day's file holds only the symbols whose answer differs from their latest version, so a
symbol that did not change costs nothing on disk; reading as of day D takes, for each symbol, its latest version
with `asof` <= D (rows of that version only: a metric the vendor stopped sending is not carried forward). A second
version fetched the same day (`force`) replaces the first in that day's file.

The ledger (`_fetched.parquet`: symbol, asof, fetched_at, provider, changed) records each symbol answered per day:
a symbol already answered on the run's day is not asked again unless `force`. A symbol whose request failed keeps
its ledger entry and lands nothing, so the next run asks it again. Version files are written before the ledger
(atomically, temporary file then rename, under the ledger's lock): a run that stops between the two asks again and
finds its answer equal to the version it wrote. An answer with no usable row (none, or all set aside) is `missing`:
the ledger moves, and the symbol's latest version stays what a reader sees.

Vendor numbers that are not finite (or not numbers) are set aside with the reason, never stored. Pure: no Dagster.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from quant_assets.lake import PART_NAME, provenance_metadata, replace_parquet
from quant_assets.locks import locked
from quant_assets.providers.errors import ProviderError
from quant_assets.providers.symbols import Unsupported
from quant_assets.service.summary import Collected, concurrently

FUNDAMENTALS = "fundamentals"
EARNINGS = "earnings"
LEDGER = "_fetched.parquet"
PARTITION_KEY = "asof"
NEW_YORK = ZoneInfo("America/New_York")
DEFAULT_HORIZON_DAYS = 90

FUNDAMENTALS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "kind": pl.String(),  # "metric" or "series"
    "name": pl.String(),
    "frequency": pl.String(),  # null for a metric
    "period": pl.Date(),  # null for a metric
    "value": pl.Float64(),
    "known_from": pl.Datetime("us", "UTC"),
    "provider": pl.String(),
}
EARNINGS_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "period": pl.Date(),
    "year": pl.Int64(),
    "quarter": pl.Int64(),
    "report_date": pl.Date(),
    "hour": pl.String(),
    "eps_actual": pl.Float64(),
    "eps_estimate": pl.Float64(),
    "surprise": pl.Float64(),
    "surprise_percent": pl.Float64(),
    "revenue_actual": pl.Float64(),
    "revenue_estimate": pl.Float64(),
    "known_from": pl.Datetime("us", "UTC"),
    "provider": pl.String(),
}
LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String(),
    "asof": pl.Date(),
    "fetched_at": pl.Datetime("us", "UTC"),
    "provider": pl.String(),
    "changed": pl.Boolean(),
}
ACTUALS = ("eps_actual", "surprise", "surprise_percent", "revenue_actual")  # unknown before the report


@dataclass(frozen=True)
class Versioned:
    """A point-in-time dataset: its folder, columns, and the columns that make a version (what is compared)."""

    name: str
    schema: dict[str, pl.DataType]
    order: tuple[str, ...]

    @property
    def content(self) -> list[str]:
        return [c for c in self.schema if c not in ("symbol", "known_from", "provider")]


FUNDAMENTALS_SET = Versioned(FUNDAMENTALS, FUNDAMENTALS_SCHEMA, ("symbol", "kind", "name", "frequency", "period"))
EARNINGS_SET = Versioned(EARNINGS, EARNINGS_SCHEMA, ("symbol", "year", "quarter", "period", "report_date"))


def asof_day(now: dt.datetime) -> dt.date:
    """The as-of day of a run at `now` (timezone-aware): its date in New York."""
    if now.tzinfo is None:
        raise ValueError(f"now={now.isoformat()} has no time zone: give an aware datetime (UTC)")
    return now.astimezone(NEW_YORK).date()


def collect_fundamentals(
    provider: Any,
    symbols: Sequence[str],
    lake_root: Path,
    now: dt.datetime,
    workers: int = 4,
    force: bool = False,
) -> Collected:
    """Fetch each symbol's basic financials from `provider` (a `Finnhub`: `basic_financials`) and land, as of
    `now`'s New York day, a new version of each symbol whose rows changed: its metrics (`kind` "metric") and
    series points (`kind` "series", with `frequency` and `period`). A symbol answered earlier that day is not asked
    again unless `force`; a failed one is named in `failed` and asked again next run; one the provider cannot
    serve is skipped with a note."""
    day, known = asof_day(now), now.astimezone(dt.UTC)

    def fetch(symbol: str) -> pl.DataFrame:
        metrics, series = provider.basic_financials(symbol)
        rows = pl.concat(
            [
                metrics.select(
                    kind=pl.lit("metric"), name="name", frequency=pl.lit(None, pl.String),
                    period=pl.lit(None, pl.Date), value="value",
                ),
                series.select(kind=pl.lit("series"), name="name", frequency="frequency", period="period", value="value"),
            ],
            how="vertical_relaxed",
        )  # fmt: skip
        return _stamped(rows, symbol, known, provider.name)

    return _collect(FUNDAMENTALS_SET, provider, symbols, Path(lake_root), day, known, workers, force, fetch)


def collect_earnings(
    provider: Any,
    symbols: Sequence[str],
    lake_root: Path,
    now: dt.datetime,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    workers: int = 4,
    force: bool = False,
) -> Collected:
    """Fetch each symbol's reported quarters (`provider.earnings`, one request a symbol) and the earnings calendar
    of `now`'s day +- `horizon_days` (one `earnings_calendar` request a run, for every company, filtered to the
    symbols asked), and land a new version of each symbol whose rows changed, as `collect_fundamentals` does.

    Rows are joined on (symbol, year, quarter): the calendar gives `report_date`, `hour` and revenue, the reported
    quarters `period` and the surprise; EPS comes from the reported quarters, else the calendar. A quarter only in
    the calendar is an upcoming (or recent) report; a report dated after the as-of day has null actuals (a vendor's
    actual before the report is set aside). When the calendar request fails, every symbol fails with its reason and
    nothing else is sent."""
    day, known = asof_day(now), now.astimezone(dt.UTC)
    horizon = dt.timedelta(days=horizon_days)
    calendar: dict[str, pl.DataFrame] = {}

    def before(asked: list[str]) -> None:
        frame = provider.earnings_calendar(day - horizon, day + horizon)
        wanted = frame.filter(pl.col("symbol").is_in(asked))
        calendar.update({key[0]: part for key, part in wanted.partition_by("symbol", as_dict=True).items()})

    def fetch(symbol: str) -> pl.DataFrame:
        surprises = provider.earnings(symbol)
        rows = _earnings_rows(symbol, surprises, calendar.get(symbol), day, provider.set_aside)
        return _stamped(rows, symbol, known, provider.name)

    return _collect(EARNINGS_SET, provider, symbols, Path(lake_root), day, known, workers, force, fetch, before)


def fundamentals_as_of(lake_root: Path, day: dt.date, symbols: Sequence[str] | None = None) -> pl.DataFrame:
    """The fundamentals known on `day`: for each symbol (of `symbols`, or all) the rows of its latest version with
    an as-of day <= `day`; a symbol first fetched after `day` is absent."""
    return _as_of(FUNDAMENTALS_SET, Path(lake_root), day, symbols)


def earnings_as_of(lake_root: Path, day: dt.date, symbols: Sequence[str] | None = None) -> pl.DataFrame:
    """The earnings rows known on `day`, as `fundamentals_as_of` reads them."""
    return _as_of(EARNINGS_SET, Path(lake_root), day, symbols)


def version_path(lake_root: Path, dataset: str, day: dt.date) -> Path:
    """The file of `dataset`'s versions fetched on `day`."""
    return Path(lake_root) / dataset / f"{PARTITION_KEY}={day.isoformat()}" / PART_NAME


def version_days(lake_root: Path, dataset: str) -> list[dt.date]:
    """The days `dataset` has a version file for, in order."""
    folder = Path(lake_root) / dataset
    prefix = f"{PARTITION_KEY}="
    return sorted(dt.date.fromisoformat(p.parent.name[len(prefix) :]) for p in folder.glob(f"{prefix}*/{PART_NAME}"))


def read_ledger(lake_root: Path, dataset: str) -> pl.DataFrame:
    """What was asked when: one row per symbol and as-of day it was answered."""
    path = Path(lake_root) / dataset / LEDGER
    return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=LEDGER_SCHEMA)


def _stamped(rows: pl.DataFrame, symbol: str, known: dt.datetime, provider: str) -> pl.DataFrame:
    return rows.with_columns(
        symbol=pl.lit(symbol, pl.String), known_from=pl.lit(known, pl.Datetime("us", "UTC")), provider=pl.lit(provider)
    )


def _earnings_rows(
    symbol: str, surprises: pl.DataFrame, calendar: pl.DataFrame | None, day: dt.date, aside: list[str]
) -> pl.DataFrame:
    keys = ["year", "quarter"]
    reported = surprises.select(
        *keys, "period", pl.col("actual").alias("reported_actual"), pl.col("estimate").alias("reported_estimate"),
        "surprise", "surprise_percent",
    )  # fmt: skip
    if calendar is None:
        calendar = pl.DataFrame(schema={"year": pl.Int64, "quarter": pl.Int64, "date": pl.Date, "hour": pl.String,
                                        "eps_actual": pl.Float64, "eps_estimate": pl.Float64,
                                        "revenue_actual": pl.Float64, "revenue_estimate": pl.Float64})  # fmt: skip
    dated = calendar.select(
        *keys, pl.col("date").alias("report_date"), "hour", "eps_actual", "eps_estimate", "revenue_actual",
        "revenue_estimate",
    )  # fmt: skip
    for name, frame in (("reported quarters", reported), ("calendar", dated)):
        if (repeated := frame.height - frame.unique(keys).height) > 0:
            aside.append(f"{symbol} {name}: {repeated} repeated (year, quarter) rows; the first of each kept")
    reported = reported.unique(keys, keep="first", maintain_order=True)
    dated = dated.unique(keys, keep="first", maintain_order=True)
    rows = reported.join(dated, on=keys, how="full", coalesce=True).with_columns(
        eps_actual=pl.coalesce("reported_actual", "eps_actual"),
        eps_estimate=pl.coalesce("reported_estimate", "eps_estimate"),
    )
    early = rows.filter(pl.col("report_date") > day, pl.any_horizontal(pl.col(list(ACTUALS)).is_not_null()))
    for year, quarter, report in early.select(*keys, "report_date").iter_rows():
        aside.append(
            f"{symbol} {year} Q{quarter}: actuals given before its report on {report} (as of {day}); not stored"
        )
    upcoming = pl.col("report_date") > day
    rows = rows.with_columns([pl.when(upcoming).then(None).otherwise(pl.col(c)).alias(c) for c in ACTUALS])
    return rows.select(*keys, "period", "report_date", "hour", "eps_actual", "eps_estimate", "surprise",
                       "surprise_percent", "revenue_actual", "revenue_estimate")  # fmt: skip


def _finite(spec: Versioned, symbol: str, rows: pl.DataFrame, aside: list[str]) -> pl.DataFrame:
    """`rows` without a row holding a float that is not finite (the provider sets these aside already; this keeps
    the promise whatever a provider returns)."""
    floats = [c for c, t in spec.schema.items() if t == pl.Float64() and c in rows.columns]
    bad = pl.any_horizontal([pl.col(c).is_not_null() & ~pl.col(c).is_finite() for c in floats]) if floats else None
    if bad is None or not rows.filter(bad).height:
        return rows
    for row in rows.filter(bad).iter_rows(named=True):
        shown = {c: row[c] for c in floats if row[c] is not None and not math.isfinite(row[c])}
        aside.append(f"{spec.name} {symbol}: {shown} is not a finite number; the row is not stored")
    return rows.filter(~bad)


def _collect(
    spec: Versioned,
    provider: Any,
    symbols: Sequence[str],
    root: Path,
    day: dt.date,
    known: dt.datetime,
    workers: int,
    force: bool,
    fetch: Callable[[str], pl.DataFrame],
    before: Callable[[list[str]], None] | None = None,
) -> Collected:
    collected = Collected(spec.name)
    name = provider.name
    wanted = list(dict.fromkeys(symbols))
    held = set() if force else set(read_ledger(root, spec.name).filter(pl.col("asof") == day)["symbol"])
    asked = [s for s in wanted if s not in held]
    collected.skipped = len(wanted) - len(asked)
    if not asked:
        return collected
    aside_from = len(provider.set_aside)
    if before is not None:
        try:
            before(asked)
        except ProviderError as error:
            collected.failed = [f"{s}: {name}: {type(error).__name__}: {error}" for s in asked]
            collected.set_aside = provider.set_aside[aside_from:]
            return collected

    def work(symbol: str) -> tuple[str, pl.DataFrame | str, bool]:
        try:
            return symbol, fetch(symbol), True
        except Unsupported as error:
            return symbol, f"{symbol}: not asked from {name}: {error}", False
        except ProviderError as error:
            return symbol, f"{symbol}: {name}: {type(error).__name__}: {error}", True

    answers: dict[str, pl.DataFrame] = {}
    for symbol, outcome, sent in concurrently(work, asked, workers):
        collected.asked += sent
        if isinstance(outcome, str):
            (collected.failed if sent else collected.notes).append(outcome)
            continue
        collected.serve(name)
        answers[symbol] = outcome.select([pl.col(c).cast(t) for c, t in spec.schema.items()])
    aside = provider.set_aside[aside_from:]
    answers = {s: _finite(spec, s, rows, aside) for s, rows in answers.items()}
    collected.missing = [s for s, rows in answers.items() if not rows.height]
    if answers:
        _publish(spec, root, day, known, name, answers, collected)
    collected.set_aside = aside
    return collected


def _publish(
    spec: Versioned,
    root: Path,
    day: dt.date,
    known: dt.datetime,
    provider: str,
    answers: dict[str, pl.DataFrame],
    collected: Collected,
) -> None:
    """Write the changed versions into the day's file, then move the ledger of every answered symbol."""
    ledger = root / spec.name / LEDGER
    with locked(ledger):
        latest = _as_of(spec, root, day, list(answers))
        previous = {key[0]: part for key, part in latest.partition_by("symbol", as_dict=True).items()}
        changed = {s: rows for s, rows in answers.items() if rows.height and not _same(spec, previous.get(s), rows)}
        if changed:
            path = version_path(root, spec.name, day)
            new = pl.concat(list(changed.values()))
            if path.exists():
                kept = pl.read_parquet(path).filter(~pl.col("symbol").is_in(list(changed)))
                new = pl.concat([kept, new])
            new = new.sort(list(spec.order), nulls_last=True)
            metadata = provenance_metadata(
                spec.name,
                day,
                {"provider": provider, "rows": str(new.height), "tickers": str(new["symbol"].n_unique())},
            )
            replace_parquet(new, path, metadata)
            collected.rows = sum(rows.height for rows in changed.values())
            collected.written.append(str(path))
        entries = pl.DataFrame(
            [(s, day, known, provider, s in changed) for s in sorted(answers)], schema=LEDGER_SCHEMA, orient="row"
        )
        kept = read_ledger(root, spec.name).join(entries.select("symbol", "asof"), on=["symbol", "asof"], how="anti")
        replace_parquet(pl.concat([kept, entries]).sort("symbol", "asof"), ledger)
    unchanged = len(answers) - len(changed) - len(collected.missing)
    collected.notes.append(
        f"as of {day}: {len(changed)} changed, {unchanged} unchanged, {len(collected.missing)} without rows"
    )


def _same(spec: Versioned, old: pl.DataFrame | None, new: pl.DataFrame) -> bool:
    if old is None or old.height != new.height:
        return False
    content = spec.content
    return old.select(content).sort(content, nulls_last=True).equals(new.select(content).sort(content, nulls_last=True))


def _as_of(spec: Versioned, root: Path, day: dt.date, symbols: Sequence[str] | None) -> pl.DataFrame:
    days = [d for d in version_days(root, spec.name) if d <= day]
    if not days:
        return pl.DataFrame(schema=spec.schema)
    frames = [
        pl.scan_parquet(version_path(root, spec.name, d)).with_columns(**{PARTITION_KEY: pl.lit(d, pl.Date)})
        for d in days
    ]
    rows = pl.concat(frames, how="vertical_relaxed")
    if symbols is not None:
        rows = rows.filter(pl.col("symbol").is_in(list(symbols)))
    latest = pl.col(PARTITION_KEY) == pl.col(PARTITION_KEY).max().over("symbol")
    return rows.filter(latest).select(list(spec.schema)).sort(list(spec.order), nulls_last=True).collect()
