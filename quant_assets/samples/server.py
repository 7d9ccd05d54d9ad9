"""What every local vendor server shares: a threaded HTTP server on 127.0.0.1, the key check, a latency per
response, the vendor's rate limit per second (answered as the vendor answers it) and a daily quota, scripted replies
served before the real ones (`server.script.append(Reply(503))`; after `script_after` requests for an outage in the
middle of a job) and the requests it saw (`server.requests`).

A vendor's server subclasses `VendorServer` and implements `answer` (and, for its quirks, `authorised`,
`over_limit`, `over_quota`).
"""

from __future__ import annotations

import collections
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Reply:
    """A scripted answer: `status` with `body` and `headers` after `delay` seconds; `drop` closes the connection
    without answering."""

    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


@dataclass
class Seen:
    """One request as the server saw it."""

    at: float  # time.time() on arrival
    path: str
    authorised: bool


def json_reply(body: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(body).encode(), {"Content-Type": "application/json"})


class VendorServer:
    """One vendor's server, on 127.0.0.1 (`port` 0 picks a free one), in a background thread.

    `latency` seconds pass before each answer; more than `per_second` arrivals in one second get `over_limit()`;
    past `quota` answered requests, `over_quota()`. `api_key` None accepts any request."""

    name = "vendor"

    def __init__(
        self,
        port: int = 0,
        api_key: str | None = None,
        latency: float = 0.0,
        per_second: int | None = None,
        quota: int | None = None,
    ):
        self.port = port
        self.api_key = api_key
        self.latency = latency
        self.per_second = per_second
        self.quota = quota
        self.script: list[Reply] = []
        self.script_after = 0  # requests answered normally before the script starts (an outage mid-job)
        self.requests: list[Seen] = []
        self.answered = 0
        self._arrivals: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def authorised(self, headers, query: dict[str, str]) -> bool:
        """Whether the request carries the key (override: each vendor has its own place for it)."""
        return True

    def answer(self, path: str, query: dict[str, str]) -> Reply:
        """The vendor's answer to GET `path` with `query`."""
        raise NotImplementedError

    def unauthorised(self) -> Reply:
        return json_reply({"error": "Invalid API key"}, 401)

    def over_limit(self) -> Reply:
        return json_reply({"error": "API limit reached. Please try again later."}, 429)

    def over_quota(self) -> Reply:
        return self.over_limit()

    def start(self) -> VendorServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a client's pooled connections are reused
            disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart (delayed ACK)

            def do_GET(self):  # noqa: N802 (the standard library's name)
                server._handle(self)

            def log_message(self, *args):  # quiet
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = dict(parse_qsl(parts.query))
        authorised = self.authorised(handler.headers, query)
        now = time.time()
        with self._lock:
            self.requests.append(Seen(now, handler.path, authorised))
            scripted = self.script.pop(0) if self.script and len(self.requests) > self.script_after else None
            self._arrivals.append(now)
            while self._arrivals and self._arrivals[0] <= now - 1.0:
                self._arrivals.popleft()
            limited = self.per_second is not None and len(self._arrivals) > self.per_second
        if scripted is not None:
            reply = scripted
        elif not authorised:
            reply = self.unauthorised()
        elif limited:
            reply = self.over_limit()
        else:
            with self._lock:
                over = self.quota is not None and self.answered >= self.quota
                self.answered += not over
            reply = self.over_quota() if over else self.answer(parts.path, query)
        time.sleep(max(reply.delay, self.latency))
        if reply.drop:
            handler.close_connection = True
            handler.connection.close()
            return
        body = reply.body.encode() if isinstance(reply.body, str) else reply.body
        try:
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass
