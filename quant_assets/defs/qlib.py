"""The Qlib layer's Dagster wiring. The work is in `qlib/`.

- `qlib_day`, partitioned by session: the enriched day rows (adjusted bars, factors, VWAP, features) written into
  `data/qlib/day`, each session into its fixed calendar slot; then the publication gate (a blocking check) over
  what the run wrote. Only a run whose gate passed moves the published mark (`.quant_assets/published.json`).
- `qlib_1min`, partitioned by session: the lake's regular-hours minute bars, adjusted with the adjustment factors,
  into `data/qlib/1min`.
- `qlib_day_restated`: when the enriched layer restates tickers (their factors changed), rewrites just those
  symbols' day bins from the restated rows, and re-adjusts just the minute bins of the symbols whose factors
  changed.
"""

import datetime as dt
import json
import time
from collections.abc import Collection, Sequence

import dagster as dg
import polars as pl

from quant_assets.datasets import DATASETS, Dataset
from quant_assets.defs.chain import BACKFILL_POLICY, FOLLOW, ON_CHANGE, range_results
from quant_assets.defs.features import ENRICHED_DAILY, RESTATED_DAILY
from quant_assets.defs.ingest import previous_session_schedule
from quant_assets.defs.partitions import session_partitions
from quant_assets.defs.resources import DataZones
from quant_assets.defs.universes import RESOURCE_KEY as UNIVERSES
from quant_assets.defs.universes import write_qlib_universes
from quant_assets.errors import SessionError
from quant_assets.features.enrich import CHUNK
from quant_assets.features.restate import read_enriched_daily, restated_dir, restated_tickers
from quant_assets.lake import (
    partition_path,
    read_partitions,
    replace_bytes,
    scan,
    sessions_in,
    unreadable,
)
from quant_assets.names import shown, ticker_problem
from quant_assets.qlib.directory import QlibDirectory, readjust
from quant_assets.qlib.fields import DAY_FIELDS, ENRICHED_COLUMNS, MINUTE_FIELDS, day_fields, minute_fields
from quant_assets.qlib.health import SET_ASIDE_SCHEMA, TICKER_REASON, Report, screen, verify
from quant_assets.qlib.symbols import MAX_TICKER, qlib_symbol
from quant_assets.reference.factors import TABLE as FACTORS
from quant_assets.reference.factors import manifest_dir, read_factors
from quant_assets.reference.versions import latest_version, read_version
from quant_assets.sessions import (
    next_session,
    parse_session,
    previous_session,
    regular_hours,
    sessions,
)
from quant_assets.settings import partitions_start
from quant_assets.tables import markdown_table

DAILY, MINUTE = DATASETS["stocks_daily"], DATASETS["stocks_minute"]
QLIB_DAY, QLIB_MINUTE, QLIB_RESTATED = "qlib_day", "qlib_1min", "qlib_day_restated"
GATE = "publishable"
GATE_DESCRIPTION = (
    "The publication gate: the calendar is the fixed exchange calendar (strictly increasing, no duplicates), every "
    "bin's length matches its symbol's span in instruments/all.txt, the price, volume and factor bins exist, factor "
    "is present wherever close is, and no adjusted price moves by more than 50% from one slot to the next (Qlib's "
    "check_data_health.py). Volume steps over 300% are warnings. Checked over what the run wrote."
)


def directory(zones: DataZones, freq: str, start: dt.date | None = None) -> QlibDirectory:
    """The directory of `freq` under data/qlib. A new directory's calendar starts at `start` (the partitions'
    first session, so that every partition has its slot); an existing one keeps its own start."""
    start = start or dt.date.fromisoformat(partitions_start())
    return QlibDirectory(zones.qlib_root / freq, DAILY.calendar, start, freq)


def _start(context: dg.AssetExecutionContext) -> dt.date:
    return context.assets_def.partitions_def.start.date()


def consecutive_runs(held: Sequence[dt.date], wanted: Sequence[dt.date]) -> list[list[dt.date]]:
    """`wanted` sessions that `held` has, in runs of consecutive calendar sessions of at most `CHUNK`."""
    runs: list[list[dt.date]] = []
    wanted = sorted(wanted)
    if not wanted:
        return runs
    calendar = sessions(DAILY.calendar, wanted[0], wanted[-1])
    position = {s: i for i, s in enumerate(calendar)}
    held = set(held)
    for session in wanted:
        if session not in held:
            continue
        if runs and position[session] == position[runs[-1][-1]] + 1 and len(runs[-1]) < CHUNK:
            runs[-1].append(session)
        else:
            runs.append([session])
    return runs


LOGGED = 20  # set-aside lines logged per run; the metadata counts them all


class SetAside:
    """The rows a run did not write (`health.screen`), per ticker and reason: a ticker that is not a vendor symbol
    is counted and logged; a non-finite price, volume or factor is also a gate error."""

    def __init__(self, target: QlibDirectory):
        self.target = target
        self.tables: list[pl.DataFrame] = []

    def screen(self, frame: pl.DataFrame) -> pl.DataFrame:
        kept, aside = screen(frame)
        if aside.height:
            self.tables.append(aside)
        return kept

    def table(self) -> pl.DataFrame:
        return pl.concat(self.tables) if self.tables else pl.DataFrame(schema=SET_ASIDE_SCHEMA)

    def defective(self) -> list[str]:
        """The tickers with a non-finite price, volume or factor set aside (not merely an unsafe ticker)."""
        table = self.table()
        return sorted(table.filter(pl.col("reason") != TICKER_REASON)["ticker"].unique().to_list())

    def report(self, context, asset: str, report: Report | None = None) -> dict[str, dg.MetadataValue]:
        """Log what was set aside (the first `LOGGED` lines, then a count), add the value defects to the gate's
        errors (`report`), and return the metadata that says what was set aside."""
        table = self.table()
        for number, (ticker, rows, first, reason) in enumerate(table.iter_rows()):
            message = f"{shown(ticker)}: {rows} rows from {self.target.slots.labels([first])[0]} not written: {reason}"
            if report is not None and reason != TICKER_REASON:
                report.errors.append(message)
            if number < LOGGED:
                context.log.warning(f"{asset}: {message}")
        if table.height > LOGGED:
            context.log.warning(f"{asset}: {table.height - LOGGED} more tickers set aside (see the metadata)")
        return {
            "set_aside_rows": dg.MetadataValue.int(int(table["rows"].sum())),
            "set_aside_tickers": dg.MetadataValue.int(table["ticker"].n_unique()),
            "set_aside": dg.MetadataValue.md(markdown_table(table.head(30))),
        }


def _gate(
    context, asset: str, report: Report, target: QlibDirectory, written: list[str], extra: dict | None = None
) -> dg.AssetCheckResult:
    if report.passed:
        published = {
            "calendar_slots": target.calendar_length(),
            "sessions": written,
            "checked_symbols": report.symbols,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        replace_bytes(target.state_dir() / "published.json", json.dumps(published, indent=1).encode())
    else:
        context.log.error(f"{asset}: the publication gate failed: " + "; ".join(report.errors[:5]))
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=GATE,
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "errors": dg.MetadataValue.int(len(report.errors)),
            "warnings": dg.MetadataValue.int(len(report.warnings)),
            "checked_symbols": dg.MetadataValue.int(report.symbols),
            "checked_bins": dg.MetadataValue.int(report.bins),
            "first_errors": dg.MetadataValue.json(report.errors[:20]),
            "first_warnings": dg.MetadataValue.json(report.warnings[:20]),
            **(extra or {}),
        },
    )


def build_qlib_day(features: Sequence[str], start: str | None = None, universes: bool = False) -> dg.AssetsDefinition:
    """`qlib_day`; with `universes`, it also writes instruments/<name>.txt of each named universe (resource
    `universes`)."""
    fields = [*DAY_FIELDS, *(f.lower() for f in features)]

    @dg.asset(
        name=QLIB_DAY,
        group_name="qlib",
        partitions_def=session_partitions(DAILY.calendar, start),
        backfill_policy=BACKFILL_POLICY,
        automation_condition=FOLLOW,
        deps=[ENRICHED_DAILY],
        kinds={"qlib", "numpy"},
        check_specs=[dg.AssetCheckSpec(GATE, asset=QLIB_DAY, blocking=True, description=GATE_DESCRIPTION)],
        required_resource_keys={"zones", UNIVERSES} if universes else {"zones"},
        description="A Microsoft Qlib provider directory at data/qlib/day (`qlib.init(provider_uri='data/qlib/day', "
        f"region='us')`): calendars/day.txt, instruments/all.txt and features/<symbol>/<field>.day.bin for "
        f"{', '.join(fields)} (see qlib/fields.py for each convention). Each session has a fixed slot from the "
        "exchange calendar, so sessions can be written in any order and in parallel runs; a run writes only its "
        "sessions' slots.",
    )
    def qlib_day(context: dg.AssetExecutionContext):
        zones: DataZones = context.resources.zones
        target = directory(zones, "day", _start(context))
        columns = [*ENRICHED_COLUMNS, *features]  # only what the fields need: the enriched rows have ~30 columns
        wanted = sorted(parse_session(k) for k in context.partition_keys)
        held = sessions_in(zones.enriched_root, DAILY.name)
        started, built, symbols = time.perf_counter(), {}, set()
        aside = SetAside(target)
        lo = hi = None
        broken: dict[dt.date, SessionError] = {}  # enriched partitions that cannot be read: their sessions fail
        queue = consecutive_runs(held, wanted)
        while queue:
            run = queue.pop(0)
            before = previous_session(DAILY.calendar, run[0])  # for the first session's change
            days = ([before] if before and before in held and before not in broken else []) + run
            try:
                rows = read_enriched_daily(zones.enriched_root, DAILY.name, days).select(columns).collect()
            except (OSError, pl.exceptions.PolarsError):
                # Which file: each read on its own. The run is then written again without it.
                _, unreadable = read_partitions(
                    zones.enriched_root, DAILY.name, days, [c for c in columns if c != "date"]
                )
                if not unreadable:
                    raise  # not a session's file (a restatement's): the whole run fails, with polars' message
                broken |= unreadable
                queue[:0] = consecutive_runs([s for s in run if s not in broken], run)
                continue
            frame = aside.screen(day_fields(rows, run, features))
            target.write_sessions(frame, run[0], run[-1], fields)
            symbols.update(frame["ticker"].unique().to_list())
            _next_change(zones, target, run[-1], aside, broken)
            run_lo, run_hi = target.session_range(run[0], run[-1])
            lo, hi = min(lo if lo is not None else run_lo, run_lo), max(hi or 0, run_hi)
            counts = dict(frame.group_by("date").len().iter_rows())
            for session in run:
                built[session.isoformat()] = {"dagster/row_count": dg.MetadataValue.int(counts.get(session, 0))}
        failed = [broken[s] for s in wanted if s in broken]
        missing = [s for s in wanted if s.isoformat() not in built and s not in broken]
        for error in failed:
            context.log.error(f"{QLIB_DAY}: {error}")
        context.log.info(
            f"{QLIB_DAY}: {len(built)} sessions written, {len(missing)} without enriched rows, {len(failed)} "
            f"unreadable, in {time.perf_counter() - started:.1f} s"
        )
        report = verify(target, sorted({qlib_symbol(t) for t in symbols}), lo, hi)
        named = write_qlib_universes(context, context.resources.universes, target) if universes else {}
        for metadata in built.values():
            metadata["path"] = dg.MetadataValue.path(str(target.root))
            metadata.update(named)
        set_aside = aside.report(context, QLIB_DAY, report)  # before the gate: value defects are its errors
        gate = _gate(context, QLIB_DAY, report, target, sorted(built), set_aside)
        yield from range_results(
            context,
            QLIB_DAY,
            built,
            missing,
            f"have no {ENRICHED_DAILY} partition, so nothing to write",
            [gate],
            failed=failed,
        )

    return qlib_day


def _next_change(
    zones: DataZones, target: QlibDirectory, last: dt.date, aside: SetAside, broken: Collection[dt.date]
) -> None:
    """`change` of the session after `last` compares with `last`'s close: rewrite it if the directory holds it."""
    following = next_session(DAILY.calendar, last)
    if following is None or following in broken:
        return
    if target.session_range(following, following)[0] >= target.calendar_length():
        return
    if not partition_path(zones.enriched_root, DAILY.name, following).exists():
        return
    try:
        rows = read_enriched_daily(zones.enriched_root, DAILY.name, [last, following]).select(ENRICHED_COLUMNS)
        rows = rows.collect()
    except (OSError, pl.exceptions.PolarsError):  # the next session's file is unreadable: its own run reports it
        return
    frame = aside.screen(day_fields(rows, [following]).select("ticker", "slot", "change"))
    target.write_sessions(frame, following, following, ["change"], extend=False)


def build_qlib_minute(start: str | None = None) -> dg.AssetsDefinition:
    @dg.asset(
        name=QLIB_MINUTE,
        group_name="qlib",
        partitions_def=session_partitions(MINUTE.calendar, start),
        backfill_policy=BACKFILL_POLICY,
        automation_condition=FOLLOW,
        deps=[f"lake_{MINUTE.name}", FACTORS],
        kinds={"qlib", "numpy"},
        check_specs=[dg.AssetCheckSpec(GATE, asset=QLIB_MINUTE, blocking=True, description=GATE_DESCRIPTION)],
        description="A Qlib provider directory of regular-hours minute bars at data/qlib/1min (`provider_uri="
        "{'1min': 'data/qlib/1min'}`, `freq='1min'`): calendars/1min.txt with bar starts in New York time, "
        f"features/<symbol>/<field>.1min.bin for {', '.join(MINUTE_FIELDS)}, adjusted with the newest "
        "adjustment_factors. Each minute has a fixed slot, so sessions can be written in any order.",
    )
    def qlib_minute(context: dg.AssetExecutionContext, zones: DataZones):
        target = directory(zones, "1min", _start(context))
        wanted = sorted(parse_session(k) for k in context.partition_keys)
        factors = read_factors(zones.reference_root)
        started, built, missing, failed, symbols = time.perf_counter(), {}, [], [], set()
        aside = SetAside(target)
        lo = hi = None
        for session in wanted:
            path = partition_path(zones.lake_root, MINUTE.name, session)
            if not path.exists():
                missing.append(session)
                continue
            open_, close = regular_hours(session)
            try:  # a partition that cannot be read fails this session alone, naming the file
                minutes = scan(zones.lake_root, MINUTE.name, [session])
                frame = aside.screen(minute_fields(minutes, session, factors, open_, close))
            except (OSError, pl.exceptions.PolarsError) as error:
                failed.append(unreadable(MINUTE.name, session, path, error))
                context.log.error(f"{QLIB_MINUTE}: {failed[-1]}")
                continue
            target.write_sessions(frame, session, session, MINUTE_FIELDS)
            symbols.update(frame["ticker"].unique().to_list())
            session_lo, session_hi = target.session_range(session, session)
            lo, hi = min(lo if lo is not None else session_lo, session_lo), max(hi or 0, session_hi)
            built[session.isoformat()] = {
                "dagster/row_count": dg.MetadataValue.int(frame.height),
                "symbols": dg.MetadataValue.int(frame["ticker"].n_unique()),
                "path": dg.MetadataValue.path(str(target.root)),
            }
        context.log.info(f"{QLIB_MINUTE}: {len(built)} sessions written in {time.perf_counter() - started:.1f} s")
        report = verify(target, sorted({qlib_symbol(t) for t in symbols}), lo, hi)
        set_aside = aside.report(context, QLIB_MINUTE, report)  # before the gate: value defects are its errors
        gate = _gate(context, QLIB_MINUTE, report, target, sorted(built), set_aside)
        yield from range_results(
            context, QLIB_MINUTE, built, missing, f"have no lake_{MINUTE.name} partition", [gate], failed=failed
        )

    return qlib_minute


RESTATED_STATE = "restated.json"


def build_qlib_restated(features: Sequence[str]) -> dg.AssetsDefinition:
    fields = [*DAY_FIELDS, *(f.lower() for f in features)]

    @dg.asset(
        name=QLIB_RESTATED,
        group_name="qlib",
        deps=[RESTATED_DAILY, QLIB_DAY],
        kinds={"qlib", "numpy"},
        automation_condition=ON_CHANGE,
        description="When the enriched layer restates tickers (their adjustment factors changed), rewrite just "
        "those symbols' bins in data/qlib/day, over the sessions the directory already holds for them; and "
        "re-adjust the data/qlib/1min bins of just the symbols whose factors changed.",
    )
    def qlib_restated(context: dg.AssetExecutionContext, zones: DataZones):
        target = directory(zones, "day")
        state_path = target.state_dir() / RESTATED_STATE
        applied = json.loads(state_path.read_text()) if state_path.exists() else {}
        stale = {}
        for ticker in restated_tickers(zones.enriched_root, DAILY.name):
            version = latest_version(restated_dir(zones.enriched_root, DAILY.name, ticker))
            if version is not None and applied.get(ticker, "") < version.isoformat():
                stale[ticker] = version.isoformat()
        length = target.calendar_length()
        rewritten, held_back, set_aside = 0, [], {}
        if stale and length:
            first, last = target.start, target.slots.session_of(length - 1)
            days = sessions(DAILY.calendar, first, last)
            rows = (
                read_enriched_daily(zones.enriched_root, DAILY.name)
                .select(*ENRICHED_COLUMNS, *features)
                .filter(pl.col("ticker").is_in(list(stale)) & pl.col("date").is_between(first, last))
                .collect()
            )
            aside = SetAside(target)
            frame = aside.screen(day_fields(rows, days, features))
            held_back = aside.defective()  # a ticker with a non-finite value keeps its bins, and is tried again
            frame = frame.filter(~pl.col("ticker").is_in(held_back))
            set_aside = aside.report(context, QLIB_RESTATED)
            rewritten = target.write(frame, 0, length, fields, extend=False).symbols
            applied.update({t: v for t, v in stale.items() if t not in held_back})
            replace_bytes(state_path, json.dumps(applied, indent=1, sort_keys=True).encode())
        minute = _readjust_minutes(zones)
        context.log.info(
            f"{QLIB_RESTATED}: {rewritten} symbols rewritten ({len(stale)} restated tickers), {len(minute)} minute "
            "symbols re-adjusted"
        )
        return dg.MaterializeResult(
            metadata={
                "restated_tickers": dg.MetadataValue.json(sorted(stale)),
                "symbols_rewritten": dg.MetadataValue.int(rewritten),
                "minute_symbols_readjusted": dg.MetadataValue.json(minute),
                "tickers_held_back": dg.MetadataValue.json(held_back),
                **set_aside,
            }
        )

    return qlib_restated


def _readjust_minutes(zones: DataZones) -> list[str]:
    """The 1min directory's history is not re-read from the lake: the symbols whose factors changed since the last
    pass are re-adjusted in place from the factor each slot was written with (`directory.readjust`)."""
    target = directory(zones, "1min")
    manifest = read_version(manifest_dir(zones.reference_root))
    if not target.calendar_length() or manifest is None:
        return []
    state_path = target.state_dir() / "factors.json"
    applied = json.loads(state_path.read_text()) if state_path.exists() else {}
    current = dict(manifest.select("ticker", "digest").iter_rows())
    changed = sorted(
        t for t in {*current, *applied} if current.get(t) != applied.get(t) and not ticker_problem(t, MAX_TICKER)
    )
    done = readjust(target, changed, read_factors(zones.reference_root, tickers=changed))
    replace_bytes(state_path, json.dumps(current, indent=1, sort_keys=True).encode())
    return done


def qlib_defs(
    datasets: list[Dataset], features: Sequence[str] = (), universes: bool = False, bars: str = "flatfiles"
) -> dg.Definitions:
    """`qlib_day` (with stocks_daily, or day bars from REST: `bars="rest"`; with `universes`, writing each named
    universe's instruments file) and its restatement, `qlib_1min` (with stocks_minute), the `publish_qlib` job and
    its daily schedule."""
    assets = []
    if DAILY in datasets or bars == "rest":
        assets += [build_qlib_day(features, universes=universes), build_qlib_restated(features)]
    if MINUTE in datasets:
        assets.append(build_qlib_minute())
    if not assets:
        return dg.Definitions()
    partitioned = [a for a in assets if a.partitions_def is not None]
    job = dg.define_asset_job(
        "publish_qlib",
        selection=partitioned,
        partitions_def=session_partitions(DAILY.calendar),
        description="Write the selected sessions into the Qlib directories (data/qlib/day, data/qlib/1min) and run "
        "their publication gates.",
    )
    schedule = previous_session_schedule(
        job,
        DAILY.calendar,
        at="15 13",
        description="Writes the previous session into the Qlib directories at 13:15 New York, after its features "
        "(13:00).",
    )
    return dg.Definitions(assets=assets, jobs=[job], schedules=[schedule])
