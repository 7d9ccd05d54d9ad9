"""What a run would do, before it runs: for each dataset and session of a window, whether the raw layer would fetch
the vendor file (and how many bytes), whether the lake layer would build the session or skip it as current, and
which sessions would fail for want of a file. `quant-assets plan` prints it, the gap sensor requests its sessions,
and the new-file sensor compares the source's listing with what it saw before (`changed_files`).

The decisions are the layers' own: `raw.land` fetches unless the landed copy matches the source
(`raw.matches_source`: not marked corrupt, same ETag and size); the lake builds when its partition was not built from
the landed file by this code with this ticker filter (`ingest.is_current`). The plan trusts the recorded sha256
of a landed file (it does not hash it again), as `quant-assets coverage` does.

A pure module: no Dagster import.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from quant_assets.datasets import Dataset
from quant_assets.flatfiles import ObjectInfo, files_by_session, vendor_key
from quant_assets.ingest import is_current
from quant_assets.lake import partition_provenance, sessions_in
from quant_assets.raw import LandedFile, matches_source, read_landed
from quant_assets.sessions import sessions

FETCH, BUILD, CURRENT, MISSING = "fetch", "build", "current", "missing"
ESTIMATE_SAMPLE = 20  # the newest partitions whose timings estimate the next ones


@dataclass(frozen=True)
class SessionWork:
    """What a run would do for one dataset and session.

    action: `fetch` (download the file, then build the lake partition), `build` (the landed file is current, the
    lake partition is not), `current` (nothing: both layers would skip it) or `missing` (the source has no file:
    the session would fail).
    """

    dataset: str
    session: dt.date
    action: str
    key: str
    bytes: int = 0  # to download (fetch only)
    reason: str = ""
    etag: str = ""  # the source's ETag of the file
    size: int = 0  # the file's size at the source

    @property
    def needs_run(self) -> bool:
        return self.action in (FETCH, BUILD)


def session_work(
    dataset: Dataset,
    session: dt.date,
    info: ObjectInfo | None,
    landed: LandedFile | None,
    lake_root: str | os.PathLike,
    tickers: Sequence[str] = (),
) -> SessionWork:
    """What the raw and lake layers would do for `dataset` on `session`, given the source's `info` for its key."""
    key = vendor_key(dataset, session)
    if info is None:
        return SessionWork(dataset.name, session, MISSING, key, reason="the source has no file for this session")
    if not matches_source(landed, info):
        if landed is None:
            reason = "not landed"
        elif landed.corrupt:
            reason = f"the landed copy is corrupt ({landed.corrupt})"
        else:
            reason = f"the vendor replaced the file (ETag {landed.etag} -> {info.etag})"
        return SessionWork(dataset.name, session, FETCH, key, info.size, reason, info.etag, info.size)
    if not is_current(lake_root, dataset, landed, session, tickers):
        provenance = partition_provenance(lake_root, dataset.name, session)
        reason = "no lake partition" if provenance is None else "the lake partition is stale (other file or code)"
        return SessionWork(dataset.name, session, BUILD, key, reason=reason, etag=info.etag, size=info.size)
    return SessionWork(dataset.name, session, CURRENT, key, etag=info.etag, size=info.size)


def plan(
    datasets: Sequence[Dataset],
    start: dt.date,
    end: dt.date,
    list_objects: Callable[[str], Iterable[ObjectInfo]],
    raw_root: str | os.PathLike,
    lake_root: str | os.PathLike,
    tickers: Sequence[str] = (),
    progress: Callable[[Iterable, str], Iterable] = lambda items, what: items,
) -> list[SessionWork]:
    """What a run over the sessions from `start` to `end` (both included) would do, per dataset and session of each
    dataset's calendar; `list_objects(prefix)` is the source's listing (one call per dataset); `progress(items,
    what)` may wrap each dataset's sessions (a progress bar)."""
    work = []
    for dataset in datasets:
        files = files_by_session(dataset, list_objects(dataset.key_prefix))
        for session in progress(sessions(dataset.calendar, start, end), dataset.name):
            info = files.get(session)
            landed = read_landed(raw_root, dataset, session)
            work.append(session_work(dataset, session, info, landed, lake_root, tickers))
    return work


def seconds_per_byte(lake_root: str | os.PathLike, dataset: Dataset, sample: int = ESTIMATE_SAMPLE) -> float | None:
    """The median raw -> lake time per byte of vendor file over the newest `sample` partitions of `dataset` that
    recorded it, or None when none did."""
    rates = []
    for session in reversed(sessions_in(lake_root, dataset.name)):
        provenance = partition_provenance(lake_root, dataset.name, session) or {}
        if "seconds" in provenance and int(provenance.get("size", 0)):
            rates.append(float(provenance["seconds"]) / int(provenance["size"]))
        if len(rates) == sample:
            break
    return statistics.median(rates) if rates else None


def estimate_seconds(work: Sequence[SessionWork], rates: Mapping[str, float | None]) -> float | None:
    """Estimated raw -> lake seconds of the sessions to fetch or build: each file's size times its dataset's rate
    (`seconds_per_byte`); None when a dataset to build has no timing yet. Downloads are not included."""
    total = 0.0
    for item in work:
        if not item.needs_run:
            continue
        rate = rates.get(item.dataset)
        if rate is None:
            return None
        total += rate * item.size
    return total


def summary(work: Sequence[SessionWork], rates: Mapping[str, float | None]) -> str:
    """The plan in words: per dataset, the sessions to fetch (and their bytes), to build, current and missing,
    then the sessions that need work, and the estimated time."""
    lines = []
    for dataset in dict.fromkeys(w.dataset for w in work):
        items = [w for w in work if w.dataset == dataset]
        counts = {a: [w for w in items if w.action == a] for a in (FETCH, BUILD, CURRENT, MISSING)}
        fetch_bytes = sum(w.bytes for w in counts[FETCH])
        lines.append(
            f"{dataset}: {len(counts[FETCH])} to fetch ({fetch_bytes:,} bytes), {len(counts[BUILD])} to build from "
            f"the raw zone, {len(counts[CURRENT])} current, {len(counts[MISSING])} missing at the source"
        )
        for (action, _), group in itertools.groupby(items, key=lambda w: (w.action, w.action == MISSING or id(w))):
            group = list(group)
            if action == CURRENT:
                continue
            if action == MISSING and len(group) > 1:  # a stretch without files: one line
                lines.append(
                    f"  {group[0].session}..{group[-1].session}  missing ({len(group)} sessions: the source has no "
                    "file for them)"
                )
                continue
            for item in group:
                size = f" {item.bytes:,} bytes" if item.action == FETCH else ""
                lines.append(f"  {item.session}  {item.action:<7} {item.key}{size}  ({item.reason})")
    seconds = estimate_seconds(work, rates)
    todo = sum(w.needs_run for w in work)
    if not todo:
        lines.append("nothing to do: every session with a file is current")
    elif seconds is None:
        lines.append(f"{todo} (dataset, session) builds; no earlier build recorded a time to estimate from")
    else:
        lines.append(
            f"{todo} (dataset, session) builds, about {seconds:,.1f} s of raw -> lake (downloads not included)"
        )
    return "\n".join(lines)


def changed_files(
    listing: Iterable[ObjectInfo], seen: Mapping[str, str], landed_etag: Callable[[str], str | None]
) -> list[ObjectInfo]:
    """The files of `listing` that are new or replaced: their ETag differs from the one `seen` (key -> ETag, the
    sensor's cursor) holds, or, for a key not seen yet, from the ETag of the copy already landed (`landed_etag`),
    so that a first look at a source whose files are already in the raw zone requests nothing. A file whose very
    copy is landed already (a backfill or another run took it since the cursor saw the old one) is not new either:
    built or rejected, running it again would give the same answer, so a rejected file waits until it changes."""
    changed = []
    for info in listing:
        known = seen.get(info.key) if info.key in seen else landed_etag(info.key)
        if known != info.etag and (info.key not in seen or landed_etag(info.key) != info.etag):
            changed.append(info)
    return changed


def chunks(items: Sequence, size: int) -> list[list]:
    """`items` (in session order) cut into runs of at most `size`, in order."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
