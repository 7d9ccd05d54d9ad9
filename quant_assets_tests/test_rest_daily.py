"""rest_stocks_daily through Dagster (`materialize`) against the local Tiingo and Yahoo servers over HTTP: the
hybrid chain's fallbacks (a 429 storm, a spent budget, an open breaker; never an empty answer), a universe edited
between runs, the key kept out of everything written, the reconciliation with the flat files' lake, and the
features and Qlib taken from it."""

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from quant_assets.datasets import DATASETS
from quant_assets.defs.features import build_enriched_daily
from quant_assets.defs.providers import TiingoRest, YahooChart
from quant_assets.defs.qlib import build_qlib_day
from quant_assets.defs.resources import DataZones
from quant_assets.defs.rest import ASSET, HEALTHY, RECONCILES, build_rest_daily
from quant_assets.defs.universes import UNIVERSE_TAG, VERSION_TAG, UniverseFolder
from quant_assets.lake import partition_path
from quant_assets.providers.landing import DATASET
from quant_assets.providers.state import ProviderState
from quant_assets.samples.history import DailyHistory
from quant_assets.samples.tiingo import TiingoServer
from quant_assets.samples.yahoo import YahooServer
from quant_assets.sources import LocalFlatFiles
from quant_assets_tests.conftest import materializations, materialize_spine

KEY = "tiingo-secret-3b9f2c"
SERVED = dt.date(2026, 2, 1), dt.date(2026, 2, 28)
FIRST, LAST = "2026-02-02", "2026-02-06"
CHAIN = ("tiingo", "yahoo")
ASSET_DEF = build_rest_daily(CHAIN)
QUICK = {"attempts": 2, "backoff_seconds": 0.01, "per_second": 200, "per_minute": None, "per_hour": None,
         "per_day": None, "rate_margin_seconds": 0.0}  # fmt: skip


@pytest.fixture
def servers():
    with TiingoServer(*SERVED, api_key=KEY) as tiingo, YahooServer(*SERVED) as yahoo:
        yield tiingo, yahoo


@pytest.fixture(autouse=True)
def tiingo_key(monkeypatch):
    monkeypatch.setenv("TIINGO_API_KEY", KEY)


def universe(folder: Path, *symbols: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "watchlist.txt").write_text("# the test's watchlist\n" + "\n".join(symbols) + "\n")
    return folder


def resources(data: Path, tiingo: TiingoServer, yahoo: YahooServer, **tiingo_config) -> dict:
    return {
        "zones": DataZones(root=str(data)),
        "universes": UniverseFolder(folder=str(data / "universes"), data=str(data)),
        "tiingo": TiingoRest(base_url=tiingo.url, api_key=dg.EnvVar("TIINGO_API_KEY"), **{**QUICK, **tiingo_config}),
        "yahoo": YahooChart(base_url=yahoo.url, **QUICK),
    }


def run(data, tiingo, yahoo, first=FIRST, last=LAST, instance=None, config=None, **tiingo_config):
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    run_config = {"ops": {ASSET: {"config": config}}} if config else None
    kwargs = dict(resources=resources(data, tiingo, yahoo, **tiingo_config), tags=tags, raise_on_error=False)
    if instance is not None:
        return dg.materialize([ASSET_DEF], instance=instance, run_config=run_config, **kwargs)
    with dg.instance_for_test() as fresh:
        return dg.materialize([ASSET_DEF], instance=fresh, run_config=run_config, **kwargs)


def lake(data: Path, session: str = FIRST) -> pl.DataFrame:
    return pl.read_parquet(partition_path(data / "lake", DATASET, dt.date.fromisoformat(session)))


def asked(server, symbol: str) -> int:
    """Requests `server` saw for `symbol` (in the vendor's form in the path)."""
    return sum(f"/{symbol}/" in seen.path or f"/{symbol}?" in seen.path for seen in server.requests)


def run_metadata(result) -> dict:
    return materializations(result, ASSET)[0].metadata


def test_the_paid_provider_serves_stocks_and_the_free_one_the_index_it_cannot(tmp_path, servers):
    tiingo, yahoo = servers
    universe(tmp_path / "universes", "AAPL", "BRK/B US Equity", "SPX Index")
    result = run(tmp_path, tiingo, yahoo)
    assert result.success
    rows = lake(tmp_path)
    assert dict(rows.select("ticker", "provider").iter_rows()) == {
        "AAPL": "tiingo",
        "BRK.B": "tiingo",
        "I:SPX": "yahoo",
    }
    history = DailyHistory(*SERVED)
    [want] = history.bars("BRK.B", dt.date(2026, 2, 2), dt.date(2026, 2, 2))
    brk = rows.filter(pl.col("ticker") == "BRK.B").row(0, named=True)
    assert (brk["open"], brk["close"], brk["volume"], brk["adj_close"]) == (
        want["open"], want["close"], want["volume"], want["adj_close"])  # fmt: skip
    assert brk["window_start"] == dt.datetime(2026, 2, 2, 5, tzinfo=dt.UTC)  # midnight in New York
    assert asked(tiingo, "BRK-B") == 1 and asked(tiingo, "%5EGSPC") == 0 and asked(yahoo, "%5EGSPC") == 1
    assert len(tiingo.requests) == 2 and all(seen.authorised for seen in tiingo.requests)
    meta = run_metadata(result)
    assert meta["members_by_provider"].value == {"tiingo": 2, "yahoo": 1}
    assert meta["universe"].value == "watchlist" and meta["universe_members"].value == 3
    assert meta["members_fallen_back"].value == 1  # the index: Tiingo passed over with its reason
    assert len(materializations(result, ASSET)) == 5


def test_a_429_storm_at_the_paid_provider_is_served_by_the_free_one(tmp_path, servers):
    tiingo, yahoo = servers
    tiingo.per_second = 0  # every request answered 429
    universe(tmp_path / "universes", "AAPL", "SPY")
    result = run(tmp_path, tiingo, yahoo)
    assert result.success
    assert set(lake(tmp_path)["provider"]) == {"yahoo"}
    assert run_metadata(result)["members_fallen_back"].value == 2
    assert len(tiingo.requests) == 4  # two attempts per ticker, then the next provider


def test_an_empty_answer_is_an_answer_and_does_not_fall_back(tmp_path, servers):
    tiingo, yahoo = servers
    tiingo.empty_for = frozenset({"AAPL"})
    universe(tmp_path / "universes", "AAPL", "SPY")
    result = run(tmp_path, tiingo, yahoo)
    assert result.success
    assert set(lake(tmp_path)["ticker"]) == {"SPY"}
    assert yahoo.requests == [] and asked(tiingo, "AAPL") == 1


def test_a_spent_budget_moves_to_the_next_provider_and_sends_nothing_past_it(tmp_path, servers):
    tiingo, yahoo = servers
    universe(tmp_path / "universes", "AAPL", "SPY", "BRK.B", "CEA", "ERI")
    result = run(tmp_path, tiingo, yahoo, cost_per_request=1.0, daily_budget=2.0)
    assert result.success
    assert len(tiingo.requests) == 2
    assert run_metadata(result)["members_by_provider"].value == {"tiingo": 2, "yahoo": 3}
    [health] = [c for c in result.get_asset_check_evaluations() if c.check_name == HEALTHY]
    assert not health.passed and "100% of the day's budget spent" in json.dumps(health.metadata["degraded"].value)


def test_an_open_breaker_sends_nothing_to_its_provider(tmp_path, servers):
    tiingo, yahoo = servers
    state = ProviderState(tmp_path)
    breaker = state.breaker_storage("tiingo")
    breaker.state, breaker.opened_at = "open", dt.datetime.now(dt.UTC)
    state.close()
    universe(tmp_path / "universes", "AAPL", "SPY")
    result = run(tmp_path, tiingo, yahoo, breaker_reset_seconds=3600)
    assert result.success
    assert tiingo.requests == [] and set(lake(tmp_path)["provider"]) == {"yahoo"}
    [health] = [c for c in result.get_asset_check_evaluations() if c.check_name == HEALTHY]
    assert not health.passed and "breaker open" in json.dumps(health.metadata["degraded"].value)


def test_a_ticker_that_fails_everywhere_fails_alone_with_every_reason(tmp_path, servers):
    tiingo, yahoo = servers
    universe(tmp_path / "universes", "AAPL", "NOSUCH")
    result = run(tmp_path, tiingo, yahoo)
    assert result.success
    assert set(lake(tmp_path)["ticker"]) == {"AAPL"}
    meta = run_metadata(result)
    assert meta["members_failed"].value == 1
    [reason] = meta["failed_sample"].value
    assert reason.startswith("NOSUCH 2026-02-02..2026-02-06: no provider answered: tiingo: RequestFailed")
    assert "; yahoo: RequestFailed" in reason


def test_an_edited_universe_fetches_only_the_added_history_and_keeps_the_removed(tmp_path, servers):
    tiingo, yahoo = servers
    folder = universe(tmp_path / "universes", "AAPL", "SPY")
    with dg.instance_for_test() as instance:
        first = run(tmp_path, tiingo, yahoo, instance=instance)
        assert first.success and len(tiingo.requests) == 2
        universe(folder, "SPY", "BRK.B")  # AAPL removed, BRK.B added
        second = run(tmp_path, tiingo, yahoo, instance=instance)
        assert second.success
        assert len(tiingo.requests) == 3 and asked(tiingo, "BRK-B") == 1  # only the added symbol's history
        assert set(lake(tmp_path)["ticker"]) == {"AAPL", "SPY", "BRK.B"}  # the removed one keeps its rows
        versions = [instance.get_run_by_id(r.run_id).tags for r in (first, second)]
        assert versions[0][UNIVERSE_TAG] == versions[1][UNIVERSE_TAG] == "watchlist"
        assert versions[0][VERSION_TAG] != versions[1][VERSION_TAG]
        third = run(tmp_path, tiingo, yahoo, instance=instance, config={"force": True})
        assert third.success and len(tiingo.requests) == 5  # force asks every member again, past the cache


def test_the_key_is_nowhere_in_what_a_run_writes(tmp_path, servers):
    tiingo, yahoo = servers
    tiingo.script.append(type(tiingo.over_limit())(200, json.dumps({"detail": f"Invalid token {KEY}"})))
    universe(tmp_path / "universes", "AAPL", "SPY", "NOSUCH")
    with dg.instance_for_test() as instance:
        result = run(tmp_path, tiingo, yahoo, instance=instance)
        assert result.success
        logs = "\n".join(str(entry) for entry in instance.all_logs(result.run_id))
        assert logs and KEY not in logs
        for event in result.all_events:
            assert KEY not in str(event)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any("raw/providers/tiingo" in str(p) for p in written)
    assert [p for p in written if KEY.encode() in p.read_bytes()] == []
    assert KEY not in repr(resources(tmp_path, tiingo, yahoo)["tiingo"])


@pytest.fixture
def flat_lake(tmp_path, february):
    result = materialize_spine(
        [DATASETS["stocks_daily"]],
        LocalFlatFiles(root=str(february)),
        tmp_path,
        tags={"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": LAST},
    )
    assert result.success
    return tmp_path


def test_it_reconciles_with_the_flat_files_where_both_hold_a_ticker(flat_lake, servers):
    tiingo, yahoo = servers
    universe(flat_lake / "universes", "AAPL", "BRK.B", "SPY", "SPX Index")
    result = run(flat_lake, tiingo, yahoo)
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == RECONCILES]
    assert check.passed and check.metadata["tickers_compared"].value == 15  # three stocks x five sessions
    assert check.metadata["mismatches"].value == 0


def test_features_and_qlib_can_take_their_bars_from_rest(tmp_path, servers):
    tiingo, yahoo = servers
    # No split in the range: without adjustment_factors (no reference data here) a split is a jump that the
    # publication gate refuses, as it would from the flat files.
    universe(tmp_path / "universes", "AAPL", "SPY")
    assert run(tmp_path, tiingo, yahoo, first="2026-02-02", last="2026-02-27").success
    tags = {"dagster/asset_partition_range_start": "2026-02-02", "dagster/asset_partition_range_end": "2026-02-27"}
    zones = {"zones": DataZones(root=str(tmp_path))}
    enriched = build_enriched_daily([], bars="rest")
    assert dg.AssetKey(DATASET) in {dep.asset_key for dep in enriched.specs_by_key[enriched.key].deps}
    with dg.instance_for_test() as instance:
        assert dg.materialize([enriched], resources=zones, tags=tags, instance=instance).success
        qlib_day = build_qlib_day([], start="2026-02-02")
        assert dg.materialize([qlib_day], resources=zones, tags=tags, instance=instance).success
    python = os.environ.get("QUANT_ASSETS_QLIB_PYTHON")
    if not python:
        pytest.skip("QUANT_ASSETS_QLIB_PYTHON is not set: `make test` installs Qlib's reader and sets it")
    code = (
        "import qlib, sys, json\nfrom qlib.data import D\n"
        "qlib.init(provider_uri={'day': sys.argv[1]}, region='us')\n"
        "f = D.features(['AAPL'], ['$close', '$factor'], '2026-02-17', '2026-02-20')\n"
        "print(json.dumps([[float(v) for v in row] for row in f.values]))"
    )
    out = subprocess.run([python, "-c", code, str(tmp_path / "qlib" / "day")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    values = json.loads(out.stdout.strip().splitlines()[-1])
    history = DailyHistory(*SERVED)
    raw = [b["close"] for b in history.bars("AAPL", dt.date(2026, 2, 17), dt.date(2026, 2, 20))]
    assert len(values) == 4
    assert [round(close / factor, 4) for close, factor in values] == [round(c, 4) for c in raw]
