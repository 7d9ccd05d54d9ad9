"""The synthetic generator writes what the vendor writes: layout, headers, formatting and market structure."""

import datetime as dt
import gzip
import re
from zoneinfo import ZoneInfo

import polars as pl

from quant_assets.datasets import DATASETS
from quant_assets.flatfiles import read_flat_file, vendor_key
from quant_assets.sample import (
    AWKWARD_TICKERS,
    SIZES,
    Universe,
    folder_writer,
    generate,
    session_files,
)
from quant_assets.sessions import sessions

NY = ZoneInfo("America/New_York")
D = dt.date


def lake(root, name, session):
    dataset = DATASETS[name]
    key = vendor_key(dataset, session)
    return read_flat_file(root / key, dataset, session, key)


def text_of(root, name, session) -> str:
    return gzip.decompress((root / vendor_key(DATASETS[name], session)).read_bytes()).decode()


def test_key_layout_and_only_sessions(february):
    files = sorted(p.relative_to(february).as_posix() for p in february.rglob("*.csv.gz"))
    stock_days = [f for f in files if f.startswith("us_stocks_sip/day_aggs_v1/")]
    expected = [vendor_key(DATASETS["stocks_daily"], s) for s in sessions(DATASETS["stocks_daily"].calendar, *FEB)]
    assert stock_days == expected
    assert len(stock_days) == 19  # February 2026 without Presidents' Day
    assert "us_stocks_sip/day_aggs_v1/2026/02/2026-02-16.csv.gz" not in files
    assert len(files) == 4 * 19


FEB = (D(2026, 2, 2), D(2026, 2, 27))


def test_real_headers(february):
    for name in ("stocks_daily", "stocks_minute", "options_daily", "options_minute"):
        assert text_of(february, name, D(2026, 2, 3)).splitlines()[0] == (
            "ticker,volume,open,close,high,low,window_start,transactions"
        )
    crypto = session_files(DATASETS["indices_minute"], D(2026, 2, 3), Universe(7, SIZES["small"]))
    assert gzip.decompress(crypto).decode().splitlines()[0] == "ticker,open,close,high,low,window_start"


def test_deterministic_and_independent_of_the_range(tmp_path, february):
    one_day = tmp_path / "one"
    generate([DATASETS["stocks_minute"]], D(2026, 2, 20), D(2026, 2, 20), folder_writer(one_day))
    key = vendor_key(DATASETS["stocks_minute"], D(2026, 2, 20))
    assert (one_day / key).read_bytes() == (february / key).read_bytes()
    other_seed = session_files(DATASETS["stocks_minute"], D(2026, 2, 20), Universe(8, SIZES["small"]))
    assert other_seed != (february / key).read_bytes()


def test_six_decimals_and_fractional_volumes_from_2026_02_23(february):
    before = text_of(february, "stocks_minute", D(2026, 2, 20)).splitlines()[1:]
    after = text_of(february, "stocks_minute", D(2026, 2, 23)).splitlines()[1:]
    fixed = re.compile(r"^\d+\.\d{6}$")
    assert all(fixed.match(field) for row in after for field in row.split(",")[1:6])
    assert not any("." in row.split(",")[1] for row in before)  # whole-share volumes before the switch
    assert any(re.match(r"^\d+$", row.split(",")[2]) or len(row.split(",")[2].split(".")[-1]) < 6 for row in before)
    volumes = lake(february, "stocks_minute", D(2026, 2, 23))["volume"]
    assert (volumes != volumes.round(0)).any()  # some fractional shares
    # Options keep the shortest form after the switch.
    assert not fixed.match(text_of(february, "options_minute", D(2026, 2, 23)).splitlines()[1].split(",")[2])


def test_universe_has_the_awkward_tickers_and_listings(february):
    day = lake(february, "stocks_daily", D(2026, 2, 20))
    tickers = set(day["ticker"])
    assert set(AWKWARD_TICKERS) <= tickers
    assert {"BApA", "BAPA", "NA", "NULL", "BRK.B", "NE.WS.A"} <= tickers
    listing = Universe.listing_ticker(2026, 2)  # lists on 2026-02-15
    assert listing not in set(lake(february, "stocks_daily", D(2026, 2, 13))["ticker"])
    assert listing in set(lake(february, "stocks_daily", D(2026, 2, 17))["ticker"])
    delisting = Universe.listing_ticker(2025, 12)  # lists 2025-12-15, delists 2026-02-15
    assert delisting in set(lake(february, "stocks_daily", D(2026, 2, 13))["ticker"])
    assert delisting not in set(lake(february, "stocks_daily", D(2026, 2, 17))["ticker"])


def test_minute_bars_only_in_traded_extended_hours_minutes(february):
    minutes = lake(february, "stocks_minute", D(2026, 2, 20)).with_columns(
        local=pl.col("window_start").dt.convert_time_zone("America/New_York")
    )
    clock = minutes["local"].dt.hour().cast(pl.Int32) * 60 + minutes["local"].dt.minute()
    assert clock.min() >= 4 * 60 and clock.max() < 20 * 60
    assert (clock < 9 * 60 + 30).any() and (clock >= 16 * 60).any()  # pre- and post-market bars
    per_ticker = minutes.group_by("ticker").agg(pl.len().alias("n"), pl.col("window_start").n_unique().alias("u"))
    assert (per_ticker["n"] == per_ticker["u"]).all()  # at most one bar per minute
    assert per_ticker["n"].max() < 960 * 0.9  # illiquid tickers skip minutes without trades
    assert minutes.filter(pl.col("transactions") < 1).height == 0


def test_early_close_day_ends_post_market_at_17(tmp_path):
    generate([DATASETS["stocks_minute"]], D(2025, 11, 28), D(2025, 11, 28), folder_writer(tmp_path))
    local = lake(tmp_path, "stocks_minute", D(2025, 11, 28))["window_start"].dt.convert_time_zone("America/New_York")
    assert (local.dt.hour().cast(pl.Int32) * 60 + local.dt.minute()).max() < 17 * 60


def test_day_bars_aggregate_the_minute_bars(february):
    for session in (D(2026, 2, 20), D(2026, 2, 23)):
        minutes = lake(february, "stocks_minute", session).sort("ticker", "window_start")
        expected = (
            minutes.group_by("ticker")
            .agg(
                pl.col("open").first(),
                pl.col("close").last(),
                pl.col("high").max(),
                pl.col("low").min(),
                pl.col("volume").sum(),
                pl.col("transactions").sum(),
            )
            .sort("ticker")
        )
        day = lake(february, "stocks_daily", session).sort("ticker")
        assert day["ticker"].to_list() == expected["ticker"].to_list()
        for column in ("open", "close", "high", "low", "transactions"):
            assert day[column].to_list() == expected[column].to_list(), column
        assert ((day["volume"] - expected["volume"]).abs() < 1e-6).all()
        midnight = dt.datetime(session.year, session.month, session.day, tzinfo=NY)
        assert (day["window_start"] == midnight.astimezone(dt.UTC)).all()
        assert ((day["low"] <= day["open"]) & (day["open"] <= day["high"])).all()


def test_split_shows_as_a_price_jump(february):
    events = Universe(7, SIZES["small"]).split_events(*FEB)
    assert ("BRK.B", D(2026, 2, 19), 0.5) in events
    closes = {}
    for session in (D(2026, 2, 18), D(2026, 2, 19)):
        day = lake(february, "stocks_daily", session)
        closes[session] = day.filter(pl.col("ticker") == "BRK.B")["close"][0]
    ratio = closes[D(2026, 2, 19)] / closes[D(2026, 2, 18)]
    assert 0.4 < ratio < 0.6


def test_option_contracts_are_occ_symbols(february):
    options = lake(february, "options_daily", D(2026, 2, 20))
    assert options["ticker"].str.contains(r"^O:[A-Z]+\d{6}[CP]\d{8}$").all()
    assert set(options["underlying"]) == {"SPY", "AAPL", "BRKB"}
    assert (options["expiration"] >= D(2026, 2, 20)).all()
    assert set(options["contract_type"]) == {"C", "P"}


def test_full_size_day_has_about_twelve_thousand_tickers():
    data = session_files(DATASETS["stocks_daily"], D(2026, 3, 10), Universe(7, SIZES["full"]))
    rows = gzip.decompress(data).decode().count("\n") - 1
    assert 11_000 <= rows <= 12_500
