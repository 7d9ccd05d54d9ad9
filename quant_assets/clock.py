"""The one clock of the provider jobs: now, in UTC, unless `QUANT_ASSETS_NOW` (an ISO 8601 time; UTC when it has
no offset) fixes it, so that a test or a replay runs "on" another day: budgets, cursors, as-of versions and
snapshot slots all read it. Rate limits are not: they pace real requests in real time."""

import datetime as dt
import os

CLOCK_ENV = "QUANT_ASSETS_NOW"


def now() -> dt.datetime:
    """The current time (UTC), or `QUANT_ASSETS_NOW`'s."""
    fixed = os.environ.get(CLOCK_ENV)
    if not fixed:
        return dt.datetime.now(dt.UTC)
    try:
        when = dt.datetime.fromisoformat(fixed)
    except ValueError as error:
        raise ValueError(f"{CLOCK_ENV}={fixed!r} is not an ISO 8601 time, e.g. 2026-03-02T15:30:00-05:00") from error
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
