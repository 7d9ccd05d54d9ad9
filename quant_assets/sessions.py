"""Trading sessions from `exchange_calendars`: which days each calendar has, and when a session's stamps fall.

Pure arithmetic over dates; the Dagster partitions built from it live in `defs/partitions.py`.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

from quant_assets.datasets import Calendar

# Days of the week (cron numbering, 0 = Sunday) that can hold a session of each calendar.
CRON_DAYS = {
    Calendar.XNYS: "1-5",
    Calendar.EVERY_DAY: "*",
    Calendar.FOREX: "0-5",
    Calendar.WEEKDAYS: "1-5",
}
_TIMEZONES = {
    Calendar.XNYS: "America/New_York",
    Calendar.EVERY_DAY: "UTC",
    Calendar.FOREX: "UTC",
    Calendar.WEEKDAYS: "America/New_York",
}


def calendar_timezone(calendar: Calendar) -> str:
    """The time zone a calendar's session dates are counted in."""
    return _TIMEZONES[calendar]


@cache
def exchange_calendar(name: str = "XNYS") -> xcals.ExchangeCalendar:
    """The exchange_calendars calendar `name`, built once per process."""
    return xcals.get_calendar(name)


def sessions(calendar: Calendar, start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    """Session dates of `calendar` from `start` to `end`, both included."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if calendar is Calendar.XNYS:
        xnys = exchange_calendar("XNYS")
        start = max(start, xnys.first_session)
        end = min(end, xnys.last_session)
        if start > end:
            return []
        return [ts.date() for ts in xnys.sessions_in_range(start, end)]
    days = pd.date_range(start, end, freq="D")
    if calendar is Calendar.FOREX:
        days = days[days.dayofweek != 5]  # no Saturday
    elif calendar is Calendar.WEEKDAYS:
        days = days[days.dayofweek < 5]
    return [ts.date() for ts in days]


NEIGHBOUR_DAYS = 14  # the longest gap between two sessions of any calendar is well under this (XNYS, Sept 2001: 6)


def previous_session(calendar: Calendar, day: dt.date) -> dt.date | None:
    """The last session of `calendar` strictly before `day` (None if none within `NEIGHBOUR_DAYS`)."""
    before = sessions(calendar, day - dt.timedelta(days=NEIGHBOUR_DAYS), day - dt.timedelta(days=1))
    return before[-1] if before else None


def next_session(calendar: Calendar, day: dt.date) -> dt.date | None:
    """The first session of `calendar` strictly after `day` (None if none within `NEIGHBOUR_DAYS`)."""
    after = sessions(calendar, day + dt.timedelta(days=1), day + dt.timedelta(days=NEIGHBOUR_DAYS))
    return after[0] if after else None


def sessions_around(calendar: Calendar, start: dt.date, end: dt.date, before: int = 0, after: int = 0) -> list[dt.date]:
    """The sessions of `calendar` from `start` to `end` (both included), preceded by the `before` sessions before
    `start` and followed by the `after` sessions after `end`."""
    span = sessions(calendar, start, end)
    # 2n + NEIGHBOUR_DAYS calendar days hold at least n sessions of any calendar
    if before:
        earlier = sessions(
            calendar, start - dt.timedelta(days=2 * before + NEIGHBOUR_DAYS), start - dt.timedelta(days=1)
        )
        span = earlier[max(0, len(earlier) - before) :] + span
    if after:
        span += sessions(calendar, end + dt.timedelta(days=1), end + dt.timedelta(days=2 * after + NEIGHBOUR_DAYS))[
            :after
        ]
    return span


def is_session(calendar: Calendar, day: dt.date) -> bool:
    """Whether `day` is a session of `calendar`."""
    return bool(sessions(calendar, day, day))


def xnys_holidays(start: dt.date | str) -> list[dt.date]:
    """Weekdays from `start` to the end of the XNYS calendar on which NYSE does not trade."""
    xnys = exchange_calendar("XNYS")
    weekdays = pd.bdate_range(max(pd.Timestamp(start), xnys.first_session), xnys.last_session)
    return [ts.date() for ts in weekdays.difference(xnys.sessions)]


def parse_session(key: str) -> dt.date:
    """A partition key (`YYYY-MM-DD`) as a date."""
    return dt.date.fromisoformat(key)


def session_midnight(calendar: Calendar, session: dt.date) -> dt.datetime:
    """00:00 of `session` in the calendar's time zone, as a UTC datetime: where a day bar is stamped."""
    local = dt.datetime(session.year, session.month, session.day, tzinfo=ZoneInfo(_TIMEZONES[calendar]))
    return local.astimezone(dt.UTC)


def regular_hours(session: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[open, close) of an XNYS session in UTC, early closes included."""
    xnys = exchange_calendar("XNYS")
    return xnys.session_open(session).to_pydatetime(), xnys.session_close(session).to_pydatetime()


def extended_hours(calendar: Calendar, session: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) in UTC within which intraday stamps of `session` must fall.

    For XNYS sessions: 04:00 ET (pre-market) to four hours after the close (20:00 ET, or 17:00 ET on an early
    close). For other calendars, and for index files on market holidays: the whole local day.
    """
    if calendar in (Calendar.XNYS, Calendar.WEEKDAYS) and exchange_calendar("XNYS").is_session(session):
        open_, close = regular_hours(session)
        return open_ - dt.timedelta(minutes=330), close + dt.timedelta(hours=4)
    start = session_midnight(calendar, session)
    return start, session_midnight(calendar, session + dt.timedelta(days=1))
