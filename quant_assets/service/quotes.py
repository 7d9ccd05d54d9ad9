"""`quotes`: snapshots of a universe's quotes during the trading session, from an ordered chain of providers
(Finnhub, then Massive's unified snapshot).

Layout: partitioned by session (the one the quote belongs to: today's while it trades, the last one otherwise), one
file per snapshot: `lake/quotes/date=YYYY-MM-DD/<scope>-<HHMM>.parquet`, `HHMM` the snapshot's slot in New York
time (the schedule's tick, floored to `slot_minutes`). A session holds a few dozen small files a day rather than
one file rewritten every tick: a snapshot is written once, atomically, and never touched again, so a reader of a
session never races a writer, and re-running a slot finds its file and sends nothing.

Per symbol the chain asks each provider in order and stops at the first answer. A provider that cannot serve the
symbol (`Unsupported`) is skipped with its reason; one that is unavailable or errs passes it on. Finnhub's all-zero
quote means "no data": the symbol's row has no prices (null, never 0) and is counted in `Collected.missing`; as any
empty answer it ends the chain. Symbols that failed everywhere are named and have no row: a re-run of the same
slot asks only them and rewrites the snapshot (atomically, under the file's lock) with their rows added; every
other symbol is held. A forced re-run asks every symbol again and replaces the rows of those that answered.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import polars as pl

from quant_assets.lake import partition_dir, replace_parquet
from quant_assets.locks import locked
from quant_assets.names import child, component
from quant_assets.providers.errors import ProviderError
from quant_assets.providers.symbols import Unsupported
from quant_assets.service.summary import Collected, concurrently

DATASET = "quotes"
NEW_YORK = ZoneInfo("America/New_York")
PRICES = ("price", "change", "change_percent", "open", "high", "low", "previous_close")
SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    **{name: pl.Float64() for name in PRICES},
    "quoted_at": pl.Datetime("us", "UTC"),
    "snapshot_at": pl.Datetime("us", "UTC"),
    "provider": pl.String(),
}


class QuoteProvider(Protocol):
    name: str

    def quote(self, symbol: str) -> dict[str, Any] | None: ...


def snapshot_slot(now: dt.datetime, slot_minutes: int) -> dt.datetime:
    """`now` floored to its slot of `slot_minutes` (UTC)."""
    now = now.astimezone(dt.UTC)
    minutes = (now.hour * 60 + now.minute) // slot_minutes * slot_minutes
    return now.replace(hour=minutes // 60, minute=minutes % 60, second=0, microsecond=0)


def snapshot_path(lake_root: str | Path, session: dt.date, scope: str, slot: dt.datetime) -> Path:
    """The file of `scope`'s snapshot at `slot` in `session`'s partition."""
    name = f"{component(scope)}-{slot.astimezone(NEW_YORK):%H%M}.parquet"
    return child(partition_dir(lake_root, DATASET, session), name)


def collect_quotes(
    providers: Mapping[str, QuoteProvider],
    symbols: Sequence[str],
    lake_root: str | Path,
    session: dt.date,
    scope: str,
    now: dt.datetime,
    slot_minutes: int = 15,
    workers: int = 4,
    force: bool = False,
) -> Collected:
    """One snapshot of `symbols`' quotes for `scope` at `now`'s slot, from `providers` in order (see the module)."""
    out = Collected(DATASET, asked=len(symbols))
    slot = snapshot_slot(now, slot_minutes)
    path = snapshot_path(lake_root, session, scope, slot)
    held = set(pl.read_parquet(path, columns=["ticker"])["ticker"]) if path.exists() and not force else set()
    wanted = [s for s in symbols if s not in held]
    out.skipped = len(symbols) - len(wanted)
    if not wanted:
        out.notes.append(f"the snapshot of {slot.astimezone(NEW_YORK):%H:%M} New York is held: {path.name}")
        return out

    def ask(symbol: str) -> tuple[str, dict | None, list[str], bool]:
        reasons = []
        for name, provider in providers.items():
            try:
                return name, provider.quote(symbol), reasons, True
            except Unsupported as error:
                reasons.append(f"{name} skipped: {error}")
            except ProviderError as error:
                reasons.append(f"{name}: {type(error).__name__}: {error}")
        return "", None, reasons, False

    rows = []
    for symbol, (name, quote, reasons, answered) in zip(wanted, concurrently(ask, wanted, workers)):
        if not answered:
            out.failed.append(f"{symbol}: no provider answered: " + "; ".join(reasons))
            continue
        out.serve(name)
        if quote is None:
            out.missing.append(f"{symbol}: {name} has no quote (its all-zero or empty answer)")
            rows.append({"ticker": symbol, "snapshot_at": slot, "provider": name})
            continue
        bad = [k for k in PRICES if quote.get(k) is not None and not math.isfinite(quote[k])]
        if bad:
            out.set_aside.append(f"{DATASET} {symbol} from {name}: not finite: {', '.join(bad)}")
            continue
        rows.append({"ticker": symbol, **{k: quote.get(k) for k in PRICES}, "quoted_at": quote["time"],
                     "snapshot_at": slot, "provider": name})  # fmt: skip
    if out.failed:
        out.notes.append(f"{len(out.failed)} symbols have no row: a re-run of this slot asks only them")
    if not rows:
        return out
    fresh = pl.DataFrame(rows, schema=SCHEMA)
    with locked(path):  # another run of the slot (a schedule and a hand run) merges in turn, nothing lost
        kept = pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=SCHEMA)
        kept = kept.filter(~pl.col("ticker").is_in(fresh["ticker"].implode()))  # a forced run keeps who failed
        replace_parquet(pl.concat([kept, fresh]).sort("ticker"), path)
    out.rows, out.written = len(rows), [str(path)]
    return out


def read_quotes(lake_root: str | Path, start: dt.date | None = None, end: dt.date | None = None) -> pl.LazyFrame:
    """Every snapshot of the sessions in [start, end] (all when None), one row per ticker per snapshot."""
    folder = Path(lake_root) / DATASET
    files = sorted(folder.glob("date=*/*.parquet"))
    keep = [f for f in files if _within(f.parent.name.removeprefix("date="), start, end)]
    if not keep:
        return pl.LazyFrame(schema=SCHEMA)
    return pl.scan_parquet(keep, schema=SCHEMA)


def _within(day: str, start: dt.date | None, end: dt.date | None) -> bool:
    session = dt.date.fromisoformat(day)
    return (start is None or session >= start) and (end is None or session <= end)
