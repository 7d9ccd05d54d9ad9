"""enriched_stocks_daily, materialised by Dagster over generated January to March 2026 (BRK.B splits on 2026-02-19,
AAPL goes ex-dividend on 2026-02-09, QBJZE lists on 2026-02-17, QBJZD delists on 2026-03-13, thin tickers skip
sessions), against a plain implementation written here with numpy and loops."""

import datetime as dt
import math
import shutil
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from quant_assets.datasets import DATASETS, Calendar
from quant_assets.defs.cluster import SessionCluster
from quant_assets.defs.features import ENRICHED_DAILY, build_enriched_daily, feature_layers
from quant_assets.defs.ingest import ingest_defs
from quant_assets.defs.resources import DataZones, QualitySettings
from quant_assets.features.daily import FeatureSet
from quant_assets.features.enrich import enrich_daily
from quant_assets.features.intraday import resample, sort_minutes
from quant_assets.features.restate import read_enriched_daily
from quant_assets.lake import partition_path, scan
from quant_assets.reference.factors import read_factors
from quant_assets.sample import folder_writer, generate
from quant_assets.sample_rest import LocalProvider
from quant_assets.sessions import exchange_calendar, sessions
from quant_assets.sources import LocalFlatFiles
from quant_assets_tests.conftest import materialize_spine
from quant_assets_tests.test_reference import refresh

DAY, MINUTE, OPTIONS = DATASETS["stocks_daily"], DATASETS["stocks_minute"], DATASETS["options_daily"]
START, END = dt.date(2026, 1, 2), dt.date(2026, 3, 31)
# Small windows, so that the quarter has room for them; the defaults are tested for their lookback.
WINDOWS = {
    "return_windows": [1, 5, 20], "volatility_windows": [10], "sma_windows": [5, 20], "ema_windows": [3, 5],
    "rsi_windows": [5], "atr_windows": [4], "relative_volume_windows": [10], "smoothing_span": 3,
}  # fmt: skip
FEATURES = FeatureSet.from_mapping(WINDOWS)
BACKFILL = ("2026-02-02", "2026-03-31")


@contextmanager
def stock_lake(tmp_path_factory, name: str, start: dt.date, end: dt.date, as_of: dt.date):
    """A data folder with the lake of stocks_daily and stocks_minute from `start` to `end` (generated, ingested by
    Dagster) and the factors as of `as_of` from the local REST server, which stays up: (data folder, server)."""
    vendor, data = tmp_path_factory.mktemp(f"vendor-{name}"), tmp_path_factory.mktemp(f"data-{name}")
    generate([DAY, MINUTE], start, end, folder_writer(vendor))
    tags = {
        "dagster/asset_partition_range_start": start.isoformat(),
        "dagster/asset_partition_range_end": end.isoformat(),
    }
    materialize_spine([DAY, MINUTE], LocalFlatFiles(root=str(vendor)), data, tags=tags)
    with LocalProvider(start, end) as server:
        refresh(data, server, as_of)
        yield data, server


@pytest.fixture(scope="module")
def quarter(tmp_path_factory) -> tuple[Path, LocalProvider]:
    """A data folder with the lake of stocks_daily and stocks_minute for the quarter and the factors as of April."""
    with stock_lake(tmp_path_factory, "q1", START, END, dt.date(2026, 4, 1)) as built:
        yield built


def enrich(data: Path, first: str, last: str):
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    config = {"ops": {ENRICHED_DAILY: {"config": WINDOWS}}}
    with dg.instance_for_test() as instance:
        return dg.materialize(
            [build_enriched_daily([DAY, MINUTE])],
            resources={"zones": DataZones(root=str(data))},
            run_config=config,
            tags=tags,
            instance=instance,
        )


@pytest.fixture(scope="module")
def backfill(quarter, tmp_path_factory) -> pl.DataFrame:
    data, _ = quarter
    result = enrich(data, *BACKFILL)
    assert result.success
    return scan(data / "enriched", DAY.name).collect()


def plain_factors(server: LocalProvider, closes: dict) -> dict:
    """ticker -> [(ex_date, price factor, volume factor)] from the vendor's records, the plain way."""
    out: dict = {}
    for split in server.data.splits():
        ratio = split["split_from"] / split["split_to"]
        out.setdefault(split["ticker"], []).append((dt.date.fromisoformat(split["execution_date"]), ratio, 1 / ratio))
    days = sessions(Calendar.XNYS, START, END)
    for dividend in server.data.dividends():
        ex = dt.date.fromisoformat(dividend["ex_dividend_date"])
        before = max(d for d in days if d < ex)
        factor = 1 - dividend["cash_amount"] / closes[(dividend["ticker"], before)]
        out.setdefault(dividend["ticker"], []).append((ex, factor, 1.0))
    return out


def plain_features(data: Path, server: LocalProvider, ticker: str, day: dt.date) -> dict:
    """Every feature of `ticker` on `day`, from the lake's raw bars, computed with loops."""
    lake = scan(data / "lake", DAY.name).collect()
    raw = {(r["ticker"], r["date"]): r for r in lake.iter_rows(named=True)}
    actions = plain_factors(server, {k: r["close"] for k, r in raw.items()})

    def bar(d):  # adjusted, or None where the ticker has no bar
        r = raw.get((ticker, d))
        if r is None:
            return None
        price = math.prod(f for ex, f, _ in actions.get(ticker, []) if ex > d)
        volume = math.prod(v for ex, _, v in actions.get(ticker, []) if ex > d)
        return {k: r[k] * price for k in ("open", "high", "low", "close")} | {"volume": r["volume"] * volume}

    days = sessions(Calendar.XNYS, START, END)
    i = days.index(day)
    b = [bar(d) for d in days[: i + 1]]  # b[k]: the bar k sessions into the quarter

    def back(k):
        return b[i - k] if i - k >= 0 else None

    def weighted(values, alpha):
        if any(v is None for v in values):
            return None
        weights = [(1 - alpha) ** k for k in range(len(values))]  # values newest first
        return sum(w * v for w, v in zip(weights, values)) / sum(weights)

    f = {"dollar_volume": raw[(ticker, day)]["close"] * raw[(ticker, day)]["volume"]}
    for n in FEATURES.return_windows:
        ok = back(n) is not None
        f[f"return_{n}"] = b[i]["close"] / back(n)["close"] - 1 if ok else None
        f[f"log_return_{n}"] = math.log(b[i]["close"] / back(n)["close"]) if ok else None
    for n in FEATURES.volatility_windows:
        pairs = [(back(k), back(k + 1)) for k in range(n)]
        logs = [math.log(x["close"] / y["close"]) for x, y in pairs if x and y]
        f[f"volatility_{n}"] = float(np.std(logs, ddof=1)) * math.sqrt(252) if len(logs) == n else None
    for n in FEATURES.sma_windows:
        window = [back(k) for k in range(n)]
        f[f"sma_{n}"] = None if None in window else sum(x["close"] for x in window) / n
    span = FEATURES.smoothing_span
    for n in FEATURES.ema_windows:
        window = [back(k) for k in range(span * n)]
        f[f"ema_{n}"] = weighted([x and x["close"] for x in window], 2 / (n + 1))
    for n in FEATURES.rsi_windows:
        moves = [
            (back(k)["close"] - back(k + 1)["close"]) if back(k) and back(k + 1) else None for k in range(span * n)
        ]
        gain = weighted([None if m is None else max(m, 0.0) for m in moves], 1 / n)
        loss = weighted([None if m is None else max(-m, 0.0) for m in moves], 1 / n)
        f[f"rsi_{n}"] = (
            None if gain is None else ((50.0 if gain == 0 else 100.0) if loss == 0 else 100 - 100 / (1 + gain / loss))
        )
    for n in FEATURES.atr_windows:
        ranges = []
        for k in range(span * n):
            x, y = back(k), back(k + 1)
            ranges.append(
                max(x["high"] - x["low"], abs(x["high"] - y["close"]), abs(x["low"] - y["close"])) if x and y else None
            )
        f[f"atr_{n}"] = weighted(ranges, 1 / n)
    f["overnight_gap"] = b[i]["open"] / back(1)["close"] - 1 if back(1) else None
    for n in FEATURES.relative_volume_windows:
        window = [back(k) for k in range(1, n + 1)]
        f[f"relative_volume_{n}"] = None if None in window else b[i]["volume"] / (sum(x["volume"] for x in window) / n)
    # VWAP: the minutes' typical price weighted by volume, regular session only / whole day, adjusted.
    minutes = scan(data / "lake", MINUTE.name, [day]).filter(pl.col("ticker") == ticker).collect()
    xnys = exchange_calendar("XNYS")
    opens, closes = xnys.session_open(day).to_pydatetime(), xnys.session_close(day).to_pydatetime()
    rows = minutes.iter_rows(named=True)
    total = dict(pv=0.0, v=0.0, rpv=0.0, rv=0.0)
    for m in rows:
        typical = (m["high"] + m["low"] + m["close"]) / 3
        total["pv"] += typical * m["volume"]
        total["v"] += m["volume"]
        if opens <= m["window_start"] < closes:
            total["rpv"] += typical * m["volume"]
            total["rv"] += m["volume"]
    price = b[i]["close"] / raw[(ticker, day)]["close"]
    f["vwap"] = total["rpv"] / total["rv"] * price if total["rv"] else None
    f["vwap_extended"] = total["pv"] / total["v"] * price if total["v"] else None
    return f


def test_every_feature_equals_a_plain_implementation(quarter, backfill):
    data, server = quarter
    cases = [
        ("BRK.B", dt.date(2026, 2, 19)),  # the split day
        ("BRK.B", dt.date(2026, 3, 10)),  # windows across the split
        ("AAPL", dt.date(2026, 2, 9)),  # the ex-dividend day
        ("AAPL", dt.date(2026, 2, 2)),  # the first session of the backfill
        ("QBJZE", dt.date(2026, 2, 17)),  # its listing day: no history
        ("QBJZE", dt.date(2026, 3, 3)),
        ("QBJZD", dt.date(2026, 3, 12)),  # its last session before it delists
    ]
    cases.append((backfill.filter(pl.col("date") == END).sort("ticker")["ticker"][0], END))
    thin = gapped_ticker(data)
    cases += [(thin["ticker"], thin["after_gap"]), (thin["ticker"], thin["later"])]
    for ticker, day in cases:
        [row] = backfill.filter((pl.col("ticker") == ticker) & (pl.col("date") == day)).rows(named=True)
        want = plain_features(data, server, ticker, day)
        for name, value in want.items():
            if value is None:
                assert row[name] is None, (ticker, day, name, row[name])
            else:
                assert row[name] == pytest.approx(value, rel=1e-9), (ticker, day, name)
    assert set(FEATURES.columns()) | {"vwap", "vwap_extended"} <= set(backfill.columns)


def gapped_ticker(data: Path) -> dict:
    """A ticker with a session missing inside its life: the session after the gap and one well after."""
    lake = scan(data / "lake", DAY.name).select("ticker", "date").collect()
    days = sessions(Calendar.XNYS, dt.date(2026, 2, 2), END)
    for ticker, group in lake.filter(pl.col("date") >= days[0]).group_by("ticker", maintain_order=True):
        held = set(group["date"])
        gaps = [
            d
            for d in days[1:-12]
            if d not in held and days[days.index(d) - 1] in held and days[days.index(d) + 1] in held
        ]
        if gaps and len(held) > 30:
            after = days[days.index(gaps[0]) + 1]
            return {"ticker": ticker[0], "gap": gaps[0], "after_gap": after, "later": days[days.index(gaps[0]) + 12]}
    raise AssertionError("the generated quarter has no ticker that skips a session")


def test_a_gap_is_a_gap_and_listings_start_empty(quarter, backfill):
    data, _ = quarter
    thin = gapped_ticker(data)
    [after] = backfill.filter((pl.col("ticker") == thin["ticker"]) & (pl.col("date") == thin["after_gap"])).rows(
        named=True
    )
    assert after["return_1"] is None and after["overnight_gap"] is None and after["sma_5"] is None
    assert after["return_5"] is not None  # five sessions back it traded
    listing = backfill.filter(pl.col("ticker") == "QBJZE").sort("date")
    assert listing["date"][0] == dt.date(2026, 2, 17) and listing["return_1"][0] is None
    assert backfill.filter((pl.col("ticker") == "QBJZD") & (pl.col("date") > dt.date(2026, 3, 13))).height == 0


def test_the_split_is_adjusted_away(backfill):
    brk = backfill.filter(pl.col("ticker") == "BRK.B").sort("date")
    split = brk.filter(pl.col("date") == dt.date(2026, 2, 19)).row(0, named=True)
    before = brk.filter(pl.col("date") == dt.date(2026, 2, 18)).row(0, named=True)
    assert 0.4 < split["raw_close"] / before["raw_close"] < 0.6  # the raw close halves
    assert abs(split["return_1"]) < 0.1 and abs(split["overnight_gap"]) < 0.1  # the adjusted return does not
    assert brk["return_1"].drop_nulls().abs().max() < 0.1


def test_a_one_day_run_equals_the_backfill_for_that_day(quarter, backfill, tmp_path):
    data, _ = quarter
    one_day = tmp_path / "data"
    for zone in ("lake", "reference"):
        shutil.copytree(data / zone, one_day / zone)
    assert enrich(one_day, "2026-03-20", "2026-03-20").success
    day = dt.date(2026, 3, 20)
    alone = pl.read_parquet(partition_path(one_day / "enriched", DAY.name, day))
    assert alone.height > 50
    same_day = backfill.filter(pl.col("date") == day).drop("date").select(alone.columns)
    # The same numbers; sliding-window sums may round the last bits differently over a longer series.
    assert_frame_equal(alone, same_day, check_exact=False, rel_tol=1e-9, abs_tol=1e-12)
    assert not (one_day / "enriched" / DAY.name / "date=2026-03-19").exists()


def test_chunk_boundaries_do_not_change_the_features(quarter):
    data, _ = quarter
    days = sessions(Calendar.XNYS, dt.date(2026, 2, 2), END)
    factors = read_factors(data / "reference")
    whole = enrich_daily(data / "lake", DAY.name, MINUTE.name, Calendar.XNYS, days, factors, FEATURES)
    halves = {}
    for part in (days[:20], days[20:]):
        halves |= enrich_daily(data / "lake", DAY.name, MINUTE.name, Calendar.XNYS, part, factors, FEATURES)
    assert sorted(whole) == sorted(halves) == days
    for day in days:
        assert_frame_equal(whole[day], halves[day], rel_tol=1e-9)


def test_a_session_missing_from_the_lake_fails_by_name_and_the_others_are_built(quarter, tmp_path):
    data, _ = quarter
    copy = tmp_path / "data"
    for zone in ("lake", "reference"):
        shutil.copytree(data / zone, copy / zone)
    shutil.rmtree(partition_path(copy / "lake", DAY.name, dt.date(2026, 3, 18)).parent)
    with pytest.raises(dg.Failure) as error:
        enrich(copy, "2026-03-17", "2026-03-19")
    assert "1 sessions have no lake_stocks_daily partition" in str(error.value) and "2026-03-18" in str(error.value)
    assert partition_path(copy / "enriched", DAY.name, dt.date(2026, 3, 19)).exists()


def test_the_default_feature_set_looks_back_far_enough():
    features = FeatureSet()
    assert features.lookback == 3 * 26 - 1  # ema_26 over 78 sessions
    assert FeatureSet(ema_windows=(), rsi_windows=(14,), atr_windows=(), smoothing_span=3).lookback == 42
    with pytest.raises(ValueError, match="sma_windows must be positive whole numbers"):
        FeatureSet(sma_windows=(0,))


FEB_DATASETS = [DATASETS[n] for n in ("stocks_daily", "stocks_minute", "options_daily", "options_minute")]


@pytest.fixture(scope="module")
def february_enriched(february, tmp_path_factory) -> Path:
    """February's four datasets through the session chain with its enriched layers, for two sessions."""
    data = tmp_path_factory.mktemp("feb-enriched")
    chain = list(ingest_defs(FEB_DATASETS, feature_layers(FEB_DATASETS)).assets)
    tags = {"dagster/asset_partition_range_start": "2026-02-26", "dagster/asset_partition_range_end": "2026-02-27"}
    resources = {
        "flatfiles": LocalFlatFiles(root=str(february)),
        "zones": DataZones(root=str(data)),
        "quality": QualitySettings(),
        "cluster": SessionCluster(),
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize(chain, resources=resources, tags=tags, instance=instance)
    assert result.success
    keys = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"enriched_stocks_minute", "enriched_options_daily"} <= keys
    return data


@pytest.mark.parametrize("which", ["first", "last"])  # the first ticker, and one after every other (boundaries)
def test_intraday_features_and_bars_equal_a_plain_implementation(february_enriched, which):
    data, day = february_enriched, dt.date(2026, 2, 27)
    folder = partition_path(data / "enriched", MINUTE.name, day).parent
    features = pl.read_parquet(folder / "part-0.parquet")
    busy = scan(data / "lake", MINUTE.name, [day]).group_by("ticker").len().filter(pl.col("len") > 50).collect()
    ticker = busy["ticker"].sort()[0 if which == "first" else -1]
    minutes = scan(data / "lake", MINUTE.name, [day]).filter(pl.col("ticker") == ticker).collect().sort("window_start")
    xnys = exchange_calendar("XNYS")
    opens, closes = xnys.session_open(day).to_pydatetime(), xnys.session_close(day).to_pydatetime()
    rows = list(minutes.iter_rows(named=True))
    mine = features.filter(pl.col("ticker") == ticker).sort("window_start")
    assert mine.height == len(rows)
    pv = vol = 0.0
    for k, (row, got) in enumerate(zip(rows, mine.iter_rows(named=True))):
        before = rows[k - 1] if k else None
        contiguous = before is not None and row["window_start"] - before["window_start"] == dt.timedelta(minutes=1)
        want_return = row["close"] / before["close"] - 1 if contiguous else None
        assert got["return_1m"] == (pytest.approx(want_return, rel=1e-12) if want_return is not None else None)
        if opens <= row["window_start"] < closes:
            pv += (row["high"] + row["low"] + row["close"]) / 3 * row["volume"]
            vol += row["volume"]
            assert got["vwap_cumulative"] == pytest.approx(pv / vol, rel=1e-12)
        else:
            assert got["vwap_cumulative"] is None
    [session_vwap] = pl.read_parquet(folder / "vwap.parquet").filter(pl.col("ticker") == ticker).rows(named=True)
    assert session_vwap["vwap"] == pytest.approx(pv / vol, rel=1e-12)  # what enriched_stocks_daily takes
    for every in (5, 15, 60):
        bars = pl.read_parquet(folder / f"bars_{every}m.parquet").filter(pl.col("ticker") == ticker)
        buckets: dict = {}
        for row in rows:
            if opens <= row["window_start"] < closes:
                start = opens + dt.timedelta(minutes=every) * (
                    (row["window_start"] - opens) // dt.timedelta(minutes=every)
                )
                buckets.setdefault(start, []).append(row)
        assert bars.height == len(buckets)
        for bar in bars.iter_rows(named=True):
            group = buckets[bar["window_start"]]
            assert (bar["open"], bar["close"]) == (group[0]["open"], group[-1]["close"])
            assert bar["high"] == max(r["high"] for r in group) and bar["low"] == min(r["low"] for r in group)
            assert bar["volume"] == pytest.approx(sum(r["volume"] for r in group))
            assert bar["window_end"] == min(bar["window_start"] + dt.timedelta(minutes=every), closes)


def test_bars_end_at_an_early_close():
    day = dt.date(2025, 11, 28)  # the day after Thanksgiving: the exchange closes at 13:00 New York
    xnys = exchange_calendar("XNYS")
    opens, closes = xnys.session_open(day).to_pydatetime(), xnys.session_close(day).to_pydatetime()
    assert closes - opens == dt.timedelta(hours=3, minutes=30)
    stamps = [opens + dt.timedelta(minutes=m) for m in range(-5, 215)]  # pre-market, the session, after the close
    minutes = pl.DataFrame(
        {"ticker": "X", "window_start": stamps, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0,
         "transactions": 1},
        schema_overrides={"window_start": pl.Datetime("ns", "UTC")},
    )  # fmt: skip
    bars = resample(sort_minutes(minutes), opens, closes, 60)
    assert bars["window_start"].to_list()[0] == opens and bars.height == 4  # 3 whole hours and a half hour
    assert bars["window_end"].to_list()[-1] == closes and bars["volume"].to_list() == [600.0, 600.0, 600.0, 300.0]


def test_option_features_equal_a_plain_implementation(february_enriched):
    data, day = february_enriched, dt.date(2026, 2, 26)
    frame = pl.read_parquet(partition_path(data / "enriched", OPTIONS.name, day))
    closes = {r["ticker"]: r["close"] for r in scan(data / "lake", DAY.name, [day]).collect().iter_rows(named=True)}
    assert set(frame["underlying_ticker"].unique()) == {"SPY", "AAPL", "BRK.B"}  # BRKB is BRK.B
    for row in frame.iter_rows(named=True):
        stock = {"BRKB": "BRK.B"}.get(row["underlying"], row["underlying"])
        close = closes[stock]
        assert row["underlying_ticker"] == stock and row["underlying_close"] == close
        assert row["days_to_expiry"] == (row["expiration"] - day).days
        assert row["moneyness"] == pytest.approx(close / row["strike"])
        assert row["log_moneyness"] == pytest.approx(math.log(close / row["strike"]))
        assert row["in_the_money"] == (close > row["strike"] if row["contract_type"] == "C" else close < row["strike"])


def materialize_restated(data: Path):
    from quant_assets.defs.features import build_restated_daily

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [build_restated_daily()],
            resources={"zones": DataZones(root=str(data))},
            instance=instance,
        )
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


def test_a_split_added_later_rewrites_only_that_tickers_enriched_rows(quarter, backfill, tmp_path):
    data, _ = quarter
    copy = tmp_path / "data"
    for zone in ("lake", "reference", "enriched"):
        shutil.copytree(data / zone, copy / zone)
    sessions_files = {p: p.stat().st_mtime_ns for p in (copy / "enriched" / DAY.name).glob("date=*/part-0.parquet")}
    assert len(sessions_files) == 41
    assert materialize_restated(copy)["restated_tickers"] == []  # nothing is stale yet

    with LocalProvider(START, END) as server:
        server.data.announce_split("AAPL", dt.date(2026, 3, 16), 1, 4)
        refresh(copy, server, dt.date(2026, 4, 2))
    # The daily enrich runs first and stamps its session with the new factors: AAPL's older rows are still stale.
    assert enrich(copy, "2026-03-31", "2026-03-31").success
    sessions_files.pop(partition_path(copy / "enriched", DAY.name, END))
    assert materialize_restated(copy)["restated_tickers"] == ["AAPL"]
    assert {p: p.stat().st_mtime_ns for p in sessions_files} == sessions_files  # no session file rewritten
    restated = sorted(p.relative_to(copy / "enriched") for p in (copy / "enriched").rglob("_restated/**/*.parquet"))
    assert restated == [Path("stocks_daily/_restated/ticker=AAPL/as_of=2026-04-02.parquet")]

    # The read side now gives AAPL as a full recomputation with the new factors would, and everyone else as before.
    fresh = tmp_path / "fresh"
    for zone in ("lake", "reference"):
        shutil.copytree(copy / zone, fresh / zone)
    assert enrich(fresh, *BACKFILL).success
    recomputed = scan(fresh / "enriched", DAY.name).collect()
    merged = read_enriched_daily(copy / "enriched", DAY.name).collect()
    assert merged.height == backfill.height
    columns = [c for c in backfill.columns if c != "factors_version"]
    for name, want in (("AAPL", recomputed), ("SPY", backfill)):
        got = merged.filter(pl.col("ticker") == name).sort("date").select(columns)
        assert_frame_equal(got, want.filter(pl.col("ticker") == name).sort("date").select(columns), rel_tol=1e-9)
    aapl = merged.filter(pl.col("ticker") == "AAPL").sort("date")
    assert aapl.filter(pl.col("date") < dt.date(2026, 3, 16))["price_factor"].max() < 0.26  # 1-for-4 before it
    assert materialize_restated(copy)["restated_tickers"] == []  # idempotent


def test_building_a_session_again_also_rebuilds_the_later_sessions_whose_windows_reach_it(quarter, backfill, tmp_path):
    data, _ = quarter
    copy = tmp_path / "data"
    for zone in ("lake", "reference", "enriched"):
        shutil.copytree(data / zone, copy / zone)
    # the vendor corrects AAPL's bar of Feb 10 and the lake partition is built again: the features of Feb 10 and
    # of every later session whose window reaches Feb 10 change, and only those
    day = dt.date(2026, 2, 10)
    path = partition_path(copy / "lake", DAY.name, day)
    corrected = pl.read_parquet(path).with_columns(
        pl.when(pl.col("ticker") == "AAPL").then(pl.col("close") * 1.1).otherwise(pl.col("close")).alias("close")
    )
    corrected.write_parquet(path)
    files = {p: p.stat().st_mtime_ns for p in (copy / "enriched" / DAY.name).glob("date=*/part-0.parquet")}
    result = enrich(copy, day.isoformat(), day.isoformat())
    assert result.success
    rebuilt = sorted(e.partition for e in result.get_asset_materialization_events())
    later = sessions(Calendar.XNYS, day + dt.timedelta(days=1), END)[: FEATURES.lookback]
    assert rebuilt == [day.isoformat(), *(s.isoformat() for s in later)]
    untouched = {p for p in files if p.parent.name[5:] not in rebuilt}
    assert untouched and all(p.stat().st_mtime_ns == files[p] for p in untouched)

    fresh = tmp_path / "fresh"
    for zone in ("lake", "reference"):
        shutil.copytree(copy / zone, fresh / zone)
    assert enrich(fresh, *BACKFILL).success
    columns = [c for c in backfill.columns if c != "factors_version"]
    want = scan(fresh / "enriched", DAY.name).collect().sort("date", "ticker").select(columns)
    got = scan(copy / "enriched", DAY.name).collect().sort("date", "ticker").select(columns)
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-9, abs_tol=1e-12)
    aapl_return = got.filter((pl.col("ticker") == "AAPL") & (pl.col("date") == later[0]))["return_1"].item()
    before = backfill.filter((pl.col("ticker") == "AAPL") & (pl.col("date") == later[0]))["return_1"].item()
    assert aapl_return != pytest.approx(before)  # the day after the correction did change
