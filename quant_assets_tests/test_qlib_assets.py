"""qlib_day and qlib_1min, materialised by Dagster over generated February and March 2026 in shuffled session
order, read back by pyqlib's own reader and compared value by value with the lake, a plain computation of the
factors and the enriched features; the directory compared byte for byte with what Qlib's `dump_all` writes from the
same per-symbol data; a corporate action rewrites only its symbol; the publication gate blocks a broken directory.

The generated data has a split (BRK.B, 2026-02-19), a dividend (AAPL, ex 2026-02-09), a listing (QBJZE, from
2026-02-17), a delisting (QBJZD, last session 2026-03-13), case twins (BCpC/BCPC, BApA/BAPA), `NA` and `NULL`, and
thin tickers that skip sessions."""

import datetime as dt
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import polars as pl
import pytest

from quant_assets.datasets import DATASETS, Calendar
from quant_assets.defs.qlib import build_qlib_day, build_qlib_minute, build_qlib_restated
from quant_assets.defs.resources import DataZones
from quant_assets.features.restate import read_enriched_daily
from quant_assets.lake import scan
from quant_assets.qlib.directory import QlibDirectory
from quant_assets.qlib.fields import DAY_FIELDS, day_fields
from quant_assets.qlib.symbols import qlib_symbol
from quant_assets.reference.factors import read_factors
from quant_assets.sample_rest import LocalProvider
from quant_assets.sessions import regular_hours, sessions
from quant_assets_tests.test_features import enrich, materialize_restated, stock_lake
from quant_assets_tests.test_reference import expected_factors, refresh

DAY, MINUTE = DATASETS["stocks_daily"], DATASETS["stocks_minute"]
START, END = dt.date(2026, 2, 2), dt.date(2026, 3, 20)
DAYS = sessions(Calendar.XNYS, START, END)
FEATURES = ["return_5", "rsi_5"]  # enriched columns configured into qlib_day
FIELDS = [*DAY_FIELDS, *FEATURES]
RUNS = [  # partition ranges in the order they are materialised: later sessions first, gaps filled afterwards
    ("2026-03-02", "2026-03-20"),
    ("2026-02-20", "2026-02-20"),
    ("2026-02-02", "2026-02-06"),
    ("2026-02-13", "2026-02-13"),
    ("2026-02-09", "2026-02-12"),
    ("2026-02-23", "2026-02-27"),
    ("2026-02-17", "2026-02-19"),
]
MINUTE_SESSIONS = ["2026-02-13", "2026-02-12"]  # out of order


def run_qlib(data: Path, asset, first: str, last: str, instance=None):
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    with dg.instance_for_test() as fresh:
        return dg.materialize(
            [asset], resources={"zones": DataZones(root=str(data))}, tags=tags, instance=instance or fresh,
            raise_on_error=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, LocalProvider]:
    with stock_lake(tmp_path_factory, "qlib", START, END, dt.date(2026, 3, 23)) as (data, server):
        assert enrich(data, START.isoformat(), END.isoformat()).success
        day = build_qlib_day(FEATURES, start=START.isoformat())
        for first, last in RUNS:
            result = run_qlib(data, day, first, last)
            assert result.success, (first, last)
            [check] = result.get_asset_check_evaluations()
            assert check.passed, check.metadata
        minute = build_qlib_minute(start=START.isoformat())
        for session in MINUTE_SESSIONS:
            assert run_qlib(data, minute, session, session).success
        yield data, server


READ_BACK = """
import json, sys
import qlib
from qlib.data import D
root, fields, tickers = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
qlib.init(provider_uri={"day": root + "/day", "1min": root + "/1min"}, region="us")
def values(frame):
    return {f"{s}|{t}": [None if v != v else float(v) for v in row] for (s, t), row in zip(frame.index, frame.values)}
day = D.features(D.instruments("all"), fields, start_time="2026-02-02", end_time="2026-03-20", freq="day")
spans = D.list_instruments(D.instruments("all"), start_time="2026-02-02", end_time="2026-03-20", as_list=False)
minute = D.features(tickers, ["$close", "$volume", "$factor", "$change"], start_time="2026-02-12 09:30:00",
                    end_time="2026-02-13 15:59:00", freq="1min")
print(json.dumps({"day": values(day), "minute": values(minute), "columns": list(day.columns),
                  "spans": {s: [[str(a), str(b)] for a, b in v] for s, v in spans.items()}}))
"""


def read_back(root: Path, fields: list[str], tickers: list[str]) -> dict:
    python = os.environ.get("QUANT_ASSETS_QLIB_PYTHON")
    if not python:
        pytest.skip("QUANT_ASSETS_QLIB_PYTHON is not set: `make test` installs Qlib's reader and sets it")
    out = subprocess.run(
        [python, "-c", READ_BACK, str(root), json.dumps(fields), json.dumps(tickers)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def close_to(got, want, rel=1e-6) -> bool:
    if want is None or (isinstance(want, float) and math.isnan(want)):
        return got is None
    return got is not None and math.isclose(got, want, rel_tol=rel, abs_tol=1e-9)


def test_qlib_reads_back_every_value_of_the_lake_the_factors_and_the_features(built):
    data, server = built
    expressions = [f"${f}" for f in FIELDS] + ["$close/$factor", "$volume*$factor"]
    got = read_back(data / "qlib", expressions, ["AAPL"])
    lake = scan(data / "lake", DAY.name).select("ticker", "date", *("open", "high", "low", "close", "volume")).collect()
    factors = expected_factors(lake, server.data.splits(), server.data.dividends())
    enriched = {
        (r["ticker"], r["date"]): r
        for r in read_enriched_daily(data / "enriched", DAY.name).collect().iter_rows(named=True)
    }
    position = {d: i for i, d in enumerate(DAYS)}
    bars = {(r["ticker"], r["date"]): r for r in lake.iter_rows(named=True)}
    life = {}
    for ticker, day in bars:
        first, last = life.get(ticker, (day, day))
        life[ticker] = (min(first, day), max(last, day))
    checked = 0
    for ticker, (first, last) in life.items():
        symbol = qlib_symbol(ticker)
        for day in DAYS[position[first] : position[last] + 1]:
            row = got["day"].get(f"{symbol}|{day} 00:00:00")
            assert row is not None, (ticker, day)
            values = dict(zip(got["columns"], row, strict=True))
            bar = bars.get((ticker, day))
            if bar is None:  # a session the ticker skipped: NaN in every field
                assert all(v is None for v in values.values()), (ticker, day, values)
                continue
            f = factors[(ticker, day)]
            mine = enriched[(ticker, day)]
            for price in ("open", "high", "low", "close"):
                assert values[f"${price}"] == float(np.float32(mine[price])), (ticker, day, price)
                assert close_to(values[f"${price}"], bar[price] * f), (ticker, day, price)
            assert close_to(values["$factor"], f) and close_to(values["$close/$factor"], bar["close"])
            assert close_to(values["$volume"], bar["volume"] / f) and close_to(values["$volume*$factor"], bar["volume"])
            for name in ("vwap", *FEATURES):
                want = mine[name]
                assert values[f"${name}"] == (None if want is None or math.isnan(want) else float(np.float32(want)))
            previous = bars.get((ticker, DAYS[position[day] - 1])) if position[day] else None
            change = (
                None
                if previous is None
                else bar["close"] * f / (previous["close"] * factors[(ticker, previous["date"])]) - 1
            )
            assert close_to(values["$change"], change, rel=1e-5), (ticker, day)
            checked += 1
        if last != DAYS[-1]:  # survivorship-free: nothing after the last session
            assert f"{symbol}|{DAYS[position[last] + 1]} 00:00:00" not in got["day"]
    assert checked == lake.height
    spans = got["spans"]
    assert spans["QBJZE"] == [["2026-02-17 00:00:00", "2026-03-20 00:00:00"]]  # lists mid-range
    assert spans["QBJZD"] == [["2026-02-02 00:00:00", "2026-03-13 00:00:00"]]  # delisted: ends where it stopped
    assert {"BC_PC", "BCPC", "BA_PA", "BAPA", "NA_", "NULL_", "BRK.B"} <= set(spans)
    twins = [got["day"][f"{s}|2026-02-02 00:00:00"][FIELDS.index("close")] for s in ("BC_PC", "BCPC")]
    assert twins[0] != twins[1]
    split = [r[FIELDS.index("change")] for k, r in got["day"].items() if k.startswith("BRK.B|")]
    assert max(abs(c) for c in split if c is not None) < 0.2  # the 2-for-1 split on 2026-02-19 is adjusted away
    brk = {k[6:16]: r[FIELDS.index("factor")] for k, r in got["day"].items() if k.startswith("BRK.B|")}
    assert brk["2026-02-18"] != brk["2026-02-19"]


def test_qlib_reads_back_the_minute_bars_adjusted(built):
    data, _ = built
    got = read_back(data / "qlib", ["$close"], ["AAPL", "BC_PC", "NA_"])["minute"]
    factors = read_factors(data / "reference")
    checked = 0
    for session in (dt.date(2026, 2, 12), dt.date(2026, 2, 13)):
        open_, close = regular_hours(session)
        bars = (
            scan(data / "lake", MINUTE.name, [session])
            .filter(
                pl.col("ticker").is_in(["AAPL", "BCpC", "NA"])
                & pl.col("window_start").is_between(open_, close, closed="left")
            )
            .collect()
        )
        for row in bars.iter_rows(named=True):
            factor = factors.filter((pl.col("ticker") == row["ticker"]) & (pl.col("ex_date") > session))["price_factor"]
            f = (
                float(np.prod(factor[:1].to_list())) if factor.len() else 1.0
            )  # the first later ex-date's cumulative factor
            local = row["window_start"].astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
            close_, volume, factor_, _ = got[f"{qlib_symbol(row['ticker'])}|{local:%Y-%m-%d %H:%M:%S}"]
            assert close_to(close_, row["close"] * f) and close_to(volume, row["volume"] / f) and close_to(factor_, f)
            checked += 1
    assert checked > 100
    # A minute without a trade is NaN, and the calendar holds every regular minute of both sessions.
    calendar = (data / "qlib" / "1min" / "calendars" / "1min.txt").read_text().splitlines()
    assert calendar[0] == "2026-02-02 09:30:00" and calendar[389] == "2026-02-02 15:59:00"
    assert calendar[-1] == "2026-02-13 15:59:00" and len(calendar) == 10 * 390


def dump_all_reference(csv_dir: Path, out: Path) -> None:
    """What Qlib's `dump_bin.py dump_all --freq day --exclude_fields date,symbol` writes, from its documented rules
    (../shared/reference/qlib-format.md): one CSV per symbol, the calendar the sorted union of all dates, each
    symbol reindexed to the calendar from its first to its last date, `[start index, values...]` as `<f`."""
    frames = {p.stem: pd.read_csv(p, parse_dates=["date"]) for p in sorted(csv_dir.glob("*.csv"))}
    calendar = sorted({d for f in frames.values() for d in f["date"]})
    (out / "calendars").mkdir(parents=True)
    (out / "calendars" / "day.txt").write_text("".join(f"{d:%Y-%m-%d}\n" for d in calendar))
    lines = []
    for symbol, frame in frames.items():
        frame = frame.set_index("date").sort_index()
        span = [d for d in calendar if frame.index[0] <= d <= frame.index[-1]]
        frame = frame.reindex(span)
        lines.append(f"{symbol.upper()}\t{span[0]:%Y-%m-%d}\t{span[-1]:%Y-%m-%d}\n")
        folder = out / "features" / symbol.lower()
        folder.mkdir(parents=True)
        for field in [c for c in frame.columns if c not in ("symbol",)]:
            np.hstack([[calendar.index(span[0])], frame[field].to_numpy()]).astype("<f").tofile(
                folder / f"{field.lower()}.day.bin"
            )
    (out / "instruments").mkdir()
    (out / "instruments" / "all.txt").write_text("".join(lines))


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and ".quant_assets" not in p.parts
    }


def lake_tickers(data: Path) -> int:
    return scan(data / "lake", DAY.name).select("ticker").unique().collect().height


def test_the_directory_is_byte_identical_to_dump_all_from_the_same_per_symbol_data(built, tmp_path):
    data, _ = built
    rows = read_enriched_daily(data / "enriched", DAY.name).collect()
    table = day_fields(rows, DAYS, FEATURES)
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    for (ticker,), frame in table.partition_by("ticker", as_dict=True).items():
        frame.select("date", *FIELDS).write_csv(csv_dir / f"{qlib_symbol(ticker)}.csv", float_precision=None)
    dump_all_reference(csv_dir, tmp_path / "dump_all")
    want, mine = files(tmp_path / "dump_all"), files(data / "qlib" / "day")
    assert sorted(want) == sorted(mine)
    assert len(want) == 2 + len(FIELDS) * lake_tickers(data)
    for name in want:
        assert mine[name] == want[name], name


def test_a_corporate_action_rewrites_only_that_symbols_bins(built, tmp_path):
    data, _ = built
    copy = tmp_path / "data"
    for zone in ("lake", "reference", "enriched", "qlib"):
        shutil.copytree(data / zone, copy / zone)
    bins = {p: p.read_bytes() for p in (copy / "qlib" / "day" / "features").rglob("*.bin")}
    minute_bins = {p: p.read_bytes() for p in (copy / "qlib" / "1min" / "features").rglob("*.bin")}
    restated = build_qlib_restated(FEATURES)
    with LocalProvider(START, END) as server:
        server.data.announce_split("SPY", dt.date(2026, 3, 16), 1, 4)
        refresh(copy, server, dt.date(2026, 3, 24))
    assert materialize_restated(copy)["restated_tickers"] == ["SPY"]
    with dg.instance_for_test() as instance:
        result = dg.materialize([restated], resources={"zones": DataZones(root=str(copy))}, instance=instance)
    [event] = result.get_asset_materialization_events()
    assert event.step_materialization_data.materialization.metadata["symbols_rewritten"].value == 1
    changed = sorted({p.parent.name for p, content in bins.items() if p.read_bytes() != content})
    assert changed == ["spy"]
    # The minute history is re-adjusted in place: SPY's 1-for-4 split on 2026-03-16 scales its February bars.
    metadata = event.step_materialization_data.materialization.metadata
    assert metadata["minute_symbols_readjusted"].value == ["SPY"]
    changed = sorted({p.parent.name for p, content in minute_bins.items() if p.read_bytes() != content})
    assert changed == ["spy"]
    for field, scale in (("close", 0.25), ("open", 0.25), ("volume", 4.0), ("factor", 0.25)):
        path = copy / "qlib" / "1min" / "features" / "spy" / f"{field}.1min.bin"
        before = np.frombuffer(minute_bins[path], dtype="<f4")
        after = np.fromfile(path, dtype="<f4")
        assert after[0] == before[0] and np.isnan(after[1:]).sum() == np.isnan(before[1:]).sum() < after.size - 2
        assert np.allclose(after[1:], before[1:].astype(np.float64) * scale, rtol=1e-6, equal_nan=True), field
    directory = QlibDirectory(copy / "qlib" / "day", Calendar.XNYS, START)
    spy = read_enriched_daily(copy / "enriched", DAY.name).filter(pl.col("ticker") == "SPY").collect()
    want = day_fields(spy, DAYS, FEATURES)
    for field in FIELDS:
        start, values = (
            np.fromfile(directory.bin_path("SPY", field), dtype="<f4")[0],
            np.fromfile(directory.bin_path("SPY", field), dtype="<f4")[1:],
        )
        assert start == 0 and np.array_equal(
            values, want[field].cast(pl.Float32).fill_null(np.nan).to_numpy(), equal_nan=True
        )
    assert want.filter(pl.col("date") < dt.date(2026, 3, 16))["factor"].max() < 0.26
    again = dg.materialize([restated], resources={"zones": DataZones(root=str(copy))})
    [event] = again.get_asset_materialization_events()
    metadata = event.step_materialization_data.materialization.metadata
    assert metadata["symbols_rewritten"].value == 0 and metadata["minute_symbols_readjusted"].value == []  # idempotent


def test_the_publication_gate_blocks_a_broken_directory(built, tmp_path):
    data, _ = built
    copy = tmp_path / "data"
    for zone in ("enriched", "qlib"):
        shutil.copytree(data / zone, copy / zone)
    day = copy / "qlib" / "day"
    published = (day / ".quant_assets" / "published.json").read_text()
    aapl = day / "features" / "aapl" / "close.day.bin"
    values = np.fromfile(aapl, dtype="<f4")
    values[DAYS.index(dt.date(2026, 3, 4)) + 1] *= 3  # a price that triples: a split the factors miss
    values.tofile(aapl)
    with (day / "features" / "spy" / "factor.day.bin").open("ab") as stream:  # a bin longer than its span
        stream.write(np.float32(1).tobytes())
    result = run_qlib(copy, build_qlib_day(FEATURES, start=START.isoformat()), "2026-03-05", "2026-03-05")
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and check.blocking
    errors = check.metadata["first_errors"].value
    assert any(e.startswith("AAPL: close moves 67% into 2026-03-05") for e in errors), errors  # from the tripled day
    assert any(e.startswith("SPY: features/spy/factor.day.bin spans slots") for e in errors), errors
    assert (day / ".quant_assets" / "published.json").read_text() == published  # not published
