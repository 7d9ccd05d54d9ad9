"""Volume anomalies: a session's row and ticker counts against the median of earlier sessions in the lake."""

import datetime as dt
import statistics
from pathlib import Path

from quant_assets.datasets import Dataset
from quant_assets.lake import partition_counts
from quant_assets.sessions import sessions


def volume_anomalies(
    lake_root: str | Path, dataset: Dataset, session: dt.date, rows: int, tickers: int, window: int, max_drop: float
) -> dict:
    """Compare a session's counts with the median of up to `window` earlier sessions; flag a drop of more than
    `max_drop` (a share) in either. A small dict: what the check's metadata shows for the session."""
    earlier = sessions(dataset.calendar, session - dt.timedelta(days=window * 2 + 10), session - dt.timedelta(days=1))
    history = [c for s in reversed(earlier) if (c := partition_counts(lake_root, dataset.name, s))][:window]
    if len(history) < 3:
        return {
            "session": session.isoformat(),
            "rows": rows,
            "tickers": tickers,
            "history": len(history),
            "anomalies": [],
        }
    median_rows = statistics.median(h[0] for h in history)
    median_tickers = statistics.median(h[1] for h in history)
    anomalies = []
    for name, value, median in (("rows", rows, median_rows), ("tickers", tickers, median_tickers)):
        if median and value < (1 - max_drop) * median:
            anomalies.append(
                f"{name} {value:,} is {1 - value / median:.0%} below the median {median:,.0f} "
                f"of the last {len(history)} sessions"
            )
    return {
        "session": session.isoformat(),
        "rows": rows,
        "tickers": tickers,
        "history": len(history),
        "median_rows": median_rows,
        "median_tickers": median_tickers,
        "anomalies": anomalies,
    }
