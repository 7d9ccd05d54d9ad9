"""A plain-text summary of what the lake holds, queried with DuckDB over the Parquet files."""

from collections.abc import Sequence
from pathlib import Path

import duckdb

from quant_assets.datasets import Dataset
from quant_assets.lake import PART_NAME


def lake_summary(lake_root: Path, datasets: Sequence[Dataset]) -> str:
    """One line per dataset with a lake folder: sessions, first and last session, rows, tickers, bytes."""
    rows = [("dataset", "sessions", "first", "last", "rows", "tickers", "MiB")]
    with duckdb.connect() as db:
        for dataset in datasets:
            files = sorted((lake_root / dataset.name).glob(f"date=*/{PART_NAME}"))
            if not files:
                continue
            sessions, first, last, count, tickers = db.execute(
                "SELECT count(DISTINCT date), min(date), max(date), count(*), count(DISTINCT ticker) "
                "FROM read_parquet(?, hive_partitioning = true)",
                [[str(f) for f in files]],
            ).fetchone()
            mib = sum(f.stat().st_size for f in files) / 2**20
            rows.append((dataset.name, f"{sessions}", f"{first}", f"{last}", f"{count:,}", f"{tickers:,}", f"{mib:.1f}"))
    if len(rows) == 1:
        return f"the lake at {lake_root} is empty"
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]  # fmt: skip
    return "\n".join([f"lake at {lake_root.resolve()}", *lines])
