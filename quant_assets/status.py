"""A plain-text summary of what the lake holds, read through the lake's one read side (`lake.scan`)."""

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from quant_assets.datasets import Dataset
from quant_assets.lake import partition_path, scan, sessions_in


def lake_summary(lake_root: Path, datasets: Sequence[Dataset], zone: str = "lake") -> str:
    """One line per dataset with a folder in the zone (the lake, or the enriched zone, which has the same layout):
    sessions, first and last session, rows, tickers, bytes."""
    rows = [("dataset", "sessions", "first", "last", "rows", "tickers", "MiB")]
    for dataset in datasets:
        held = sessions_in(lake_root, dataset.name)
        if not held:
            continue
        count, tickers = (
            scan(lake_root, dataset.name, held)
            .select(pl.len(), pl.col("ticker").n_unique())
            .collect(engine="streaming")
            .row(0)
        )
        mib = sum(partition_path(lake_root, dataset.name, s).stat().st_size for s in held) / 2**20
        rows.append(
            (dataset.name, f"{len(held)}", f"{held[0]}", f"{held[-1]}", f"{count:,}", f"{tickers:,}", f"{mib:.1f}")
        )
    if len(rows) == 1:
        return f"the {zone} at {lake_root} is empty"
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows
    ]
    return "\n".join([f"{zone} at {lake_root.resolve()}", *lines])


def rest_summary(lake_root: Path) -> str | None:
    """`rest_stocks_daily`: sessions, rows and tickers, and the rows each provider gave; None without any."""
    from quant_assets.providers.landing import DATASET

    held = sessions_in(lake_root, DATASET)
    if not held:
        return None
    frame = scan(lake_root, DATASET, held).select("ticker", "provider").collect()
    providers = ", ".join(f"{p} {n:,}" for p, n in frame.group_by("provider").len().sort("provider").iter_rows())
    return (
        f"{DATASET} at {(lake_root / DATASET).resolve()}\n{len(held)} sessions {held[0]}..{held[-1]}, "
        f"{frame.height:,} rows, {frame['ticker'].n_unique():,} tickers; rows by provider: {providers}"
    )


def reference_summary(reference_root: Path) -> str | None:
    """One line per reference table (its newest version and rows) and the factors' tickers; None without any."""
    from quant_assets.reference.factors import TABLE, read_factors
    from quant_assets.reference.versions import latest_version, read_version, versions

    lines = []
    for table in ("reference_splits", "reference_dividends", "reference_tickers"):
        folder = reference_root / table
        if (newest := latest_version(folder)) is not None:
            rows = read_version(folder).height
            lines.append(f"{table:<20} {rows:>7,} rows  version {newest} ({len(versions(folder))} kept)")
    if (reference_root / TABLE).exists():
        factors = read_factors(reference_root)
        lines.append(f"{TABLE:<20} {factors.height:>7,} rows  {factors['ticker'].n_unique():,} tickers")
    return "\n".join([f"reference data at {reference_root.resolve()}", *lines]) if lines else None


def qlib_summary(qlib_root: Path) -> str | None:
    """One line per Qlib directory: its calendar's first and last slot, symbols, and what the gate last published;
    None without any."""
    import json

    lines = []
    for freq in ("day", "1min"):
        calendar = qlib_root / freq / "calendars" / f"{freq}.txt"
        if not calendar.exists():
            continue
        with calendar.open() as stream:
            first = stream.readline().strip()
        last = calendar.read_bytes()[-21:].decode().strip().splitlines()[-1]
        instruments = qlib_root / freq / "instruments" / "all.txt"
        symbols = sum(1 for _ in instruments.open()) if instruments.exists() else 0
        published = qlib_root / freq / ".quant_assets" / "published.json"
        gate = "not published"
        if published.exists():
            mark = json.loads(published.read_text())
            gate = f"published {mark['at']} ({len(mark['sessions'])} sessions checked)"
        lines.append(f"{freq:<5} {first:>19}  {last:>19}  {symbols:>6,} symbols  {gate}")
        named = sorted(p.stem for p in (qlib_root / freq / "instruments").glob("*.txt") if p.stem != "all")
        if named:
            lines.append(f"      instruments of the universes: {', '.join(named)}")
    return "\n".join([f"qlib at {qlib_root.resolve()}", *lines]) if lines else None


def service_summary(lake_root: Path) -> str | None:
    """The market-data datasets that hold anything: one line each (snapshots, articles, versions, indicators)."""
    from quant_assets.service import fundamentals, indicators, news, quotes

    lines = []
    snapshots = sorted((lake_root / quotes.DATASET).glob("date=*/*.parquet"))
    if snapshots:
        frame = quotes.read_quotes(lake_root).select("ticker", "provider").collect()
        days = {p.parent.name for p in snapshots}
        lines.append(f"quotes            {len(snapshots):,} snapshots over {len(days)} sessions, {frame.height:,} rows; "
                     f"by provider: {_counts(frame, 'provider')}")  # fmt: skip
    articles = news.read_news(lake_root).select("day", "providers").collect()
    if articles.height:
        both = articles.filter(pl.col("providers").list.len() > 1).height
        lines.append(f"news              {articles.height:,} articles, {articles['day'].min()}..{articles['day'].max()}, "
                     f"{both:,} from both vendors")  # fmt: skip
    for dataset in (fundamentals.FUNDAMENTALS, fundamentals.EARNINGS):
        days = fundamentals.version_days(lake_root, dataset)
        if days:
            held = pl.read_parquet([fundamentals.version_path(lake_root, dataset, d) for d in days])["symbol"]
            lines.append(f"{dataset:<17} {len(days)} as-of days {days[0]}..{days[-1]}, {held.n_unique():,} symbols")
    values = indicators.read_indicators(lake_root).select("ticker", "indicator").collect()
    if values.height:
        lines.append(f"vendor_indicators {values.height:,} values, {values['ticker'].n_unique():,} tickers; "
                     f"by indicator: {_counts(values, 'indicator')}")  # fmt: skip
    return "\n".join([f"market data at {lake_root.resolve()}", *lines]) if lines else None


def _counts(frame: pl.DataFrame, column: str) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in frame.group_by(column).len().sort(column).iter_rows())
