"""Qlib `.bin` files, written a block of calendar slots at a time.

A bin is a float32 little-endian start index (the calendar position of its first value, stored as a float value)
followed by one float32 per calendar slot from there on, NaN where the symbol has no value. Each slot has a fixed
position in the exchange calendar, so writing a block of slots is:

- inside the bin's span: overwrite in place (O(block));
- after its end: append NaN padding for the skipped slots, then the block (O(gap + block));
- before its start (an earlier session backfilled later): rewrite the bin with the new start and NaN padding
  (O(bin), once per such backfill), through a temporary file and a rename, so a reader never sees half a header.

`write_block` takes no lock: the directory's writer holds one lock for all its bins (`directory.py`). `put` and
`put_many` are the locked form for a single bin, for callers that write bins on their own.

A folder that cannot take a write (read-only, full disk) raises DataFolderError naming the bin; a write that
fails part-way past the bin's end is cut back to its old length, so its header and size still agree.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from quant_assets.errors import writing
from quant_assets.lake import replace_bytes, temporary_path
from quant_assets.locks import locked

DTYPE = np.dtype("<f4")
NAN = np.array([np.nan], dtype=DTYPE).tobytes()


def read_bin(path: str | os.PathLike) -> tuple[int, np.ndarray]:
    """(start index, values) of a bin."""
    data = np.fromfile(path, dtype=DTYPE)
    if data.size == 0:
        raise ValueError(f"{path}: an empty bin has no start index")
    return int(data[0]), data[1:]


def span(path: str | os.PathLike) -> tuple[int, int]:
    """(start index, number of values) of a bin, from its header and size, without reading its values."""
    with open(path, "rb") as stream:
        start = int(np.frombuffer(stream.read(4), dtype=DTYPE)[0])
        return start, os.fstat(stream.fileno()).st_size // 4 - 1


def encode(start: int, values: np.ndarray) -> bytes:
    """The bytes of a bin: the start index as a float32 value, then the values as float32."""
    return np.array([start], dtype=DTYPE).tobytes() + np.asarray(values, dtype=DTYPE).tobytes()


def write_bin(path: Path, start: int, values: np.ndarray) -> None:
    """Replace `path` with a bin of `values` from calendar index `start`, atomically."""
    replace_bytes(path, encode(start, values))


def write_block(path: str, first: int, block: bytes) -> tuple[int, int]:
    """Write `block` (float32 LE values of consecutive slots) from calendar slot `first` into the bin at `path`,
    creating it if needed; return the bin's (start, number of values) afterwards. The caller holds the lock."""
    with writing(path):
        return _write_block(path, first, block)


def _write_block(path: str, first: int, block: bytes) -> tuple[int, int]:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        fd = None
    if fd is None:  # created outside the except: a failure to create is not "during handling" of a missing bin
        _create(path, struct.pack("<f", first) + block)
        return first, len(block) // 4
    try:
        start = int(struct.unpack("<f", os.pread(fd, 4, 0))[0])
        length = os.fstat(fd).st_size // 4 - 1
        count = len(block) // 4
        if first < start:  # an earlier session backfilled later: the bin starts earlier now
            current = os.pread(fd, 4 * length, 4)
            end = max(start + length, first + count)
            values = bytearray(NAN * (end - first))
            values[4 * (start - first) : 4 * (start - first + length)] = current
            values[0 : 4 * count] = block
            replace_bytes(Path(path), encode(first, np.frombuffer(bytes(values), dtype=DTYPE)))
            return first, end - first
        gap = first - (start + length)
        try:
            if gap > 0:  # NaN for the slots the symbol skipped, then the block
                _pwrite_all(fd, NAN * gap + block, 4 * (1 + length))
            else:
                _pwrite_all(fd, block, 4 * (1 + first - start))
        except OSError:
            with contextlib.suppress(OSError):  # values past the old end that did get written go again
                os.ftruncate(fd, 4 * (1 + length))
            raise
        return start, max(length, first - start + count)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """pwrite all of `data`: one call may write part of it (a disk filling up), the next then raises."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _create(path: str, data: bytes) -> None:
    """A new bin, atomically (a temporary name beside it, then a rename), with os-level calls and its folder made
    only when missing: a first build creates a bin per symbol and field, tens of thousands of them."""
    temporary = str(temporary_path(Path(path)))
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileNotFoundError:
        fd = None
    if fd is None:  # outside the except, so that a failure here is not shown "during handling" of the first
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb", closefd=False) as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):  # the error that brought us here is the one to report
            os.unlink(temporary)
        raise
    finally:
        os.close(fd)


def put(path: Path, index: int, value: float) -> None:
    """Set the value at calendar `index`, under the bin's folder lock."""
    put_many(path, {index: value})


def put_many(path: Path, values: Mapping[int, float]) -> None:
    """Set several calendar slots of one bin under its folder's lock (one lock per symbol folder: a symbol's
    fields take turns too)."""
    with locked(path.parent):
        for index, value in sorted(values.items()):
            write_block(str(path), index, np.array([value], dtype=DTYPE).tobytes())
