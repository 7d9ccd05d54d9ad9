"""Tiingo and the Yahoo fallback against their real local servers over HTTP (`samples/tiingo.py`, `samples/yahoo.py`),
no mocks: the bars are the generated flat files' numbers, symbols are converted at the boundary, each vendor's
errors in disguise fail loudly, the key never lands anywhere, and the response cache is honoured."""

import datetime as dt
import gzip
import io
import json
import math
import time
from dataclasses import replace

import httpx
import polars as pl
import pytest

from quant_assets.datasets import DATASETS
from quant_assets.providers import tiingo, yahoo
from quant_assets.providers.bars import DAILY_BARS
from quant_assets.providers.cache import Caching, NotCached, ResponseCache
from quant_assets.providers.client import ProviderClient
from quant_assets.providers.errors import MalformedResponse, RequestFailed, VendorError
from quant_assets.providers.symbols import Unsupported
from quant_assets.sample import session_files
from quant_assets.samples.history import INDEX_SCALE, DailyHistory
from quant_assets.samples.server import json_reply
from quant_assets.samples.tiingo import OVER_QUOTA_TEXT, TiingoServer
from quant_assets.samples.yahoo import YahooServer, market_open
from quant_assets_tests.conftest import FEB

KEY = "tiingo_live_5e4d3c2b1a0f9e8d7c6b"
HISTORY = dt.date(2026, 1, 2), FEB[1]  # the vendors' data: January too, so BRK.B's January split is behind it
TODAY = dt.date(2026, 3, 2)  # Yahoo's requests run to today
RAW = ("open", "high", "low", "close", "volume")
FAST = {"attempts": 2, "backoff_initial": 0.01, "backoff_max": 0.05, "timeout": 5.0}


def tiingo_client(server: TiingoServer, data, key: str | None = KEY, cache=None, **policy) -> ProviderClient:
    rules = tiingo.policy(**{**FAST, **policy})
    return ProviderClient(
        "tiingo", server.url, key, replace(rules, rates=((1000, 1.0),)), data, auth=tiingo.AUTH, cache=cache
    )


def yahoo_client(server: YahooServer, data, cache=None, **policy) -> ProviderClient:
    rules = yahoo.policy(rates=((1000, 1.0),), **{**FAST, **policy})
    return ProviderClient("yahoo", server.url, None, rules, data, auth=yahoo.AUTH, cache=cache)


@pytest.fixture(scope="module")
def history() -> DailyHistory:
    return DailyHistory(*HISTORY)


@pytest.fixture(scope="module")
def flat_files(history) -> pl.DataFrame:
    """The generated `stocks_daily` files of February, read as the vendor's CSV."""
    frames = []
    for session in history.sessions:
        if session >= FEB[0]:
            text = gzip.decompress(session_files(DATASETS["stocks_daily"], session, history.universe))
            frame = pl.read_csv(io.BytesIO(text), schema_overrides={"ticker": pl.String, "volume": pl.Float64})
            frames.append(frame.with_columns(date=pl.lit(session)))
    return pl.concat(frames, how="diagonal_relaxed")


@pytest.fixture
def tiingo_server():
    with TiingoServer(*HISTORY, api_key=KEY) as server:
        yield server


@pytest.fixture
def yahoo_server():
    with YahooServer(*HISTORY) as server:
        yield server


def assert_raw_equals_flat_files(frame: pl.DataFrame, flat_files: pl.DataFrame, ticker: str) -> None:
    expected = flat_files.filter(pl.col("ticker") == ticker).sort("date")
    assert frame["date"].to_list() == expected["date"].to_list()
    assert len(frame) == 19  # every session of February 2026 (Presidents' Day is none)
    for name in RAW:
        assert frame[name].to_list() == expected[name].to_list(), name


def assert_adjustment_steps_only_at_events(frame: pl.DataFrame) -> None:
    """adj_close / close is constant between two events, and changes only across a dividend or a split."""
    ratios = (frame["adj_close"] / frame["close"]).to_list()
    events = [d or s != 1 for d, s in zip(frame["dividend"], frame["split_factor"])]
    for before, after, event in zip(ratios, ratios[1:], events[1:]):
        assert math.isclose(before, after, rel_tol=1e-5) != event
    assert math.isclose(ratios[-1], 1.0, rel_tol=1e-5)  # the vendor's last day is not adjusted


def test_tiingo_bars_are_the_flat_files_and_brk_b_travels_as_brk_dash_b(tiingo_server, history, flat_files, tmp_path):
    with tiingo_client(tiingo_server, tmp_path) as c:
        provider = tiingo.Tiingo(c)
        aapl, aapl_aside = provider.daily_bars("AAPL", *FEB)
        brk, brk_aside = provider.daily_bars("BRK.B", *FEB)
        meta = provider.metadata("BRK.B")
    assert aapl_aside == brk_aside == []
    assert aapl.schema == pl.Schema(DAILY_BARS) and brk.schema == pl.Schema(DAILY_BARS)
    for frame, ticker in ((aapl, "AAPL"), (brk, "BRK.B")):
        assert frame["ticker"].unique().to_list() == [ticker]
        assert_raw_equals_flat_files(frame, flat_files, ticker)
        assert_adjustment_steps_only_at_events(frame)
        expected = history.bars(ticker, *FEB)
        assert frame["adj_close"].to_list() == [bar["adj_close"] for bar in expected]
        assert frame["adj_volume"].to_list() == [bar["adj_volume"] for bar in expected]
    assert aapl.filter(pl.col("dividend") > 0).select("date", "dividend").rows() == [(dt.date(2026, 2, 9), 2.37)]
    assert brk.filter(pl.col("split_factor") != 1).select("date", "split_factor").rows() == [
        (dt.date(2026, 2, 19), 2.0)
    ]
    paths = [seen.path for seen in tiingo_server.requests]
    assert (
        paths[1] == "/tiingo/daily/BRK-B/prices?startDate=2026-02-02&endDate=2026-02-27&format=json&resampleFreq=daily"
    )
    assert paths[2] == "/tiingo/daily/BRK-B"
    assert all(seen.authorised for seen in tiingo_server.requests)  # Authorization: Token <key>
    assert meta == {
        "ticker": "BRK.B",
        "name": "BRK.B Synthetic Inc.",
        "exchange_code": "NYSE",
        "description": "A synthetic company traded as BRK.B.",
        "start_date": HISTORY[0],
        "end_date": HISTORY[1],
    }


def test_tiingo_refuses_an_index_before_sending_and_yahoo_serves_it_as_caret_gspc(
    tiingo_server, yahoo_server, history, tmp_path
):
    with tiingo_client(tiingo_server, tmp_path) as c, pytest.raises(Unsupported, match="tiingo has no index data"):
        tiingo.Tiingo(c).daily_bars("I:SPX", *FEB)
    assert tiingo_server.requests == []
    with yahoo_client(yahoo_server, tmp_path) as c:
        spx, aside = yahoo.Yahoo(c, today=lambda: TODAY).daily_bars("I:SPX", *FEB)
    assert aside == [] and spx.height == 19 and spx["ticker"].unique().to_list() == ["I:SPX"]
    assert yahoo_server.requests[0].path.startswith("/v8/finance/chart/%5EGSPC?")
    session = dt.date(2026, 2, 10)
    closes = [bar["c"] for t, bar in history.session_bars(session).items() if t in history.tickers]
    assert spx.filter(pl.col("date") == session)["close"].item() == round(
        sum(closes) / len(closes) * INDEX_SCALE["SPX"], 2
    )
    assert spx["adj_close"].to_list() == spx["close"].to_list()


def test_yahoo_bars_are_the_flat_files_once_its_split_adjustment_is_undone(yahoo_server, history, flat_files, tmp_path):
    with yahoo_client(yahoo_server, tmp_path) as c:
        provider = yahoo.Yahoo(c, today=lambda: TODAY)
        aapl, aapl_aside = provider.daily_bars("AAPL", *FEB)
        brk, brk_aside = provider.daily_bars("BRK.B", *FEB)
    assert aapl_aside == brk_aside == []
    assert brk.schema == pl.Schema(DAILY_BARS)
    for frame, ticker in ((aapl, "AAPL"), (brk, "BRK.B")):
        assert frame["ticker"].unique().to_list() == [ticker]
        assert_raw_equals_flat_files(frame, flat_files, ticker)
        assert_adjustment_steps_only_at_events(frame)
        expected = history.bars(ticker, *FEB)
        assert frame["adj_close"].to_list() == [bar["adj_close"] for bar in expected]
        assert frame["adj_volume"].to_list() == pytest.approx([bar["adj_volume"] for bar in expected], abs=1e-4)
        derived = (frame["open"] * (frame["adj_close"] / frame["close"])).to_list()
        assert frame["adj_open"].to_list() == derived  # Yahoo has only an adjusted close
    # On the wire the closes before the split are halved, as Yahoo sends them; undone here.
    wire = httpx.get(f"{yahoo_server.url}{yahoo_server.requests[1].path}").json()["chart"]["result"][0]
    assert wire["indicators"]["quote"][0]["close"][0] == brk["close"][0] / 2
    assert wire["events"]["splits"][str(market_open(dt.date(2026, 2, 19)))]["numerator"] == 2.0
    assert yahoo_server.requests[1].path.startswith(f"/v8/finance/chart/BRK-B?period1={market_open(FEB[0]) - 34200}&")
    assert aapl.filter(pl.col("dividend") > 0).select("date", "dividend").rows() == [(dt.date(2026, 2, 9), 2.37)]
    assert brk.filter(pl.col("split_factor") != 1).select("date", "split_factor").rows() == [
        (dt.date(2026, 2, 19), 2.0)
    ]


def test_yahoo_days_with_nulls_are_set_aside_with_their_reason_and_the_others_kept(flat_files, tmp_path):
    bad = [dt.date(2026, 2, 5), dt.date(2026, 2, 12)]
    with YahooServer(*HISTORY, nulls=[("AAPL", day) for day in bad], null_fields=("close", "volume")) as server:
        with yahoo_client(server, tmp_path) as c:
            frame, aside = yahoo.Yahoo(c, today=lambda: TODAY).daily_bars("AAPL", *FEB)
    where = f"yahoo /v8/finance/chart/{{ticker}} (AAPL as AAPL, {FEB[0]}..{FEB[1]})"
    assert aside == [f"{where}: the day {day} has no close, volume (null in Yahoo's arrays)" for day in bad]
    assert frame.height == 17 and not set(bad) & set(frame["date"].to_list())
    expected = flat_files.filter((pl.col("ticker") == "AAPL") & ~pl.col("date").is_in(bad)).sort("date")
    assert frame["close"].to_list() == expected["close"].to_list()


def test_tiingo_plain_text_over_quota_is_an_error_naming_the_endpoint(tmp_path):
    with TiingoServer(*HISTORY, api_key=KEY, quota=1, plain_text_over_quota=True) as server:
        with tiingo_client(server, tmp_path) as c:
            provider = tiingo.Tiingo(c)
            assert provider.daily_bars("AAPL", *FEB)[0].height == 19
            with pytest.raises(MalformedResponse) as error:
                provider.daily_bars("AAPL", *FEB)
    message = str(error.value)
    assert message.startswith("tiingo /tiingo/daily/{ticker}/prices: the response is not valid JSON")
    assert "text/plain" in message and KEY not in message
    assert len(server.requests) == 2  # not retried: the same request gets the same answer this hour
    body = sorted((tmp_path / "raw/providers/tiingo").rglob("*.body"))[-1].read_text()
    assert body == OVER_QUOTA_TEXT  # landed as the vendor sent it


@pytest.mark.parametrize(
    ("detail", "kind"),
    [
        ("You do not have permission to access the News API", "not_entitled"),
        ("Invalid token.", "not_entitled"),
        ("Error: You have run over your hourly request allocation.", "rate_limited"),
        ("Error: startDate is after endDate", "invalid"),
    ],
)
def test_tiingo_detail_with_http_200_is_a_vendor_error_and_not_cached(tiingo_server, tmp_path, detail, kind):
    tiingo_server.script.append(json_reply({"detail": detail}, 200))
    cache = ResponseCache(tmp_path / "providers")
    with tiingo_client(tiingo_server, tmp_path, cache=cache) as c:
        provider = tiingo.Tiingo(c)
        with pytest.raises(VendorError) as error:
            provider.daily_bars("AAPL", *FEB, caching=Caching(3600))
        assert error.value.kind == kind and detail in str(error.value)
        assert str(error.value).startswith(
            "tiingo /tiingo/daily/{ticker}/prices (AAPL as AAPL, 2026-02-02..2026-02-27)"
        )
        with pytest.raises(NotCached):
            provider.daily_bars("AAPL", *FEB, caching=Caching(3600, "only"))
    cache.close()
    assert len(tiingo_server.requests) == 1


def test_tiingo_other_shapes_fail_loudly_and_bad_days_are_set_aside(tiingo_server, history, tmp_path):
    days = httpx.get(
        f"{tiingo_server.url}/tiingo/daily/AAPL/prices",
        params={"startDate": "2026-02-02", "endDate": "2026-02-04"},
        headers={"Authorization": f"Token {KEY}"},
    ).json()
    days[1]["close"] = "n/a"
    del days[2]["date"]
    tiingo_server.script += [
        json_reply({"prices": days}),  # an object, not the array of days
        json_reply(days),
        json_reply({"name": "Apple"}),  # metadata without `ticker`
    ]
    with tiingo_client(tiingo_server, tmp_path) as c:
        provider = tiingo.Tiingo(c)
        with pytest.raises(
            MalformedResponse, match=r"^tiingo /tiingo/daily/\{ticker\}/prices \(AAPL .*not a JSON array"
        ):
            provider.daily_bars("AAPL", *FEB)
        frame, aside = provider.daily_bars("AAPL", *FEB)
        with pytest.raises(
            MalformedResponse, match=r"^tiingo /tiingo/daily/\{ticker\} \(AAPL as AAPL\): .*no `ticker`"
        ):
            provider.metadata("AAPL")
        with pytest.raises(RequestFailed) as unknown:
            provider.daily_bars("ZZZQ", *FEB)
    where = "tiingo /tiingo/daily/{ticker}/prices (AAPL as AAPL, 2026-02-02..2026-02-27)"
    assert aside == [f"{where}: result 1 has close='n/a', not Float64", f"{where}: result 2 lacks date"]
    assert frame["date"].to_list() == [dt.date(2026, 2, 2)]
    assert unknown.value.status == 404 and "ZZZQ" in str(unknown.value)


def test_tiingo_server_without_dates_answers_the_latest_day_and_empty_for_answers_nothing(tmp_path):
    with TiingoServer(*HISTORY, api_key=KEY, empty_for={"AAPL"}) as server:
        headers = {"Authorization": f"Token {KEY}"}
        latest = httpx.get(f"{server.url}/tiingo/daily/BRK-B/prices", headers=headers).json()
        assert [day["date"] for day in latest] == ["2026-02-27T00:00:00.000Z"]
        assert httpx.get(f"{server.url}/tiingo/daily/BRK-B/prices").status_code == 401  # no key
        assert httpx.get(f"{server.url}/tiingo/daily/%5EGSPC", headers=headers).json() == {
            "detail": "Error: Ticker '^GSPC' not found"
        }
        with tiingo_client(server, tmp_path) as c:
            frame, aside = tiingo.Tiingo(c).daily_bars("AAPL", *FEB)
    assert frame.height == 0 and aside == [] and frame.schema == pl.Schema(DAILY_BARS)


def test_yahoo_chart_error_429_storm_and_unknown_ticker(yahoo_server, tmp_path):
    yahoo_server.script.append(
        json_reply({"chart": {"result": None, "error": {"code": "Not Found", "description": "No data found"}}})
    )
    with yahoo_client(yahoo_server, tmp_path) as c:
        provider = yahoo.Yahoo(c, today=lambda: TODAY)
        with pytest.raises(VendorError, match="Yahoo answered with an error: No data found") as error:
            provider.daily_bars("AAPL", *FEB)
        assert error.value.kind == "invalid"
        with pytest.raises(RequestFailed) as unknown:
            provider.daily_bars("ZZZQ", *FEB)
        assert unknown.value.status == 404
    yahoo_server.per_second = 1  # a storm: the second arrival of a second is refused
    with yahoo_client(yahoo_server, tmp_path, attempts=4, backoff_initial=0.6, backoff_max=1.5) as c:
        provider = yahoo.Yahoo(c, today=lambda: TODAY)
        first, second = provider.daily_bars("AAPL", *FEB), provider.daily_bars("SPY", *FEB)
        assert first[0].height == second[0].height == 19
        assert c.stats.statuses.get(429, 0) >= 1 and c.stats.retries >= 1
    time.sleep(1.1)  # the storm's second is over
    with yahoo_client(yahoo_server, tmp_path) as c:
        yahoo.Yahoo(c, today=lambda: TODAY).daily_bars("AAPL", *FEB)
        with pytest.raises(RequestFailed, match=r"failed after 2 attempts: HTTP 429"):
            yahoo.Yahoo(c, today=lambda: TODAY).daily_bars("AAPL", *FEB)


def test_the_key_lands_nowhere_and_no_message_carries_it(tmp_path):
    errors = []
    with TiingoServer(*HISTORY, api_key=KEY, quota=4, plain_text_over_quota=True) as server:
        server.script.append(json_reply({"detail": "Invalid token."}, 200))
        with tiingo_client(server, tmp_path, cache=ResponseCache(tmp_path / "providers")) as c:
            provider = tiingo.Tiingo(c)
            for call in (
                lambda: provider.daily_bars("AAPL", *FEB),
                lambda: provider.daily_bars("AAPL", *FEB, caching=Caching(3600)),
                lambda: provider.metadata("AAPL"),
                lambda: provider.daily_bars("ZZZQ", *FEB),
                lambda: provider.daily_bars("BRK.B", *FEB),
                lambda: provider.daily_bars("SPY", *FEB),
            ):
                try:
                    call()
                except Exception as error:  # noqa: BLE001 (every kind of failure is looked at)
                    errors.append(str(error))
            c.cache.close()
    assert len(errors) == 3 and all(KEY not in message for message in errors)  # detail, 404, over quota
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any("raw/providers/tiingo" in str(path) for path in files)
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
    audit = [json.loads(p.read_text()) for p in (tmp_path / "raw/providers/tiingo").rglob("*.json")]
    assert len(audit) == len(server.requests) == 6


def test_a_vendor_echoing_the_key_has_it_replaced_in_the_message(tiingo_server, tmp_path):
    tiingo_server.script.append(json_reply({"detail": f"Invalid token {KEY}."}, 200))
    with tiingo_client(tiingo_server, tmp_path) as c, pytest.raises(VendorError) as error:
        tiingo.Tiingo(c).daily_bars("AAPL", *FEB)
    assert KEY not in str(error.value) and "Invalid token <key>." in str(error.value)


@pytest.mark.parametrize("vendor", ["tiingo", "yahoo"])
def test_caching_serves_a_second_call_without_sending_refresh_sends_only_raises_on_a_miss(
    tiingo_server, yahoo_server, tmp_path, vendor
):
    cache = ResponseCache(tmp_path / "providers")
    if vendor == "tiingo":
        server, c = tiingo_server, tiingo_client(tiingo_server, tmp_path, cache=cache)
        provider = tiingo.Tiingo(c)
    else:
        server, c = yahoo_server, yahoo_client(yahoo_server, tmp_path, cache=cache)
        provider = yahoo.Yahoo(c, today=lambda: TODAY)
    with c:
        first, _ = provider.daily_bars("BRK.B", *FEB, caching=Caching(ttl=3600))
        assert len(server.requests) == 1
        again, _ = provider.daily_bars("BRK.B", *FEB, caching=Caching(ttl=3600))
        assert len(server.requests) == 1 and c.stats.cache_hits == 1
        assert again.equals(first)
        provider.daily_bars("BRK.B", *FEB, caching=Caching(ttl=3600, mode="refresh"))
        assert len(server.requests) == 2
        with pytest.raises(NotCached):
            provider.daily_bars("AAPL", *FEB, caching=Caching(ttl=3600, mode="only"))
        assert len(server.requests) == 2
    cache.close()


def test_default_policies_are_the_documented_limits():
    rules = tiingo.policy()
    assert rules.rates == ((1, 1.0), (50, 3600.0), (1000, 86_400.0)) and rules.cost_per_request == 0.0
    assert tiingo.policy(per_hour=500, per_day=20_000, cost_per_request=0.01).rates[1:] == (
        (500, 3600.0),
        (20_000, 86_400.0),
    )
    rules = yahoo.policy()
    assert rules.rates == yahoo.RATES and rules.cost_per_request == 0.0 and rules.attempts == 4
    assert yahoo.AUTH.header is None and tiingo.AUTH.template == "Token {key}"
