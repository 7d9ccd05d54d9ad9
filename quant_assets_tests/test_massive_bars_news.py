"""Massive's aggregates and news against the local Massive server over HTTP: day aggregates equal the flat files'
bars (raw) and the vendor's adjustment (adjusted), pages are followed, a bad record is set aside, and a
NOT_AUTHORIZED answer is an error naming the endpoint."""

import datetime as dt
import json

import pytest

from quant_assets.providers.cache import Caching
from quant_assets.providers.client import Policy, ProviderClient
from quant_assets.providers.errors import RequestFailed
from quant_assets.providers.massive import AGGREGATES, Massive
from quant_assets.sample_rest import LocalProvider, Reply
from quant_assets.samples.history import DailyHistory

SERVED = dt.date(2026, 2, 1), dt.date(2026, 2, 28)
FEB = dt.date(2026, 2, 2), dt.date(2026, 2, 27)
FAST = Policy(rates=((1000, 1.0),), attempts=2, backoff_initial=0.01)
HISTORY = DailyHistory(*SERVED)


@pytest.fixture
def server():
    with LocalProvider(*SERVED, api_key="massive-key") as running:
        yield running


def client(server, tmp_path, cache=None) -> ProviderClient:
    return ProviderClient("massive", server.url, "massive-key", FAST, tmp_path, cache=cache)


@pytest.mark.parametrize("ticker", ["AAPL", "BRK.B"])
def test_daily_bars_are_the_flat_files_bars_and_the_vendors_adjustment(server, tmp_path, ticker):
    with client(server, tmp_path) as c:
        frame, aside = Massive(c).daily_bars(ticker, *FEB)
    want = HISTORY.bars(ticker, *FEB)
    assert aside == [] and frame.height == len(want) == 19
    assert frame["date"].to_list() == [b["date"] for b in want]
    assert frame["close"].to_list() == [b["close"] for b in want]
    assert frame["adj_close"].to_list() == [b["adj_close"] for b in want]
    assert set(frame["ticker"]) == {ticker}


def test_aggregates_follow_next_url_and_set_a_bad_bar_aside(server, tmp_path):
    server.aggregate_page = 5
    with client(server, tmp_path) as c:
        endpoints = Massive(c)
        bars = endpoints.aggregates("AAPL", 1, "day", *FEB)
        assert bars.height == 19 and len(server.requests) == 4  # pages of 5
        bad = {"results": [{"o": 1, "h": 2, "l": 1, "c": 1.5, "v": 10, "t": 1770008400000},
                           {"o": "x", "h": 2, "l": 1, "c": 1.5, "v": 10, "t": 1770094800000}], "status": "OK"}  # fmt: skip
        server.script.append(Reply(200, json.dumps(bad), {"Content-Type": "application/json"}))
        kept = endpoints.aggregates("AAPL", 1, "day", *FEB)
    assert kept.height == 1 and len(endpoints.set_aside) == 1
    assert endpoints.set_aside[0].startswith(f"massive {AGGREGATES} (AAPL, 1 day, 2026-02-02..2026-02-27")
    assert "result 1 has o='x', not Float64" in endpoints.set_aside[0]


def test_a_not_entitled_answer_names_the_endpoint(server, tmp_path):
    server.not_entitled_for.add("/v2/aggs/ticker/SPY/")
    with client(server, tmp_path) as c, pytest.raises(RequestFailed) as error:
        Massive(c).daily_bars("SPY", *FEB)
    assert error.value.status == 403
    assert str(error.value).startswith(f"massive {AGGREGATES}: HTTP 403: You are not entitled to this data")
    assert len(server.requests) == 1  # a 403 is an answer: not retried


def test_news_pages_are_followed_with_the_lists_of_each_article(server, tmp_path):
    with client(server, tmp_path) as c:
        news = Massive(c).news(ticker="AAPL", limit=2)
        everyone = Massive(c).news(published_gte=dt.date(2026, 2, 23))
    mondays = [d for d in HISTORY.sessions if d.weekday() == 0]
    assert news.height == len(mondays) and len(server.requests) == 1 + len(mondays) // 2 + 1
    first = news.row(0, named=True)
    assert first["tickers"] == ["AAPL"] and first["publisher"] == "Synthetic Wire"
    assert first["insights"] == [{"ticker": "AAPL", "sentiment": "neutral", "sentiment_reasoning": "It is synthetic."}]
    assert news["published_utc"].is_sorted() and news["published_utc"].dt.date().to_list() == mondays
    assert everyone.height == len(HISTORY.tickers) and set(everyone["published_utc"].dt.date()) == {
        dt.date(2026, 2, 23)
    }


def test_daily_bars_are_served_from_the_cache_the_second_time(server, tmp_path):
    from quant_assets.providers.cache import ResponseCache

    cache = ResponseCache(tmp_path / "providers")
    with client(server, tmp_path, cache) as c:
        first, _ = Massive(c).daily_bars("AAPL", *FEB, caching=Caching(3600))
        sent = len(server.requests)
        again, _ = Massive(c).daily_bars("AAPL", *FEB, caching=Caching(3600))
    cache.close()
    assert sent == 2 and len(server.requests) == 2 and again.equals(first)  # raw and adjusted: two requests, once
