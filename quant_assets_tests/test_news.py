"""The `news` dataset against the local Massive and Finnhub servers over HTTP: the same article from both is one row
with both ids, the cursors make a second run ask only from where the first stopped (and write nothing when nothing
is new), an outage fails only its streams (and a page 2 that fails publishes nothing of its listing) which the next
run fetches and lands, and a hostile article is set aside with its reason while the others land."""

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import polars as pl
import pytest

from quant_assets.providers import finnhub
from quant_assets.providers.client import Policy, ProviderClient
from quant_assets.providers.finnhub import Finnhub
from quant_assets.providers.massive import Massive
from quant_assets.sample import _stable_int
from quant_assets.sample_rest import LocalProvider, Reply
from quant_assets.samples.finnhub import MARKET_NEWS_COUNT, FinnhubServer, _epoch
from quant_assets.samples.history import DailyHistory
from quant_assets.service import news
from quant_assets.service.news import (
    SCHEMA,
    article_key,
    collect_company_news,
    collect_market_news,
    normalised_url,
    read_cursors,
    read_news,
)

SERVED = dt.date(2026, 2, 1), dt.date(2026, 2, 28)
NOW = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)  # 30 days back: 2026-01-31, before every article served
LATER = NOW + dt.timedelta(hours=1)
FIRST_DAY = dt.date(2026, 1, 31)  # NOW's day in New York, less 30 days
MASSIVE_KEY, FINNHUB_KEY = "massive-news-key", "finnhub-news-key"
FAST = Policy(rates=((1000, 1.0),), attempts=2, backoff_initial=0.01)
HISTORY = DailyHistory(*SERVED)
MONDAYS = [d for d in HISTORY.sessions if d.weekday() == 0]  # Presidents' Day (16th) is no session
SYMBOLS = ("AAPL", "BRK.B", "BCpC")  # a share class, and a preferred (Finnhub's `BC-PC`)
BOOM = [Reply(500, "boom")] * FAST.attempts  # one request's every attempt fails


@dataclass
class Vendors:
    massive_server: LocalProvider
    finnhub_server: FinnhubServer
    providers: dict
    lake: Path


@pytest.fixture
def vendors(tmp_path):
    data = tmp_path / "data"
    with (
        LocalProvider(*SERVED, api_key=MASSIVE_KEY) as massive_server,
        FinnhubServer(*SERVED, api_key=FINNHUB_KEY) as finnhub_server,
        ProviderClient("massive", massive_server.url, MASSIVE_KEY, FAST, data) as massive_client,
        ProviderClient(finnhub.NAME, finnhub_server.url, FINNHUB_KEY, FAST, data, auth=finnhub.AUTH) as fh_client,
    ):
        providers = {"massive": Massive(massive_client), "finnhub": Finnhub(fh_client)}
        yield Vendors(massive_server, finnhub_server, providers, data / "lake")


def key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def massive_published(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(13, 30), dt.UTC)


def company_row(symbol: str, day: dt.date, providers=("finnhub", "massive")) -> dict:
    """The one row of `symbol`'s article of `day` (a Monday), as the servers' rules make it: Massive's at 13:30
    UTC, Finnhub's the same URL at 09:00 New York (later: Massive's time wins, and its texts)."""
    url = f"https://news.example/{symbol}/{day}"
    both, has_massive = len(providers) == 2, "massive" in providers
    published = massive_published(day) if has_massive else dt.datetime.fromtimestamp(_epoch(day, 9), dt.UTC)
    return {
        "key": key(url),
        "published": published,
        "day": day,
        "title": f"{symbol}: the week of {day}" if has_massive else f"{symbol} synthetic news of {day}",
        "summary": f"What moved {symbol}." if has_massive else f"What {symbol} did in the week of {day}.",
        "url": url,
        "source": "Synthetic Wire",
        "category": "company" if both or not has_massive else None,
        "tickers": [symbol],
        "sentiment": [{"ticker": symbol, "sentiment": "neutral", "reasoning": "It is synthetic."}]
        if has_massive
        else [],
        "massive_id": uuid.uuid5(uuid.NAMESPACE_URL, f"news/{symbol}/{day}").hex if has_massive else None,
        "finnhub_id": _stable_int("finnhub-news", symbol, day) % 10**9 if "finnhub" in providers else None,
        "providers": sorted(providers),
        "fetched_at": NOW,
    }


def table(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA).sort("key")


def held(lake: Path) -> pl.DataFrame:
    return read_news(lake).collect().sort("key")


def queries(server, path: str) -> list[dict[str, str]]:
    """The query of each request `server` saw for `path`, one value per parameter."""
    parts = [urlsplit(r.path) for r in server.requests]
    return [{k: v[0] for k, v in parse_qs(p.query).items()} for p in parts if p.path == path]


def mtimes(lake: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in (lake / news.DATASET).rglob("*.parquet")}


def real_answer(server, path: str, headers: dict, **query) -> Reply:
    """The server's own answer to `path` with `query`, to script it before an outage."""
    answer = httpx.get(f"{server.url}{path}", params=query, headers=headers)
    assert answer.status_code == 200
    return Reply(200, answer.content, {"Content-Type": "application/json"})


def test_company_news_from_both_servers_is_one_row_per_article_with_both_ids(vendors):
    collected = collect_company_news(vendors.providers, SYMBOLS, vendors.lake, NOW)
    assert collected.failed == [] and collected.set_aside == [] and collected.notes == []
    assert collected.asked == 6 and collected.served == {"massive": 3, "finnhub": 3}
    assert collected.rows == len(SYMBOLS) * len(MONDAYS) == 9
    assert sorted(collected.written) == [str(vendors.lake / f"news/date={d}/part-0.parquet") for d in MONDAYS]
    frame = held(vendors.lake)
    assert frame.schema == pl.Schema(SCHEMA)
    assert frame.to_dicts() == table([company_row(s, d) for s in SYMBOLS for d in MONDAYS]).to_dicts()
    # The day is New York's (13:30 UTC is 08:30 there), the partition the file's folder says.
    for day in MONDAYS:
        part = pl.read_parquet(vendors.lake / f"news/date={day}/part-0.parquet")
        assert set(part["day"]) == {day} and part.height == len(SYMBOLS)
    assert read_news(vendors.lake, MONDAYS[1], MONDAYS[1]).collect()["day"].to_list() == [MONDAYS[1]] * 3
    cursors = read_cursors(vendors.lake)
    assert cursors[("massive", "company:BRK.B")].published == massive_published(MONDAYS[-1])
    assert cursors[("finnhub", "company:BCpC")].day == MONDAYS[-1]


def test_a_second_run_asks_from_the_cursors_and_writes_nothing(vendors):
    collect_company_news(vendors.providers, SYMBOLS, vendors.lake, NOW)
    first, before = held(vendors.lake), mtimes(vendors.lake)
    vendors.massive_server.requests.clear()
    vendors.finnhub_server.requests.clear()
    again = collect_company_news(vendors.providers, SYMBOLS, vendors.lake, LATER)
    assert again.failed == [] and again.written == [] and again.rows == 0
    assert again.served == {"massive": 3, "finnhub": 3}
    massive_asked = queries(vendors.massive_server, "/v2/reference/news")
    assert sorted(q["ticker"] for q in massive_asked) == sorted(SYMBOLS)
    assert {dt.datetime.fromisoformat(q["published_utc.gte"]) for q in massive_asked} == {
        massive_published(MONDAYS[-1])
    }
    finnhub_asked = queries(vendors.finnhub_server, "/api/v1/company-news")
    assert sorted(q["symbol"] for q in finnhub_asked) == ["AAPL", "BC-PC", "BRK.B"]
    assert {(q["from"], q["to"]) for q in finnhub_asked} == {(str(MONDAYS[-1]), "2026-03-02")}
    assert mtimes(vendors.lake) == before  # no day file and not the cursors rewritten
    assert held(vendors.lake).equals(first)


def test_force_asks_from_the_lookback_and_still_deduplicates(vendors):
    collect_company_news(vendors.providers, SYMBOLS, vendors.lake, NOW)
    first, before = held(vendors.lake), mtimes(vendors.lake)
    vendors.finnhub_server.requests.clear()
    forced = collect_company_news(vendors.providers, SYMBOLS, vendors.lake, LATER, force=True)
    assert {q["from"] for q in queries(vendors.finnhub_server, "/api/v1/company-news")} == {str(FIRST_DAY)}
    assert forced.written == [] and mtimes(vendors.lake) == before and held(vendors.lake).equals(first)


def test_market_news_pages_finnhub_by_min_id_and_a_second_run_writes_nothing(vendors):
    collected = collect_market_news(vendors.providers, vendors.lake, NOW)
    assert collected.failed == [] and collected.served == {"massive": 1, "finnhub": 1}
    assert [q.get("minId") for q in queries(vendors.finnhub_server, "/api/v1/news")] == [None]
    frame = held(vendors.lake)
    wire = frame.filter(pl.col("finnhub_id").is_not_null()).sort("finnhub_id")
    assert wire["finnhub_id"].to_list() == list(range(1, MARKET_NEWS_COUNT + 1))
    assert wire["url"].to_list() == [f"https://news.example/market/{i}" for i in range(1, 31)]
    assert wire["key"].to_list() == [key(f"https://news.example/market/{i}") for i in range(1, 31)]
    assert set(wire["category"]) == {"general"} and wire["tickers"].to_list() == [[]] * 30
    # Finnhub's ids 1..30 are an hour apart from 09:00 New York on the 1st: 15 on the 1st, 15 on the 2nd.
    assert wire.group_by("day").len().sort("day").rows() == [(dt.date(2026, 2, 1), 15), (dt.date(2026, 2, 2), 15)]
    # Massive's market-wide listing from 7 days back: every ticker's article of the 23rd, its tickers and sentiment.
    wide = frame.filter(pl.col("massive_id").is_not_null())
    assert wide.height == len(HISTORY.tickers) and set(wide["day"]) == {dt.date(2026, 2, 23)}
    assert sorted(t for [t] in wide["tickers"].to_list()) == sorted(HISTORY.tickers)
    assert all(s[0]["ticker"] == t[0] for s, t in zip(wide["sentiment"].to_list(), wide["tickers"].to_list()))
    assert read_cursors(vendors.lake)[("finnhub", "market:general")].last_id == MARKET_NEWS_COUNT
    before = mtimes(vendors.lake)
    vendors.finnhub_server.requests.clear()
    vendors.massive_server.requests.clear()
    again = collect_market_news(vendors.providers, vendors.lake, LATER)
    assert [q["minId"] for q in queries(vendors.finnhub_server, "/api/v1/news")] == [str(MARKET_NEWS_COUNT)]
    [wide_query] = queries(vendors.massive_server, "/v2/reference/news")
    assert "ticker" not in wide_query
    assert dt.datetime.fromisoformat(wide_query["published_utc.gte"]) == massive_published(dt.date(2026, 2, 23))
    assert again.failed == [] and again.written == [] and again.rows == 0 and mtimes(vendors.lake) == before


def test_an_outage_fails_only_its_streams_and_the_next_run_lands_them(vendors):
    """Workers 1: the streams go in order AAPL, BRK.B, BCpC. Finnhub answers AAPL, then fails BRK.B; Massive
    answers AAPL and BRK.B, then page 1 of BCpC's listing (2 a page) and fails its page 2."""
    massive, fh = vendors.massive_server, vendors.finnhub_server
    on_massive = {"Authorization": f"Bearer {MASSIVE_KEY}"}
    listing = {"order": "asc", "sort": "published_utc", "limit": 1000}
    massive.script += [
        real_answer(massive, "/v2/reference/news", on_massive, ticker="AAPL", **listing),
        real_answer(massive, "/v2/reference/news", on_massive, ticker="BRK.B", **listing),
        real_answer(massive, "/v2/reference/news", on_massive, ticker="BCpC", **{**listing, "limit": 2}),
        *BOOM,
    ]
    span = {"from": str(FIRST_DAY), "to": "2026-03-02"}
    fh.script += [real_answer(fh, "/api/v1/company-news", {"X-Finnhub-Token": FINNHUB_KEY}, symbol="AAPL", **span)]
    fh.script += BOOM
    massive.requests.clear()
    fh.requests.clear()
    out = collect_company_news(vendors.providers, SYMBOLS, vendors.lake, NOW, workers=1)
    assert len(out.failed) == 2 and out.served == {"massive": 2, "finnhub": 2}
    assert out.failed[0].startswith("BRK.B: finnhub: RequestFailed: finnhub /api/v1/company-news: failed after 2")
    assert out.failed[1].startswith("BCpC: massive: RequestFailed: massive /v2/reference/news: failed after 2")
    assert "cursor=2" in urlsplit(massive.requests[-1].path).query  # it was page 2 that failed
    landed = [company_row("AAPL", d) for d in MONDAYS]
    landed += [company_row("BRK.B", d, ("massive",)) for d in MONDAYS]
    landed += [company_row("BCpC", d, ("finnhub",)) for d in MONDAYS]  # nothing of Massive's page 1
    assert held(vendors.lake).to_dicts() == table(landed).to_dicts()
    cursors = read_cursors(vendors.lake)
    assert ("finnhub", "company:BRK.B") not in cursors and ("massive", "company:BCpC") not in cursors
    assert len(cursors) == 4

    massive.requests.clear()
    fh.requests.clear()
    after = collect_company_news(vendors.providers, SYMBOLS, vendors.lake, LATER, workers=1)
    assert after.failed == [] and after.rows == 2 * len(MONDAYS)
    since = {
        q["ticker"]: dt.datetime.fromisoformat(q["published_utc.gte"]) for q in queries(massive, "/v2/reference/news")
    }
    last = massive_published(MONDAYS[-1])
    assert since == {"AAPL": last, "BRK.B": last, "BCpC": LATER - dt.timedelta(days=30)}
    start = {q["symbol"]: q["from"] for q in queries(fh, "/api/v1/company-news")}
    assert start == {"AAPL": str(MONDAYS[-1]), "BRK.B": str(FIRST_DAY), "BC-PC": str(MONDAYS[-1])}
    # Every article now carries both vendors; BCpC's moved to Massive's earlier time; first fetched by the first run.
    assert held(vendors.lake).to_dicts() == table([company_row(s, d) for s in SYMBOLS for d in MONDAYS]).to_dicts()
    assert len(read_cursors(vendors.lake)) == 6


def test_a_hostile_article_is_set_aside_with_its_reason_and_the_others_land(vendors):
    day = MONDAYS[0]
    at = _epoch(day, 10)
    good = {"category": "company", "datetime": at, "headline": "Fine", "id": 1, "image": "", "related": "AAPL",
            "source": "Wire", "summary": "Good.", "url": "HTTPS://News.Example/fine/?utm=1#top"}  # fmt: skip
    hostile = [
        good,
        {**good, "id": 2, "url": "https://news.example/two", "related": "AAPL,../../etc/passwd,BC-PC, ,"},
        {**good, "id": 3, "url": "https://news.example/three", "datetime": "soon"},
        {**good, "id": "NaN", "url": "https://news.example/four"},
        {**good, "id": 5, "url": "https://news.example/five", "datetime": 4102444800},  # 2100: after now
        {**good, "id": 6, "url": "javascript:alert(1)"},
        {**good, "id": 7, "url": "https://news.example/seven", "headline": {"not": "text"}},
        "not an article",
    ]
    vendors.finnhub_server.script.append(Reply(200, json.dumps(hostile), {"Content-Type": "application/json"}))
    article = {"id": "m1", "title": "Also fine", "author": "A", "description": "D", "published_utc":
               massive_published(day).isoformat(), "article_url": "https://news.example/fine", "publisher":
               {"name": "Wire"}, "tickers": ["AAPL", "AA PL", 7], "keywords": [], "insights": [
               {"ticker": "AAPL", "sentiment": "positive", "sentiment_reasoning": "Up."},
               {"ticker": "../x", "sentiment": "negative", "sentiment_reasoning": "Down."}]}  # fmt: skip
    listing = {"status": "OK", "results": [article, {**article, "id": "m2", "published_utc": "yesterday"}]}
    vendors.massive_server.script.append(Reply(200, json.dumps(listing), {"Content-Type": "application/json"}))
    out = collect_company_news(vendors.providers, ["AAPL"], vendors.lake, NOW, workers=1)
    assert out.failed == [] and out.served == {"massive": 1, "finnhub": 1}
    reasons = "\n".join(out.set_aside)
    for reason in (
        "company:AAPL: article 2: ticker set aside: finnhub: ticker '../../etc/passwd' is not a vendor symbol",
        "result 2 has datetime='soon', not Int64",
        "result 3 has id='NaN', not Int64",
        "article 5: published 2100-01-01T00:00:00+00:00, after now",
        "article 6: url 'javascript:alert(1)' is not an http(s) URL; the article is kept without it",
        "result 6 has headline={'not': 'text'}, not String",
        "result 7 is not an object: 'not an article'",
        "article 'm1' insight: ticker set aside: massive: ticker '../x' is not a vendor symbol",
        "article 0 names 2 tickers that are not symbols",  # 'AA PL' and 7: dropped by `Massive.news`
        "result 1 has published_utc='yesterday', not Datetime",
    ):
        assert reason in reasons, reason
    assert len(out.set_aside) == 11  # Massive's module also counts the names of the article it set aside
    frame = held(vendors.lake).sort("finnhub_id")
    assert frame["finnhub_id"].to_list() == [1, 2, 6]
    fine, two, six = frame.to_dicts()
    # Massive's and Finnhub's copies of the fine article are one row (its URL normalised), at Massive's time.
    assert fine["key"] == key("https://news.example/fine") and fine["massive_id"] == "m1"
    assert fine["url"] == "https://news.example/fine" and fine["title"] == "Also fine"  # Massive's texts
    assert fine["published"] == massive_published(day) and fine["providers"] == ["finnhub", "massive"]
    assert fine["sentiment"] == [{"ticker": "AAPL", "sentiment": "positive", "reasoning": "Up."}]
    assert two["tickers"] == ["AAPL", "BCpC"] and two["massive_id"] is None and two["sentiment"] == []
    assert six["url"] is None and six["key"] == key("finnhub:6")
    assert {p.name for p in (vendors.lake / "news").iterdir()} == {f"date={day}", "_cursors.parquet",
                                                                   "._cursors.parquet.lock"}  # fmt: skip


def test_an_article_whose_day_moves_leaves_its_old_file(vendors):
    """Finnhub first, alone: its copy lands on Monday. Massive's copy of the same URL was published on the Sunday
    before (New York): the row moves there, with both ids, and Monday's file (now empty) goes."""
    day = MONDAYS[1]
    url = "https://news.example/moving"
    copy = {"category": "company", "datetime": _epoch(day, 9), "headline": "Moves", "id": 42, "image": "",
            "related": "AAPL", "source": "Wire", "summary": "S", "url": url}  # fmt: skip
    vendors.finnhub_server.script.append(Reply(200, json.dumps([copy]), {"Content-Type": "application/json"}))
    first = collect_company_news({"finnhub": vendors.providers["finnhub"]}, ["AAPL"], vendors.lake, NOW)
    assert first.written == [str(vendors.lake / f"news/date={day}/part-0.parquet")]
    sunday = day - dt.timedelta(days=1)
    earlier = dt.datetime.combine(sunday, dt.time(20), dt.UTC)
    listing = {"status": "OK", "results": [{"id": "m42", "title": "Moves", "published_utc": earlier.isoformat(),
                                            "article_url": url + "/", "tickers": ["AAPL"]}]}  # fmt: skip
    vendors.massive_server.script.append(Reply(200, json.dumps(listing), {"Content-Type": "application/json"}))
    moved = collect_company_news({"massive": vendors.providers["massive"]}, ["AAPL"], vendors.lake, NOW)
    assert sorted(moved.written) == [str(vendors.lake / f"news/date={d}/part-0.parquet") for d in (sunday, day)]
    assert not (vendors.lake / f"news/date={day}").exists()
    [row] = held(vendors.lake).to_dicts()
    assert (row["day"], row["published"], row["massive_id"], row["finnhub_id"]) == (sunday, earlier, "m42", 42)
    assert row["providers"] == ["finnhub", "massive"] and row["category"] == "company"


def test_a_symbol_a_provider_cannot_serve_is_skipped_with_a_note(vendors):
    out = collect_company_news({"massive": vendors.providers["massive"]}, ["X:BTC-USD", "a/b"], vendors.lake, NOW)
    assert out.notes == ["X:BTC-USD: massive: skipped: massive: X:BTC-USD is not a stock or an index"]
    assert out.failed == ["'a/b': ticker 'a/b' is not a vendor symbol (letters, digits, '.' or '-' between parts, "
                          "an optional X:/C:/I:/O: prefix)"]  # fmt: skip
    assert out.asked == 0 and vendors.massive_server.requests == [] and read_news(vendors.lake).collect().height == 0


def test_an_id_past_int64_is_set_aside_and_the_stream_lands(vendors):
    """An id of 1e300 is valid JSON and a whole number, but no Int64: the article is set aside with its reason
    (`typed_frame`), never an OverflowError that would fail the stream; Massive's articles of the symbol land."""
    too_big = [{"category": "company", "datetime": _epoch(MONDAYS[0], 9), "headline": "H", "id": 1e300,
                "related": "AAPL", "source": "Wire", "summary": "S", "url": "https://news.example/big"}]  # fmt: skip
    vendors.finnhub_server.script.append(Reply(200, json.dumps(too_big), {"Content-Type": "application/json"}))
    out = collect_company_news(vendors.providers, ["AAPL"], vendors.lake, NOW)
    assert out.failed == []
    assert len(out.set_aside) == 1 and "id" in out.set_aside[0] and "1e+300" in out.set_aside[0]
    assert held(vendors.lake).to_dicts() == table([company_row("AAPL", d, ("massive",)) for d in MONDAYS]).to_dicts()
    assert set(read_cursors(vendors.lake)) == {("massive", "company:AAPL")}  # Finnhub answered nothing usable


def test_an_unknown_provider_or_a_naive_now_is_refused(vendors, tmp_path):
    with pytest.raises(ValueError, match="unknown providers 'tiingo'; known: massive, finnhub"):
        collect_company_news({"tiingo": object()}, ["AAPL"], tmp_path, NOW)
    with pytest.raises(ValueError, match="must carry its time zone"):
        collect_market_news(vendors.providers, tmp_path, NOW.replace(tzinfo=None))


def test_damaged_cursors_mean_asking_from_the_lookback_again(vendors):
    collect_company_news(vendors.providers, ["AAPL"], vendors.lake, NOW)
    first = held(vendors.lake)
    (vendors.lake / "news/_cursors.parquet").write_bytes(b"not parquet")
    vendors.finnhub_server.requests.clear()
    again = collect_company_news(vendors.providers, ["AAPL"], vendors.lake, LATER)
    assert [q["from"] for q in queries(vendors.finnhub_server, "/api/v1/company-news")] == [str(FIRST_DAY)]
    assert again.failed == [] and again.rows == 0 and held(vendors.lake).equals(first)
    assert read_cursors(vendors.lake)[("finnhub", "company:AAPL")].day == MONDAYS[-1]  # written anew


def test_articles_named_by_their_query_stay_apart_and_tracking_parameters_do_not_count():
    """Finnhub's own links (`finnhub.io/api/news?id=...`) and a site's `article.php?id=N` name the article in the
    query: two of them are two articles; `utm*` parameters, the fragment, case and a trailing slash are not."""
    first = article_key("https://finnhub.io/api/news?id=abc", "finnhub", 1)
    assert first != article_key("https://finnhub.io/api/news?id=def", "finnhub", 2)
    assert article_key("https://site.example/article.php?id=1", "x", 1) != article_key(
        "https://site.example/article.php?id=2", "x", 2
    )
    assert normalised_url("HTTPS://Site.Example/a/?utm_source=x&b=2&a=1#top") == "https://site.example/a?a=1&b=2"
    assert article_key("https://finnhub.io/api/news?id=abc&utm_medium=feed", "massive", "m") == first
