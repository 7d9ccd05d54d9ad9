"""Per-file locks, so that runs overlapping on the same dataset x session (two CLI runs, a schedule and a
backfill) take turns: landing a file, archiving a replaced version and committing a lake partition are never done by
two processes at once. A second run waits for the first (up to `LOCK_WAIT_SECONDS`), then sees its result: the file
already current, the partition already built. An OS lock (`flock`) is released when its process dies, so a killed
run never leaves a lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_WAIT_SECONDS = 3600.0


def lock_path(path: Path) -> Path:
    """The lock of `path` (a file, or a partition folder): a hidden file beside it, which Parquet readers skip."""
    return path.with_name(f".{path.name}.lock")


@contextmanager
def locked(path: Path, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the lock of `path` (waiting for another holder up to `wait` seconds; TimeoutError after that)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another run has held {lock_path(path)} for over {wait:.0f} s") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # releases the lock
