"""The providers' durable state under `data/providers/`, shared by every process on the machine:

- `state.sqlite`: the day's spending per provider and key (`charge` reserves a request's cost atomically, so two
  runs together stay under one budget) and each provider's circuit breaker (`BreakerStorage`, pybreaker's storage
  interface), which the CLI shows and resets;
- `ratelimits.sqlite`: pyrate-limiter's buckets, one table per provider and key, behind a file lock.

Keys are never stored: a provider key is identified by `key_id`, a short hash of it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import pybreaker
from pyrate_limiter import Duration, Limiter, Rate, SQLiteBucket

from quant_assets.providers.errors import BudgetExhausted

CALLS_KEPT_DAYS = 31  # attempts older than this are forgotten when a client starts

SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    provider TEXT NOT NULL, key_id TEXT NOT NULL, day TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0, cost REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, key_id, day)
);
CREATE TABLE IF NOT EXISTS calls (
    provider TEXT NOT NULL, key_id TEXT NOT NULL, at REAL NOT NULL, endpoint TEXT NOT NULL, status INTEGER,
    outcome TEXT NOT NULL, latency REAL NOT NULL, waited REAL NOT NULL DEFAULT 0, attempt INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS calls_by_time ON calls (provider, at);
CREATE TABLE IF NOT EXISTS policy (
    provider TEXT NOT NULL, key_id TEXT NOT NULL, daily_budget REAL, budget_timezone TEXT,
    breaker_reset_seconds REAL, PRIMARY KEY (provider, key_id)
);
CREATE TABLE IF NOT EXISTS breaker (
    name TEXT PRIMARY KEY, state TEXT NOT NULL DEFAULT 'closed', failures INTEGER NOT NULL DEFAULT 0,
    successes INTEGER NOT NULL DEFAULT 0, opened_at TEXT, last_error TEXT
);
"""


def key_id(api_key: str | None) -> str:
    """A short, stable identifier of `api_key` (a hash), never the key itself: `anonymous` without one."""
    if not api_key:
        return "anonymous"
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


def state_dir(data_root: str | Path) -> Path:
    return Path(data_root) / "providers"


class ProviderState:
    """Spending and circuit breakers in `<data>/providers/state.sqlite`."""

    def __init__(self, data_root: str | Path):
        folder = state_dir(data_root)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "state.sqlite"
        # Autocommit; `charge` opens its own IMMEDIATE transaction. A 30 s busy timeout rides out other writers.
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a crash of the process, and fast
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def charge(self, provider: str, key: str, day: dt.date, cost: float, budget: float | None) -> float:
        """Record one request of `cost` on `day`, or raise `BudgetExhausted` (recording nothing) if it would take
        the day's spending past `budget`. Returns the day's spending after it."""
        with self._transaction():
            row = self.db.execute(
                "SELECT cost FROM spend WHERE provider=? AND key_id=? AND day=?", (provider, key, day.isoformat())
            ).fetchone()
            spent = row[0] if row else 0.0
            if budget is not None and spent + cost > budget + 1e-9:
                raise BudgetExhausted(
                    f"{provider}: the daily budget of {budget:g} is spent ({spent:g} used on {day}, the next request "
                    f"costs {cost:g}); no request was sent. It resets at midnight of the budget's time zone, or "
                    "raise the budget in the provider's resource config"
                )
            self.db.execute(
                "INSERT INTO spend (provider, key_id, day, requests, cost) VALUES (?, ?, ?, 1, ?) "
                "ON CONFLICT (provider, key_id, day) DO UPDATE SET requests = requests + 1, cost = cost + ?",
                (provider, key, day.isoformat(), cost, cost),
            )
            return spent + cost

    def refund(self, provider: str, key: str, day: dt.date, cost: float) -> None:
        """Take back one request of `cost` charged on `day` that was not sent after all (`RateLimited`)."""
        self.db.execute(
            "UPDATE spend SET requests = requests - 1, cost = cost - ? WHERE provider=? AND key_id=? AND day=?",
            (cost, provider, key, day.isoformat()),
        )

    def spending(self, day: dt.date | None = None) -> list[dict]:
        """Spending rows (provider, key_id, day, requests, cost), of `day` or all, newest first."""
        query = "SELECT provider, key_id, day, requests, cost FROM spend"
        args: tuple = ()
        if day is not None:
            query, args = query + " WHERE day=?", (day.isoformat(),)
        rows = self.db.execute(query + " ORDER BY day DESC, provider, key_id", args).fetchall()
        return [dict(zip(("provider", "key_id", "day", "requests", "cost"), r)) for r in rows]

    def record_call(
        self,
        provider: str,
        key: str,
        endpoint: str,
        status: int | None,
        outcome: str,
        latency: float,
        waited: float = 0.0,
        attempt: int = 1,
    ) -> None:
        """Record one attempt (`outcome`: ok, transient (retried if attempts remain), error) or cache hit (`cache`),
        for `health`; `attempt` is 1 for a request's first try."""
        self.db.execute(
            "INSERT INTO calls (provider, key_id, at, endpoint, status, outcome, latency, waited, attempt) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (provider, key, time.time(), endpoint, status, outcome, latency, waited, attempt),
        )

    def prune_calls(self, days: float = CALLS_KEPT_DAYS) -> int:
        """Forget the attempts recorded more than `days` ago (health looks at the last day): the table stays the
        size of a month of calls. Returns how many were removed."""
        return self.db.execute("DELETE FROM calls WHERE at < ?", (time.time() - days * 86_400,)).rowcount

    def calls(self, since: float) -> list[dict]:
        """The attempts and cache hits recorded since `since` (unix seconds), oldest first."""
        columns = ("provider", "key_id", "at", "endpoint", "status", "outcome", "latency", "waited", "attempt")
        rows = self.db.execute(f"SELECT {', '.join(columns)} FROM calls WHERE at >= ? ORDER BY at", (since,))
        return [dict(zip(columns, r)) for r in rows.fetchall()]

    def remember_policy(
        self, provider: str, key: str, daily_budget: float | None, budget_timezone: str, breaker_reset: float
    ) -> None:
        """Keep what a client of `provider` and `key` runs with, for `health` (which runs outside any client)."""
        self.db.execute(
            "INSERT INTO policy VALUES (?, ?, ?, ?, ?) ON CONFLICT (provider, key_id) DO UPDATE SET "
            "daily_budget = excluded.daily_budget, budget_timezone = excluded.budget_timezone, "
            "breaker_reset_seconds = excluded.breaker_reset_seconds",
            (provider, key, daily_budget, budget_timezone, breaker_reset),
        )

    def policies(self) -> list[dict]:
        """The budget, its time zone and the breaker's reset time each provider and key last ran with."""
        columns = ("provider", "key_id", "daily_budget", "budget_timezone", "breaker_reset_seconds")
        rows = self.db.execute(f"SELECT {', '.join(columns)} FROM policy ORDER BY provider, key_id").fetchall()
        return [dict(zip(columns, r)) for r in rows]

    def breakers(self) -> list[dict]:
        """Every breaker that has been used: name, state, consecutive failures, opened_at, last error."""
        rows = self.db.execute(
            "SELECT name, state, failures, successes, opened_at, last_error FROM breaker ORDER BY name"
        ).fetchall()
        return [dict(zip(("name", "state", "failures", "successes", "opened_at", "last_error"), r)) for r in rows]

    def reset_breaker(self, name: str) -> bool:
        """Close breaker `name` and clear its counts; False if no such breaker exists."""
        cursor = self.db.execute(
            "UPDATE breaker SET state='closed', failures=0, successes=0, opened_at=NULL, last_error=NULL WHERE name=?",
            (name,),
        )
        return cursor.rowcount > 0

    def breaker_storage(self, name: str) -> BreakerStorage:
        self.db.execute("INSERT OR IGNORE INTO breaker (name) VALUES (?)", (name,))
        return BreakerStorage(self, name)


class BreakerStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker's storage interface over one row of the `breaker` table: every process sees the same state."""

    def __init__(self, state: ProviderState, name: str):
        super().__init__(name)
        self._db = state.db
        self._name = name

    def _get(self, column: str):
        return self._db.execute(f"SELECT {column} FROM breaker WHERE name=?", (self._name,)).fetchone()[0]

    def _set(self, assignment: str, *args) -> None:
        self._db.execute(f"UPDATE breaker SET {assignment} WHERE name=?", (*args, self._name))

    @property
    def state(self) -> str:
        return self._get("state")

    @state.setter
    def state(self, state: str) -> None:
        self._set("state=?", state)

    def increment_counter(self) -> None:
        self._set("failures = failures + 1")

    def reset_counter(self) -> None:
        self._set("failures = 0")

    def increment_success_counter(self) -> None:
        self._set("successes = successes + 1")

    def reset_success_counter(self) -> None:
        self._set("successes = 0")

    @property
    def counter(self) -> int:
        return self._get("failures")

    @property
    def success_counter(self) -> int:
        return self._get("successes")

    @property
    def opened_at(self) -> dt.datetime | None:
        text = self._get("opened_at")
        return dt.datetime.fromisoformat(text) if text else None

    @opened_at.setter
    def opened_at(self, when: dt.datetime) -> None:
        self._set("opened_at=?", when.isoformat())

    @property
    def last_error(self) -> str | None:
        return self._get("last_error")

    def record_error(self, text: str) -> None:
        self._set("last_error=?", text[:500])


def rate_limiter(
    data_root: str | Path, provider: str, key: str, rates: Sequence[tuple[int, float]], margin: float = 0.25
) -> Limiter:
    """A pyrate-limiter `Limiter` for `provider` and `key` over `rates` ((requests, window seconds) pairs), in
    SQLite behind a file lock, so that every process on the machine draws from the same buckets."""
    folder = state_dir(data_root)
    folder.mkdir(parents=True, exist_ok=True)
    limits = sorted((Rate(n, int(seconds * Duration.SECOND)) for n, seconds in rates), key=lambda r: r.interval)
    bucket = SQLiteBucket.init_from_file(
        limits,
        table=f"rate_{provider}_{key}".replace("-", "_"),
        db_path=str(folder / "ratelimits.sqlite"),
        create_new_table=True,
        use_file_lock=True,
    )
    # buffer_ms: a caller that had to wait goes `margin` (a quarter second by default) past the window's edge, so
    # that the jitter between taking a slot and the request's arrival (a new connection, a busy machine) cannot
    # squeeze one more request into the server's window than the quota. It costs throughput: with 25 a second, a
    # margin of 0.25 s lets 25 through every 1.25 s; a provider near its limit for long runs takes a smaller one.
    return Limiter(bucket, buffer_ms=round(margin * 1000))


def limiter_wait(limiter: Limiter, name: str) -> float:
    """Seconds until `limiter` has a slot for `name` (0 when it has one now)."""
    item = limiter.bucket_factory.wrap_item(name, 1)
    bucket = limiter.bucket_factory.get(item)
    return max(0, bucket.waiting(item)) / 1000
