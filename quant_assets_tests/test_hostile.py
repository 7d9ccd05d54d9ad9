"""Hostile names and values from the vendors, end to end: a flat file whose rows carry tickers that would pick a
path or break a text index, a REST server whose splits carry hostile tickers and numbers, and a lake with a
corrupt partition. Everything runs through Dagster (`materialize`) on generated data, the Qlib directories are read
back by pyqlib's own reader, and the whole temporary root is walked afterwards for anything written outside the
data folder.
"""

import datetime as dt
import gzip
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from quant_assets.datasets import DATASETS
from quant_assets.defs.qlib import build_qlib_day, build_qlib_minute
from quant_assets.defs.resources import DataZones
from quant_assets.flatfiles import vendor_key
from quant_assets.lake import partition_path, scan, write_parquet
from quant_assets.names import UnsafeName, child, index_line
from quant_assets.qlib.bins import read_bin
from quant_assets.qlib.symbols import qlib_symbol
from quant_assets.reference.factors import read_factors
from quant_assets.sample import folder_writer, generate
from quant_assets.sample_rest import LocalProvider, _split
from quant_assets.sessions import sessions
from quant_assets.sources import LocalFlatFiles
from quant_assets_tests.conftest import materialize_spine
from quant_assets_tests.test_features import enrich
from quant_assets_tests.test_reference import meta, refresh

DAY, MINUTE = DATASETS["stocks_daily"], DATASETS["stocks_minute"]
START, END = dt.date(2026, 2, 9), dt.date(2026, 2, 20)
HOSTILE_DAY = dt.date(2026, 2, 12)
AS_OF = dt.date(2026, 2, 23)
ESCAPE = "../../../../../../ESCFLAT"
HOSTILE_TICKERS = [ESCAPE, "..", "A\tB", "C\nD", "E\x00F", "Z" * 10_000, 'Q"UOTE', "BACK\\SLASH", "SP ACE"]
QLIB_PRICE_FIELDS = ("open", "high", "low", "close", "volume", "factor")


def _range(first: dt.date, last: dt.date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def add_rows(vendor: Path, dataset, session: dt.date, tickers: list[str]) -> None:
    """Append one row per hostile ticker to a generated vendor file, copying the file's first row otherwise."""
    path = vendor / vendor_key(dataset, session)
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    first = lines[1].split(",", 1)[1]
    path.write_bytes(gzip.compress(("\n".join(lines + [f"{_csv_field(t)},{first}" for t in tickers]) + "\n").encode()))


def run_qlib(data: Path, asset, first: dt.date, last: dt.date):
    with dg.instance_for_test() as instance:
        return dg.materialize(
            [asset], resources={"zones": DataZones(root=str(data))}, tags=_range(first, last), instance=instance,
            raise_on_error=False,
        )  # fmt: skip


def all_files(root: Path) -> list[Path]:
    return [Path(folder) / name for folder, _, names in os.walk(root) for name in names]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Generated Feb 9-20 with hostile tickers in the Feb 12 day and minute files, ingested; a REST server whose
    splits add hostile tickers and numbers; factors, features and both Qlib directories built."""
    root = tmp_path_factory.mktemp("hostile")
    vendor, data = root / "vendor", root / "data"
    generate([DAY, MINUTE], START, END, folder_writer(vendor))
    for dataset in (DAY, MINUTE):
        add_rows(vendor, dataset, HOSTILE_DAY, HOSTILE_TICKERS)
    # The small sample's day file has 70 rows: 9 hostile ones are above the default 1% share that rejects a file.
    quality = {"max_failure_share": 0.2}
    ingest = materialize_spine(
        [DAY, MINUTE], LocalFlatFiles(root=str(vendor)), data, quality=quality, tags=_range(START, END)
    )
    assert ingest.success
    with LocalProvider(START, END) as server:
        for ticker in ["Y" * 10_000, "N\x00UL", "T\tAB", "N\nL", "../../../../../../ESCREST"]:
            server.data.extra_splits.append(_split(ticker, HOSTILE_DAY, 1, 2))
        server.data.extra_splits += [
            _split("SPY", HOSTILE_DAY, 1e300, 1),
            _split("SPY", dt.date(2026, 2, 13), 1e-300, 1),
            _split("AAPL", HOSTILE_DAY, -2, 1),
            _split("MSFT", HOSTILE_DAY, 0, 1),
        ]
        refreshed = refresh(data, server, AS_OF)
        assert refreshed.success
    assert enrich(data, START.isoformat(), END.isoformat()).success
    published = {
        "day": run_qlib(data, build_qlib_day([], start=START.isoformat()), START, END),
        "1min": run_qlib(data, build_qlib_minute(start=START.isoformat()), HOSTILE_DAY, HOSTILE_DAY),
    }
    return root, data, refreshed, published


def test_hostile_flat_file_tickers_are_quarantined_with_the_reason_ticker(hostile):
    root, data, _, _ = hostile
    for dataset in (DAY, MINUTE):
        quarantine = pl.read_parquet(partition_path(data / "quarantine", dataset.name, HOSTILE_DAY))
        aside = quarantine.filter(pl.col("reason").cast(pl.String).str.starts_with("ticker is not a vendor symbol"))
        assert sorted(aside["ticker"]) == sorted(HOSTILE_TICKERS), dataset.name
        lake = scan(data / "lake", dataset.name, [HOSTILE_DAY]).collect()
        assert not set(lake["ticker"]) & set(HOSTILE_TICKERS)
        assert {"AAPL", "BRK.B", "BCpC", "NA"} <= set(lake["ticker"])  # every other ticker is in the lake
        lines = gzip.decompress((root / "vendor" / vendor_key(dataset, HOSTILE_DAY)).read_bytes()).count(b"\n")
        quoted = sum(t.count("\n") for t in HOSTILE_TICKERS)  # a newline inside a quoted ticker is no new row
        assert lake.height + quarantine.height == lines - 1 - quoted  # no row lost (the header aside)


def test_hostile_rest_records_are_set_aside_and_counted_and_the_rest_is_built(hostile):
    _, data, refreshed, _ = hostile
    splits = meta(refreshed, "reference_splits")
    assert splits["records_set_aside"] == 5  # the five hostile tickers, at the REST boundary
    assert all("is not a vendor symbol" in r or "longer than 40" in r for r in splits["set_aside_sample"])
    assert all(len(r) < 300 for r in splits["set_aside_sample"])  # a 10,000-character ticker is shown cut
    factors = meta(refreshed, "adjustment_factors")
    assert factors["actions_set_aside"] == 4 and factors["refused_tickers"] == []
    for reason in ("split ratio 1e+300 is outside", "split ratio 0.0 is outside", "zero or negative"):
        assert reason in factors["set_aside_sample"]
    table = read_factors(data / "reference")
    assert table["price_factor"].is_finite().all() and (table["price_factor"] > 0).all()
    assert table["volume_factor"].is_finite().all() and (table["volume_factor"] > 0).all()
    assert {"BRK.B", "AAPL"} <= set(table["ticker"])  # the generated split and dividend still adjust
    assert table.filter(pl.col("ticker") == "SPY")["split_factor"].to_list() in ([], [1.0])  # no hostile split
    assert not [t for t in table["ticker"] if len(t) > 40 or not t.isprintable()]
    folders = [p.name for p in (data / "reference" / "adjustment_factors").iterdir()]
    assert all(len(name) < 100 and name.isprintable() for name in folders)


def test_qlib_directories_hold_only_vendor_symbols_and_finite_values(hostile):
    _, data, _, published = hostile
    for freq, result in published.items():
        assert result.success, freq
        [gate] = result.get_asset_check_evaluations()
        assert gate.passed, gate.metadata
        root = data / "qlib" / freq
        lines = (root / "instruments" / "all.txt").read_text().split("\n")[:-1]
        assert all(len(line.split("\t")) == 3 for line in lines)
        symbols = {line.split("\t")[0] for line in lines}
        assert {"AAPL", "SPY", "BRK.B", "BC_PC"} <= symbols
        folders = {p.name for p in (root / "features").iterdir()}
        assert folders == {s.lower() for s in symbols}
        for folder in (root / "features").iterdir():
            for field in QLIB_PRICE_FIELDS:
                _, values = read_bin(folder / f"{field}.{freq}.bin")
                assert not np.isinf(values).any(), (folder.name, field)
        _, factor = read_bin(root / "features" / "spy" / f"factor.{freq}.bin")
        assert 0.98 < np.nanmin(factor) and np.nanmax(factor) == 1.0  # its dividend; the 1e300/1e-300 splits: nothing


def test_nothing_is_written_outside_the_data_folder(hostile):
    root, data, _, _ = hostile
    files = all_files(root)
    outside = [p for p in files if not (p.is_relative_to(data) or p.is_relative_to(root / "vendor"))]
    assert outside == []
    assert not [p for p in files if not str(p.relative_to(root)).isprintable()]  # no tab, newline or NUL names
    above = root
    for _ in range(7):  # where `../../../../../../ESCFLAT` from data/qlib/day/features would have landed
        above = above.parent
        assert not list(above.glob("[eE][sS][cC]*")), above


READ_BACK = """
import json, sys
import qlib
from qlib.data import D
root = sys.argv[1]
qlib.init(provider_uri={"day": root + "/day", "1min": root + "/1min"}, region="us")
day = D.features(D.instruments("all"), ["$close", "$factor"], start_time="2026-02-09", end_time="2026-02-20")
minute = D.features(["SPY"], ["$close", "$factor"], start_time="2026-02-12 09:30:00", end_time="2026-02-12 15:59:00",
                    freq="1min")
print(json.dumps({"symbols": sorted(set(day.index.get_level_values(0))), "rows": len(day),
                  "day_nan_factor": int(day["$factor"].isna().sum() - day["$close"].isna().sum()),
                  "minute_rows": len(minute), "minute_factor": sorted(set(minute["$factor"].dropna()))}))
"""


def test_pyqlib_reads_the_published_directories(hostile):
    _, data, _, _ = hostile
    python = os.environ.get("QUANT_ASSETS_QLIB_PYTHON")
    if not python:
        pytest.skip("QUANT_ASSETS_QLIB_PYTHON is not set: `make test` installs Qlib's reader and sets it")
    out = subprocess.run([python, "-c", READ_BACK, str(data / "qlib")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    lake = scan(data / "lake", DAY.name, sessions(DAY.calendar, START, END)).collect()
    assert found["symbols"] == sorted(qlib_symbol(t) for t in lake["ticker"].unique())
    assert found["day_nan_factor"] == 0 and found["minute_rows"] > 300 and found["minute_factor"] == [1.0]


def test_a_nan_literal_in_a_splits_answer_is_refused_and_the_version_stays(tmp_path):
    data = tmp_path / "data"
    with LocalProvider(START, END) as server:
        assert refresh(data, server, AS_OF).success
        server.data.extra_splits.append(_split("AAPL", HOSTILE_DAY, math.nan, 1))  # json.dumps writes NaN
        with dg.instance_for_test() as instance:
            from quant_assets.defs.reference import reference_splits
            from quant_assets.defs.resources import MassiveRest

            result = dg.materialize(
                [reference_splits],
                resources={"zones": DataZones(root=str(data)), "massive": MassiveRest(base_url=server.url)},
                run_config={"ops": {"reference_splits": {"config": {"as_of": "2026-02-24"}}}},
                instance=instance,
                raise_on_error=False,
            )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.event_specific_data.error.to_string()
    assert "MalformedResponse: massive /v3/reference/splits" in error and "NaN" in error
    assert [p.name for p in (data / "reference" / "reference_splits").iterdir()] == ["as_of=2026-02-23.parquet"]


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "a\\b", "a\tb", "a\x00b", "x" * 256])
def test_a_name_that_is_not_one_safe_component_never_becomes_a_path(tmp_path, name):
    with pytest.raises(UnsafeName):
        child(tmp_path, name)


def test_a_symbolic_link_out_of_the_root_is_refused(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafeName, match="outside"):
        child(tmp_path / "root", "link")
    assert child(tmp_path / "root", "AAPL") == tmp_path / "root" / "AAPL"


@pytest.mark.parametrize("field", ["A\tB", "A\nB", "A\rB", "A\x00B", "A\u2028B", "A\x1cB"])
def test_a_text_index_line_refuses_control_characters(field):
    with pytest.raises(UnsafeName, match="control character"):
        index_line(field, "2026-02-02", "2026-02-03")


def test_a_truncated_lake_file_fails_only_its_session_in_enrich_and_qlib(tmp_path):
    vendor, data = tmp_path / "vendor", tmp_path / "data"
    generate([DAY, MINUTE], START, END, folder_writer(vendor))
    assert materialize_spine([DAY, MINUTE], LocalFlatFiles(root=str(vendor)), data, tags=_range(START, END)).success
    bad = dt.date(2026, 2, 18)
    for dataset in (DAY, MINUTE):
        path = partition_path(data / "lake", dataset.name, bad)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = enrich_range(data)
    assert not result.success
    built = sorted(m.partition for m in _materialised(result, "enriched_stocks_daily"))
    days = [s.isoformat() for s in sessions(DAY.calendar, START, END)]
    assert built == [d for d in days if d != bad.isoformat()]
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert "2026-02-18" in message and "date=2026-02-18/part-0.parquet" in message and "cannot be read" in message
    day = run_qlib(data, build_qlib_day([], start=START.isoformat()), START, END)
    assert not day.success
    assert sorted(m.partition for m in _materialised(day, "qlib_day")) == built  # no enriched partition on Feb 18
    minute = run_qlib(data, build_qlib_minute(start=START.isoformat()), dt.date(2026, 2, 17), dt.date(2026, 2, 19))
    assert not minute.success
    assert sorted(m.partition for m in _materialised(minute, "qlib_1min")) == ["2026-02-17", "2026-02-19"]
    [failure] = [e for e in minute.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "stocks_minute 2026-02-18" in failure.event_specific_data.error.message
    # A corrupt enriched partition fails its session in qlib_day, the others are written.
    enriched = partition_path(data / "enriched", DAY.name, dt.date(2026, 2, 11))
    enriched.write_bytes(b"not parquet")
    again = run_qlib(data, build_qlib_day([], start=START.isoformat()), dt.date(2026, 2, 10), dt.date(2026, 2, 12))
    assert sorted(m.partition for m in _materialised(again, "qlib_day")) == ["2026-02-10", "2026-02-12"]
    [failure] = [e for e in again.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "enriched" in failure.event_specific_data.error.message and "2026-02-11" in str(failure)


def enrich_range(data: Path):
    from quant_assets.defs.features import build_enriched_daily

    with dg.instance_for_test() as instance:
        return dg.materialize(
            [build_enriched_daily([DAY, MINUTE])],
            resources={"zones": DataZones(root=str(data))},
            tags=_range(START, END),
            instance=instance,
            raise_on_error=False,
        )


def _materialised(result, asset: str) -> list[dg.AssetMaterialization]:
    events = [e.step_materialization_data.materialization for e in result.get_asset_materialization_events()]
    return [m for m in events if m.asset_key == dg.AssetKey(asset)]


def test_a_lake_written_before_the_ticker_rule_still_publishes_only_vendor_symbols(hostile, tmp_path):
    """A lake partition that holds hostile tickers (written by an older version) reaches enrich and Qlib: the Qlib
    layer sets them aside, counts them, and writes every other symbol."""
    _, data, _, _ = hostile
    session = dt.date(2026, 2, 13)
    lake = scan(data / "lake", DAY.name, [session]).drop("date").collect()
    copy = tmp_path / "data"
    for zone in ("lake", "reference"):
        shutil.copytree(data / zone, copy / zone)
    rows = pl.concat([lake, lake.head(len(HOSTILE_TICKERS)).with_columns(ticker=pl.Series(HOSTILE_TICKERS))])
    write_parquet(rows, partition_path(copy / "lake", DAY.name, session))
    assert enrich(copy, START.isoformat(), END.isoformat()).success
    result = run_qlib(copy, build_qlib_day([], start=START.isoformat()), START, END)
    assert result.success
    [gate] = result.get_asset_check_evaluations()
    assert gate.passed and gate.metadata["set_aside_tickers"].value == len(HOSTILE_TICKERS)
    symbols = {
        line.split("\t")[0]
        for line in (copy / "qlib" / "day" / "instruments" / "all.txt").read_text().split("\n")
        if line
    }
    every = scan(data / "lake", DAY.name).collect()["ticker"].unique()  # every session's tickers, none hostile
    assert symbols == {qlib_symbol(t) for t in every}
    assert all_files(tmp_path) == [p for p in all_files(tmp_path) if p.is_relative_to(copy)]


def test_the_gate_fails_on_a_non_finite_value_where_a_bar_exists_and_allows_nan_padding(tmp_path):
    """Bins written around `screen` (by another tool, or an older version): the gate reads them and refuses an
    infinite factor or a NaN volume beside a close, while NaN in slots without a bar is padding."""
    from quant_assets.datasets import Calendar
    from quant_assets.qlib.directory import QlibDirectory
    from quant_assets.qlib.health import verify

    directory = QlibDirectory(tmp_path / "day", Calendar.XNYS, START)
    nan, inf = float("nan"), float("inf")
    rows = {  # ticker -> (slot, open/high/low/close, volume, factor) per row
        "AAPL": [(0, 10.0, 100.0, 1.0), (1, 10.0, nan, 1.0), (2, 10.0, 100.0, 1.0)],
        "SPY": [(0, 20.0, 100.0, 1.0), (1, 20.0, 100.0, inf)],
        "MSFT": [(0, 30.0, 100.0, 1.0), (2, 30.0, 100.0, 1.0)],  # skips a session: NaN padding at slot 1
    }
    frame = pl.DataFrame(
        [(t, s, p, p, p, p, v, f) for t, values in rows.items() for s, p, v, f in values],
        schema=["ticker", "slot", "open", "high", "low", "close", "volume", "factor"],
        orient="row",
    )
    directory.write_sessions(frame, START, dt.date(2026, 2, 11), ["open", "high", "low", "close", "volume", "factor"])
    report = verify(directory)
    assert sorted(report.errors) == [
        "AAPL: volume is not finite at 2026-02-10 (1 slots with a bar)",
        "SPY: factor is not finite at 2026-02-10 (1 slots with a bar)",
    ]


def test_a_hostile_etag_still_names_a_kept_version_inside_the_zone(tmp_path):
    from quant_assets.raw import rejected_path, replaced_path

    key = vendor_key(DAY, HOSTILE_DAY)
    assert replaced_path(tmp_path, key, '"0a1b"').name == "2026-02-12.etag-0a1b.csv.gz"
    for etag in ["../../../../x", "a\nb", "e" * 300]:
        for path in (replaced_path(tmp_path, key, etag), rejected_path(tmp_path, key, etag)):
            assert path.parent.name == "02" and path.parent.parent.parent.parent.parent.parent == tmp_path
            assert path.name.startswith("2026-02-12.etag-sha256-") and len(path.name) < 120
