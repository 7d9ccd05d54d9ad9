"""Finnhub and Alpha Vantage against their local servers over HTTP: values equal the synthetic history's, and each
vendor's quirks end where they should (an all-zero quote is missing, not 0; a 200 with `Information` is an error
naming the function and charged to the day; a paid-only index is not entitled), and a key that only travels in the
query string is nowhere it is written."""

import datetime as dt
import json

import polars as pl
import pytest

from quant_assets.providers import alphavantage, finnhub
from quant_assets.providers.alphavantage import AlphaVantage
from quant_assets.providers.client import Policy, ProviderClient
from quant_assets.providers.errors import MalformedResponse, RequestFailed, VendorError
from quant_assets.providers.finnhub import Finnhub
from quant_assets.providers.state import ProviderState
from quant_assets.sample_rest import Reply
from quant_assets.samples.alphavantage import AlphaVantageServer, ema, rsi, sma
from quant_assets.samples.finnhub import FinnhubServer
from quant_assets.samples.history import DailyHistory

SERVED = dt.date(2026, 2, 1), dt.date(2026, 2, 28)
FEB = dt.date(2026, 2, 2), dt.date(2026, 2, 27)
AV_KEY = "av-query-secret-77e1"
FH_KEY = "fh-header-secret-1c2d"
FAST = {"attempts": 2, "backoff_initial": 0.01, "rates": ((1000, 1.0),)}
HISTORY = DailyHistory(*SERVED)


def av(server, data, **policy) -> ProviderClient:
    return ProviderClient(
        alphavantage.NAME, server.url, AV_KEY, Policy(**{**FAST, **policy}), data, auth=alphavantage.AUTH
    )


def fh(server, data, auth=finnhub.AUTH) -> ProviderClient:
    return ProviderClient(finnhub.NAME, server.url, FH_KEY, Policy(**FAST), data, auth=auth)


def test_alpha_vantage_daily_bars_equal_the_flat_files_history(tmp_path):
    with AlphaVantageServer(*SERVED, api_key=AV_KEY) as server, av(server, tmp_path) as client:
        for ticker in ("AAPL", "BRK.B"):
            frame, aside = AlphaVantage(client).daily_bars(ticker, *FEB)
            want = HISTORY.bars(ticker, *FEB)
            assert aside == [] and frame.height == len(want) == 19
            assert frame["close"].to_list() == [b["close"] for b in want]
            assert frame["volume"].to_list() == [b["volume"] for b in want]
            assert frame["adj_close"].null_count() == 19  # the adjusted series is premium
        assert "apikey" not in json.dumps([r.path.split("apikey=")[0] for r in server.requests])
        assert all(f"apikey={AV_KEY}" in r.path for r in server.requests)  # the key did travel, in the query


@pytest.mark.parametrize("function, compute", [("SMA", sma), ("EMA", ema), ("RSI", rsi)])
def test_alpha_vantage_indicators_are_the_server_s_values_as_floats(tmp_path, function, compute):
    with AlphaVantageServer(*SERVED, api_key=AV_KEY) as server, av(server, tmp_path) as client:
        frame, aside = AlphaVantage(client).indicator(function, "AAPL", time_period=5)
    closes = [b["close"] for b in HISTORY.bars("AAPL", *SERVED)]
    want = [round(v, 4) for v in compute(closes, 5) if v is not None]
    assert aside == [] and frame.columns == ["ticker", "date", function]
    assert frame[function].to_list() == want and frame["date"].is_sorted()


def test_alpha_vantage_macd_has_its_three_series(tmp_path):
    longer = dt.date(2025, 11, 3), SERVED[1]  # MACD needs 26 + 9 sessions
    with AlphaVantageServer(*longer, api_key=AV_KEY) as server, av(server, tmp_path) as client:
        frame, _ = AlphaVantage(client).indicator("MACD", "AAPL", time_period=None)
    assert frame.columns == ["ticker", "date", "MACD", "MACD_Hist", "MACD_Signal"] and frame.height > 30
    assert frame.select((pl.col("MACD") - pl.col("MACD_Signal") - pl.col("MACD_Hist")).abs().max()).item() < 2e-4


def test_a_200_with_information_is_an_error_naming_the_function_and_is_charged_to_the_day(tmp_path):
    with AlphaVantageServer(*SERVED, api_key=AV_KEY, quota=1) as server:
        with av(server, tmp_path, cost_per_request=1.0, daily_budget=25.0) as client:
            AlphaVantage(client).daily_bars("AAPL", *FEB)
            with pytest.raises(VendorError) as error:
                AlphaVantage(client).daily_bars("SPY", *FEB)
        assert error.value.kind == "rate_limited"
        assert str(error.value).startswith("alphavantage /query?function=TIME_SERIES_DAILY (SPY, 2026-02-02..")
        assert "25 requests per day" in str(error.value) and AV_KEY not in str(error.value)
        assert len(server.requests) == 2  # not retried: the same request gets the same answer today
    state = ProviderState(tmp_path)
    [spent] = state.spending()
    state.close()
    assert (spent["provider"], spent["requests"], spent["cost"]) == ("alphavantage", 2, 2.0)


def test_premium_and_error_message_answers_are_errors_of_their_kind(tmp_path):
    with AlphaVantageServer(*SERVED, api_key=AV_KEY, premium_functions={"RSI"}, error_message_for={"SPY"}) as server:
        with av(server, tmp_path) as client:
            with pytest.raises(VendorError) as premium:
                AlphaVantage(client).indicator("RSI", "AAPL")
            with pytest.raises(VendorError) as invalid:
                AlphaVantage(client).daily_bars("SPY", *FEB)
            server.script.append(Reply(200, json.dumps({"Meta Data": {}}), {"Content-Type": "application/json"}))
            with pytest.raises(MalformedResponse, match=r"function=SMA \(AAPL, daily\): no 'Technical Analysis: SMA'"):
                AlphaVantage(client).indicator("SMA", "AAPL")
            with pytest.raises(ValueError, match="alphavantage has no index data"):
                AlphaVantage(client).daily_bars("I:SPX", *FEB)
    assert premium.value.kind == "not_entitled" and "function=RSI" in str(premium.value)
    assert invalid.value.kind == "invalid" and "Error Message" in str(invalid.value)


def test_a_bad_day_is_set_aside_and_the_others_kept(tmp_path):
    body = {"Meta Data": {}, "Time Series (Daily)": {
        "2026-02-03": {"1. open": "1.0", "2. high": "2.0", "3. low": "0.5", "4. close": "1.5", "5. volume": "100"},
        "2026-02-02": {"1. open": "abc", "2. high": "2.0", "3. low": "0.5", "4. close": "1.5", "5. volume": "100"},
    }}  # fmt: skip
    with AlphaVantageServer(*SERVED, api_key=AV_KEY) as server, av(server, tmp_path) as client:
        server.script.append(Reply(200, json.dumps(body), {"Content-Type": "application/json"}))
        frame, aside = AlphaVantage(client).daily_bars("AAPL", *FEB)
    assert frame["date"].to_list() == [dt.date(2026, 2, 3)]
    assert aside == ["alphavantage /query?function=TIME_SERIES_DAILY (AAPL, 2026-02-02..2026-02-27): result 1 has "
                     "open='abc', not Float64"]  # fmt: skip


def test_the_query_string_key_is_in_no_file_message_or_repr(tmp_path):
    with AlphaVantageServer(*SERVED, api_key=AV_KEY, quota=2) as server, av(server, tmp_path) as client:
        endpoints = AlphaVantage(client)
        endpoints.daily_bars("AAPL", *FEB)
        endpoints.indicator("SMA", "AAPL")
        with pytest.raises(VendorError) as error:
            endpoints.indicator("EMA", "AAPL")
        assert AV_KEY not in str(error.value) + repr(client) + json.dumps(client.stats.as_dict())
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len([p for p in written if p.suffix == ".json" and "raw/providers" in str(p)]) == 3
    assert [p for p in written if AV_KEY.encode() in p.read_bytes()] == []
    audit = [json.loads(p.read_text()) for p in written if p.suffix == ".json" and "raw/providers" in str(p)]
    assert all("apikey" not in record["url"] and "function=" in record["url"] for record in audit)


def test_finnhub_quote_is_the_last_session_and_an_all_zero_quote_is_missing(tmp_path):
    with FinnhubServer(*SERVED, api_key=FH_KEY, all_zero_for={"SPY"}) as server, fh(server, tmp_path) as client:
        quote = Finnhub(client).quote("BRK.B")
        assert Finnhub(client).quote("SPY") is None  # no data, not a price of 0
        with pytest.raises(RequestFailed) as index:
            Finnhub(client).quote("I:SPX")
    last, before = HISTORY.bars("BRK.B", *SERVED)[-2:][::-1]
    assert (quote["symbol"], quote["price"], quote["previous_close"]) == ("BRK.B", last["close"], before["close"])
    assert quote["time"].date() == last["date"]
    assert index.value.status == 403 and "subscription required" in str(index.value)
    assert "/api/v1/quote" in str(index.value) and "%5EGSPC" in str(index.value)
    assert all(seen.authorised and FH_KEY not in seen.path for seen in server.requests)  # the header, not the URL


def test_finnhub_takes_the_key_as_a_parameter_when_configured(tmp_path):
    with FinnhubServer(*SERVED, api_key=FH_KEY) as server, fh(server, tmp_path, finnhub.AUTH_QUERY) as client:
        assert Finnhub(client).quote("AAPL")["price"] == HISTORY.bars("AAPL", *SERVED)[-1]["close"]
        assert f"token={FH_KEY}" in server.requests[0].path
    assert [p for p in tmp_path.rglob("*") if p.is_file() and FH_KEY.encode() in p.read_bytes()] == []


def test_finnhub_news_financials_and_earnings(tmp_path):
    with FinnhubServer(*SERVED, api_key=FH_KEY) as server, fh(server, tmp_path) as client:
        endpoints = Finnhub(client)
        news = endpoints.company_news("AAPL", *FEB)
        market = endpoints.market_news("general")
        newer = endpoints.market_news("general", min_id=25)
        metrics, series = endpoints.basic_financials("AAPL")
        earnings = endpoints.earnings("AAPL")
        calendar = endpoints.earnings_calendar(dt.date(2026, 1, 1), dt.date(2026, 2, 28))
        server.script.append(Reply(200, json.dumps({"error": "Symbol not supported."}), {}))
        with pytest.raises(VendorError, match="company-news .*Symbol not supported") as unsupported:
            endpoints.company_news("AAPL", *FEB)
    mondays = [d for d in HISTORY.sessions if FEB[0] <= d <= FEB[1] and d.weekday() == 0]
    assert news.height == len(mondays) and set(news["symbol"]) == {"AAPL"}
    assert news["published"].dt.date().sort().to_list() == mondays
    assert market.height == 30 and newer["id"].to_list() == [30, 29, 28, 27, 26]  # minId pages
    closes = [b["close"] for b in HISTORY.bars("AAPL", *SERVED)]
    assert dict(metrics.select("name", "value").iter_rows())["52WeekHigh"] == max(closes)
    assert series.columns == ["frequency", "name", "period", "value", "symbol"] and series.height == 3
    assert earnings.height == 2 and earnings["period"].dtype.is_temporal()
    assert "BRK.B" in set(calendar["symbol"]) and calendar["date"].max() <= dt.date(2026, 2, 28)
    assert unsupported.value.kind == "invalid"
