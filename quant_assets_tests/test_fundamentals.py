"""The point-in-time `fundamentals` and `earnings` datasets against the local Finnhub server over HTTP: the rows are
the server's values, typed, under canonical symbols; a symbol answered today is not asked again; an unchanged answer
writes nothing; a changed one is a new version that only later days see; an outage or a hostile answer costs only
the symbols it touched; earnings join the calendar and the reported quarters, and know no actual before its report.
"""

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from quant_assets.providers import finnhub
from quant_assets.providers.client import Policy, ProviderClient
from quant_assets.providers.finnhub import Finnhub
from quant_assets.sample_rest import Reply
from quant_assets.samples.finnhub import FinnhubServer
from quant_assets.samples.server import json_reply
from quant_assets.service.fundamentals import (
    EARNINGS,
    EARNINGS_SCHEMA,
    FUNDAMENTALS,
    FUNDAMENTALS_SCHEMA,
    collect_earnings,
    collect_fundamentals,
    earnings_as_of,
    fundamentals_as_of,
    read_ledger,
    version_days,
)

FEBRUARY = dt.date(2026, 2, 1), dt.date(2026, 2, 28)
MARCH = dt.date(2026, 2, 1), dt.date(2026, 3, 31)  # a later `end`: other closes and volumes, other metrics
KEY = "fh-fundamentals-secret-9a7b"
FAST = {"attempts": 2, "backoff_initial": 0.01, "rates": ((1000, 1.0),)}
SYMBOLS = ["AAPL", "BRK.B", "BCpC"]  # BRK.B and BCpC travel as BRK.B and BC-PC
MONDAY = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)  # 10:00 in New York
TUESDAY = MONDAY + dt.timedelta(days=1)
METRIC = "/api/v1/stock/metric"


def client(server, data: Path) -> ProviderClient:
    return ProviderClient(finnhub.NAME, server.url, KEY, Policy(**FAST), data, auth=finnhub.AUTH)


def served(server, path: str, **query) -> object:
    """What `server` answers to GET `path` with `query`, parsed."""
    return json.loads(server.answer(path, query).body)


def served_fundamentals(server, symbol: str, known: dt.datetime) -> list[tuple]:
    """The rows the server's `/stock/metric` answer for `symbol` should land as (FUNDAMENTALS_SCHEMA's order)."""
    vendor = {"BCpC": "BC-PC"}.get(symbol, symbol)
    answer = served(server, METRIC, symbol=vendor, metric="all")
    rows = [(symbol, "metric", n, None, None, float(v), known, "finnhub") for n, v in answer["metric"].items()]
    for frequency, names in answer["series"].items():
        for name, points in names.items():
            for p in points:
                period = dt.date.fromisoformat(p["period"])
                rows.append((symbol, "series", name, frequency, period, float(p["v"]), known, "finnhub"))
    return sorted(rows, key=in_order)


def in_order(row: tuple) -> tuple:
    return row[0], row[1], row[2], row[3] or "", row[4] or dt.date.min


def rows_of(frame: pl.DataFrame) -> list[tuple]:
    return sorted(frame.rows(), key=in_order)


def files(lake: Path) -> dict[str, bytes]:
    return {str(p.relative_to(lake)): p.read_bytes() for p in sorted(lake.rglob("*")) if p.is_file()}


def test_fundamentals_are_the_server_s_values_typed_under_canonical_symbols(tmp_path):
    lake = tmp_path / "lake"
    with FinnhubServer(*FEBRUARY, api_key=KEY) as server, client(server, tmp_path / "data") as c:
        done = collect_fundamentals(Finnhub(c), [*SYMBOLS, "BAD/ONE", "AAPL"], lake, MONDAY)
        want = sorted((row for s in SYMBOLS for row in served_fundamentals(server, s, MONDAY)), key=in_order)
        sent = [r.path for r in server.requests]
    assert len(sent) == 3 and all("metric=all" in p for p in sent) and any("symbol=BC-PC" in p for p in sent)
    assert (done.asked, done.served, done.failed, done.rows) == (3, {"finnhub": 3}, [], len(want))
    assert done.written == [str(lake / FUNDAMENTALS / "asof=2026-03-02" / "part-0.parquet")]
    assert [n for n in done.notes if n.startswith("BAD/ONE: not asked from finnhub: ")]  # never sent, not a failure
    stored = pl.read_parquet(done.written[0])
    assert stored.schema == pl.Schema(FUNDAMENTALS_SCHEMA)
    assert rows_of(stored) == want and stored["value"].is_finite().all()
    known = fundamentals_as_of(lake, MONDAY.date())
    assert known.schema == pl.Schema(FUNDAMENTALS_SCHEMA) and rows_of(known) == want
    assert set(known["symbol"]) == set(SYMBOLS)
    assert rows_of(fundamentals_as_of(lake, MONDAY.date(), ["BRK.B"])) == [r for r in want if r[0] == "BRK.B"]
    assert fundamentals_as_of(lake, MONDAY.date() - dt.timedelta(days=1)).is_empty()  # nothing known before
    ledger = read_ledger(lake, FUNDAMENTALS)
    assert ledger.rows() == [(s, MONDAY.date(), MONDAY, "finnhub", True) for s in sorted(SYMBOLS)]


def test_a_second_run_the_same_day_sends_nothing_and_writes_nothing(tmp_path):
    lake = tmp_path / "lake"
    with FinnhubServer(*FEBRUARY, api_key=KEY) as server, client(server, tmp_path / "data") as c:
        collect_fundamentals(Finnhub(c), SYMBOLS, lake, MONDAY)
        collect_earnings(Finnhub(c), SYMBOLS, lake, MONDAY)
        before, sent = files(lake), len(server.requests)
        assert sent == 3 + 1 + 3  # metrics, the calendar once, the reported quarters
        later = MONDAY + dt.timedelta(hours=8)  # 19:00 in New York: still Monday there
        again = collect_fundamentals(Finnhub(c), SYMBOLS, lake, later)
        again_earnings = collect_earnings(Finnhub(c), SYMBOLS, lake, later)
        assert len(server.requests) == sent and files(lake) == before
        assert (again.asked, again.skipped, again.written) == (0, 3, [])
        assert (again_earnings.asked, again_earnings.skipped, again_earnings.written) == (0, 3, [])
        forced = collect_fundamentals(Finnhub(c), SYMBOLS, lake, later, force=True)
        assert len(server.requests) == sent + 3 and forced.asked == 3 and forced.written == []
    assert version_days(lake, FUNDAMENTALS) == [MONDAY.date()]
    assert fundamentals_as_of(lake, MONDAY.date())["known_from"].unique().to_list() == [MONDAY]


def test_the_next_day_an_unchanged_answer_is_asked_but_writes_no_version(tmp_path):
    lake = tmp_path / "lake"
    with FinnhubServer(*FEBRUARY, api_key=KEY) as server, client(server, tmp_path / "data") as c:
        collect_fundamentals(Finnhub(c), SYMBOLS, lake, MONDAY)
        first = fundamentals_as_of(lake, MONDAY.date())
        done = collect_fundamentals(Finnhub(c), SYMBOLS, lake, TUESDAY)
        assert len(server.requests) == 6
    assert (done.asked, done.rows, done.written) == (3, 0, [])
    assert done.notes == ["as of 2026-03-03: 0 changed, 3 unchanged, 0 without rows"]
    assert version_days(lake, FUNDAMENTALS) == [MONDAY.date()]
    assert fundamentals_as_of(lake, TUESDAY.date()).equals(first)  # known since Monday, as it was
    ledger = read_ledger(lake, FUNDAMENTALS)
    assert ledger.filter(pl.col("asof") == TUESDAY.date()).select("symbol", "changed").rows() == [
        (s, False) for s in sorted(SYMBOLS)
    ]


def test_a_changed_answer_is_a_new_version_seen_only_from_its_day(tmp_path):
    lake = tmp_path / "lake"
    with FinnhubServer(*FEBRUARY, api_key=KEY) as old, client(old, tmp_path / "data") as c:
        collect_fundamentals(Finnhub(c), ["AAPL", "BRK.B"], lake, MONDAY)
        monday = {s: served_fundamentals(old, s, MONDAY) for s in ("AAPL", "BRK.B")}
        aapl_old_answer = old.answer(METRIC, {"symbol": "AAPL", "metric": "all"})
    with FinnhubServer(*MARCH, api_key=KEY) as new, client(new, tmp_path / "data") as c:
        new.script.append(aapl_old_answer)  # AAPL answers as on Monday; BRK.B with March's history
        done = collect_fundamentals(Finnhub(c), ["AAPL", "BRK.B"], lake, TUESDAY, workers=1)
        tuesday = served_fundamentals(new, "BRK.B", TUESDAY)
    assert [r[5] for r in tuesday] != [r[5] for r in monday["BRK.B"]]  # the later history did change it
    assert done.notes == ["as of 2026-03-03: 1 changed, 1 unchanged, 0 without rows"]
    assert version_days(lake, FUNDAMENTALS) == [MONDAY.date(), TUESDAY.date()]
    assert rows_of(pl.read_parquet(done.written[0])) == tuesday  # only the changed symbol, all its rows
    assert rows_of(fundamentals_as_of(lake, MONDAY.date())) == monday["AAPL"] + monday["BRK.B"]
    assert rows_of(fundamentals_as_of(lake, TUESDAY.date())) == monday["AAPL"] + tuesday  # AAPL before BRK.B
    assert rows_of(fundamentals_as_of(lake, dt.date(2026, 12, 31), ["BRK.B"])) == tuesday


def test_an_outage_costs_only_the_symbols_it_hit_and_they_are_asked_again(tmp_path):
    lake = tmp_path / "lake"
    with FinnhubServer(*FEBRUARY, api_key=KEY) as server, client(server, tmp_path / "data") as c:
        server.script += [Reply(500, "down")] * 4  # two attempts each: AAPL and BRK.B fail
        done = collect_fundamentals(Finnhub(c), [*SYMBOLS, "NULL"], lake, MONDAY, workers=1)
        assert len(server.requests) == 6
        assert [f.split(": ")[:3] for f in done.failed] == [["AAPL", "finnhub", "RequestFailed"],
                                                            ["BRK.B", "finnhub", "RequestFailed"]]  # fmt: skip
        assert all("HTTP 500" in f and KEY not in f for f in done.failed)
        assert set(fundamentals_as_of(lake, MONDAY.date())["symbol"]) == {"BCpC", "NULL"}
        assert sorted(read_ledger(lake, FUNDAMENTALS)["symbol"]) == ["BCpC", "NULL"]
        retry = collect_fundamentals(Finnhub(c), [*SYMBOLS, "NULL"], lake, MONDAY + dt.timedelta(hours=1))
        assert len(server.requests) == 8 and (retry.asked, retry.skipped, retry.failed) == (2, 2, [])
        want = [row for s in ("AAPL", "BCpC", "BRK.B", "NULL") for row in served_fundamentals(server, s, MONDAY)]
    known = fundamentals_as_of(lake, MONDAY.date())
    late = MONDAY + dt.timedelta(hours=1)
    assert rows_of(known) == sorted(
        [r if r[0] in ("BCpC", "NULL") else (*r[:6], late, r[7]) for r in want], key=in_order
    )
    assert version_days(lake, FUNDAMENTALS) == [MONDAY.date()]  # the retry joined the day's file


def test_a_hostile_answer_is_set_aside_and_the_rest_lands(tmp_path):
    lake = tmp_path / "lake"
    hostile = {
        "symbol": "AAPL",
        "metricType": "all",
        "metric": {"beta": 1.25, "peRatio": "NaN", "roe": "twelve", "margin": "-inf", "pb": True},
        "series": {"annual": {"eps": [{"period": "2025-12-31", "v": 3.5}, {"period": "2024-12-31", "v": "x"}]}},
    }
    literal = '{"symbol": "BRK.B", "metric": {"beta": NaN}, "series": {}}'  # not JSON: the whole answer fails
    with FinnhubServer(*FEBRUARY, api_key=KEY) as server, client(server, tmp_path / "data") as c:
        server.script += [json_reply(hostile), Reply(200, literal, {"Content-Type": "application/json"})]
        done = collect_fundamentals(Finnhub(c), SYMBOLS, lake, MONDAY, workers=1)
        bcpc = served_fundamentals(server, "BCpC", MONDAY)
    where = "finnhub /api/v1/stock/metric (AAPL)"
    assert done.set_aside == [
        f"{where} metric: result 1 has value='NaN', not a finite number",
        f"{where} metric: result 2 has value='twelve', not Float64",
        f"{where} metric: result 3 has value='-inf', not a finite number",
        f"{where} metric: result 4 has value=True, not Float64",
        f"{where} series: result 1 has v='x', not Float64",
    ]
    assert [f.split(": ")[:3] for f in done.failed] == [["BRK.B", "finnhub", "MalformedResponse"]]
    stored = fundamentals_as_of(lake, MONDAY.date())
    assert stored["value"].is_finite().all() and set(stored["symbol"]) == {"AAPL", "BCpC"}
    assert rows_of(stored.filter(pl.col("symbol") == "AAPL")) == [
        ("AAPL", "metric", "beta", None, None, 1.25, MONDAY, "finnhub"),
        ("AAPL", "series", "eps", "annual", dt.date(2025, 12, 31), 3.5, MONDAY, "finnhub"),
    ]
    assert rows_of(stored.filter(pl.col("symbol") == "BCpC")) == bcpc


def test_an_empty_answer_is_missing_and_a_forced_change_replaces_the_day_s_version(tmp_path):
    lake, empty = tmp_path / "lake", json_reply({"symbol": "AAPL", "metric": {}, "series": {}})
    with FinnhubServer(*FEBRUARY, api_key=KEY) as old, client(old, tmp_path / "data") as c:
        collect_fundamentals(Finnhub(c), ["AAPL", "BRK.B"], lake, MONDAY)
        monday = served_fundamentals(old, "AAPL", MONDAY)
        old.script.append(empty)
        done = collect_fundamentals(Finnhub(c), ["AAPL"], lake, TUESDAY)
    assert (done.missing, done.written) == (["AAPL"], [])
    assert done.notes == ["as of 2026-03-03: 0 changed, 0 unchanged, 1 without rows"]
    assert rows_of(fundamentals_as_of(lake, TUESDAY.date(), ["AAPL"])) == monday  # still the latest known
    assert read_ledger(lake, FUNDAMENTALS).filter(pl.col("asof") == TUESDAY.date())["symbol"].to_list() == ["AAPL"]
    later = TUESDAY + dt.timedelta(hours=2)
    with FinnhubServer(*MARCH, api_key=KEY) as new, client(new, tmp_path / "data") as c:
        forced = collect_fundamentals(Finnhub(c), ["AAPL"], lake, later, force=True)
        collect_fundamentals(Finnhub(c), ["BRK.B"], lake, later, force=True)
        tuesday = served_fundamentals(new, "AAPL", later) + served_fundamentals(new, "BRK.B", later)
    assert forced.written == [str(lake / FUNDAMENTALS / "asof=2026-03-03" / "part-0.parquet")]
    assert rows_of(pl.read_parquet(forced.written[0])) == tuesday  # BRK.B's second write kept AAPL's
    last = later + dt.timedelta(hours=2)
    with FinnhubServer(*FEBRUARY, api_key=KEY) as old, client(old, tmp_path / "data") as c:
        collect_fundamentals(Finnhub(c), ["AAPL"], lake, last, force=True)  # changed again, the same day
        again = served_fundamentals(old, "AAPL", last)
    assert rows_of(fundamentals_as_of(lake, TUESDAY.date())) == again + tuesday[len(again) :]
    assert version_days(lake, FUNDAMENTALS) == [MONDAY.date(), TUESDAY.date()]


def earnings_want(server, symbol: str, day: dt.date, horizon: int, known: dt.datetime) -> list[tuple]:
    """The earnings rows of `symbol` from the server's two answers, joined as the dataset promises."""
    vendor = {"BCpC": "BC-PC"}.get(symbol, symbol)
    reported = {(r["year"], r["quarter"]): r for r in served(server, "/api/v1/stock/earnings", symbol=vendor)}
    window = {
        "from": (day - dt.timedelta(days=horizon)).isoformat(),
        "to": (day + dt.timedelta(days=horizon)).isoformat(),
    }
    calendar = {(r["year"], r["quarter"]): r for r in served(server, "/api/v1/calendar/earnings", **window)
                ["earningsCalendar"] if r["symbol"] == vendor}  # fmt: skip
    rows = []
    for key in sorted(reported.keys() | calendar.keys()):
        r, k = reported.get(key, {}), calendar.get(key, {})
        report = dt.date.fromisoformat(k["date"]) if k else None
        upcoming = report is not None and report > day
        rows.append((
            symbol, dt.date.fromisoformat(r["period"]) if r else None, key[0], key[1], report, k.get("hour"),
            None if upcoming else r.get("actual", k.get("epsActual")), r.get("estimate", k.get("epsEstimate")),
            None if upcoming else r.get("surprise"), None if upcoming else r.get("surprisePercent"),
            None if upcoming else k.get("revenueActual"), k.get("revenueEstimate"), known, "finnhub",
        ))  # fmt: skip
    return rows


def test_earnings_join_the_calendar_and_the_reported_quarters(tmp_path):
    lake, may = tmp_path / "lake", dt.datetime(2026, 5, 11, 14, 0, tzinfo=dt.UTC)
    with FinnhubServer(*FEBRUARY, api_key=KEY) as server, client(server, tmp_path / "data") as c:
        done = collect_earnings(Finnhub(c), SYMBOLS, lake, may)  # the window starts after Q4's report
        sent = [r.path for r in server.requests]
        want = [row for s in ("AAPL", "BCpC", "BRK.B") for row in earnings_want(server, s, may.date(), 90, may)]
    assert len(sent) == 4 and sum("/calendar/earnings" in p for p in sent) == 1
    assert "from=2026-02-10&to=2026-08-09" in next(p for p in sent if "/calendar/" in p)
    assert (done.asked, done.failed, done.set_aside, done.rows) == (3, [], [], 6)
    stored = earnings_as_of(lake, may.date())
    assert stored.schema == pl.Schema(EARNINGS_SCHEMA) and stored.rows() == want
    q4, q1 = stored.filter(pl.col("symbol") == "BRK.B").rows(named=True)
    assert (q4["year"], q4["quarter"], q4["report_date"], q4["hour"]) == (2025, 4, None, None)  # reported only
    assert (q1["year"], q1["quarter"], q1["hour"]) == (2026, 1, "amc") and q1["report_date"] > dt.date(2026, 4, 28)
    assert q1["eps_actual"] is not None and q1["surprise"] is not None  # both sources, one row
    assert read_ledger(lake, EARNINGS)["symbol"].to_list() == sorted(SYMBOLS)


def test_an_upcoming_report_has_no_actuals_until_its_day(tmp_path):
    lake, may = tmp_path / "lake", dt.datetime(2026, 5, 11, 14, 0, tzinfo=dt.UTC)
    with FinnhubServer(*FEBRUARY, api_key=KEY) as server, client(server, tmp_path / "data") as c:
        march = collect_earnings(Finnhub(c), ["AAPL"], lake, MONDAY, horizon_days=120)
        later = collect_earnings(Finnhub(c), ["AAPL"], lake, may, horizon_days=120)
        want_march = earnings_want(server, "AAPL", MONDAY.date(), 120, MONDAY)
        want_may = earnings_want(server, "AAPL", may.date(), 120, may)
    # the sample server gives Q1 2026's actual in March already: not stored before its report
    assert march.set_aside == ["AAPL 2026 Q1: actuals given before its report on 2026-05-01 (as of 2026-03-02); "
                               "not stored"]  # fmt: skip
    before = earnings_as_of(lake, MONDAY.date())
    assert before.rows() == want_march
    upcoming = before.filter(pl.col("quarter") == 1).row(0, named=True)
    assert [upcoming[c] for c in ("eps_actual", "surprise", "surprise_percent", "revenue_actual")] == [None] * 4
    assert upcoming["eps_estimate"] is not None
    assert (later.set_aside, later.rows) == ([], 2) and version_days(lake, EARNINGS) == [MONDAY.date(), may.date()]
    assert earnings_as_of(lake, may.date()).rows() == want_may
    assert earnings_as_of(lake, may.date() - dt.timedelta(days=1)).rows() == want_march  # point-in-time


def test_a_quarter_only_in_the_calendar_is_a_row_of_its_own(tmp_path):
    lake = tmp_path / "lake"
    window = {"from": "2025-12-02", "to": "2026-05-31"}
    with FinnhubServer(*FEBRUARY, api_key=KEY) as server, client(server, tmp_path / "data") as c:
        server.script += [server.answer("/api/v1/calendar/earnings", window), json_reply([])]
        collect_earnings(Finnhub(c), ["AAPL"], lake, MONDAY, workers=1)
        calendar = [r for r in served(server, "/api/v1/calendar/earnings", **window)["earningsCalendar"]
                    if r["symbol"] == "AAPL"]  # fmt: skip
    rows = earnings_as_of(lake, MONDAY.date()).rows(named=True)
    assert [(r["year"], r["quarter"], r["report_date"].isoformat()) for r in rows] == [
        (k["year"], k["quarter"], k["date"]) for k in calendar
    ]
    past, coming = rows
    assert (past["period"], past["surprise"], past["eps_actual"]) == (None, None, calendar[0]["epsActual"])
    assert (coming["eps_actual"], coming["eps_estimate"]) == (None, calendar[1]["epsEstimate"])


def test_a_failed_calendar_fails_every_symbol_and_sends_nothing_else(tmp_path):
    lake = tmp_path / "lake"
    with FinnhubServer(*FEBRUARY, api_key=KEY) as server, client(server, tmp_path / "data") as c:
        server.script += [Reply(503)] * 2
        done = collect_earnings(Finnhub(c), SYMBOLS, lake, MONDAY)
        assert len(server.requests) == 2 and all("/calendar/earnings" in r.path for r in server.requests)
        assert [f.split(": ")[:3] for f in done.failed] == [[s, "finnhub", "RequestFailed"] for s in SYMBOLS]
        assert not (lake / EARNINGS).exists()
        again = collect_earnings(Finnhub(c), SYMBOLS, lake, MONDAY)
        assert (again.failed, again.asked, len(server.requests)) == ([], 3, 6)


def test_now_without_a_time_zone_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no time zone"):
        collect_fundamentals(None, ["AAPL"], tmp_path, dt.datetime(2026, 3, 2, 10))
