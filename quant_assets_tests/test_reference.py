"""Reference data and adjustment factors, materialised by Dagster against the local Massive server, on the generated
February 2026 (BRK.B splits 1-for-2... 2-for-1 on the 19th, AAPL goes ex-dividend on the 9th)."""

import datetime as dt
import json
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from quant_assets.datasets import DATASETS
from quant_assets.defs.reference import (
    RECONCILES_WITH_REST,
    adjustment_factors,
    build_rest_reconciliation_check,
    reference_dividends,
    reference_splits,
    reference_tickers,
)
from quant_assets.defs.resources import DataZones, MassiveRest
from quant_assets.lake import scan
from quant_assets.providers.errors import CircuitOpen
from quant_assets.reference.factors import (
    adjust,
    distinct_actions,
    dividend_actions,
    factor_table,
    factor_versions,
    previous_closes,
    read_factors,
    ticker_dir,
)
from quant_assets.reference.reconcile import reconcile_with_rest
from quant_assets.reference.tickers import with_ticker_history
from quant_assets.reference.versions import read_version, versions
from quant_assets.sample_rest import LocalProvider, Reply
from quant_assets.sources import LocalFlatFiles
from quant_assets_tests.conftest import FEB, free_port, materializations, materialize_spine, run_cli

DAY = DATASETS["stocks_daily"]
FEB_TAGS = {"dagster/asset_partition_range_start": "2026-02-02", "dagster/asset_partition_range_end": "2026-02-27"}
REFERENCE = [reference_splits, reference_dividends, reference_tickers, adjustment_factors]
KEY = "pk_live_reference_5e4d3c2b1a"


@pytest.fixture(scope="module")
def february_lake(tmp_path_factory, february) -> Path:
    """A data folder whose lake holds stocks_daily for February 2026 (shared; tests copy it)."""
    root = tmp_path_factory.mktemp("february-lake")
    materialize_spine([DAY], LocalFlatFiles(root=str(february)), root, tags=FEB_TAGS)
    return root


@pytest.fixture
def data(tmp_path, february_lake) -> Path:
    shutil.copytree(february_lake / "lake", tmp_path / "lake")
    return tmp_path


@pytest.fixture
def server():
    with LocalProvider(*FEB) as provider:
        yield provider


def refresh(data: Path, server: LocalProvider, as_of: dt.date, key: str | None = None):
    resources = {
        "zones": DataZones(root=str(data)),
        "massive": MassiveRest(base_url=server.url, api_key=key, backoff_seconds=0.01, per_second=500),
    }
    config = {"ops": {a.key.path[-1]: {"config": {"as_of": as_of.isoformat()}} for a in REFERENCE}}
    with dg.instance_for_test() as instance:
        return dg.materialize(REFERENCE, resources=resources, run_config=config, instance=instance)


def meta(result, asset: str) -> dict:
    [event] = materializations(result, asset)
    return {k: v.value for k, v in event.metadata.items()}


def expected_factors(lake: pl.DataFrame, splits: list[dict], dividends: list[dict]) -> dict[tuple[str, dt.date], float]:
    """The price factor of every (ticker, date) in `lake`, computed the plain way: multiply, for every later action,
    split_from / split_to, or 1 - cash / the close of the session before the ex-date."""
    closes = {(r["ticker"], r["date"]): r["close"] for r in lake.iter_rows(named=True)}
    days = sorted(set(lake["date"]))
    out = {}
    for ticker, day in closes:
        factor = 1.0
        for split in splits:
            if split["ticker"] == ticker and dt.date.fromisoformat(split["execution_date"]) > day:
                factor *= split["split_from"] / split["split_to"]
        for dividend in dividends:
            ex = dt.date.fromisoformat(dividend["ex_dividend_date"])
            if dividend["ticker"] == ticker and ex > day:
                before = max(d for d in days if d < ex)
                factor *= 1 - dividend["cash_amount"] / closes[(ticker, before)]
        out[(ticker, day)] = factor
    return out


def test_adjusted_prices_have_no_jump_at_the_split_and_equal_a_plain_computation(data, server):
    result = refresh(data, server, dt.date(2026, 3, 2))
    assert meta(result, "reference_splits")["dagster/row_count"] == 1
    factors_meta = meta(result, "adjustment_factors")
    assert "BRK.B" in factors_meta["changed_tickers"] and "AAPL" in factors_meta["changed_tickers"]

    lake = scan(data / "lake", DAY.name).select("ticker", "date", "close", "volume").collect()
    raw = lake.rename({"close": "raw_close", "volume": "raw_volume"})
    adjusted = adjust(
        raw.with_columns(close=pl.col("raw_close"), volume=pl.col("raw_volume")), read_factors(data / "reference")
    )
    expected = expected_factors(lake, server.data.splits(), server.data.dividends())
    assert adjusted.height == lake.height == len(expected)
    for row in adjusted.iter_rows(named=True):
        want = expected[(row["ticker"], row["date"])]
        assert row["close"] == pytest.approx(row["raw_close"] * want, rel=1e-12), (row["ticker"], row["date"])
    assert {k for k, v in expected.items() if v != 1.0} >= {
        ("BRK.B", dt.date(2026, 2, 18)),
        ("AAPL", dt.date(2026, 2, 6)),
    }

    brk = adjusted.filter(pl.col("ticker") == "BRK.B").sort("date")
    before, after = (
        brk.filter(pl.col("date") == d).row(0, named=True) for d in (dt.date(2026, 2, 18), dt.date(2026, 2, 19))
    )
    assert 0.4 < after["raw_close"] / before["raw_close"] < 0.6  # the raw price halves at the 2-for-1 split
    assert 0.9 < after["close"] / before["close"] < 1.1  # the adjusted one does not jump
    assert before["volume"] == pytest.approx(before["raw_volume"] * 2)  # twice the shares before it
    assert after["price_factor"] == 1.0 and after["close"] == after["raw_close"]  # the newest prices stay raw
    steps = brk.with_columns(step=(pl.col("close") / pl.col("close").shift()).abs())
    assert steps["step"].drop_nulls().is_between(0.9, 1.1).all()


def test_a_new_split_rewrites_only_that_tickers_factors(data, server):
    first, second = dt.date(2026, 3, 2), dt.date(2026, 3, 3)
    refresh(data, server, first)
    folder = data / "reference" / "adjustment_factors"

    def ticker_files():
        return {p: p.stat().st_mtime_ns for p in folder.glob("ticker=*/*.parquet")}

    files = ticker_files()
    assert len(files) >= 10  # BRK.B, and every dividend payer

    server.data.announce_split("AAPL", dt.date(2026, 2, 17), 1, 4)
    result = refresh(data, server, second)
    assert meta(result, "adjustment_factors")["changed_tickers"] == ["AAPL"]
    assert meta(result, "reference_splits")["new_version"] is True
    assert meta(result, "reference_dividends")["new_version"] is False  # unchanged: no new version
    now = ticker_files()
    added = set(now) - set(files)
    assert added == {ticker_dir(data / "reference", "AAPL") / f"as_of={second}.parquet"}
    assert all(now[p] == files[p] for p in files)  # nothing else was rewritten, not even AAPL's old version
    assert factor_versions(data / "reference", "AAPL") == [first, second]

    # Point in time: as of the first day, AAPL had only its dividend; as of the second, the split too.
    old, new = (read_factors(data / "reference", as_of=d, tickers=["AAPL"]) for d in (first, second))
    assert old["ex_date"].to_list() == [dt.date(2026, 2, 9)]
    assert new["ex_date"].to_list() == [dt.date(2026, 2, 9), dt.date(2026, 2, 17)]
    assert new.filter(pl.col("ex_date") == dt.date(2026, 2, 17))["split_factor"].item() == 0.25
    assert versions(data / "reference" / "reference_splits") == [first, second]

    again = refresh(data, server, second)  # idempotent
    assert meta(again, "adjustment_factors")["changed_tickers"] == []
    assert ticker_files() == now
    assert versions(folder / "_manifest") == [first, second]


def test_reference_tables_keep_the_vendors_fields_and_the_ticker_history(data, server):
    first = refresh(data, server, dt.date(2026, 3, 2))
    assert meta(first, "reference_tickers")["ticker_events_fetched"] == len(server.data.tickers())
    dividends = read_version(data / "reference" / "reference_dividends")
    aapl = dividends.filter(pl.col("ticker") == "AAPL").row(0, named=True)
    assert aapl["ex_dividend_date"] == dt.date(2026, 2, 9) and aapl["dividend_type"] == "CD"
    assert aapl["pay_date"] == dt.date(2026, 2, 23) and aapl["frequency"] == 4 and aapl["cash_amount"] > 0
    assert dividends.schema["historical_adjustment_factor"] == pl.Float64
    tickers = read_version(data / "reference" / "reference_tickers")
    listing = tickers.filter(pl.col("ticker") == "QBJZE").row(0, named=True)  # listed 2026-02-15, delists 04-15
    assert listing["active"] is True and listing["delisted_utc"] is None
    assert listing["list_date"] == dt.date(2026, 2, 15)
    assert listing["ticker_changes"] == [{"date": dt.date(2026, 2, 15), "ticker": "QBJZE"}]
    assert tickers.height == len(server.data.tickers())
    renamed = tickers.filter(pl.col("ticker_changes").list.len() == 2)
    assert renamed.height >= 1  # renamed on 2019-06-03 from <ticker>O
    for row in renamed.iter_rows(named=True):
        old, new = row["ticker_changes"]
        assert (old["ticker"], new["ticker"], new["date"]) == (row["ticker"] + "O", row["ticker"], dt.date(2019, 6, 3))
        assert row["list_date"] == old["date"] < new["date"]

    requests = len(server.requests)
    later = refresh(data, server, dt.date(2026, 3, 3))  # the history of known tickers is not asked for again
    assert meta(later, "reference_tickers")["ticker_events_fetched"] == 0
    assert meta(later, "reference_tickers")["new_version"] is False
    assert not any("/events" in r.path for r in server.requests[requests:])


def run_reconciliation(data: Path, url: str, start: str, end: str):
    defs = dg.Definitions(
        asset_checks=[build_rest_reconciliation_check(DAY)],
        jobs=[dg.define_asset_job("reconcile", selection=dg.AssetSelection.all_asset_checks())],
        resources={
            "zones": DataZones(root=str(data)),
            "massive": MassiveRest(base_url=url, attempts=2, backoff_seconds=0.01),
        },
    )
    config = {"ops": {f"lake_stocks_daily_{RECONCILES_WITH_REST}": {"config": {"start": start, "end": end}}}}
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("reconcile").execute_in_process(run_config=config, instance=instance)
    [evaluation] = result.get_asset_check_evaluations()
    return result, evaluation


def test_the_lake_reconciles_with_the_rest_daily_bars(data, server):
    result, evaluation = run_reconciliation(data, server.url, "2026-02-09", "2026-02-11")
    values = {k: v.value for k, v in evaluation.metadata.items()}
    assert result.success and evaluation.passed
    assert (
        values["tickers_compared"]
        == scan(data / "lake", DAY.name, [dt.date(2026, 2, d) for d in (9, 10, 11)]).collect().height
    )
    assert values["tickers_mismatched"] == 0 and values["provider_requests"]["requests"] == 3


def test_a_disagreeing_rest_bar_is_a_warning_with_a_mismatch_table(data, server):
    results = server.data.grouped_daily(dt.date(2026, 2, 10))
    changed = [dict(r, c=round(r["c"] * 1.05, 2)) if r["T"] == "AAPL" else r for r in results if r["T"] != "SPY"]
    body = {"status": "OK", "resultsCount": len(changed), "results": changed, "request_id": "x"}
    server.script.append(Reply(200, json.dumps(body), {"Content-Type": "application/json"}))
    result, evaluation = run_reconciliation(data, server.url, "2026-02-10", "2026-02-10")
    values = {k: v.value for k, v in evaluation.metadata.items()}
    assert result.success  # a warning does not fail the run
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert values["tickers_mismatched"] == 2
    assert "| AAPL | close |" in values["mismatches"] and "| SPY | only in flat files |" in values["mismatches"]


def test_an_unreachable_provider_is_a_warning_not_a_failed_run(data):
    result, evaluation = run_reconciliation(data, f"http://127.0.0.1:{free_port()}", "2026-02-10", "2026-02-11")
    assert result.success and not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.description.startswith("not compared from 2026-02-10 on: massive ")
    assert "ConnectError" in evaluation.description


def test_reconcile_with_rest_uses_the_tolerances():
    lake = pl.DataFrame({"ticker": ["A", "B", "C"], "open": [10.0, 20.0, 5.0], "high": [11.0, 21.0, 6.0],
                         "low": [9.0, 19.0, 4.0], "close": [10.5, 20.5, 5.5], "volume": [1000.0, 500.0, 10.0]})  # fmt: skip
    rest = lake.with_columns(
        pl.when(pl.col("ticker") == "A").then(pl.col("close") * 1.0005).otherwise(pl.col("close")).alias("close"),
        pl.when(pl.col("ticker") == "B").then(pl.col("volume") * 1.5).otherwise(pl.col("volume")).alias("volume"),
    ).filter(pl.col("ticker") != "C")
    found = reconcile_with_rest(
        lake, pl.concat([rest, rest.filter(pl.col("ticker") == "A").with_columns(ticker=pl.lit("D"))])
    )
    assert found.select("ticker", "problem").rows() == [
        ("B", "volume"),
        ("C", "only in flat files"),
        ("D", "only in REST"),
    ]


def test_the_key_never_appears_in_logs_events_metadata_audit_files_or_errors(tmp_path):
    """Through Dagster's CLI with MASSIVE_API_KEY set, one run failing on a 403 and one retrying a 500 and a dropped
    connection: the key is in no output, no file under the data folder or DAGSTER_HOME (event log, run storage,
    provider state), no error text."""
    with LocalProvider(*FEB, api_key=KEY) as server:
        env = {
            "MASSIVE_API_KEY": KEY,
            "MASSIVE_API_BASE_URL": server.url,
            "QUANT_ASSETS_DATASETS": "stocks_daily",
            "QUANT_ASSETS_DATA": str(tmp_path / "data"),
        }
        job = ["dagster", "job", "execute", "-m", "quant_assets.definitions", "-j", "refresh_reference"]
        server.script.append(Reply(403, '{"status":"ERROR","error":"NOT_AUTHORIZED: plan"}'))
        failed = run_cli(*job, cwd=tmp_path, env=env, check=False)
        assert failed.returncode != 0 and "HTTP 403: NOT_AUTHORIZED: plan" in failed.stdout + failed.stderr
        server.script.extend([Reply(500), Reply(drop=True)])  # a 5xx, then a connection closed without an answer
        passed = run_cli(*job, cwd=tmp_path, env=env)
        assert "HTTP 500" in passed.stdout + passed.stderr and "RemoteProtocolError" in passed.stdout + passed.stderr
        assert len(server.requests) > 5 and all(r.authorised for r in server.requests)  # sent, in the header
        shown = run_cli("quant-assets", "providers", "--data", str(tmp_path / "data"), cwd=tmp_path, env=env)
    outputs = [failed.stdout, failed.stderr, passed.stdout, passed.stderr, shown.stdout]
    assert all(KEY not in text for text in outputs)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".body" for p in files) and any(p.name.endswith(".db") for p in files)
    leaked = [str(p) for p in files if KEY.encode() in p.read_bytes()]
    assert leaked == []
    assert KEY not in repr(MassiveRest(api_key=KEY)) and KEY not in str(MassiveRest(api_key=KEY))


def test_an_announced_split_adjusts_nothing_until_its_ex_date(data, server):
    refresh(data, server, dt.date(2026, 3, 2))
    server.data.announce_split("SPY", dt.date(2026, 3, 10), 1, 3)
    before = refresh(data, server, dt.date(2026, 3, 3))
    assert meta(before, "adjustment_factors")["changed_tickers"] == []
    assert meta(before, "adjustment_factors")["announced_actions"] == 1
    after = refresh(data, server, dt.date(2026, 3, 10))  # the first session at the new price
    assert meta(after, "adjustment_factors")["changed_tickers"] == ["SPY"]
    spy = read_factors(data / "reference", tickers=["SPY"]).filter(pl.col("ex_date") == dt.date(2026, 3, 10))
    assert spy["split_factor"].item() == pytest.approx(1 / 3)


def test_the_close_before_an_ex_date_is_the_tickers_last_in_a_short_window_and_pending_without_the_session():
    days = [dt.date(2026, 2, d) for d in (2, 3, 4, 5, 6, 9, 10)]
    lake = pl.DataFrame(
        {"ticker": ["A", "A", "B", "C"], "date": [days[3], days[4], days[3], days[0]], "close": [10.0, 11.0, 20.0, 5.0]}
    )
    dividends = pl.DataFrame(
        {"ticker": ["A", "B", "C", "A"], "ex_dividend_date": [days[5], days[5], days[5], days[6]]},
        schema={"ticker": pl.String, "ex_dividend_date": pl.Date},
    )
    asked = []

    def daily(wanted):
        asked.append(wanted)
        return lake.lazy().filter(pl.col("date").is_in(wanted))

    held = set(days[:5])  # the lake does not hold the 9th yet
    found = previous_closes(dividends, daily, days, held).sort("ticker", "ex_date")
    assert found.rows() == [
        ("A", days[5], 11.0),  # traded on the 6th: its close
        ("A", days[6], None),  # the 9th is not in the lake: pending
        ("B", days[5], 20.0),  # did not trade on the 6th: its close of the 5th
        ("C", days[5], 5.0),  # the 2nd is within the window of 10 sessions
    ]
    assert asked == [days[:5]]


def test_repeated_vendor_records_apply_once_and_a_same_day_dividend_is_per_new_share():
    day = dt.date(2026, 2, 10)
    splits = pl.DataFrame(
        {"ticker": ["X", "X"], "execution_date": [day, day], "split_from": [1.0, 1.0], "split_to": [2.0, 2.0]}
    )
    dividends = pl.DataFrame(
        {"ticker": ["X", "X"], "ex_dividend_date": [day, day], "cash_amount": [1.0, 1.0],
         "dividend_type": ["CD", "CD"], "currency": ["USD", "USD"]}
    )  # fmt: skip
    splits, dividends, dropped = distinct_actions(splits, dividends)
    assert dropped == 2
    closes = pl.DataFrame({"ticker": ["X"], "ex_date": [day], "previous_close": [100.0]})
    actions, skipped = dividend_actions(dividends, closes)
    [row] = factor_table(splits, actions).rows(named=True)
    assert row["split_factor"] == 0.5  # once, not 0.25
    assert row["dividend_factor"] == pytest.approx(1 - 1.0 / 50.0)  # $1 per new share against $100 / 2
    assert row["price_factor"] == pytest.approx(0.5 * 0.98) and row["volume_factor"] == 2.0
    assert skipped.height == 0


def test_ticker_events_that_fail_are_asked_for_again_next_time():
    tickers = pl.DataFrame({"ticker": ["A", "B"], "composite_figi": ["F1", None]})
    asked = []

    def events(identifier):
        asked.append(identifier)
        if identifier == "B":
            raise CircuitOpen("massive: circuit breaker open")
        return [(dt.date(2001, 1, 2), "A")]

    first, fetched, failed = with_ticker_history(tickers, None, events)
    assert fetched == 2 and failed == ["B: massive: circuit breaker open"] and asked == ["F1", "B"]
    assert first["list_date"].to_list() == [dt.date(2001, 1, 2), None]
    assert first["ticker_changes"].to_list()[1] is None
    second, fetched, failed = with_ticker_history(tickers, first, lambda _: [(dt.date(2005, 5, 5), "B")])
    assert fetched == 1 and failed == [] and second["list_date"].to_list() == [dt.date(2001, 1, 2), dt.date(2005, 5, 5)]
