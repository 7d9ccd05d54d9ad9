"""The Qlib writer's building blocks: symbol names Qlib reads back, bins written a slot at a time in any order, a
directory written session by session, in any order and by parallel processes, and read back by pyqlib. The assets
are tested in test_qlib_assets.py."""

import multiprocessing
import random
import struct

import numpy as np
import pytest

from quant_assets.names import UnsafeName
from quant_assets.qlib.bins import encode, put, put_many, read_bin
from quant_assets.qlib.symbols import feature_folder, qlib_symbol


@pytest.mark.parametrize(
    "ticker, symbol, folder",
    [
        ("AAPL", "AAPL", "aapl"),
        ("BRK.B", "BRK.B", "brk.b"),
        ("BCpC", "BC_PC", "bc_pc"),  # would collide with BCPC after lower-casing
        ("BCPC", "BCPC", "bcpc"),
        ("NA", "NA_", "na_"),  # pandas would read NA in instruments/all.txt as missing
        ("NULL", "NULL_", "null_"),
        ("CON", "CON", "_qlib_con"),  # Windows-reserved: Qlib's reader looks for the prefixed folder
        ("LPT0", "LPT0", "_qlib_lpt0"),
        ("NE.WS.A", "NE.WS.A", "ne.ws.a"),
    ],
)
def test_symbols_and_folders(ticker, symbol, folder):
    assert qlib_symbol(ticker) == symbol and feature_folder(symbol) == folder


def test_no_two_vendor_tickers_share_a_folder():
    from quant_assets.sample import SIZES, Universe

    tickers = Universe(7, SIZES["small"]).stock_tickers + ["BCPC", "BAPA", "NA", "CON", "I:SPX", "X:BTC-USD"]
    folders = [feature_folder(qlib_symbol(t)) for t in tickers]
    assert len(set(folders)) == len(set(tickers))


@pytest.mark.parametrize("ticker", ["con", "..", ".", "../../ESCFLAT", "A/B", "A\tB", "A\nB", "A\x00B", "A" * 10_000])
def test_only_a_vendor_symbol_has_a_qlib_symbol(ticker):
    with pytest.raises(UnsafeName, match="no Qlib symbol: ticker"):
        qlib_symbol(ticker)


def test_a_bin_is_a_float_start_index_then_float32_values(tmp_path):
    path = tmp_path / "features" / "aapl" / "close.day.bin"
    put(path, 5, 1.5)
    assert path.read_bytes() == struct.pack("<ff", 5.0, 1.5)  # the index as a float value, not int bits
    put(path, 8, 2.5)  # skipped 6 and 7: NaN padding
    start, values = read_bin(path)
    assert start == 5 and np.array_equal(values, np.array([1.5, np.nan, np.nan, 2.5], dtype="<f4"), equal_nan=True)
    put(path, 3, 0.5)  # an earlier session backfilled later: the bin starts earlier
    start, values = read_bin(path)
    assert start == 3 and values.tolist()[:3] == [0.5, pytest.approx(float("nan"), nan_ok=True), 1.5]
    put(path, 6, 9.0)  # in place
    assert read_bin(path)[1][3] == 9.0 and path.stat().st_size == 4 * (1 + 6)


def test_sessions_in_any_order_give_the_bytes_of_a_full_build(tmp_path):
    rng = np.random.default_rng(3)
    slots = sorted(rng.choice(np.arange(100, 400), 120, replace=False).tolist())  # a symbol that skips sessions
    values = {i: float(np.float32(rng.normal(100, 5))) for i in slots}
    full = np.full(slots[-1] - slots[0] + 1, np.nan, dtype="<f4")
    for i, v in values.items():
        full[i - slots[0]] = v
    shuffled = list(values.items())
    random.Random(5).shuffle(shuffled)
    path = tmp_path / "x" / "close.day.bin"
    for i, v in shuffled:
        put(path, i, v)
    assert path.read_bytes() == encode(slots[0], full)


def _write_slots(path, slots):
    for i in slots:
        put_many(path, {i: float(i)})


def test_parallel_processes_writing_one_bin_lose_nothing(tmp_path):
    path = tmp_path / "y" / "open.day.bin"
    slots = list(range(10, 210))
    halves = [slots[0::2][::-1], slots[1::2]]  # interleaved, one backwards: appends and backfills race
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_slots, args=(path, half)) for half in halves]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    start, values = read_bin(path)
    assert start == 10 and values.tolist() == [float(i) for i in slots]


def test_a_directory_written_session_by_session_out_of_order(tmp_path):
    import datetime as dt

    import polars as pl

    from quant_assets.datasets import Calendar
    from quant_assets.qlib.directory import QlibDirectory
    from quant_assets.sessions import sessions

    days = sessions(Calendar.XNYS, dt.date(2026, 2, 2), dt.date(2026, 2, 13))  # 10 sessions
    present = {  # ticker -> sessions it trades (by position): a gap, a listing, a delisting, case twins, NA
        "AAPL": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        "GAPY": [0, 1, 3, 4, 9],
        "NEWCO": [5, 6, 7, 8, 9],
        "GONE": [0, 1, 2],
        "BCpC": [2, 3],
        "BCPC": [2, 3, 4],
        "NA": [1, 2],
    }

    def close(ticker, k):
        return float(np.float32(10 + len(ticker) + k / 8))

    directory = QlibDirectory(tmp_path / "qlib", Calendar.XNYS, days[0])
    for k in [9, 0, 4, 2, 8, 1, 3, 7, 5, 6]:  # any order
        rows = [(t, close(t, k)) for t, ks in present.items() if k in ks]
        frame = pl.DataFrame(rows, schema=["ticker", "close"], orient="row").with_columns(slot=0)
        directory.write_sessions(frame, days[k], days[k], ["close"])

    calendar = (tmp_path / "qlib" / "calendars" / "day.txt").read_text()
    assert calendar == "".join(f"{d:%Y-%m-%d}\n" for d in days)
    instruments = dict(
        line.split("\t", 1) for line in (tmp_path / "qlib" / "instruments" / "all.txt").read_text().splitlines()
    )
    assert instruments["GONE"] == "2026-02-02\t2026-02-04"  # ends where it stopped
    assert instruments["NEWCO"] == f"{days[5]:%Y-%m-%d}\t{days[9]:%Y-%m-%d}"
    assert {"BC_PC", "BCPC", "NA_"} <= set(instruments)
    for ticker, ks in present.items():
        full = np.full(ks[-1] - ks[0] + 1, np.nan, dtype="<f4")
        for k in ks:
            full[k - ks[0]] = close(ticker, k)
        path = directory.bin_path(qlib_symbol(ticker), "close")
        assert path.read_bytes() == encode(ks[0], full), ticker  # as a full build writes it


READ_BACK = """
import json, sys
import qlib
from qlib.data import D
qlib.init(provider_uri=sys.argv[1], region="us")
frame = D.features(D.instruments("all"), ["$close"], start_time=sys.argv[2], end_time=sys.argv[3], freq="day")
values = {f"{symbol}|{day:%Y-%m-%d}": (None if value != value else float(value))
          for (symbol, day), value in frame["$close"].items()}
print(json.dumps(values))
"""


def test_qlibs_own_reader_reads_back_every_value(tmp_path):
    """A directory written session by session in shuffled order, read by pyqlib (its own environment, set up by
    `make test`; QUANT_ASSETS_QLIB_PYTHON names its interpreter)."""
    import datetime as dt
    import json
    import os
    import subprocess

    import polars as pl

    from quant_assets.datasets import Calendar
    from quant_assets.qlib.directory import QlibDirectory
    from quant_assets.sessions import sessions

    python = os.environ.get("QUANT_ASSETS_QLIB_PYTHON")
    if not python:
        pytest.skip("QUANT_ASSETS_QLIB_PYTHON is not set: `make test` installs Qlib's reader and sets it")
    days = sessions(Calendar.XNYS, dt.date(2026, 2, 2), dt.date(2026, 2, 27))
    rng = np.random.default_rng(11)
    tickers = ["AAPL", "BCpC", "BCPC", "NA", "CON", "BRK.B", "GAPPY", "LATE", "GONE"]
    present = {t: sorted(rng.choice(len(days), 12, replace=False).tolist()) for t in tickers}
    present["LATE"] = list(range(10, len(days)))  # lists mid-range
    present["GONE"] = list(range(0, 7))  # delists mid-range
    expected = {t: {k: float(np.float32(rng.uniform(1, 500))) for k in ks} for t, ks in present.items()}
    directory = QlibDirectory(tmp_path / "qlib", Calendar.XNYS, days[0])
    for k in random.Random(2).sample(range(len(days)), len(days)):
        rows = [(t, v[k]) for t, v in expected.items() if k in v]
        frame = pl.DataFrame(rows, schema=["ticker", "close"], orient="row").with_columns(slot=0)
        directory.write_sessions(frame, days[k], days[k], ["close"])
    out = subprocess.run(
        [python, "-c", READ_BACK, str(tmp_path / "qlib"), f"{days[0]}", f"{days[-1]}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    values = json.loads(out.stdout.strip().splitlines()[-1])
    for ticker, by_day in expected.items():
        symbol = qlib_symbol(ticker)
        first, last = min(by_day), max(by_day)
        for k in range(first, last + 1):  # inside a symbol's life: its values, NaN on the sessions it skipped
            assert values[f"{symbol}|{days[k]:%Y-%m-%d}"] == by_day.get(k), (ticker, days[k])
        if last + 1 < len(days):  # after its last session a symbol has no rows (survivorship-free, not padded)
            assert f"{symbol}|{days[last + 1]:%Y-%m-%d}" not in values


def _write_sessions(root, order):
    import datetime as dt

    import polars as pl

    from quant_assets.datasets import Calendar
    from quant_assets.qlib.directory import QlibDirectory

    directory = QlibDirectory(root, Calendar.XNYS, dt.date(2026, 2, 2))
    for day, rows in order:
        frame = pl.DataFrame(rows, schema=["ticker", "close", "open"], orient="row").with_columns(slot=0)
        directory.write_sessions(frame, day, day, ["close", "open"])


def test_parallel_processes_writing_sessions_of_one_directory_give_a_sequential_build(tmp_path):
    import datetime as dt

    from quant_assets.datasets import Calendar
    from quant_assets.sessions import sessions

    days = sessions(Calendar.XNYS, dt.date(2026, 2, 2), dt.date(2026, 4, 30))
    rng = np.random.default_rng(4)
    tickers = [f"T{i}" for i in range(40)] + ["BCpC", "NA"]
    work = [
        (day, [(t, float(rng.uniform(1, 9)), float(rng.uniform(1, 9))) for t in tickers if rng.random() < 0.8])
        for day in days
    ]
    _write_sessions(tmp_path / "sequential", work)
    halves = [work[0::2][::-1], work[1::2]]  # interleaved sessions, one process backwards: appends and backfills race
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_sessions, args=(tmp_path / "parallel", half)) for half in halves]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    for path in sorted((tmp_path / "sequential").rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            twin = tmp_path / "parallel" / path.relative_to(tmp_path / "sequential")
            assert twin.read_bytes() == path.read_bytes(), path
