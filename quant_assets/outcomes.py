"""What happened to each dataset x session the last time a layer tried to build it, kept under the lake:

    <lake>/_failures/<dataset>/<session>.<layer>.json     layer, error, sha256 of the raw file it used, time

A record is written when a session fails in a layer and removed when that layer next succeeds, so the coverage
ledger can tell a rejected session from one that was never tried, across runs and processes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from quant_assets.lake import temporary_path


def _record_path(lake_root: str | os.PathLike, dataset: str, session: dt.date, layer: str) -> Path:
    return Path(lake_root) / "_failures" / dataset / f"{session.isoformat()}.{layer}.json"


def record_failure(
    lake_root: str | os.PathLike, dataset: str, session: dt.date, layer: str, error: str, sha256: str = ""
) -> None:
    path = _record_path(lake_root, dataset, session, layer)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "dataset": dataset,
        "session": session.isoformat(),
        "layer": layer,
        "error": error,
        "sha256": sha256,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    tmp = temporary_path(path)
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)


def clear_failure(lake_root: str | os.PathLike, dataset: str, session: dt.date, layer: str) -> None:
    _record_path(lake_root, dataset, session, layer).unlink(missing_ok=True)


def failures(lake_root: str | os.PathLike, dataset: str) -> dict[tuple[dt.date, str], dict]:
    """(session, layer) -> the failure record, for every session of `dataset` that failed last time."""
    folder = Path(lake_root) / "_failures" / dataset
    found = {}
    for path in folder.glob("*.json") if folder.is_dir() else ():
        record = json.loads(path.read_text())
        found[(dt.date.fromisoformat(record["session"]), record["layer"])] = record
    return found


def last_failure(lake_root: str | os.PathLike, dataset: str, session: dt.date, layer: str) -> dict | None:
    path = _record_path(lake_root, dataset, session, layer)
    return json.loads(path.read_text()) if path.exists() else None
