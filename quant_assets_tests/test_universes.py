"""Named universes: the hand-edited files, their point-in-time versions, the `universes` command, the sample files,
the Dagster resource, run tags and sensor, and the Qlib instruments files read back by pyqlib."""

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from quant_assets.cli import main
from quant_assets.datasets import Calendar
from quant_assets.defs.universes import (
    UNIVERSE_TAG,
    VERSION_TAG,
    UniverseFolder,
    build_universe_sensor,
    universe_for_run,
    universes_defs,
)
from quant_assets.qlib.directory import QlibDirectory, write_universe_instruments
from quant_assets.sessions import sessions
from quant_assets.settings import from_env
from quant_assets.universes import Span, UniverseError, Universes, read_folder, version_id

T1 = dt.datetime(2026, 1, 20, 15, tzinfo=dt.UTC)  # before the Qlib directory's first session
T2 = dt.datetime(2026, 2, 10, 15, tzinfo=dt.UTC)
T3 = dt.datetime(2026, 2, 17, 15, tzinfo=dt.UTC)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.txt"
    path.write_text(text)
    return path


def edited(tmp_path) -> Universes:
    """A watchlist recorded at T1 (AAPL, BRK.B), T2 (AAPL out, MSFT in) and T3 (AAPL back)."""
    folder = tmp_path / "universes"
    store = Universes(folder, tmp_path / "data")
    for when, text in [
        (T1, "AAPL\nBRK/B US Equity\n"),
        (T2, "BRK.B\nMSFT:US\n"),
        (T3, "AAPL US Equity\nBRK-B\nMSFT\n"),
    ]:
        write(folder, "watchlist", text)
        assert [v.universe for v in store.record(now=when).new] == ["watchlist"]
    return store


def test_a_universe_file_reads_comments_and_every_form_and_sets_a_bad_line_aside(tmp_path):
    path = write(
        tmp_path,
        "watchlist",
        "# my watchlist\nAAPL  # Apple\n\nBRK/B US Equity\nBRK-B\nBRK.B\nMSFT:US\nSPX Index\n^GSPC\nnot a symbol!\n"
        "   \nBCpC\n",
    )
    write(tmp_path, "Bad Name", "AAPL\n")
    (tmp_path / "notes.md").write_text("not a universe")
    folder = read_folder(tmp_path)
    assert list(folder.universes) == ["watchlist"]
    watchlist = folder.universes["watchlist"]
    assert watchlist.members == ("AAPL", "BCpC", "BRK.B", "I:SPX", "MSFT")  # canonical, duplicates collapsed
    assert watchlist.set_aside == (f"{path}:10: 'not a symbol!' is not a symbol in any known form",)
    [bad_file] = folder.set_aside
    assert bad_file.startswith(f"{tmp_path / 'Bad Name.txt'}: not a universe file: 'Bad Name' is not a universe name")


def test_an_edit_is_a_new_version_with_its_changes_and_an_unchanged_file_writes_nothing(tmp_path):
    folder = tmp_path / "universes"
    write(folder, "watchlist", "AAPL\nBRK.B\n")
    write(folder, "active", "AAPL\n")
    store = Universes(folder, tmp_path / "data")
    first = store.record(now=T1).new
    assert [(v.universe, v.version, v.members) for v in first] == [
        ("active", version_id(["AAPL"]), ("AAPL",)),
        ("watchlist", version_id(["AAPL", "BRK.B"]), ("AAPL", "BRK.B")),
    ]
    stored = sorted(p.relative_to(store.store).as_posix() for p in store.store.rglob("*.json"))
    assert stored == [f"active/000001-{first[0].version}.json", f"watchlist/000001-{first[1].version}.json"]

    write(folder, "watchlist", "# reordered, a comment, a duplicate: the same members\nBRK-B\nAAPL\nAAPL\n")
    assert store.record(now=T2).new == ()
    assert sorted(p.relative_to(store.store).as_posix() for p in store.store.rglob("*.json")) == stored

    write(folder, "watchlist", "BRK.B\nMSFT\n")
    [new] = store.record(now=T3).new
    assert (new.universe, new.sequence, new.version, new.as_of) == ("watchlist", 2, version_id(["BRK.B", "MSFT"]), T3)
    assert store.current("watchlist") == new
    [(_, created), (_, change)] = store.changes("watchlist")
    assert (created.added, created.removed) == (("AAPL", "BRK.B"), ())
    assert (change.added, change.removed) == (("MSFT",), ("AAPL",))
    assert store.names() == ["active", "watchlist"]


def test_membership_on_a_past_date_answers_from_the_version_of_that_day(tmp_path):
    store = edited(tmp_path)
    assert store.members_as_of("watchlist", dt.date(2026, 1, 19)) == ()  # before the first version
    assert store.members_as_of("watchlist", dt.date(2026, 1, 20)) == ("AAPL", "BRK.B")  # the end of the day
    assert store.members_as_of("watchlist", dt.date(2026, 2, 9)) == ("AAPL", "BRK.B")
    assert store.members_as_of("watchlist", dt.date(2026, 2, 10)) == ("BRK.B", "MSFT")
    assert store.members_as_of("watchlist", T2 - dt.timedelta(seconds=1)) == ("AAPL", "BRK.B")
    assert store.members_as_of("watchlist", dt.datetime(2026, 2, 10, 15)) == ("BRK.B", "MSFT")  # naive is UTC
    assert store.members_as_of("watchlist", dt.date(2026, 3, 1)) == ("AAPL", "BRK.B", "MSFT")
    with pytest.raises(UniverseError, match="universe nope has no recorded version"):
        store.members_as_of("nope", dt.date(2026, 3, 1))


def test_a_new_universe_may_say_since_when_its_first_members_count(tmp_path):
    folder = tmp_path / "universes"
    store = Universes(folder, tmp_path / "data")
    write(folder, "watchlist", "# a history to backfill\n# since: 2026-01-02\nAAPL\n")
    store.record(now=T1)
    assert store.current("watchlist").as_of == dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert store.members_as_of("watchlist", dt.date(2026, 1, 2)) == ("AAPL",)
    write(folder, "watchlist", "# since: 2026-01-02\nAAPL\nSPY\n")  # a later edit counts from when it is seen
    store.record(now=T2)
    assert store.current("watchlist").as_of == T2
    assert store.day_spans("watchlist") == [("AAPL", dt.date(2026, 1, 2), None), ("SPY", T2.date(), None)]
    write(folder, "indices", "# since: soon\nI:SPX\n")
    (recorded,) = [v for v in store.record(now=T3).new if v.universe == "indices"]
    assert recorded.as_of == T3 and recorded.set_aside == (f"{folder / 'indices.txt'}:1: `since` is not a date "
                                                          "(YYYY-MM-DD): 'soon'",)  # fmt: skip


def test_a_symbol_removed_and_added_again_has_two_spans(tmp_path):
    store = edited(tmp_path)
    assert store.spans("watchlist") == [
        Span("AAPL", T1, T2),
        Span("AAPL", T3, None),
        Span("BRK.B", T1, None),
        Span("MSFT", T2, None),
    ]
    assert store.day_spans("watchlist") == [
        ("AAPL", dt.date(2026, 1, 20), dt.date(2026, 2, 9)),
        ("AAPL", dt.date(2026, 2, 17), None),
        ("BRK.B", dt.date(2026, 1, 20), None),
        ("MSFT", dt.date(2026, 2, 10), None),
    ]


def test_a_deleted_file_keeps_its_history_and_an_earlier_clock_is_refused(tmp_path):
    store = edited(tmp_path)
    (store.folder / "watchlist.txt").unlink()
    assert store.record(now=T3 + dt.timedelta(days=1)).new == ()
    assert store.names() == ["watchlist"]
    assert store.members_as_of("watchlist", dt.date(2026, 3, 1)) == ("AAPL", "BRK.B", "MSFT")
    write(store.folder, "watchlist", "AAPL\n")
    with pytest.raises(ValueError, match="universe watchlist: observed at 2026-02-10T15:00:00"):
        store.record(now=T2)


def universes_cli(tmp_path, capsys, *args: str) -> str:
    code = main(["universes", *args, "--folder", str(tmp_path / "universes"), "--data", str(tmp_path / "data")])
    out = capsys.readouterr()
    assert (code, out.err) == (0, ""), out.err
    return out.out


def test_the_universes_command_lists_shows_and_tells_the_history(tmp_path, capsys):
    store = edited(tmp_path)
    write(store.folder, "indices", "SPX Index\nNDX Index\n")
    write(store.folder, "active", "AAPL\nnope nope\n")
    listed = json.loads(universes_cli(tmp_path, capsys, "--json"))  # records active and indices on the way
    rows = {row["universe"]: row for row in listed["universes"]}
    assert {n: (r["members"], r["recorded_now"]) for n, r in rows.items()} == {
        "active": (1, True),
        "indices": (2, True),
        "watchlist": (3, False),
    }
    assert rows["watchlist"]["version"] == version_id(["AAPL", "BRK.B", "MSFT"])
    assert rows["active"]["set_aside"] == [
        f"{store.folder / 'active.txt'}:2: 'nope nope' is not a symbol in any known form"
    ]
    text = universes_cli(tmp_path, capsys)
    assert f"watchlist                  3  {version_id(['AAPL', 'BRK.B', 'MSFT'])}  2026-02-17 15:00:00" in text
    assert "'nope nope' is not a symbol" in text and "(new version)" not in text

    shown = json.loads(universes_cli(tmp_path, capsys, "show", "watchlist", "--as-of", "2026-02-12", "--json"))
    assert (shown["version"], shown["members"]) == (version_id(["BRK.B", "MSFT"]), ["BRK.B", "MSFT"])
    assert universes_cli(tmp_path, capsys, "show", "indices").splitlines()[1:] == ["I:NDX", "I:SPX"]
    history = universes_cli(tmp_path, capsys, "history", "watchlist")
    assert "      added (1): MSFT\n      removed (1): AAPL\n" in history
    versions = json.loads(universes_cli(tmp_path, capsys, "history", "watchlist", "--json"))["versions"]
    assert [(v["sequence"], v["added"], v["removed"]) for v in versions] == [
        (1, ["AAPL", "BRK.B"], []),
        (2, ["MSFT"], ["AAPL"]),
        (3, ["AAPL"], []),
    ]

    write(store.folder, "watchlist", "AAPL\n")  # an edit shows up at the next look
    assert universes_cli(tmp_path, capsys, "show", "watchlist").splitlines()[1:] == ["AAPL"]
    code = main(["universes", "show", "nope", "--folder", str(store.folder), "--data", str(tmp_path / "data")])
    assert code == 1
    assert "universe nope has no recorded version" in capsys.readouterr().err


def test_sample_writes_the_sample_universes_once_and_never_over_a_users_file(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "universes"
    monkeypatch.setenv("QUANT_ASSETS_UNIVERSES", str(folder))
    days = ["--start", "2026-02-02", "--end", "2026-02-03", "--datasets", "stocks_daily"]
    assert main(["sample", *days, "--out", str(tmp_path / "vendor")]) == 0
    assert "wrote sample universes watchlist, active, indices to" in capsys.readouterr().out
    assert "BRK/B US Equity\n" in (folder / "watchlist.txt").read_text()
    parsed = read_folder(folder)
    assert {n: len(u.members) for n, u in parsed.universes.items()} == {"active": 10, "indices": 2, "watchlist": 40}
    assert {"AAPL", "BRK.B"} <= set(parsed.universes["watchlist"].members)
    assert set(parsed.universes["active"].members) <= set(parsed.universes["watchlist"].members)
    assert parsed.universes["indices"].members == ("I:NDX", "I:SPX")
    assert [u.set_aside for u in parsed.universes.values()] == [(), (), ()]

    write(folder, "active", "MSFT\n")
    assert main(["sample", *days, "--out", str(tmp_path / "vendor")]) == 0
    assert "sample universes" not in capsys.readouterr().out
    assert (folder / "active.txt").read_text() == "MSFT\n"


def test_an_asset_resolves_a_universe_and_tags_its_run(tmp_path):
    store = edited(tmp_path)

    @dg.asset
    def uses_watchlist(context: dg.AssetExecutionContext, universes: UniverseFolder):
        version, metadata = universe_for_run(context, universes, "watchlist")
        return dg.MaterializeResult(metadata={**metadata, "members": list(version.members)})

    write(store.folder, "watchlist", "AAPL\nNVDA\n")  # edited since the last record: the run sees it
    resource = UniverseFolder(folder=str(store.folder), data=str(store.data))
    with dg.instance_for_test() as instance:
        result = dg.materialize([uses_watchlist], resources={"universes": resource}, instance=instance)
        tags = instance.get_run_by_id(result.run_id).tags
    version = version_id(["AAPL", "NVDA"])
    assert (tags[UNIVERSE_TAG], tags[VERSION_TAG]) == ("watchlist", version)
    [event] = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert {k: metadata[k] for k in ("universe", "universe_version", "universe_members", "members")} == {
        "universe": "watchlist",
        "universe_version": version,
        "universe_members": 2,
        "members": ["AAPL", "NVDA"],
    }
    assert dt.datetime.fromisoformat(metadata["universe_as_of"]) > T3
    with pytest.raises(UniverseError, match="universe nope: no .*nope.txt and no recorded version"):
        resource.resolve("nope")


def test_the_sensor_records_each_edit_and_skips_when_nothing_changed(tmp_path):
    folder = tmp_path / "universes"
    write(folder, "watchlist", "AAPL\n")
    settings = from_env({"QUANT_ASSETS_UNIVERSES": str(folder), "QUANT_ASSETS_DATA": str(tmp_path / "data")})
    defs = universes_defs(settings)
    assert defs.resources["universes"] == UniverseFolder(folder=str(folder), data=str(tmp_path / "data"))
    sensor = build_universe_sensor()
    assert sensor.minimum_interval_seconds == 60
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.instance_for_test() as instance:

        def tick():
            return sensor(
                dg.build_sensor_context(instance=instance, resources={"universes": defs.resources["universes"]})
            )

        first = tick()
        assert isinstance(first, dg.SensorResult) and first.run_requests == []
        assert json.loads(first.cursor) == {"watchlist": version_id(["AAPL"])}
        again = tick()
        assert isinstance(again, dg.SkipReason) and "no universe changed" in again.skip_message
        write(folder, "watchlist", "AAPL\nMSFT\n")
        write(folder, "active", "AAPL\n")
        edited = tick()
        assert json.loads(edited.cursor) == {"active": version_id(["AAPL"]), "watchlist": version_id(["AAPL", "MSFT"])}
    assert [v.members for v in Universes(folder, tmp_path / "data").history("watchlist")] == [
        ("AAPL",),
        ("AAPL", "MSFT"),
    ]


QLIB_READ = """
import json, sys
import qlib
from qlib.data import D
qlib.init(provider_uri=sys.argv[1], region="us")
universe = D.instruments("watchlist")
spans = D.list_instruments(universe, start_time="2026-02-02", end_time="2026-02-27", as_list=False)
frame = D.features(universe, ["$close"], start_time="2026-02-02", end_time="2026-02-27", freq="day")
print(json.dumps({"spans": {s: [[f"{a:%Y-%m-%d}", f"{b:%Y-%m-%d}"] for a, b in v] for s, v in spans.items()},
                  "rows": sorted(f"{s}|{d:%Y-%m-%d}" for s, d in frame.index)}))
"""


def test_qlib_reads_a_universes_members_with_their_spans(tmp_path):
    python = os.environ.get("QUANT_ASSETS_QLIB_PYTHON")
    if not python:
        pytest.skip("QUANT_ASSETS_QLIB_PYTHON is not set: `make test` installs Qlib's reader and sets it")
    store = edited(tmp_path)
    days = sessions(Calendar.XNYS, dt.date(2026, 2, 2), dt.date(2026, 2, 27))
    directory = QlibDirectory(tmp_path / "qlib", Calendar.XNYS, days[0])
    frame = pl.DataFrame(
        [(t, float(k + 1), k) for k in range(len(days)) for t in ("AAPL", "BRK.B")],
        schema=["ticker", "close", "slot"],
        orient="row",
    )
    directory.write_sessions(frame, days[0], days[-1], ["close"])  # MSFT has no data: listed all the same
    path = write_universe_instruments(directory, "watchlist", store.day_spans("watchlist"))
    assert path == tmp_path / "qlib" / "instruments" / "watchlist.txt"
    assert path.read_text() == (
        "AAPL\t2026-02-02\t2026-02-09\nAAPL\t2026-02-17\t2026-02-27\nBRK.B\t2026-02-02\t2026-02-27\n"
        "MSFT\t2026-02-10\t2026-02-27\n"
    )
    with pytest.raises(UniverseError, match="'all' is reserved"):
        write_universe_instruments(directory, "all", [])

    out = subprocess.run([python, "-c", QLIB_READ, str(tmp_path / "qlib")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    read = json.loads(out.stdout.strip().splitlines()[-1])
    assert read["spans"] == {
        "AAPL": [["2026-02-02", "2026-02-09"], ["2026-02-17", "2026-02-27"]],
        "BRK.B": [["2026-02-02", "2026-02-27"]],
        "MSFT": [["2026-02-10", "2026-02-27"]],
    }
    aapl = [f"AAPL|{d:%Y-%m-%d}" for d in days if not dt.date(2026, 2, 9) < d < dt.date(2026, 2, 17)]
    assert read["rows"] == sorted([*aapl, *(f"BRK.B|{d:%Y-%m-%d}" for d in days)])  # only its member sessions


def test_qlib_day_writes_each_universes_instruments_file(tmp_path, tmp_path_factory):
    from quant_assets.defs.qlib import build_qlib_day
    from quant_assets.defs.resources import DataZones
    from quant_assets_tests.test_features import enrich, stock_lake

    first, last = dt.date(2026, 2, 2), dt.date(2026, 2, 6)
    folder = tmp_path / "universes"
    with stock_lake(tmp_path_factory, "universes", first, last, dt.date(2026, 2, 9)) as (data, _):
        assert enrich(data, first.isoformat(), last.isoformat()).success
        store = Universes(folder, data)
        write(folder, "watchlist", "AAPL\nBRK/B US Equity\n")
        store.record(now=T1)
        write(folder, "watchlist", "BRK.B\nMSFT\n")  # MSFT is not in the sample data: listed all the same
        store.record(now=dt.datetime(2026, 2, 4, 15, tzinfo=dt.UTC))
        write(folder, "indices", "I:SPX\n")  # recorded by the run itself, today: after the directory's calendar
        resources = {
            "zones": DataZones(root=str(data)),
            "universes": UniverseFolder(folder=str(folder), data=str(data)),
        }
        tags = {
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": "2026-02-06",
        }
        with dg.instance_for_test() as instance:
            asset = build_qlib_day([], start=first.isoformat(), universes=True)
            result = dg.materialize([asset], resources=resources, tags=tags, instance=instance)
        instruments = data / "qlib" / "day" / "instruments"
        assert (instruments / "watchlist.txt").read_text() == (
            "AAPL\t2026-02-02\t2026-02-03\nBRK.B\t2026-02-02\t2026-02-06\nMSFT\t2026-02-04\t2026-02-06\n"
        )
        assert (instruments / "indices.txt").read_text() == ""
        [event, *_] = result.get_asset_materialization_events()
        assert event.materialization.metadata["universe_instruments"].value == [
            str(instruments / "indices.txt"),
            str(instruments / "watchlist.txt"),
        ]
