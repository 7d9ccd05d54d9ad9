"""The provider client against a real local HTTP server (`sample_rest.LocalProvider`) that injects faults."""

import datetime as dt
import json
import subprocess
import sys
import time

import pytest

from quant_assets.providers.client import Policy, ProviderClient, redact, retry_after_seconds
from quant_assets.providers.errors import BudgetExhausted, CircuitOpen, MalformedResponse, RequestFailed
from quant_assets.providers.massive import SPLITS, Massive
from quant_assets.providers.state import ProviderState, key_id
from quant_assets.sample_rest import LocalProvider, Reply
from quant_assets_tests.conftest import FEB, free_port

KEY = "pk_live_9f8e7d6c5b4a39281706"
FAST = Policy(rates=((1000, 1.0),), attempts=5, backoff_initial=0.01, backoff_max=0.05, timeout=5.0)


@pytest.fixture
def server():
    with LocalProvider(*FEB, api_key=KEY) as provider:
        yield provider


def client(url: str, data, policy: Policy = FAST, key: str | None = KEY) -> ProviderClient:
    return ProviderClient("massive", url, key, policy, data)


def test_429_with_retry_after_waits_that_long_then_succeeds(server, tmp_path):
    server.script.append(Reply(429, '{"status":"ERROR","error":"too many"}', {"Retry-After": "1"}))
    with client(server.url, tmp_path) as c:
        splits = Massive(c).splits()
        assert c.stats.retries == 1 and c.stats.statuses == {429: 1, 200: 1}
    assert splits.height == 1 and splits["ticker"].to_list() == ["BRK.B"]
    first, second = server.requests[:2]
    assert second.at - first.at >= 1.0  # Retry-After: 1, not the 10 ms backoff


def test_a_429_storm_fails_its_requests_but_never_opens_the_breaker(server, tmp_path):
    policy = Policy(rates=((1000, 1.0),), attempts=2, backoff_initial=0.01, breaker_failures=3)
    server.script.extend([Reply(429)] * 8)
    with client(server.url, tmp_path, policy) as c:
        for _ in range(4):  # eight 429s in a row: more than the breaker's three failures
            with pytest.raises(RequestFailed, match="HTTP 429"):
                Massive(c).splits()
        assert c.breaker_state()["state"] == "closed"
        assert Massive(c).splits().height == 1  # the provider was up all along
    assert len(server.requests) == 9


def test_a_5xx_burst_is_retried_then_succeeds(server, tmp_path):
    server.script.extend([Reply(503), Reply(500), Reply(502)])
    with client(server.url, tmp_path) as c:
        splits = Massive(c).splits()
        assert c.stats.retries == 3 and c.stats.requests == 4
        assert c.breaker_state()["state"] == "closed" and c.breaker_state()["consecutive_failures"] == 0
    assert splits["execution_date"].to_list() == [dt.date(2026, 2, 19)]
    assert len(server.requests) == 4


def test_retries_stop_after_the_attempts_and_say_so(server, tmp_path):
    server.script.extend([Reply(503)] * 3)
    policy = Policy(rates=((1000, 1.0),), attempts=3, backoff_initial=0.01, backoff_max=0.02, breaker_failures=10)
    with client(server.url, tmp_path, policy) as c, pytest.raises(RequestFailed) as error:
        Massive(c).splits()
    assert "massive /v3/reference/splits: failed after 3 attempts: HTTP 503" in str(error.value)
    assert len(server.requests) == 3


def test_a_client_error_is_not_retried(server, tmp_path):
    with client(server.url, tmp_path, key="wrong-key") as c, pytest.raises(RequestFailed) as error:
        Massive(c).splits()
    assert error.value.status == 401 and "Unknown API Key" in str(error.value)
    assert len(server.requests) == 1


def test_a_dead_server_opens_the_breaker_then_half_open_recovers(tmp_path):
    port = free_port()  # nothing listens here yet
    url = f"http://127.0.0.1:{port}"
    policy = Policy(
        rates=((1000, 1.0),), attempts=5, backoff_initial=0.01, backoff_max=0.02, breaker_failures=3,
        breaker_reset_seconds=1.0,
    )  # fmt: skip
    with client(url, tmp_path, policy) as c:
        with pytest.raises(CircuitOpen) as opened:
            Massive(c).splits()
        message = str(opened.value)
        assert "circuit breaker open after 3 consecutive failures" in message
        assert "ConnectError" in message and "quant-assets providers reset massive" in message
        assert c.stats.requests == 3  # the 4th attempt failed fast
        assert c.breaker_state()["state"] == "open"

        with LocalProvider(*FEB, api_key=KEY, port=port) as server:
            started = time.monotonic()
            with pytest.raises(CircuitOpen):  # still open: fails fast, the server sees nothing
                Massive(c).splits()
            assert time.monotonic() - started < 0.5 and server.requests == []
            time.sleep(1.1)  # past the reset timeout: the next call is the half-open trial
            assert Massive(c).splits().height == 1
            assert c.breaker_state() == {
                "state": "closed",
                "consecutive_failures": 0,
                "opened_at": c.breaker_state()["opened_at"],
                "retry_at": None,
            }
            assert len(server.requests) == 1


def test_the_breaker_is_shared_and_reset_from_the_cli(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    policy = Policy(
        rates=((1000, 1.0),), attempts=2, backoff_initial=0.01, breaker_failures=2, breaker_reset_seconds=600
    )
    with client(url, tmp_path, policy) as c, pytest.raises(CircuitOpen):
        Massive(c).splits()
    with client(url, tmp_path, policy) as other:  # a second client (another run) sees it open
        assert other.breaker_state()["state"] == "open"
    cli = [str(sys.executable), "-m", "quant_assets.cli", "providers"]
    shown = subprocess.run([*cli, "status", "--data", str(tmp_path)], capture_output=True, text=True, check=True)
    assert "massive: FAILING (breaker open, tries again at" in shown.stdout
    assert "breaker open, 2 consecutive failures, tries again in" in shown.stdout and "ConnectError" in shown.stdout
    health = subprocess.run([*cli, "--json", "--data", str(tmp_path)], capture_output=True, text=True, check=True)
    (massive,) = json.loads(health.stdout)
    assert massive["calls"] == massive["failures"] == massive["retries"] + 1 == 2 and massive["failure_rate"] == 1
    subprocess.run([*cli, "reset", "massive", "--data", str(tmp_path)], capture_output=True, check=True)
    with client(url, tmp_path, policy) as c:
        assert c.breaker_state()["state"] == "closed"


def test_malformed_json_is_a_clear_error_naming_the_endpoint(server, tmp_path):
    server.script.append(Reply(200, '{"results": [', {"Content-Type": "application/json"}))
    with client(server.url, tmp_path) as c, pytest.raises(MalformedResponse) as error:
        Massive(c).splits()
    assert str(error.value).startswith(f"massive {SPLITS}: the response is not valid JSON")
    assert len(server.requests) == 1  # a broken answer is not retried


def test_a_result_missing_a_field_is_set_aside_naming_the_endpoint_and_result(server, tmp_path):
    good = {"ticker": "MSFT", "execution_date": "2026-02-03", "split_from": 1, "split_to": 2}
    results = [{"ticker": "AAPL", "execution_date": "2026-02-02"}, good, {**good, "split_to": "two"}]
    server.script.append(
        Reply(200, json.dumps({"status": "OK", "results": results}), {"Content-Type": "application/json"})
    )
    with client(server.url, tmp_path) as c:
        massive = Massive(c)
        splits = massive.splits()
    assert splits["ticker"].to_list() == ["MSFT"] and splits["split_to"].to_list() == [2.0]
    assert massive.set_aside == [
        f"massive {SPLITS}: result 0 lacks split_from, split_to",
        f"massive {SPLITS}: result 2 has split_to='two', not Float64",
    ]


def test_a_timeout_is_retried(server, tmp_path):
    server.script.append(Reply(200, "{}", delay=1.5))
    policy = Policy(rates=((1000, 1.0),), attempts=3, backoff_initial=0.01, timeout=0.5)
    with client(server.url, tmp_path, policy) as c:
        assert Massive(c).splits().height == 1
        assert c.stats.retries == 1
    assert len(server.requests) == 2


def test_a_budget_raises_budget_exhausted_and_sends_nothing_beyond_it(server, tmp_path):
    policy = Policy(rates=((1000, 1.0),), cost_per_request=0.25, daily_budget=0.75)
    with client(server.url, tmp_path, policy) as c:
        for _ in range(3):
            Massive(c).splits()
        with pytest.raises(BudgetExhausted) as error:
            Massive(c).splits()
    assert "massive: the daily budget of 0.75 is spent (0.75 used on" in str(error.value)
    assert len(server.requests) == 3
    with client(server.url, tmp_path, policy) as later, pytest.raises(BudgetExhausted):  # durable: another run too
        Massive(later).splits()
    assert len(server.requests) == 3
    # Spending is per day in the budget's zone: the next day starts from nothing.
    state = ProviderState(tmp_path)
    tomorrow = dt.date.today() + dt.timedelta(days=2)
    assert state.charge("massive", key_id(KEY), tomorrow, 0.25, 0.75) == 0.25
    today = [r for r in state.spending() if r["day"] != tomorrow.isoformat()]
    assert [(r["requests"], r["cost"]) for r in today] == [(3, 0.75)]


CLIENT_SCRIPT = """
import sys
from quant_assets.providers.client import Policy, ProviderClient
url, data, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
policy = Policy(rates=((3, 1.0), (8, 4.0)))
with ProviderClient("massive", url, "%s", policy, data) as client:
    for _ in range(n):
        client.get_json("/v3/reference/splits", {"limit": 1})
"""


def test_two_processes_together_stay_under_the_quota(server, tmp_path):
    script = CLIENT_SCRIPT % KEY
    runs = [
        subprocess.Popen([sys.executable, "-c", script, server.url, str(tmp_path), "6"], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for run in runs:
        assert run.wait(timeout=120) == 0, run.stderr.read().decode()
    arrivals = sorted(r.at for r in server.requests)
    assert len(arrivals) == 12
    for window, quota in ((1.0, 3), (4.0, 8)):
        busiest = max(sum(1 for t in arrivals if start <= t < start + window) for start in arrivals)
        assert busiest <= quota, f"{busiest} requests within {window} s, quota {quota}: {arrivals}"


def test_pages_follow_next_url_with_the_key_and_land_an_audit_trail(server, tmp_path):
    with client(server.url, tmp_path) as c:
        pages = list(c.pages("/v3/reference/tickers", {"limit": 10, "market": "stocks"}))
    expected = [r["ticker"] for r in server.data.tickers()]
    assert len(expected) == 61  # 60 stocks and February's new listing
    assert len(pages) == 7 and [r["ticker"] for p in pages for r in p["results"]] == expected
    assert all(r.authorised for r in server.requests) and len(server.requests) == 7
    assert all("cursor=" in r.path for r in server.requests[1:])
    records = sorted((tmp_path / "raw/providers/massive").rglob("*.json"))
    assert len(records) == 7
    for record in records:
        meta = json.loads(record.read_text())
        body = record.with_suffix(".body").read_bytes()
        assert meta["status"] == 200 and meta["endpoint"] == "/v3/reference/tickers"
        assert meta["url"].startswith(server.url) and KEY not in meta["url"]
        assert json.loads(body)["request_id"] == meta["vendor_request_id"]
        assert len(body) == meta["bytes"]


def test_next_url_to_another_host_is_not_followed(server, tmp_path):
    body = json.dumps({"status": "OK", "results": [], "next_url": "http://198.51.100.7/v3/reference/splits?cursor=1"})
    server.script.append(Reply(200, body, {"Content-Type": "application/json"}))
    with client(server.url, tmp_path) as c, pytest.raises(MalformedResponse) as error:
        Massive(c).splits()
    assert "next_url points to another host (http://198.51.100.7" in str(error.value)
    assert len(server.requests) == 1


def test_urls_lose_their_keys_and_retry_after_reads_both_forms():
    assert redact("https://u:p@api.example.com/v3/x?apiKey=abc&limit=5") == "https://api.example.com/v3/x?limit=5"
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None


def test_ticker_events_by_ticker_or_figi_and_none_for_an_unknown_one(server, tmp_path):
    figi = next(r["composite_figi"] for r in server.data.tickers() if r["ticker"] == "AAPL")
    with client(server.url, tmp_path) as c:
        by_ticker, by_figi = Massive(c).ticker_events("AAPL"), Massive(c).ticker_events(figi)
        assert Massive(c).ticker_events("NOPE") is None  # a 404, not an error
    assert by_ticker == by_figi and len(by_ticker) == 1 and by_ticker[0][1] == "AAPL"
    assert server.requests[-1].path.startswith("/vX/reference/tickers/NOPE/events?types=ticker_change")


def test_a_key_with_control_characters_is_refused_and_a_trailing_newline_is_trimmed(server, tmp_path):
    with pytest.raises(ValueError) as error:
        client(server.url, tmp_path, key="pk_live\r\nX-Injected: 1")
    assert "contains spaces or control characters" in str(error.value) and "pk_live" not in str(error.value)
    with client(server.url, tmp_path, key=KEY + "\n") as c:  # as read from a .env file
        assert Massive(c).splits().height == 1
    assert server.requests[-1].authorised


def test_spending_resets_at_midnight_in_the_budgets_time_zone(server, tmp_path):
    now = [dt.datetime(2026, 3, 2, 4, 30, tzinfo=dt.UTC)]  # 23:30 on 1 March in New York
    policy = Policy(rates=((1000, 1.0),), cost_per_request=1.0, daily_budget=1.0)
    with ProviderClient("massive", server.url, KEY, policy, tmp_path, clock=lambda: now[0]) as c:
        Massive(c).splits()
        with pytest.raises(BudgetExhausted):
            Massive(c).splits()
        now[0] = dt.datetime(2026, 3, 2, 5, 0, tzinfo=dt.UTC)  # midnight in New York (still 2 March in UTC)
        Massive(c).splits()
    days = {r["day"]: r["requests"] for r in ProviderState(tmp_path).spending()}
    assert days == {"2026-03-01": 1, "2026-03-02": 1} and len(server.requests) == 2


def test_only_the_providers_own_failures_count_against_the_breaker(server, tmp_path):
    policy = Policy(
        rates=((1000, 1.0),), attempts=2, backoff_initial=0.01, breaker_failures=5, cost_per_request=1.0,
        daily_budget=2.0,
    )  # fmt: skip
    server.script.extend([Reply(503), Reply(503)])
    with client(server.url, tmp_path, policy) as c:
        with pytest.raises(RequestFailed):
            Massive(c).splits()
        assert c.breaker_state()["consecutive_failures"] == 2
        with pytest.raises(BudgetExhausted):  # nothing sent: the breaker neither counts it nor forgets the failures
            Massive(c).splits()
        assert c.breaker_state()["consecutive_failures"] == 2 and c.breaker_state()["state"] == "closed"
    assert len(server.requests) == 2


def test_recorded_attempts_older_than_a_month_are_forgotten(tmp_path):
    state = ProviderState(tmp_path)
    state.record_call("massive", "k", "/x", 200, "ok", 0.01)
    state.db.execute("UPDATE calls SET at = at - 40 * 86400")
    state.record_call("massive", "k", "/x", 200, "ok", 0.01)
    assert state.prune_calls() == 1 and len(state.calls(0)) == 1
    state.close()
