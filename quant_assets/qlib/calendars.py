"""The fixed slots of a Qlib calendar: every session, and for `1min` every regular-hours minute, has a position
counted from the directory's first session by the exchange calendar, whatever data has been seen. A value's slot
never moves: a later session only appends, a session written out of order fills its own slots.

- `day`: one slot per session, labelled `%Y-%m-%d`.
- `1min`: one slot per minute bar of the regular session (09:30 to the close, early closes included), labelled by
  the bar's start in exchange-local time, tz-naive (`%Y-%m-%d %H:%M:%S`), as Qlib's high-frequency data is.

Labels have a fixed width, so a calendar file's length in slots is its size over the width of a line.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from quant_assets.datasets import Calendar
from quant_assets.sessions import calendar_timezone, exchange_calendar, sessions

FREQS = ("day", "1min")
LINE_WIDTH = {"day": len("2026-01-02\n"), "1min": len("2026-01-02 09:30:00\n")}
HORIZON_DAYS = 400  # slots are laid out this far past the newest session asked for, then again when needed


@dataclass
class QlibCalendar:
    """The slots of `calendar`'s sessions from `start` on, at `freq`."""

    calendar: Calendar
    start: dt.date
    freq: str = "day"
    _until: dt.date = field(default=dt.date.min, repr=False)

    def __post_init__(self):
        if self.freq not in FREQS:
            raise ValueError(f"Qlib frequency {self.freq!r}: expected one of {', '.join(FREQS)}")
        if self.freq == "1min" and self.calendar is not Calendar.XNYS:
            raise ValueError(f"1min Qlib calendars need exchange hours: {self.calendar.value} has none")

    @property
    def width(self) -> int:
        return LINE_WIDTH[self.freq]

    def _cover(self, session: dt.date) -> None:
        """Lay out the slots up to `session` (and a horizon past it)."""
        if session <= self._until:
            return
        self._until = session + dt.timedelta(days=HORIZON_DAYS)
        for name in ("days", "first_slots", "opens"):
            self.__dict__.pop(name, None)

    @cached_property
    def days(self) -> np.ndarray:
        return np.array(sessions(self.calendar, self.start, self._until), dtype="datetime64[D]")

    @cached_property
    def opens(self) -> np.ndarray:
        """Each session's first bar start, exchange-local, tz-naive, in minutes (1min only)."""
        if not len(self.days):
            return np.array([], dtype="datetime64[m]")
        schedule = exchange_calendar("XNYS").schedule.loc[str(self.days[0]) : str(self.days[-1])]
        local = schedule["open"].dt.tz_convert(calendar_timezone(self.calendar)).dt.tz_localize(None)
        return local.to_numpy().astype("datetime64[m]")

    @cached_property
    def first_slots(self) -> np.ndarray:
        """Each session's first slot, and one past the last slot at the end."""
        if self.freq == "day" or not len(self.days):
            counts = np.ones(len(self.days), dtype=np.int64)
        else:
            schedule = exchange_calendar("XNYS").schedule.loc[str(self.days[0]) : str(self.days[-1])]
            counts = ((schedule["close"] - schedule["open"]).dt.total_seconds() // 60).to_numpy(np.int64)
        return np.concatenate([[0], np.cumsum(counts)])

    def session_position(self, session: dt.date) -> int:
        self._cover(session)
        position = int(np.searchsorted(self.days, np.datetime64(session, "D")))
        if position >= len(self.days) or self.days[position] != np.datetime64(session, "D"):
            raise ValueError(f"{session} is not a {self.calendar.value} session on or after {self.start}")
        return position

    def slots(self, session: dt.date) -> tuple[int, int]:
        """[first, end) slots of `session`."""
        position = self.session_position(session)
        return int(self.first_slots[position]), int(self.first_slots[position + 1])

    def session_of(self, slot: int) -> dt.date:
        """The session that holds `slot`."""
        while slot >= self.first_slots[-1]:
            self._cover(max(self._until, self.start) + dt.timedelta(days=HORIZON_DAYS))
        position = int(np.searchsorted(self.first_slots, slot, side="right")) - 1
        return self.days[position].astype(dt.date)

    def labels(self, slots: np.ndarray) -> list[str]:
        """The calendar line (without newline) of each slot."""
        slots = np.asarray(slots, dtype=np.int64)
        if not slots.size:
            return []
        self.session_of(int(slots.max()))  # lays the slots out that far
        position = np.searchsorted(self.first_slots, slots, side="right") - 1
        if self.freq == "day":
            return np.datetime_as_string(self.days[position], unit="D").tolist()
        minutes = self.opens[position] + (slots - self.first_slots[position]).astype("timedelta64[m]")
        return [text.replace("T", " ") for text in np.datetime_as_string(minutes, unit="s").tolist()]

    def slots_of(self, labels: list[str]) -> np.ndarray:
        """The slot of each calendar label (the inverse of `labels`); ValueError for a label off the calendar."""
        if not labels:
            return np.array([], dtype=np.int64)
        stamps = np.array([label.replace(" ", "T") for label in labels], dtype="datetime64[m]")
        self._cover(stamps.max().astype("datetime64[D]").astype(dt.date))
        dates = stamps.astype("datetime64[D]")
        position = np.searchsorted(self.days, dates)
        valid = position < len(self.days)
        valid[valid] &= self.days[position[valid]] == dates[valid]
        if not valid.all():
            raise ValueError(f"{labels[int(np.argmin(valid))]} is not on the {self.freq} calendar from {self.start}")
        slots = self.first_slots[position]
        if self.freq == "1min":
            slots = slots + (stamps - self.opens[position]).astype(np.int64)
        return slots.astype(np.int64)
