"""When a session's lake partition is due: by a deadline on the next session (default 12:00 America/New_York)."""

import datetime as dt
from zoneinfo import ZoneInfo

from quant_assets.datasets import Calendar
from quant_assets.sessions import sessions
from quant_assets.settings import DEFAULT_DEADLINE

DEADLINE_ZONE = ZoneInfo("America/New_York")


def deadline(calendar: Calendar, session: dt.date, at: dt.time = DEFAULT_DEADLINE) -> dt.datetime:
    """When `session`'s partition must be in the lake: `at` (New York time) on the calendar's next session."""
    following = sessions(calendar, session + dt.timedelta(days=1), session + dt.timedelta(days=15))[0]
    return dt.datetime.combine(following, at, tzinfo=DEADLINE_ZONE)


def due_session(calendar: Calendar, now: dt.datetime, at: dt.time = DEFAULT_DEADLINE) -> tuple[dt.date, dt.datetime]:
    """The newest session whose deadline has passed at `now`, and that deadline."""
    today = now.astimezone(DEADLINE_ZONE).date()
    for session in reversed(sessions(calendar, today - dt.timedelta(days=15), today)):
        when = deadline(calendar, session, at)
        if when <= now:
            return session, when
    raise ValueError(f"no {calendar.value} session is due in the fifteen days before {now}")
