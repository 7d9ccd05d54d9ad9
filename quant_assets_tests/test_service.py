"""The market-data jobs through Dagster against the local Finnhub, Massive and Alpha Vantage servers over HTTP:
quotes (the chain, the all-zero quote, indices falling back, a held slot, an outage in the middle), news and
fundamentals/earnings as jobs (a second run writes nothing), the Alpha Vantage job planned within its budget over
four days with its check against our own SMA, the schedules evaluated in-process, and one job of each kind
through the real `dagster job execute`."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from quant_assets.clock import now
from quant_assets.defs.providers import AlphaVantageRest, FinnhubRest, provider_resources
from quant_assets.defs.resources import DataZones, MassiveRest
from quant_assets.defs.service import (
    ALL_SERVED,
    JOBS,
    MATCHES_FEATURES,
    build_job,
    service_assets,
)
from quant_assets.defs.universes import UniverseFolder
from quant_assets.features.daily import FeatureSet, daily_features, session_grid
from quant_assets.features.restate import read_enriched_daily
from quant_assets.lake import partition_path
from quant_assets.names import ticker_problem
from quant_assets.providers.client import prune_audit
from quant_assets.providers.symbols import Unsupported, to_vendor
from quant_assets.sample_rest import LocalProvider
from quant_assets.samples.alphavantage import AlphaVantageServer
from quant_assets.samples.finnhub import FinnhubServer
from quant_assets.samples.history import DailyHistory
from quant_assets.samples.server import Reply
from quant_assets.service import indicators, news, quotes
from quant_assets.service.fundamentals import EARNINGS, earnings_as_of, fundamentals_as_of
from quant_assets.settings import from_env
from quant_assets_tests.conftest import run_cli

START, END = dt.date(2026, 1, 2), dt.date(2026, 2, 27)
SESSION = "2026-02-27"
AT = "2026-02-27T15:05:00-05:00"  # the 15:00 slot
QUICK = {"attempts": 1, "backoff_seconds": 0.01, "per_second": 500, "per_minute": None, "per_hour": None,
         "per_day": None, "rate_margin_seconds": 0.0}  # fmt: skip
ACTIVE = ("AAPL", "BRK.B", "SPY", "ZVZZT")
JOB = {job.name: job for job in JOBS}


def universes(data: Path, **members) -> None:
    folder = data / "universes"
    folder.mkdir(parents=True, exist_ok=True)
    for name, symbols in members.items():
        (folder / f"{name}.txt").write_text("# since: 2026-01-02\n" + "\n".join(symbols) + "\n")


def definitions(data: Path, finnhub=None, massive=None, alphavantage=None, **av) -> dg.Definitions:
    resources = {
        "zones": DataZones(root=str(data)),
        "universes": UniverseFolder(folder=str(data / "universes"), data=str(data)),
        "finnhub": FinnhubRest(base_url=finnhub.url, **QUICK) if finnhub else FinnhubRest(),
        "massive": MassiveRest(base_url=massive.url, **QUICK) if massive else MassiveRest(),
        "alphavantage": AlphaVantageRest(base_url=alphavantage.url, **{**QUICK, **av})
        if alphavantage
        else AlphaVantageRest(),
    }
    jobs = [build_job(job) for job in JOBS if job.dataset != "rest_stocks_daily"]
    return dg.Definitions(assets=service_assets(), jobs=jobs, resources=resources)


def execute(defs: dg.Definitions, name: str, instance, partition: str | None = None, **config):
    run_config = JOB[name].run_config()
    run_config["ops"][JOB[name].dataset]["config"].update(config)
    return defs.resolve_job_def(name).execute_in_process(
        run_config=run_config, instance=instance, partition_key=partition, raise_on_error=False
    )


def summary(result, dataset: str) -> dict:
    [materialization] = result.asset_materializations_for_node(dataset)
    return {name: value.value for name, value in materialization.metadata.items()}


def check(result, name: str) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


@pytest.fixture
def servers():
    with FinnhubServer(START, END, all_zero_for={"ZVZZT"}) as finnhub, LocalProvider(START, END) as massive:
        yield finnhub, massive


def test_quotes_come_from_finnhub_and_massive_serves_the_indices_finnhub_refuses(tmp_path, servers):
    finnhub, massive = servers
    universes(tmp_path, active=ACTIVE, indices=("SPX Index", "^NDX"))
    defs = definitions(tmp_path, finnhub, massive)
    history = DailyHistory(START, END)
    with dg.instance_for_test() as instance:
        active = execute(defs, "finnhub_quote_active", instance, SESSION, at=AT)
        indices = execute(defs, "finnhub_quote_indices", instance, SESSION, at=AT)
        assert active.success and indices.success
        slot = dt.datetime(2026, 2, 27, 20, 0, tzinfo=dt.UTC)
        path = quotes.snapshot_path(tmp_path / "lake", dt.date(2026, 2, 27), "active", slot)
        assert path.name == "active-1500.parquet"
        rows = pl.read_parquet(path)
        assert rows.schema == pl.Schema(quotes.SCHEMA)
        by_ticker = {r["ticker"]: r for r in rows.iter_rows(named=True)}
        assert sorted(by_ticker) == sorted(ACTIVE) and {r["provider"] for r in by_ticker.values()} == {"finnhub"}
        for ticker in ("AAPL", "BRK.B", "SPY"):
            last, before = history.bars(ticker, START, END)[-2:][::-1]
            row = by_ticker[ticker]
            assert (row["price"], row["previous_close"], row["high"]) == (last["close"], before["close"], last["high"])
            assert row["quoted_at"] == dt.datetime(2026, 2, 27, 21, 0, tzinfo=dt.UTC)  # 16:00 New York
            assert row["snapshot_at"] == slot
        zero = by_ticker["ZVZZT"]
        assert zero["price"] is None and zero["open"] is None  # Finnhub's all-zero quote: no data, not 0
        meta = summary(active, "quotes")
        assert (meta["served_by_provider"], meta["missing"], meta["failed"]) == ({"finnhub": 4}, 1, 0)

        index_rows = pl.read_parquet(path.with_name("indices-1500.parquet"))
        assert dict(index_rows.select("ticker", "provider").iter_rows()) == {"I:NDX": "massive", "I:SPX": "massive"}
        spx = index_rows.filter(pl.col("ticker") == "I:SPX").row(0, named=True)
        assert spx["price"] == history.index_bars("I:SPX")[-1]["close"]
        assert sum("%5EGSPC" in s.path for s in finnhub.requests) == 1  # asked, refused (paid plan), passed on
        assert sum("ticker.any_of=I%3ASPX" in s.path for s in massive.requests) == 1
        assert summary(indices, "quotes")["served_by_provider"] == {"massive": 2}

        # The same slot again: held, nothing sent, nothing written.
        sent, written = len(finnhub.requests) + len(massive.requests), path.stat().st_mtime_ns
        again = execute(defs, "finnhub_quote_active", instance, SESSION, at=AT)
        assert again.success and len(finnhub.requests) + len(massive.requests) == sent
        assert path.stat().st_mtime_ns == written
        assert (summary(again, "quotes")["skipped_as_held"], summary(again, "quotes")["requests"]) == (4, 0)
        assert instance.get_run_by_id(active.run_id).tags["quant_assets/universe"] == "active"


def test_an_outage_mid_job_keeps_the_others_names_the_failed_and_the_next_run_asks_only_them(tmp_path, servers):
    finnhub, massive = servers
    symbols = ("AAPL", "BRK.B", "SPY", "CEA", "ERI", "FT")
    universes(tmp_path, active=symbols)
    massive.not_entitled_for.add("/v3/snapshot")  # no fallback: the outage is felt
    finnhub.script_after, finnhub.script = 2, [Reply(500, "boom"), Reply(500, "boom")]
    defs = definitions(tmp_path, finnhub, massive)
    with dg.instance_for_test() as instance:
        first = execute(defs, "finnhub_quote_active", instance, SESSION, at=AT, workers=1)
        assert first.success  # what was served is published; the failed are named
        meta = summary(first, "quotes")
        # Members go in the universe's (sorted) order: the third and fourth meet the outage.
        assert meta["failed"] == 2 and [line.split(":")[0] for line in meta["failed_sample"]] == ["CEA", "ERI"]
        assert "finnhub: RequestFailed" in meta["failed_sample"][0] and "massive" in meta["failed_sample"][0]
        evaluation = check(first, ALL_SERVED)
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
        path = tmp_path / "lake" / "quotes" / f"date={SESSION}" / "active-1500.parquet"
        assert sorted(pl.read_parquet(path)["ticker"]) == ["AAPL", "BRK.B", "FT", "SPY"]  # before and after

        asked = len(finnhub.requests)
        second = execute(defs, "finnhub_quote_active", instance, SESSION, at=AT, workers=1)
        assert second.success and len(finnhub.requests) - asked == 2  # only CEA and ERI
        assert sorted(pl.read_parquet(path)["ticker"]) == sorted(symbols)
        assert check(second, ALL_SERVED).passed


def test_news_jobs_merge_both_vendors_and_a_second_run_writes_nothing(tmp_path, servers, monkeypatch):
    finnhub, massive = servers
    monkeypatch.setenv("QUANT_ASSETS_NOW", "2026-02-27T18:00:00-05:00")
    universes(tmp_path, active=("AAPL", "BRK.B"))
    defs = definitions(tmp_path, finnhub, massive)
    with dg.instance_for_test() as instance:
        first = execute(defs, "finnhub_news_active", instance)
        market = execute(defs, "massive_news_market", instance)
        assert first.success and market.success
        rows = news.read_news(tmp_path / "lake").collect()
        company = rows.filter(pl.col("url").str.contains("/AAPL/|/BRK.B/"))
        mondays = [d for d in DailyHistory(START, END).sessions if d.weekday() == 0 and d >= dt.date(2026, 1, 28)]
        assert company.height == 2 * len(mondays)  # one article per symbol per Monday in the 30 days, from both
        assert company["massive_id"].null_count() == 0 and company["finnhub_id"].null_count() == 0
        assert all(p == ["finnhub", "massive"] for p in company["providers"].to_list())
        assert summary(first, "news")["served_by_provider"] == {"finnhub": 2, "massive": 2}
        held, sent = rows.height, len(finnhub.requests) + len(massive.requests)
        again = execute(defs, "finnhub_news_active", instance)
        meta = summary(again, "news")
        assert (meta["files_written"], meta["rows_written"]) == (0, 0)
        assert news.read_news(tmp_path / "lake").collect().height == held
        assert len(finnhub.requests) + len(massive.requests) == sent + 4  # one cursor question per stream
        assert all("published_utc.gte=2026-02-23T13" in s.path for s in massive.requests[-2:])


def test_fundamentals_and_earnings_jobs_keep_versions_and_a_second_run_sends_nothing(tmp_path, servers, monkeypatch):
    finnhub, _ = servers
    monkeypatch.setenv("QUANT_ASSETS_NOW", "2026-03-02T07:00:00-05:00")
    universes(tmp_path, watchlist=("AAPL", "BRK.B", "SPY"))
    defs = definitions(tmp_path, finnhub)
    with dg.instance_for_test() as instance:
        assert execute(defs, "finnhub_fundamentals_watchlist", instance).success
        assert execute(defs, "finnhub_earnings_watchlist", instance).success
        sent = len(finnhub.requests)
        assert sent == 3 + 3 + 1  # metric per symbol, earnings per symbol, one calendar
        known = fundamentals_as_of(tmp_path / "lake", dt.date(2026, 3, 2))
        closes = [b["close"] for b in DailyHistory(START, END).bars("AAPL", START, END)]
        aapl = known.filter((pl.col("symbol") == "AAPL") & (pl.col("name") == "52WeekHigh"))
        assert aapl["value"].to_list() == [max(closes)]
        assert fundamentals_as_of(tmp_path / "lake", dt.date(2026, 3, 1)).height == 0  # not known the day before
        assert sorted(earnings_as_of(tmp_path / "lake", dt.date(2026, 3, 2))["symbol"].unique()) == ["AAPL", "BRK.B",
                                                                                                       "SPY"]  # fmt: skip
        again = execute(defs, "finnhub_fundamentals_watchlist", instance)
        later = execute(defs, "finnhub_earnings_watchlist", instance)
        assert len(finnhub.requests) == sent
        assert summary(again, "fundamentals")["files_written"] == 0
        assert summary(later, EARNINGS)["skipped_as_held"] == 3


def alpha_vantage_symbols(history: DailyHistory, count: int) -> list[str]:
    chosen = []
    for ticker in sorted(history.tickers):
        try:
            to_vendor(ticker, "alphavantage")
        except Unsupported:
            continue
        if ticker_problem(ticker) is None and len(history.bars(ticker, history.start, history.end)) >= 30:
            chosen.append(ticker)
    return chosen[:count]


def write_our_features(enriched: Path, history: DailyHistory, tickers: list[str]) -> None:
    """enriched_stocks_daily as the features module computes it from the raw bars (no corporate actions applied:
    no reference data here), one partition per session."""
    rows = [
        {"ticker": t, **{k: b[k] for k in ("date", "open", "high", "low", "close", "volume")}}
        for t in tickers for b in history.bars(t, history.start, history.end)
    ]  # fmt: skip
    bars = pl.DataFrame(rows).with_columns(raw_close=pl.col("close"), raw_volume=pl.col("volume"))
    table = daily_features(session_grid(bars, history.sessions), FeatureSet())
    for (session,), frame in table.filter(pl.col("close").is_not_null()).partition_by("date", as_dict=True).items():
        path = partition_path(enriched, "stocks_daily", session)  # enriched_stocks_daily's layout
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.drop("session_index", "date").write_parquet(path)


def test_alpha_vantage_spreads_a_100_symbol_universe_over_four_days_within_25_a_day(tmp_path, monkeypatch):
    # The vendor's data runs to the last day of the test's runs (its 18:30 runs then find each day's close there).
    with AlphaVantageServer(START, dt.date(2026, 3, 6), size="medium", api_key="av-key") as server:
        history = server.history
        symbols = alpha_vantage_symbols(history, 100)
        assert len(symbols) == 100
        universes(tmp_path, watchlist=symbols)
        write_our_features(tmp_path / "enriched", history, symbols[:10])
        monkeypatch.setenv("ALPHAVANTAGE_API_KEY", "av-key")
        defs = definitions(tmp_path, alphavantage=server, api_key=dg.EnvVar("ALPHAVANTAGE_API_KEY"),
                           daily_budget=25.0, cost_per_request=1.0)  # fmt: skip
        per_day = []
        with dg.instance_for_test() as instance:
            for day in ("2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05", "2026-03-05", "2026-03-06"):
                monkeypatch.setenv("QUANT_ASSETS_NOW", f"{day}T18:30:00-05:00")
                before = len(server.requests)
                result = execute(defs, "alphavantage_sma_watchlist", instance)
                assert result.success and summary(result, "vendor_indicators")["failed_sample"] == []
                per_day.append(len(server.requests) - before)
                if day == "2026-03-02":
                    assert summary(result, "vendor_indicators")["notes"] == [
                        "100 due, today's budget allows 25: 75 wait for the next days' runs"
                    ]
                    comparison = check(result, MATCHES_FEATURES)
            last = check(result, MATCHES_FEATURES)
    # 25 a day until every symbol is current, never a 26th; nothing more that day; the next day's close starts the
    # refresh round, stalest first.
    assert per_day == [25, 25, 25, 25, 0, 25]
    ledger = indicators.read_ledger(tmp_path / "lake").sort("fetched_at")
    assert ledger.height == 100 and ledger["fetched_at"].dt.date().value_counts()["count"].to_list() == [25] * 4
    refreshed = ledger.filter(pl.col("fetched_at").dt.date() == dt.date(2026, 3, 6))["ticker"].to_list()
    assert sorted(refreshed) == sorted(symbols[:25])  # the ones asked first, on the 2nd
    assert all(seen.authorised for seen in server.requests)
    landed = indicators.read_indicators(tmp_path / "lake", ["SMA_20"]).collect()
    assert sorted(landed["ticker"].unique()) == sorted(symbols)
    aapl = landed.filter((pl.col("ticker") == symbols[0]) & (pl.col("date") == history.end))["value"].item()
    closes = [b["close"] for b in history.bars(symbols[0], START, history.end)]
    assert aapl == pytest.approx(sum(closes[-20:]) / 20, abs=5e-5)
    # The check compared the vendor's SMA(20) with our sma_20 on the symbols we hold features for.
    assert comparison.passed and comparison.metadata["compared"].value > 0
    ours = read_enriched_daily(tmp_path / "enriched", "stocks_daily").collect()
    assert last.passed and last.metadata["compared"].value == ours["sma_20"].drop_nulls().len() > 200
    assert last.metadata["mismatches"].value == 0


def tick(day: str, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{hour:02}:{minute:02}:00").replace(
        tzinfo=dt.timezone(dt.timedelta(hours=-5))
    )


def evaluate(name: str, when: dt.datetime):
    from quant_assets.definitions import defs  # the code location, as the daemon evaluates it

    schedule = defs.resolve_schedule_def(f"{name}_schedule")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
        )
        return schedule, schedule.evaluate_tick(context)


def test_schedules_tick_in_new_york_time_on_trading_days_only_where_it_matters():
    schedule, data = evaluate("finnhub_quote_active", tick("2026-02-27", 10, 15))
    assert schedule.execution_timezone == "America/New_York"
    assert list(schedule.cron_schedule) == ["*/15 9-15 * * 1-5", "0 16 * * 1-5"]
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    [request] = data.run_requests
    assert request.partition_key == "2026-02-27"
    assert request.run_config == {"ops": {"quotes": {"config": {"at": "2026-02-27T10:15:00-05:00"}}}}
    assert JOB["finnhub_quote_active"].tags() == {
        "quant_assets/service_job": "finnhub_quote_active", "quant_assets/scope": "active",
        "quant_assets/providers": "finnhub,massive"}  # fmt: skip
    assert (
        "outside the session's regular hours"
        in evaluate("finnhub_quote_active", tick("2026-02-27", 9, 15))[1].skip_message
    )
    assert "not a trading session" in evaluate("finnhub_quote_active", tick("2026-02-16", 11))[1].skip_message
    assert "not a trading session" in evaluate("alphavantage_sma_watchlist", tick("2026-02-16", 18, 30))[1].skip_message
    schedule, data = evaluate("tiingo_daily_prices_watchlist", tick("2026-02-27", 18))
    assert schedule.cron_schedule == "0 18 * * 1-5"
    assert data.run_requests[0].partition_key == "2026-02-27"
    assert JOB["tiingo_daily_prices_watchlist"].tags()["quant_assets/scope"] == "watchlist"
    schedule, data = evaluate("massive_news_market", tick("2026-02-28", 12, 30))  # news runs on Saturdays too
    assert schedule.cron_schedule == "*/30 * * * *" and data.run_requests[0].partition_key is None
    assert JOB["massive_news_market"].tags()["quant_assets/scope"] == "market"


def test_one_job_of_each_kind_through_dagster_job_execute(tmp_path, servers):
    finnhub, massive = servers
    with AlphaVantageServer(START, END) as alphavantage:
        universes(tmp_path / "data", watchlist=("AAPL", "SPY"), active=("AAPL", "BRK.B"), indices=("I:SPX",))
        env = {
            "QUANT_ASSETS_DATA": str(tmp_path / "data"),
            "QUANT_ASSETS_UNIVERSES": str(tmp_path / "data" / "universes"),
            "FINNHUB_API_BASE_URL": finnhub.url,
            "MASSIVE_API_BASE_URL": massive.url,
            "ALPHAVANTAGE_API_BASE_URL": alphavantage.url,
            "QUANT_ASSETS_PROVIDER_LIMITS": "alphavantage.per_minute=none,finnhub.per_minute=none",
            "QUANT_ASSETS_NOW": "2026-02-27T15:05:00-05:00",
        }
        runs = {
            "yahoo_daily_prices_indices": ["--tags", json.dumps({"dagster/partition": "2026-02-26"})],
            "finnhub_quote_active": ["--tags", json.dumps({"dagster/partition": SESSION})],
            "finnhub_news_active": [],
            "finnhub_fundamentals_watchlist": [],
            "finnhub_earnings_watchlist": [],
            "alphavantage_sma_watchlist": [],
        }
        for name, extra in runs.items():
            out = run_cli("dagster", "job", "execute", "-m", "quant_assets.definitions", "-j", name, *extra,
                          cwd=tmp_path, env=env)  # fmt: skip
            assert "RUN_SUCCESS" in out.stdout + out.stderr, name
        lake = tmp_path / "data" / "lake"
        assert (lake / "quotes" / f"date={SESSION}" / "active-1500.parquet").exists()
        eod = pl.read_parquet(lake / "rest_stocks_daily" / "date=2026-02-26")
        assert dict(eod.select("ticker", "provider").iter_rows()) == {"I:SPX": "massive"}  # the indices universe
        assert news.read_news(lake).collect().height > 0
        assert fundamentals_as_of(lake, dt.date(2026, 2, 27)).height > 0
        assert earnings_as_of(lake, dt.date(2026, 2, 27)).height > 0
        assert sorted(indicators.read_indicators(lake).collect()["ticker"].unique()) == ["AAPL", "SPY"]
        status = run_cli("quant-assets", "status", "--data", str(tmp_path / "data"), cwd=tmp_path, env=env).stdout
        assert "quotes            1 snapshots over 1 sessions, 2 rows; by provider: finnhub 2" in status
        assert (
            "vendor_indicators " in status
            and "2 tickers; by indicator: SMA_20" in status
            and "fundamentals      1 as-of days 2026-02-27..2026-02-27, 2 symbols" in status
        )
        run_cli("quant-assets", "catalog", "--data", str(tmp_path / "data"), cwd=tmp_path, env=env)
        with duckdb.connect(str(tmp_path / "data" / "catalog.duckdb"), read_only=True) as db:
            count = lambda view: db.execute(f"SELECT count(*) FROM {view}").fetchone()[0]  # noqa: E731
            assert count("quotes") == 2 and count("news") == news.read_news(lake).collect().height
            assert count("vendor_indicators") == indicators.read_indicators(lake).collect().height
            assert count("rest_stocks_daily") == 1
            as_of = db.execute("SELECT DISTINCT as_of FROM fundamentals_versions").fetchall()
            assert as_of == [(dt.date(2026, 2, 27),)]
        listed = run_cli("quant-assets", "run", "--list", cwd=tmp_path, env=env).stdout
        assert all(job.name in listed for job in JOBS)
        cli = run_cli("quant-assets", "run", "finnhub_quote_indices", "--scope", "active", "--json",
                      cwd=tmp_path, env=env, check=False)  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        data = json.loads(cli.stdout)
        assert (data["success"], data["partition"], data["scope"]) == (True, SESSION, "active")
        assert data["skipped_as_held"] == 2  # the quote job's snapshot of this slot holds them already


def test_the_audit_zone_keeps_its_retention_days_and_nothing_else_is_touched(tmp_path):
    root = tmp_path / "raw" / "providers"
    for day in ("2026/01/01", "2026/02/26", "2026/02/27"):
        (root / "finnhub" / day).mkdir(parents=True)
        (root / "finnhub" / day / "a.body").write_text("{}")
    (root / "finnhub" / "notes").mkdir()  # not a day folder the client wrote: left alone
    assert prune_audit(tmp_path, 30, dt.date(2026, 2, 27)) == 1
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*.body")) == [
        "finnhub/2026/02/26/a.body", "finnhub/2026/02/27/a.body"]  # fmt: skip
    assert not (root / "finnhub" / "2026" / "01").exists() and (root / "finnhub" / "notes").is_dir()
    assert prune_audit(tmp_path, 0, dt.date(2030, 1, 1)) == 0  # 0 keeps everything


def test_provider_limits_and_the_clock_are_settings_that_refuse_what_they_cannot_read(monkeypatch, tmp_path):
    settings = from_env({"QUANT_ASSETS_PROVIDER_LIMITS": "tiingo.per_hour=10000, alphavantage.daily_budget=none"})
    assert settings.provider_limits == {"tiingo": {"per_hour": 10000}, "alphavantage": {"daily_budget": None}}
    resources = provider_resources(settings)
    assert resources["tiingo"].per_hour == 10000 and resources["alphavantage"].daily_budget is None
    for wrong in ("tiingo.per_year=1", "nobody.per_day=1", "tiingo.per_day=lots", "finnhub.per_second=-1",
                  "alphavantage.per_minute=0.5", "tiingo.per_hour=0", "finnhub.cost_per_request=none",
                  "massive.max_wait_seconds=none", "yahoo.per_day=inf"):  # fmt: skip
        with pytest.raises(ValueError, match="QUANT_ASSETS_PROVIDER_LIMITS"):
            from_env({"QUANT_ASSETS_PROVIDER_LIMITS": wrong})
    # A shorter window that allows as many as a longer one never binds: dropped (pyrate-limiter refuses such a list).
    limits = "alphavantage.per_second=25,alphavantage.per_day=25"
    lifted = provider_resources(from_env({"QUANT_ASSETS_PROVIDER_LIMITS": limits}))
    assert lifted["alphavantage"].policy().rates == ((5, 60.0), (25, 86_400.0))
    with lifted["alphavantage"].connect(tmp_path) as alphavantage:
        assert alphavantage.client.requests_left_today() == 25
    monkeypatch.setenv("QUANT_ASSETS_NOW", "2026-03-02T15:30:00-05:00")
    assert now() == dt.datetime(2026, 3, 2, 20, 30, tzinfo=dt.UTC)
    monkeypatch.setenv("QUANT_ASSETS_NOW", "yesterday")
    with pytest.raises(ValueError, match="QUANT_ASSETS_NOW='yesterday' is not an ISO 8601 time"):
        now()


def test_a_forced_snapshot_keeps_the_rows_of_symbols_that_fail_in_it_and_a_past_session_is_refused(tmp_path, servers):
    finnhub, massive = servers
    universes(tmp_path, active=("AAPL", "BRK.B", "SPY"))
    massive.not_entitled_for.add("/v3/snapshot")
    defs = definitions(tmp_path, finnhub, massive)
    path = tmp_path / "lake" / "quotes" / f"date={SESSION}" / "active-1500.parquet"
    with dg.instance_for_test() as instance:
        assert execute(defs, "finnhub_quote_active", instance, SESSION, at=AT, workers=1).success
        before = pl.read_parquet(path)
        finnhub.script_after, finnhub.script = len(finnhub.requests) + 1, [Reply(500, "boom")]  # BRK.B fails
        forced = execute(defs, "finnhub_quote_active", instance, SESSION, at=AT, workers=1, force=True)
        assert forced.success and summary(forced, "quotes")["failed"] == 1
        assert pl.read_parquet(path).equals(before)  # BRK.B's earlier row stands; the others answered the same
        past = execute(defs, "finnhub_quote_active", instance, "2026-02-26", at=AT)
        assert not past.success
        [failure] = [e for e in past.all_events if e.is_step_failure]
        assert "which belongs to session 2026-02-27" in failure.step_failure_data.user_failure_data.description


def test_an_earnings_calendar_outage_fails_the_run_with_every_symbol_named(tmp_path, servers):
    finnhub, _ = servers
    universes(tmp_path, watchlist=("AAPL", "SPY"))
    finnhub.script = [Reply(500, "boom")]
    defs = definitions(tmp_path, finnhub)
    with dg.instance_for_test() as instance:
        result = execute(defs, "finnhub_earnings_watchlist", instance, at="2026-03-02T07:00:00-05:00")
    assert not result.success and len(finnhub.requests) == 1  # nothing more sent after the calendar failed
    [failure] = [e for e in result.all_events if e.is_step_failure]
    data = failure.step_failure_data.user_failure_data
    assert data.description.startswith("earnings: nothing was served, 2 failed")
    assert data.metadata["failed"].value == 2


def test_a_pair_that_fails_goes_behind_the_pairs_never_asked(tmp_path, monkeypatch):
    with AlphaVantageServer(START, dt.date(2026, 3, 6), error_message_for={"AAPL"}) as server:
        resource = AlphaVantageRest(base_url=server.url, daily_budget=2.0, **QUICK)
        symbols, sma = ["AAPL", "BRK.B", "SPY"], [indicators.Indicator("SMA", 20)]
        asked = []
        for day in ("2026-03-02", "2026-03-03"):
            monkeypatch.setenv("QUANT_ASSETS_NOW", f"{day}T18:30:00-05:00")
            before = len(server.requests)
            with resource.connect(tmp_path) as alphavantage:
                at = now()
                closes = dt.datetime.fromisoformat(f"{day}T16:00:00-05:00")
                out = indicators.collect_indicators(alphavantage, symbols, tmp_path / "lake", at, closes, sma)
            asked.append([dict(part.split("=") for part in s.path.split("?")[1].split("&"))["symbol"]
                          for s in server.requests[before:]])  # fmt: skip
            assert out.asked == 2
    assert asked == [["AAPL", "BRK.B"], ["SPY", "AAPL"]]  # AAPL failed on the 2nd: behind SPY, never asked
    assert "AAPL SMA_20: alphavantage: VendorError" in out.failed[0]
