"""The client every REST provider uses: one `ProviderClient` per provider and key.

Each request goes through, in order:

1. the provider's circuit breaker (pybreaker; state shared through `state.sqlite`): open means fail fast;
2. the cost budget (`ProviderState.charge`): a request that would pass the day's budget raises `BudgetExhausted`
   and is not sent (outside the breaker: a spent budget says nothing about the provider's health);
3. the rate limits (pyrate-limiter; per second, minute and day, shared by every process): waits for a slot;
4. httpx, streaming, with explicit timeouts; the key travels in the `Authorization` header, never in a URL;
5. the audit trail: every response is landed as-is under `data/raw/providers/<provider>/YYYY/MM/DD/`, the body in
   `<id>.body` (streamed to disk as it arrives) and what was asked in `<id>.json` (request id, time, URL without the
   key, status, cost, and `truncated_at_bytes`/`truncated_by` when a bound cut the body);
6. the bounds of one answer, whatever the server sends:
   - bytes: a body is read up to `Policy.max_bytes` (64 MiB; `max_bytes_by_endpoint` overrides it per endpoint)
     and no further; past it, `BoundExceeded`. Memory holds one chunk while reading, and the body (at most the cap)
     only to parse it once it is whole. Not retried and not counted by the breaker: the provider answered, and the
     same request would get the same answer;
   - time: one attempt has `Policy.deadline` (120 s) from sending to the body's last byte, checked at every chunk
     of the body, and no single read waits longer than `min(timeout, deadline)`: a trickling body is cut at the
     deadline, give or take one read. A breach is retried and counted by the breaker, like a timeout: a slow
     server is the provider's trouble and may be transient. A request thus lasts at most `attempts` x (deadline +
     timeout), 12.5 min with the defaults, plus the waits between attempts. Only the body is checked: a server
     trickling its headers (h11 takes up to 100 KiB of them) is bounded by the read timeout of each read alone;
   - JSON: `NaN`, `Infinity`, `-Infinity` and numbers too large for a float (`1e400`), which Python's json accepts,
     are refused (`MalformedResponse`), as is nesting too deep to parse;
7. retries (tenacity): timeouts, deadlines, connection errors, 429 and 5xx only, with exponential backoff, jitter
   and a cap, and `Retry-After` honoured.

`pages` follows the vendor's `next_url`, re-attaching the key (the header) and only to the provider's own host, at
most `Policy.max_pages` pages (1000) and `Policy.max_rows` results (1,000,000) per call; past either,
`BoundExceeded` (not retried). A bound's error names the provider, the endpoint and the `Policy` field; no error
carries the key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import hashlib
import itertools
import json
import logging
import math
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import httpx
import pybreaker
import tenacity

from quant_assets.lake import replace_bytes, replace_file
from quant_assets.providers.cache import Caching, NotCached, ResponseCache
from quant_assets.providers.errors import (
    BoundExceeded,
    BudgetExhausted,
    CircuitOpen,
    MalformedResponse,
    ProviderError,
    RateLimited,
    RequestFailed,
)
from quant_assets.providers.state import BreakerStorage, ProviderState, key_id, limiter_wait, rate_limiter

SECRET_PARAMS = frozenset({"apikey", "api_key", "token", "key", "access_token"})
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MIB = 1024 * 1024
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    """How hard a provider may be used, and how failures are handled."""

    rates: tuple[tuple[int, float], ...] = ((5, 1.0), (100, 60.0), (50_000, 86_400.0))  # (requests, seconds)
    cost_per_request: float = 0.0
    daily_budget: float | None = None  # None: no budget
    budget_timezone: str = "America/New_York"  # spending resets at midnight here
    attempts: int = 5  # tries per request, the first included
    backoff_initial: float = 0.5  # seconds before the first retry, doubled each time
    backoff_max: float = 30.0  # cap of one wait
    retry_after_max: float = 300.0  # a longer Retry-After is a failure, not a wait
    timeout: float = 30.0  # seconds to connect, and between two reads (never more than the deadline)
    deadline: float = 120.0  # seconds for one attempt as a whole: connect, headers and body
    max_bytes: int = 64 * MIB  # a longer body is cut there and refused
    max_bytes_by_endpoint: tuple[tuple[str, int], ...] = ()  # (endpoint, bytes): overrides of max_bytes
    max_pages: int = 1000  # pages one `pages` call follows at most
    max_rows: int = 1_000_000  # results (the pages' `results` lists) one `pages` call reads at most
    breaker_failures: int = 10  # consecutive failed attempts that open the breaker (two requests' retries)
    breaker_reset_seconds: float = 60.0  # open for this long, then one trial call (half-open)
    max_wait: float = 300.0  # seconds a request may wait for a rate slot; a longer wait is `RateLimited`
    rate_margin: float = 0.25  # seconds a caller that had to wait for a slot goes past the window's edge

    def byte_cap(self, endpoint: str) -> tuple[int, str]:
        """The most bytes a body of `endpoint` may have, and the field that says so."""
        for name, cap in self.max_bytes_by_endpoint:
            if name == endpoint:
                return cap, "max_bytes_by_endpoint"
        return self.max_bytes, "max_bytes"


@dataclass(frozen=True)
class Auth:
    """Where the key travels: a header (`header`, its value `template` with `{key}`), or, for a vendor that takes
    it nowhere else (Alpha Vantage), a query parameter (`query`), added only to the request sent: every URL that is
    logged, audited, cached or shown is made without it."""

    header: str | None = "Authorization"
    template: str = "Bearer {key}"
    query: str | None = None


@dataclass
class ClientStats:
    """What one client did, for run metadata."""

    requests: int = 0
    retries: int = 0
    failures: int = 0  # requests that failed for good (after their retries)
    cache_hits: int = 0
    cost: float = 0.0
    waited_seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list, repr=False)  # seconds per attempt sent

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "failures": self.failures,
            "cache_hits": self.cache_hits,
            "cost": round(self.cost, 6),
            "waited_seconds": round(self.waited_seconds, 3),
            "latency_p50_ms": _percentile_ms(self.latencies, 0.50),
            "latency_p95_ms": _percentile_ms(self.latencies, 0.95),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


def prune_audit(data_root: str | Path, keep_days: int, today: dt.date) -> int:
    """Remove the audit trail's day folders (`raw/providers/<provider>/YYYY/MM/DD/`) older than `keep_days` before
    `today` (0 keeps everything), and the month and year folders left empty. Returns the files removed."""
    if keep_days <= 0:
        return 0
    oldest, removed = today - dt.timedelta(days=keep_days), 0
    root = Path(data_root) / "raw" / "providers"
    for day in sorted(root.glob("*/[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]")):
        try:
            dated = dt.date(int(day.parent.parent.name), int(day.parent.name), int(day.name))
        except ValueError:
            continue  # not a folder the client wrote
        if dated < oldest:
            removed += sum(1 for f in day.iterdir() if f.is_file())
            shutil.rmtree(day)
            for empty in (day.parent, day.parent.parent):
                with contextlib.suppress(OSError):
                    empty.rmdir()
    return removed


def _percentile_ms(values: list[float], share: float) -> float | None:
    """The `share` percentile of `values` (seconds) in milliseconds, nearest rank; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))] * 1000, 1)


def redact(url: str) -> str:
    """`url` without credentials: secret-looking query parameters and any user:password@ are dropped."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() not in SECRET_PARAMS]
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """The wait a `Retry-After` header asks for: seconds, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _Retryable(ProviderError):
    """An attempt that may succeed when tried again (a timeout, a reset, 429, 5xx)."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


def _counts_against_breaker(error: BaseException) -> bool:
    """Only the provider's own trouble opens the breaker (timeouts, resets, 5xx); a 404, a bad request, a spent
    budget does not, nor a 429: a provider that says "slower" is up, and its retries (then the next provider of a
    hybrid chain) are the answer, not failing fast. A burst of 429s at a run's start would otherwise open the
    breaker for every request after it."""
    return isinstance(error, _Retryable) and error.status != 429


class ProviderClient:
    """GET JSON from one provider with one key, under `policy`, with state and audit files under `data_root`.

    Safe to share between threads (a universe's requests run concurrently): the rate limiter paces them all, and
    each thread has its own connection to the shared state and its own view of the one shared breaker, as separate
    processes do (pybreaker holds its lock for the whole call, which would otherwise serialise the requests)."""

    def __init__(
        self,
        name: str,
        base_url: str,
        api_key: str | None,
        policy: Policy,
        data_root: str | Path,
        on_wait: Callable[[str], None] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        auth: Auth = Auth(),
        cache: ResponseCache | None = None,
    ):
        api_key = (api_key or "").strip() or None
        if api_key and any(c.isspace() or not c.isprintable() for c in api_key):
            raise ValueError(f"{name}: the API key contains spaces or control characters; check how it is set")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.data_root = Path(data_root)
        self.audit_root = self.data_root / "raw" / "providers" / name
        self.stats = ClientStats()
        self.cache = cache
        self._key_id = key_id(api_key)
        self._key = api_key
        self._auth = auth
        self._clock = clock
        self._local = threading.local()
        self._lock = threading.Lock()  # the stats
        self._opened: list[ProviderState] = []
        self._limited_until = 0.0  # time.monotonic() before which the rate limits refuse every call
        self._limiter = rate_limiter(self.data_root, name, self._key_id, policy.rates, policy.rate_margin)
        self._state.remember_policy(
            name, self._key_id, policy.daily_budget, policy.budget_timezone, policy.breaker_reset_seconds
        )
        self._state.prune_calls()
        report = on_wait or log.info
        self._on_wait = lambda text: report(self._scrub(text))
        headers = {"Accept": "application/json", "User-Agent": "quant-assets"}
        if api_key and auth.header:
            headers[auth.header] = auth.template.format(key=api_key)
        read = min(policy.timeout, policy.deadline)  # a read that starts before the deadline ends this soon after
        timeout = httpx.Timeout(read, connect=min(read, 10.0))
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        self._http = httpx.Client(headers=headers, timeout=timeout, follow_redirects=False, limits=limits)

    def __repr__(self) -> str:  # never the key
        return f"ProviderClient({self.name!r}, {self.base_url!r}, key_id={self._key_id!r})"

    @property
    def key_id(self) -> str:
        """A short hash of the key (`state.key_id`), never the key."""
        return self._key_id

    def budget_day(self) -> dt.date:
        """Today in the budget's time zone (by the client's clock): the day spending is charged to."""
        return self._clock().astimezone(ZoneInfo(self.policy.budget_timezone)).date()

    def requests_left_today(self) -> int | None:
        """How many more requests today's budget allows, across every process (None: no budget, or free requests):
        what a job plans its work with, so that the budget is never what stops it."""
        policy = self.policy
        if policy.daily_budget is None or policy.cost_per_request <= 0:
            return None
        rows = self._state.spending(self.budget_day())
        spent = sum(r["cost"] for r in rows if r["provider"] == self.name and r["key_id"] == self._key_id)
        return max(0, int((policy.daily_budget - spent + 1e-9) // policy.cost_per_request))

    @property
    def _state(self) -> ProviderState:
        state = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = ProviderState(self.data_root)
            with self._lock:
                self._opened.append(state)
        return state

    @property
    def _storage(self) -> BreakerStorage:
        storage = getattr(self._local, "storage", None)
        if storage is None:
            storage = self._local.storage = self._state.breaker_storage(self.name)
        return storage

    @property
    def breaker(self) -> pybreaker.CircuitBreaker:
        breaker = getattr(self._local, "breaker", None)
        if breaker is None:
            breaker = self._local.breaker = pybreaker.CircuitBreaker(
                fail_max=self.policy.breaker_failures,
                reset_timeout=self.policy.breaker_reset_seconds,
                exclude=[lambda error: not _counts_against_breaker(error)],
                state_storage=self._storage,
                name=self.name,
            )
        return breaker

    def close(self) -> None:
        self._http.close()
        self._limiter.close()
        with self._lock:
            for state in self._opened:
                state.close()
            self._opened.clear()
        self._local = threading.local()

    def log(self, text: str) -> None:
        """Report `text` where this client reports its retries (the run's log), without the key."""
        self._on_wait(text)

    def _scrub(self, text: str) -> str:
        """`text` with the key replaced, whatever produced it (an HTTP library's message, a vendor's echo)."""
        return text.replace(self._key, "<key>") if self._key else text

    def __enter__(self) -> ProviderClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def breaker_state(self) -> dict[str, Any]:
        """The breaker's state and counts, as the CLI and run metadata show them."""
        opened, state = self._storage.opened_at, self._storage.state
        retry_at = opened + dt.timedelta(seconds=self.policy.breaker_reset_seconds) if opened else None
        return {
            "state": state,
            "consecutive_failures": self._storage.counter,
            "opened_at": opened.isoformat() if opened else None,
            "retry_at": retry_at.isoformat() if retry_at and state != "closed" else None,
        }

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"
        if params:
            url += ("&" if "?" in url else "?") + urlencode({k: v for k, v in params.items() if v is not None})
        return url

    def get_json(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        endpoint: str | None = None,
        caching: Caching | None = None,
        check: Callable[[Any], None] | None = None,
    ) -> Any:
        """The JSON of GET `path` (relative to the base URL, or a URL on the same host), after retries.

        `caching` serves it from the response cache first (`Caching`; nothing else happens on a hit) and stores a
        good answer. `check` is the vendor's reading of an answer that came with HTTP 200: it raises (a
        `VendorError`) when the body is an error in disguise (Alpha Vantage's `Information`), so that such a body
        is neither cached nor returned; the request still counts against the budget."""
        url = self.url(path, params)
        endpoint = endpoint or urlsplit(url).path
        if caching is not None and self.cache is not None and caching.mode != "refresh":
            looked = time.monotonic()
            content = self.cache.get(self.name, redact(url))
            if content is not None:
                parsed = strict_json(content)
                with self._lock:
                    self.stats.cache_hits += 1
                self._state.record_call(self.name, self._key_id, endpoint, None, "cache", time.monotonic() - looked)
                return parsed
            if caching.mode == "only":
                raise NotCached(f"{self.name} {endpoint}: not in the cache ({redact(url)})")
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.policy.attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Retryable),
            before_sleep=self._before_sleep(endpoint),
            sleep=self._sleep,
            reraise=True,
        )
        self._local.attempt = 0
        try:
            return retrying(self._attempt, url, endpoint, caching, check)
        except _Retryable as error:
            with self._lock:
                self.stats.failures += 1
            raise RequestFailed(
                self._scrub(f"{self.name} {endpoint}: failed after {self.policy.attempts} attempts: {error}"),
                error.status,
            ) from None
        except ProviderError as error:
            if not isinstance(error, BudgetExhausted | CircuitOpen | RateLimited | NotCached):  # those sent nothing
                with self._lock:
                    self.stats.failures += 1
            error.args = (self._scrub(str(error)),)  # the same error, its message without the key
            raise

    def pages(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        endpoint: str | None = None,
        caching: Caching | None = None,
        check: Callable[[Any], None] | None = None,
    ) -> Iterator[Any]:
        """Every page of a paginated endpoint, following `next_url` until the vendor gives none.

        At most `Policy.max_pages` pages and `Policy.max_rows` results (the lengths of the pages' `results` lists)
        per call: past either, `BoundExceeded`, raised before the page past `max_rows` is yielded and before a page
        past `max_pages` is asked for. Pages are yielded as they come: a caller that must not use a partial listing
        collects them all before using any (as `Massive._list` does), and the exception then leaves it nothing.
        `caching` and `check` apply to every page (`get_json`): each page is cached under its own URL."""
        endpoint = endpoint or path
        url = self.url(path, params)
        seen = {url}
        rows = 0
        for number in itertools.count(1):
            page = self.get_json(url, endpoint=endpoint, caching=caching, check=check)
            results = page.get("results") if isinstance(page, dict) else None
            rows += len(results) if isinstance(results, list) else 0
            if rows > self.policy.max_rows:
                raise BoundExceeded(
                    f"{self.name} {endpoint}: the listing passed {self.policy.max_rows:,} results at page {number} "
                    f"(Policy.max_rows); not read further: the listing is incomplete",
                    "max_rows",
                )
            yield page
            next_url = page.get("next_url") if isinstance(page, dict) else None
            if not next_url:
                return
            if number >= self.policy.max_pages:
                raise BoundExceeded(
                    f"{self.name} {endpoint}: the listing has more than {self.policy.max_pages:,} pages "
                    f"(Policy.max_pages; {rows:,} results so far); not read further: the listing is incomplete",
                    "max_pages",
                )
            url = self._own_url(redact(next_url), endpoint)
            if url in seen:
                raise MalformedResponse(f"{self.name} {endpoint}: next_url repeats a page already read ({url})")
            seen.add(url)

    def _own_url(self, url: str, endpoint: str) -> str:
        """`url` if it is on the provider's own host: the key is never sent anywhere else."""
        ours, theirs = urlsplit(self.base_url), urlsplit(url)
        if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
            raise MalformedResponse(
                f"{self.name} {endpoint}: next_url points to another host ({theirs.scheme}://{theirs.netloc}, "
                f"expected {ours.scheme}://{ours.netloc}); not followed"
            )
        return url

    def _attempt(self, url: str, endpoint: str, caching: Caching | None, check: Callable[[Any], None] | None) -> Any:
        opened = self._storage.opened_at
        until = opened + dt.timedelta(seconds=self.policy.breaker_reset_seconds) if opened else None
        if self._storage.state == pybreaker.STATE_OPEN and until and self._clock() < until:
            raise self._circuit_open(endpoint, until)  # before the budget: nothing is spent on a call not made
        today = self.budget_day()
        self._state.charge(self.name, self._key_id, today, self.policy.cost_per_request, self.policy.daily_budget)
        try:
            self._slot(endpoint)
        except RateLimited:
            self._state.refund(self.name, self._key_id, today, self.policy.cost_per_request)
            raise
        try:
            return self.breaker.call(self._send, url, endpoint, caching, check)
        except pybreaker.CircuitBreakerError:
            opened = self._storage.opened_at or self._clock()
            raise self._circuit_open(
                endpoint, opened + dt.timedelta(seconds=self.policy.breaker_reset_seconds)
            ) from None

    def _circuit_open(self, endpoint: str, until: dt.datetime) -> CircuitOpen:
        last = self._storage.last_error
        cause = f" (last: {last})" if last else ""
        return CircuitOpen(
            f"{self.name} {endpoint}: circuit breaker open after {self.policy.breaker_failures} consecutive "
            f"failures{cause}; calls fail fast until {until:%Y-%m-%d %H:%M:%S} UTC, then a trial call. "
            f"`quant-assets providers reset {self.name}` closes it now"
        )

    def _slot(self, endpoint: str) -> None:
        """Wait for a rate slot (the last step before sending: what the server counts is arrivals), at most
        `Policy.max_wait` seconds; a longer wait (a day's quota used up) raises `RateLimited` at once, and every
        call of this client fails fast until the wait is over."""
        name = f"{self.name}:{self._key_id}"
        started = time.monotonic()
        if started < self._limited_until:
            raise self._rate_limited(endpoint, self._limited_until - started)
        # Try for a slot now, and after a refusal sleep until the next one and try again with a fresh timestamp.
        # (pyrate-limiter's own blocking wait re-tries with the timestamp of its first try: threads that waited
        # together then pass a window's limit in real time, 32 a second through a limit of 25 with 16 threads.)
        while not self._limiter.try_acquire(name, timeout=0):
            wait = limiter_wait(self._limiter, name)  # known only after a refused try
            now = time.monotonic()
            if now - started + wait > self.policy.max_wait:
                self._limited_until = now + wait
                raise self._rate_limited(endpoint, wait)
            time.sleep(wait + self.policy.rate_margin)
        waited = time.monotonic() - started
        self._local.waited = waited
        with self._lock:
            self.stats.waited_seconds += waited

    def _rate_limited(self, endpoint: str, wait: float) -> RateLimited:
        return RateLimited(
            f"{self.name} {endpoint}: rate limited: the next slot of this key is {wait:,.0f} s away, more than the "
            f"{self.policy.max_wait:g} s a request may wait (Policy.max_wait); nothing was sent"
        )

    def _send(self, url: str, endpoint: str, caching: Caching | None, check: Callable[[Any], None] | None) -> Any:
        """One attempt, recorded for the provider's health (`quant-assets providers`): its outcome and latency."""
        sent = time.monotonic()
        self._local.attempt = getattr(self._local, "attempt", 0) + 1
        with self._lock:
            self.stats.requests += 1
            self.stats.cost += self.policy.cost_per_request
        status, outcome = None, "error"
        try:
            status, parsed, content = self._exchange(url, endpoint, sent)
            if check is not None:
                check(parsed)
            outcome = "ok"
        except _Retryable as error:
            status, outcome = error.status, "transient"
            raise
        except RequestFailed as error:
            status = error.status
            raise
        finally:
            latency = time.monotonic() - sent
            with self._lock:
                self.stats.latencies.append(latency)
                if status is not None:
                    self.stats.statuses[status] = self.stats.statuses.get(status, 0) + 1
            waited = getattr(self._local, "waited", 0.0)
            attempt = self._local.attempt
            self._state.record_call(self.name, self._key_id, endpoint, status, outcome, latency, waited, attempt)
        if caching is not None and self.cache is not None:
            self.cache.put(self.name, redact(url), content, caching.ttl)
        return parsed

    def _exchange(self, url: str, endpoint: str, sent: float) -> tuple[int, Any, bytes]:
        """Send GET `url` (the key added where `Auth` says), land the answer, and read it: (status, JSON, body)."""
        shown = redact(url)
        if self._key and self._auth.query:  # only here: every URL kept or shown is made without it
            url += ("&" if "?" in url else "?") + urlencode({self._auth.query: self._key})
        now, request_id = self._clock(), uuid.uuid4().hex
        path = self.audit_root / f"{now:%Y/%m/%d}" / f"{now:%H%M%S%f}-{request_id}.body"
        cap, cap_field = self.policy.byte_cap(endpoint)
        try:
            with self._http.stream("GET", url) as response:
                body = _land(response, path, cap, sent + self.policy.deadline)
        except httpx.TimeoutException:
            raise self._failed(_Retryable(f"timed out after {self._http.timeout.read:g} s ({shown})")) from None
        except httpx.LocalProtocolError as error:  # our own request is malformed: trying again cannot help
            raise RequestFailed(self._scrub(f"{self.name} {endpoint}: could not send the request: {error}")) from None
        except httpx.TransportError as error:
            raise self._failed(_Retryable(self._scrub(f"{type(error).__name__}: {error} ({shown})"))) from None
        status = response.status_code
        content = body.content()
        if self._key and self._key.encode() in content:  # a vendor that echoes the key: not in the audit trail
            content = content.replace(self._key.encode(), b"<key>")
            if body.cut_by is None:
                replace_bytes(body.path, content)
        parsed, invalid = None, None
        if body.cut_by is None:
            try:
                parsed = strict_json(content)
            except (ValueError, RecursionError) as error:  # RecursionError: arrays nested 100,000 deep
                invalid = error
        self._audit(request_id, now, shown, endpoint, response, body, parsed)
        if status in RETRYABLE_STATUS:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is not None and wait > self.policy.retry_after_max:
                raise RequestFailed(
                    f"{self.name} {endpoint}: HTTP {status}, Retry-After asks for {wait:.0f} s, more than the "
                    f"{self.policy.retry_after_max:g} s this client waits ({shown})",
                    status,
                )
            raise self._failed(_Retryable(f"HTTP {status} ({shown})", wait, status))
        if status >= 400:
            message = f"{self.name} {endpoint}: HTTP {status}: {_vendor_message(content, parsed)} ({shown})"
            raise RequestFailed(self._scrub(message), status)
        if body.cut_by == "deadline":
            raise self._failed(
                _Retryable(
                    f"the response passed the {self.policy.deadline:g} s deadline of one attempt (Policy.deadline) "
                    f"after {body.size:,} bytes; not read further ({shown})"
                )
            )
        if body.cut_by == "max_bytes":
            raise BoundExceeded(
                f"{self.name} {endpoint}: the response passed the {_size(cap)} cap for this endpoint "
                f"(Policy.{cap_field}); not read further, its first {_size(cap)} landed as "
                f"{path.relative_to(self.data_root)} ({shown})",
                cap_field,
            )
        if invalid is not None:
            start = content[:120].decode(errors="replace")
            raise MalformedResponse(
                self._scrub(
                    f"{self.name} {endpoint}: the response is not valid JSON ({invalid}; {body.size} bytes, "
                    f"content-type {response.headers.get('content-type', '?')}) ({shown}); it starts {start!r}"
                )
            )
        return status, parsed, content

    def _failed(self, error: _Retryable) -> _Retryable:
        self._storage.record_error(self._scrub(str(error)))
        return error

    def _audit(
        self,
        request_id: str,
        now: dt.datetime,
        url: str,
        endpoint: str,
        response: httpx.Response,
        body: _Body,
        parsed: Any,
    ) -> None:
        """Land what was asked beside the body `_land` landed: a temp file, then renamed."""
        record = {
            "request_id": request_id,
            "vendor_request_id": parsed.get("request_id") if isinstance(parsed, dict) else None,
            "provider": self.name,
            "endpoint": endpoint,
            "time": now.isoformat(),
            "method": "GET",
            "url": url,
            "status": response.status_code,
            "cost": self.policy.cost_per_request,
            "content_type": response.headers.get("content-type"),
            "bytes": body.size,
            "sha256": body.sha256,
            "body": body.path.name,
            "truncated_at_bytes": body.size if body.cut_by else None,  # the server would have sent more
            "truncated_by": body.cut_by,  # the Policy field that stopped the reading
        }
        replace_bytes(body.path.with_suffix(".json"), json.dumps(record, indent=1).encode())

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, _Retryable) and error.retry_after is not None:
            return error.retry_after
        backoff = tenacity.wait_exponential_jitter(
            initial=self.policy.backoff_initial, max=self.policy.backoff_max, jitter=self.policy.backoff_initial
        )
        return min(backoff(retry_state), self.policy.backoff_max)

    def _before_sleep(self, endpoint: str):
        def report(retry_state: tenacity.RetryCallState) -> None:
            self.stats.retries += 1
            error = retry_state.outcome.exception() if retry_state.outcome else None
            wait = retry_state.next_action.sleep if retry_state.next_action else 0
            self._on_wait(
                f"{self.name} {endpoint}: attempt {retry_state.attempt_number} failed ({error}); "
                f"retrying in {wait:.2f} s"
            )

        return report

    def _sleep(self, seconds: float) -> None:
        self.stats.waited_seconds += seconds
        time.sleep(seconds)


@dataclass(frozen=True)
class _Body:
    """A response body as landed in the audit trail; `cut_by` is the bound that stopped the reading, if one did."""

    path: Path
    size: int
    sha256: str
    cut_by: str | None  # "max_bytes" or "deadline"

    def content(self) -> bytes:
        """The body when it is whole (at most the cap), else its first 300 bytes (for an error message)."""
        with self.path.open("rb") as file:
            return file.read() if self.cut_by is None else file.read(300)


def _land(response: httpx.Response, path: Path, cap: int, deadline: float) -> _Body:
    """Stream `response`'s body into `path` (a temp file, renamed once done), one chunk in memory at a time: at
    most `cap` bytes, and reading stops at the first chunk that arrives after `deadline` (`time.monotonic()`)."""
    digest, size, cut_by = hashlib.sha256(), 0, None

    def write(temporary: Path) -> None:
        nonlocal size, cut_by
        with temporary.open("wb") as file:
            for chunk in response.iter_bytes():
                if size + len(chunk) > cap:
                    chunk, cut_by = chunk[: cap - size], "max_bytes"
                elif time.monotonic() > deadline:
                    cut_by = "deadline"
                file.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if cut_by:
                    return

    replace_file(path, write)
    return _Body(path, size, digest.hexdigest(), cut_by)


def strict_json(content: bytes) -> Any:
    """`content` parsed as JSON; `NaN`, `Infinity` and `-Infinity`, which Python's json accepts and JSON does not,
    and a number too large for a float (`1e400`, which Python reads as infinity) raise ValueError naming it."""
    return json.loads(content, parse_constant=_refuse_constant, parse_float=_finite_float)


def _refuse_constant(literal: str) -> Any:
    raise ValueError(f"{literal} is not a JSON number: JSON has no NaN or infinity")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is too large for a float (it would read as infinity)")
    return value


def _size(count: int) -> str:
    """`count` bytes, in MiB when whole MiB."""
    return f"{count // MIB} MiB" if count % MIB == 0 else f"{count:,} bytes"


def _vendor_message(content: bytes, body: Any) -> str:
    """The vendor's own error text (`error` or `message`), short; the body's start otherwise."""
    if isinstance(body, dict):
        error = body.get("error") or body.get("message") or body.get("detail") or body.get("Error Message")
        chart = body.get("chart")
        if not error and isinstance(chart, dict) and isinstance(chart.get("error"), dict):  # Yahoo's chart endpoint
            error = chart["error"].get("description") or chart["error"].get("code")
        return str(error or body.get("status") or "")[:300]
    return content[:200].decode(errors="replace")


__all__ = [
    "Auth",
    "BoundExceeded",
    "BudgetExhausted",
    "Caching",
    "CircuitOpen",
    "ClientStats",
    "MalformedResponse",
    "Policy",
    "ProviderClient",
    "ProviderError",
    "RequestFailed",
    "redact",
]
