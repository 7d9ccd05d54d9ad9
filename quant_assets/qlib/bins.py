"""Qlib `.bin` files, written one calendar slot at a time.

A bin is a float32 little-endian start index (the calendar position of its first value, stored as a float value)
followed by one float32 per calendar slot from there on, NaN where the symbol has no value. Each session has a fixed
position in the exchange calendar, so writing one session's value is:

- inside the bin's span: overwrite 4 bytes in place (O(1));
- after its end: append NaN padding for the skipped slots, then the value (O(gap));
- before its start (an earlier session backfilled later): rewrite the bin with the new start and NaN padding
  (O(bin), once per such backfill).

Writers of one symbol take turns under its folder's lock (`locks.locked`), so sessions can be written in any order
and by parallel processes; a rewrite goes through a temporary file and a rename, so a reader never sees half a
header.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from quant_assets.lake import replace_bytes
from quant_assets.locks import locked

DTYPE = np.dtype("<f4")


def read_bin(path: Path) -> tuple[int, np.ndarray]:
    """(start index, values) of a bin."""
    data = np.fromfile(path, dtype=DTYPE)
    if data.size == 0:
        raise ValueError(f"{path}: an empty bin has no start index")
    return int(data[0]), data[1:]


def encode(start: int, values: np.ndarray) -> bytes:
    """The bytes of a bin: the start index as a float32 value, then the values as float32."""
    return np.concatenate([np.array([start], dtype=DTYPE), np.asarray(values, dtype=DTYPE)]).tobytes()


def write_bin(path: Path, start: int, values: np.ndarray) -> None:
    """Replace `path` with a bin of `values` from calendar index `start`, atomically."""
    replace_bytes(path, encode(start, values))


def put(path: Path, index: int, value: float) -> None:
    """Set the value at calendar `index` (see the module docstring for the cost of each case)."""
    put_many(path, {index: value})


def put_many(path: Path, values: Mapping[int, float]) -> None:
    """Set several calendar slots of one bin under one lock."""
    if not values:
        return
    with locked(path.parent):  # one lock per symbol folder: its fields take turns too
        first, last = min(values), max(values)
        if not path.exists():
            span = np.full(last - first + 1, np.nan, dtype=DTYPE)
            for index, value in values.items():
                span[index - first] = value
            write_bin(path, first, span)
            return
        start = _start(path)
        if first < start:  # a backfilled earlier session: the bin starts earlier now
            _, current = read_bin(path)
            end = start + current.size - 1
            span = np.full(max(end, last) - first + 1, np.nan, dtype=DTYPE)
            span[start - first : start - first + current.size] = current
            for index, value in values.items():
                span[index - first] = value
            write_bin(path, first, span)
            return
        end = start + _length(path) - 1
        with open(path, "r+b") as stream:
            if last > end:  # NaN for the slots the symbol skipped, then room for the new ones
                stream.seek(0, os.SEEK_END)
                stream.write(np.full(last - end, np.nan, dtype=DTYPE).tobytes())
            for index, value in sorted(values.items()):
                stream.seek(4 * (1 + index - start))
                stream.write(np.array([value], dtype=DTYPE).tobytes())


def _start(path: Path) -> int:
    with open(path, "rb") as stream:
        return int(np.frombuffer(stream.read(4), dtype=DTYPE)[0])


def _length(path: Path) -> int:
    """Values in a bin, from its size."""
    return path.stat().st_size // 4 - 1
