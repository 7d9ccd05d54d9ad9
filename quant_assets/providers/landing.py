"""REST daily bars into the lake: `rest_stocks_daily`, one partition per session like `lake_stocks_daily`, in the
lake's schema (so the features and Qlib can take their bars from it) plus the vendor-adjusted prices, the day's
dividend and split factor, and the provider each row came from.

Which (ticker, session) pairs have been asked is kept in a ledger beside the partitions
(`<lake>/rest_stocks_daily/_fetched.parquet`: ticker, first and last session of each answered request, the
provider, when): a run asks only what its universe's members lack in its sessions, so a symbol added to a universe
costs its own history and nothing else, and a symbol removed keeps the rows it has. A ticker with no bar on a day it
was asked for (not listed yet) is not asked again. `force` asks again.

Partitions are merged, not replaced: a run writes its tickers' rows of a session and keeps the session's other
tickers, atomically (temp file, rename). The ledger is written after the partitions: a run that stops between the
two asks again next time, and the merge makes that harmless.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from quant_assets.lake import partition_path, replace_parquet, write_parquet
from quant_assets.providers.bars import DAILY_BARS

DATASET = "rest_stocks_daily"
LEDGER = "_fetched.parquet"
NEW_YORK = ZoneInfo("America/New_York")

# The lake's stocks_daily columns (datasets.py) first, then what only a REST provider gives.
LAKE_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "volume": pl.Float64(),
    "open": pl.Float64(),
    "close": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "window_start": pl.Datetime("ns", "UTC"),
    "transactions": pl.Int64(),
    "adj_open": pl.Float64(),
    "adj_high": pl.Float64(),
    "adj_low": pl.Float64(),
    "adj_close": pl.Float64(),
    "adj_volume": pl.Float64(),
    "dividend": pl.Float64(),
    "split_factor": pl.Float64(),
    "provider": pl.String(),
}
LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "first": pl.Date(),
    "last": pl.Date(),
    "provider": pl.String(),
    "fetched_at": pl.Datetime("us", "UTC"),
}


def ledger_path(lake_root: str | os.PathLike) -> Path:
    return Path(lake_root) / DATASET / LEDGER


def read_ledger(lake_root: str | os.PathLike) -> pl.DataFrame:
    path = ledger_path(lake_root)
    return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=LEDGER_SCHEMA)


def requests_for(
    members: Iterable[str], sessions: Sequence[dt.date], ledger: pl.DataFrame, force: bool = False
) -> list[tuple[str, dt.date, dt.date]]:
    """(ticker, first, last) for each member that lacks some of `sessions` in the ledger (all of them with
    `force`): from its first missing session to its last."""
    sessions = sorted(sessions)
    if not sessions:
        return []
    spans: dict[str, list[tuple[dt.date, dt.date]]] = {}
    if not force:
        for ticker, first, last in ledger.select("ticker", "first", "last").iter_rows():
            spans.setdefault(ticker, []).append((first, last))
    out = []
    for ticker in sorted(set(members)):
        covered = spans.get(ticker, [])
        missing = [s for s in sessions if not any(first <= s <= last for first, last in covered)]
        if missing:
            out.append((ticker, missing[0], missing[-1]))
    return out


def lake_rows(bars: pl.DataFrame) -> pl.DataFrame:
    """`DAILY_BARS` rows with their `provider` in the lake's schema: `window_start` is the session's midnight in New
    York (as the flat files' day bars have it), `transactions` null (no REST daily bar counts them)."""
    start = pl.col("date").cast(pl.Datetime("ns")).dt.replace_time_zone("America/New_York")
    return bars.with_columns(
        window_start=start.dt.convert_time_zone("UTC"), transactions=pl.lit(None, pl.Int64)
    ).select([pl.col(name).cast(dtype) for name, dtype in LAKE_SCHEMA.items()])


def merge_sessions(lake_root: str | os.PathLike, rows: pl.DataFrame, tickers: Iterable[str]) -> dict[dt.date, dict]:
    """Write each session of `rows` (`DAILY_BARS` + provider) into its partition: the asked `tickers`' rows of that
    session replaced by `rows`, the other tickers kept. Returns per session written: its path, rows, tickers and
    rows per provider."""
    asked = sorted(set(tickers))
    written = {}
    for (session,), frame in rows.partition_by("date", as_dict=True, maintain_order=False).items():
        new = lake_rows(frame)
        path = partition_path(lake_root, DATASET, session)
        if path.exists():
            kept = pl.read_parquet(path).filter(~pl.col("ticker").is_in(asked))
            new = pl.concat([kept, new], how="vertical_relaxed")
        new = new.unique("ticker", keep="last", maintain_order=True).sort("ticker")
        write_parquet(new, path)
        by_provider = dict(new.group_by("provider").len().sort("provider").iter_rows())
        written[session] = {"path": path, "rows": new.height, "tickers": new["ticker"].n_unique(), "by": by_provider}
    return written


def record_fetched(
    lake_root: str | os.PathLike, answered: Sequence[tuple[str, dt.date, dt.date, str]], now: dt.datetime
) -> None:
    """Add the answered requests (ticker, first, last, provider) to the ledger, atomically."""
    if not answered:
        return
    new = pl.DataFrame([(t, f, last, p, now) for t, f, last, p in answered], schema=LEDGER_SCHEMA, orient="row")
    ledger = pl.concat([read_ledger(lake_root), new])
    path = ledger_path(lake_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_parquet(ledger, path)


def empty_rows() -> pl.DataFrame:
    return pl.DataFrame(schema={**DAILY_BARS, "provider": pl.String()})
