"""The provider client against hostile REST servers on 127.0.0.1: a 2 GB body, a body trickling a byte at a time,
an endless cursor, a listing with too many rows, and JSON's forbidden NaN and Infinity. Each test reproduces one
finding with a real server and asserts what the client did and what the server saw."""

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from quant_assets.providers.client import MIB, Policy, ProviderClient
from quant_assets.providers.errors import BoundExceeded, MalformedResponse, RequestFailed
from quant_assets.providers.massive import SPLITS, Massive

KEY = "pk_live_hostile_5e4d3c2b1a"
GB = 2 * 1024**3
FAST = Policy(rates=((1000, 1.0),), attempts=1, backoff_initial=0.01, backoff_max=0.02, timeout=5.0)
SPLIT = b'{"ticker": "AAPL", "execution_date": "2026-02-02", "split_from": 1, "split_to": 4}'


class Hostile:
    """A server on 127.0.0.1 whose every GET is answered by `answer(server, handler, number)`, `number` counting the
    requests from 1. It records the paths asked and the bytes it managed to write; a client that hangs up ends the
    answer (BrokenPipe or ConnectionReset on the next write)."""

    def __init__(self, answer: Callable[["Hostile", BaseHTTPRequestHandler, int], None]):
        self.answer = answer
        self.paths: list[str] = []
        self.sent = 0
        self._active = 0
        self._idle = threading.Condition()
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (the standard library's name)
                with hostile._idle:
                    hostile.paths.append(self.path)
                    number = len(hostile.paths)
                    hostile._active += 1
                try:
                    hostile.answer(hostile, self, number)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                finally:
                    with hostile._idle:
                        hostile._active -= 1
                        hostile._idle.notify_all()

            def log_message(self, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "Hostile":
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def head(self, handler: BaseHTTPRequestHandler, length: int, status: int = 200) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(length))
        handler.end_headers()

    def write(self, handler: BaseHTTPRequestHandler, data: bytes) -> None:
        handler.wfile.write(data)
        with self._idle:
            self.sent += len(data)

    def reply(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        self.head(handler, len(body))
        self.write(handler, body)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no answer is being written (the server noticed the client hung up)."""
        with self._idle:
            assert self._idle.wait_for(lambda: self._active == 0, timeout), "the server is still writing"


def huge(server: Hostile, handler: BaseHTTPRequestHandler, number: int) -> None:
    """A 2 GB list of splits, generated a MiB at a time; `/small` is a normal answer. It never writes more than
    512 MiB, so that a client that does not stop fails the test quickly instead of reading 2 GB."""
    if handler.path.startswith("/small"):
        return server.reply(handler, b'{"status": "OK", "results": [' + SPLIT + b"]}")
    server.head(handler, GB)
    server.write(handler, b'{"status": "OK", "results": [')
    block = (SPLIT + b",") * (MIB // (len(SPLIT) + 1))
    while server.sent < 512 * MIB:
        server.write(handler, block)


def trickle(interval: float):
    """A valid JSON body of 1,000 bytes (spaces after the object), one byte every `interval` seconds."""

    def answer(server: Hostile, handler: BaseHTTPRequestHandler, number: int) -> None:
        body = b'{"status": "OK", "results": []}'.ljust(1000)
        server.head(handler, len(body))
        for byte in body:
            time.sleep(interval)
            server.write(handler, bytes([byte]))

    return answer


def listing(pages: int | None, per_page: int = 1):
    """A listing of `pages` pages (None: without end, a new cursor on every page) of `per_page` splits each."""

    def answer(server: Hostile, handler: BaseHTTPRequestHandler, number: int) -> None:
        page = {"status": "OK", "request_id": f"r{number}", "results": [json.loads(SPLIT)] * per_page}
        if pages is None or number < pages:
            page["next_url"] = f"{server.url}{SPLITS}?cursor={number}&limit=1000"
        server.reply(handler, json.dumps(page).encode())

    return answer


def constant(body: bytes):
    return lambda server, handler, number: server.reply(handler, body)


def audit_files(data: Path) -> list[Path]:
    return sorted(p for p in (data / "raw/providers/massive").rglob("*") if p.is_file())


def records(data: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in audit_files(data) if p.suffix == ".json"]


MEMORY_SCRIPT = """
import json, resource, sys
from quant_assets.providers.client import MIB, Policy, ProviderClient
from quant_assets.providers.errors import ProviderError
url, data, endpoint, cap = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
policy = Policy(rates=((1000, 1.0),), attempts=1, max_bytes_by_endpoint=((endpoint, cap),))
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
with ProviderClient("massive", url, sys.argv[5], policy, data) as client:
    client.get_json("/small", endpoint="/small")  # everything imported and warm: the baseline
    before = peak()
    try:
        client.get_json(endpoint)
        outcome = "no error"
    except ProviderError as error:
        outcome = f"{type(error).__name__}: {error}"
print(json.dumps({"outcome": outcome, "baseline_mib": before, "peak_mib": peak()}))
"""


def test_a_2_gb_body_is_cut_at_the_cap_and_memory_stays_bounded(tmp_path):
    cap = 16 * MIB
    with Hostile(huge) as server:
        script = [sys.executable, "-c", MEMORY_SCRIPT, server.url, str(tmp_path), SPLITS, str(cap), KEY]
        run = subprocess.run(script, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        server.wait_idle()
        sent = server.sent
    result = json.loads(run.stdout)
    assert result["outcome"].startswith(
        f"BoundExceeded: massive {SPLITS}: the response passed the 16 MiB cap for this endpoint "
        "(Policy.max_bytes_by_endpoint); not read further, its first 16 MiB landed as raw/providers/massive/"
    )
    assert KEY not in result["outcome"]
    # The client's peak grew by less than half the cap (the body streams to disk, a chunk at a time), and the
    # server stopped soon after the cap: the rest is socket buffers, out of the 2 GB on offer.
    assert result["peak_mib"] - result["baseline_mib"] < 8, result
    assert cap < sent < cap + 32 * MIB, sent
    cut = next(r for r in records(tmp_path) if r["endpoint"] == SPLITS)
    assert (cut["bytes"], cut["truncated_at_bytes"], cut["truncated_by"]) == (cap, cap, "max_bytes")
    assert [p.stat().st_size for p in audit_files(tmp_path) if p.name == cut["body"]] == [cap]


def test_a_body_past_the_cap_is_not_retried_nor_counted_by_the_breaker(tmp_path):
    body = b'{"status": "OK", "results": [' + b",".join([SPLIT] * 40_000) + b"]}"  # 3.3 MB
    policy = Policy(rates=((1000, 1.0),), attempts=3, backoff_initial=0.01, max_bytes=MIB)
    with Hostile(constant(body)) as server, ProviderClient("massive", server.url, KEY, policy, tmp_path) as c:
        with pytest.raises(BoundExceeded) as error:
            Massive(c).splits()
        assert error.value.bound == "max_bytes"
        assert str(error.value).startswith(
            f"massive {SPLITS}: the response passed the 1 MiB cap for this endpoint (Policy.max_bytes)"
        )
        assert len(server.paths) == 1 and c.stats.retries == 0  # the same request would get the same answer
        assert c.breaker_state()["consecutive_failures"] == 0
        wider = Policy(rates=((1000, 1.0),), max_bytes=MIB, max_bytes_by_endpoint=((SPLITS, 4 * MIB),))
        with ProviderClient("massive", server.url, KEY, wider, tmp_path / "wider") as w:
            assert len(w.get_json(SPLITS)["results"]) == 40_000  # the endpoint's own cap, above the body


@pytest.mark.parametrize(("interval", "timeout", "attempts"), [(0.25, 1.0, 2), (1.5, 2.0, 1)])
def test_a_trickling_body_is_cut_at_the_deadline_give_or_take_one_read(tmp_path, interval, timeout, attempts):
    deadline = 2.0
    policy = Policy(rates=((1000, 1.0),), attempts=attempts, backoff_initial=0.01, backoff_max=0.02,
                    timeout=timeout, deadline=deadline)  # fmt: skip
    with Hostile(trickle(interval)) as server, ProviderClient("massive", server.url, KEY, policy, tmp_path) as c:
        started = time.monotonic()
        with pytest.raises(RequestFailed) as error:
            c.get_json(SPLITS)
        elapsed = time.monotonic() - started
        assert str(error.value).startswith(
            f"massive {SPLITS}: failed after {attempts} attempts: the response passed the 2 s deadline of one "
            "attempt (Policy.deadline) after "
        )
        assert len(server.paths) == attempts  # a deadline is retried, like a timeout
        assert c.breaker_state()["consecutive_failures"] == attempts  # and counts against the breaker
    # Each attempt ends within the deadline plus one read; the whole body would take 250 s or 1,500 s.
    assert attempts * deadline <= elapsed < attempts * (deadline + timeout) + 3, elapsed
    cut = records(tmp_path)
    assert [r["truncated_by"] for r in cut] == ["deadline"] * attempts
    assert all(0 < r["truncated_at_bytes"] < 1000 for r in cut)


def test_an_endless_cursor_stops_at_max_pages_and_returns_nothing(tmp_path):
    policy = Policy(rates=((1000, 1.0),), max_pages=20)
    frame = None
    with Hostile(listing(None)) as server, ProviderClient("massive", server.url, KEY, policy, tmp_path) as c:
        started = time.monotonic()
        with pytest.raises(BoundExceeded) as error:
            frame = Massive(c).splits()
        assert time.monotonic() - started < 20
        assert len(server.paths) == 20 and len(set(server.paths)) == 20  # a new cursor each time, no repeat
    assert frame is None  # no frame of the 20 pages read
    assert error.value.bound == "max_pages"
    assert str(error.value) == (
        f"massive {SPLITS}: the listing has more than 20 pages (Policy.max_pages; 20 results so far); not read "
        "further: the listing is incomplete"
    )
    assert len(audit_files(tmp_path)) == 2 * 20


def test_a_listing_of_exactly_max_pages_pages_is_read_whole(tmp_path):
    policy = Policy(rates=((1000, 1.0),), max_pages=20)
    with Hostile(listing(20)) as server, ProviderClient("massive", server.url, KEY, policy, tmp_path) as c:
        pages = list(c.pages(SPLITS))
        assert [p["request_id"] for p in pages] == [f"r{n}" for n in range(1, 21)] and len(server.paths) == 20


def test_a_listing_past_max_rows_is_refused_at_the_page_that_passes_it(tmp_path):
    policy = Policy(rates=((1000, 1.0),), max_rows=1000)
    with (
        Hostile(listing(10, per_page=300)) as server,
        ProviderClient("massive", server.url, KEY, policy, tmp_path) as c,
    ):
        with pytest.raises(BoundExceeded) as error:
            Massive(c).splits()
        assert len(server.paths) == 4  # 1,200 results after 4 pages; pages 5 to 10 never asked
    assert error.value.bound == "max_rows"
    assert str(error.value) == (
        f"massive {SPLITS}: the listing passed 1,000 results at page 4 (Policy.max_rows); not read further: the "
        "listing is incomplete"
    )
    with Hostile(listing(4, per_page=250)) as server, ProviderClient("massive", server.url, KEY, policy, tmp_path) as c:
        assert sum(len(p["results"]) for p in c.pages(SPLITS)) == 1000  # exactly the bound is allowed


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_and_the_body_still_lands(tmp_path, literal):
    body = b'{"status": "OK", "results": [{"ticker": "AAPL", "split_from": ' + literal.encode() + b', "split_to": 4}]}'
    with Hostile(constant(body)) as server, ProviderClient("massive", server.url, KEY, FAST, tmp_path) as c:
        with pytest.raises(MalformedResponse) as error:
            c.get_json(SPLITS)
        assert len(server.paths) == 1  # a broken answer is not retried
    assert str(error.value).startswith(
        f"massive {SPLITS}: the response is not valid JSON ({literal} is not a JSON number: JSON has no NaN or "
        f"infinity; {len(body)} bytes, content-type application/json)"
    )
    landed = [p for p in audit_files(tmp_path) if p.suffix == ".body"]
    assert [p.read_bytes() for p in landed] == [body]
    assert [(r["bytes"], r["truncated_by"]) for r in records(tmp_path)] == [(len(body), None)]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"results": [{"split_from": 1e400, "split_to": 1}]}', "1e400 is too large for a float"),
        (b"[" * 100_000 + b"]" * 100_000, "maximum recursion depth"),
    ],
)
def test_an_overflowing_number_or_a_deep_nesting_is_a_clear_error(tmp_path, body, says):
    with Hostile(constant(body)) as server, ProviderClient("massive", server.url, KEY, FAST, tmp_path) as c:
        with pytest.raises(MalformedResponse) as error:
            c.get_json(SPLITS)
    assert str(error.value).startswith(f"massive {SPLITS}: the response is not valid JSON") and says in str(error.value)


def test_a_normal_body_still_parses_and_nan_as_text_is_text(tmp_path):
    body = b'{"status": "OK", "results": [{"id": "NaN", "split_from": 1.5, "split_to": 4e0}]}'
    with Hostile(constant(body)) as server, ProviderClient("massive", server.url, KEY, FAST, tmp_path) as c:
        page = c.get_json(SPLITS)
    assert page == {"status": "OK", "results": [{"id": "NaN", "split_from": 1.5, "split_to": 4.0}]}
