"""Point-in-time versions of the universes: what each universe held, and since when.

    <data>/reference/universes/<name>/<sequence>-<version>.json

`Universes.record` reads the folder and, for each universe whose members differ from its latest version, writes a
new version: `version` is the first 12 hex digits of the sha256 of its sorted members (one per line), `as_of` the
UTC time the change was observed. An unchanged file writes nothing. Versions are numbered (`sequence`), since a
universe that goes back to an earlier member set gets that set's version id again. Each file is written to a
temporary file and renamed, under the universe's lock, so two recorders (the sensor, a run, the CLI) never write
the same change twice.

Only the file's content is a change: a deleted file writes no version and its history stays (its members as of
now are those of its last version; `Universe.file` says the file is gone). To empty a universe, empty its file.

A question "as of" a date means the end of that day in UTC: the newest version observed before the next day
began. Spans are `[start, end)`: a symbol joins at the `as_of` of the version that first lists it and leaves at
that of the first version without it (None while it is still a member); a symbol removed and added again has two.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from quant_assets.lake import replace_bytes
from quant_assets.locks import locked
from quant_assets.names import child
from quant_assets.universes.files import Folder, UniverseError, checked_name, name_problem, read_folder

STORE = ("reference", "universes")
_VERSION_FILE = re.compile(r"(?P<sequence>\d{6,})-(?P<version>[0-9a-f]{12})\.json")


def version_id(members: Iterable[str]) -> str:
    """The id of a member set: the first 12 hex digits of the sha256 of the sorted members, one per line."""
    return hashlib.sha256("\n".join(sorted(set(members))).encode()).hexdigest()[:12]


def utc(when: dt.datetime | dt.date) -> dt.datetime:
    """`when` as an aware UTC time; a date is the end of that day (the start of the next one, exclusive)."""
    if not isinstance(when, dt.datetime):
        return dt.datetime.combine(when + dt.timedelta(days=1), dt.time(), dt.UTC) - dt.timedelta(microseconds=1)
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


@dataclass(frozen=True)
class Version:
    """One version of a universe: its members from `as_of` until the next version."""

    universe: str
    sequence: int
    version: str
    as_of: dt.datetime
    members: tuple[str, ...]
    file: str = ""  # the universe file it was read from
    set_aside: tuple[str, ...] = ()  # the file's lines that were not symbols then

    def to_json(self) -> dict:
        return {
            "universe": self.universe,
            "sequence": self.sequence,
            "version": self.version,
            "as_of": self.as_of.isoformat(),
            "members": list(self.members),
            "file": self.file,
            "set_aside": list(self.set_aside),
        }

    @classmethod
    def from_json(cls, data: dict) -> Version:
        return cls(
            data["universe"],
            int(data["sequence"]),
            data["version"],
            dt.datetime.fromisoformat(data["as_of"]),
            tuple(data["members"]),
            data.get("file", ""),
            tuple(data.get("set_aside", ())),
        )


@dataclass(frozen=True)
class Change:
    """What changed from one version to the next."""

    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class Span:
    """One stretch of a symbol's membership: `[start, end)`, `end` None while it is still a member."""

    symbol: str
    start: dt.datetime
    end: dt.datetime | None


@dataclass(frozen=True)
class Recorded:
    """What `Universes.record` read and wrote."""

    folder: Folder
    new: tuple[Version, ...]


def changes(old: Version | None, new: Version) -> Change:
    """The symbols `new` added to and removed from `old` (None: before the first version)."""
    before, after = set(old.members if old else ()), set(new.members)
    return Change(tuple(sorted(after - before)), tuple(sorted(before - after)))


class Universes:
    """The universes of `folder` (the hand-edited files) and their versions under `data`."""

    def __init__(self, folder: str | os.PathLike, data: str | os.PathLike):
        self.folder = Path(folder)
        self.data = Path(data)
        self.store = self.data.joinpath(*STORE)

    def universe_dir(self, name: str) -> Path:
        return child(self.store, checked_name(name))

    def record(self, now: dt.datetime | None = None) -> Recorded:
        """Read the folder and write a version for each universe whose members changed since its latest version
        (observed at `now`, the current UTC time by default). Returns what was read and the new versions."""
        observed = utc(now or dt.datetime.now(dt.UTC))
        folder = read_folder(self.folder)
        new = []
        for name, universe in folder.universes.items():
            with locked(self.universe_dir(name)):
                latest = self.current(name)
                if latest is not None and latest.members == universe.members:
                    continue
                if latest is not None and observed < latest.as_of:
                    raise ValueError(
                        f"universe {name}: observed at {observed.isoformat()}, before its latest version "
                        f"{latest.version} ({latest.as_of.isoformat()}); is the clock right?"
                    )
                # A new universe's first members count from its `# since:` date (a history to backfill) when the
                # file says so; every later change counts from when it is seen.
                since = (
                    dt.datetime.combine(universe.since, dt.time(), dt.UTC) if universe.since and not latest else None
                )
                version = Version(
                    name,
                    latest.sequence + 1 if latest else 1,
                    version_id(universe.members),
                    min(since, observed) if since else observed,
                    universe.members,
                    str(universe.path),
                    universe.set_aside,
                )
                path = self.universe_dir(name) / f"{version.sequence:06d}-{version.version}.json"
                replace_bytes(path, json.dumps(version.to_json(), indent=1).encode())
                new.append(version)
        return Recorded(folder, tuple(new))

    def names(self) -> list[str]:
        """Every universe with a file or a recorded version."""
        recorded = (
            [p.name for p in self.store.iterdir() if p.is_dir() and name_problem(p.name) is None]
            if self.store.is_dir()
            else []
        )
        return sorted(set(recorded) | set(read_folder(self.folder).universes))

    def history(self, name: str) -> list[Version]:
        """The versions of universe `name`, oldest first (none when it was never recorded)."""
        folder = self.universe_dir(name)
        if not folder.is_dir():
            return []
        found = []
        for path in folder.iterdir():
            if match := _VERSION_FILE.fullmatch(path.name):
                found.append((int(match["sequence"]), path))
        return [_read_version(path, name) for _, path in sorted(found)]

    def current(self, name: str) -> Version | None:
        """The latest version of universe `name`, or None when it was never recorded."""
        history = self.history(name)
        return history[-1] if history else None

    def version(self, name: str, version: str) -> Version:
        """The latest version of universe `name` with id `version`; `UniverseError` when there is none."""
        for candidate in reversed(self.history(name)):
            if candidate.version == version:
                return candidate
        raise UniverseError(f"universe {name} has no version {version!r}")

    def version_as_of(self, name: str, when: dt.datetime | dt.date) -> Version | None:
        """The version of `name` in effect at `when` (a date: the end of that day, UTC); None before the first."""
        at = utc(when)
        known = [v for v in self._known(name) if v.as_of <= at]
        return known[-1] if known else None

    def members_as_of(self, name: str, when: dt.datetime | dt.date) -> tuple[str, ...]:
        """The members of `name` at `when` (see `version_as_of`): none before its first version."""
        version = self.version_as_of(name, when)
        return version.members if version else ()

    def spans(self, name: str) -> list[Span]:
        """Each symbol's membership spans, by symbol then start."""
        spans, open_ = [], {}
        for version in self._known(name):
            members = set(version.members)
            for symbol in [s for s in open_ if s not in members]:
                spans.append(Span(symbol, open_.pop(symbol), version.as_of))
            for symbol in members - set(open_):
                open_[symbol] = version.as_of
        spans.extend(Span(symbol, start, None) for symbol, start in open_.items())
        return sorted(spans, key=lambda s: (s.symbol, s.start))

    def day_spans(self, name: str) -> list[tuple[str, dt.date, dt.date | None]]:
        """`spans` in whole UTC days, as `members_as_of` answers for a date: (symbol, first day, last day included
        or None while open). A symbol is a member on a day if it is one at the day's end; a span that ends on the
        day it started has no day."""
        days = []
        for span in self.spans(name):
            first = span.start.date()
            last = None if span.end is None else span.end.date() - dt.timedelta(days=1)
            if last is None or last >= first:
                days.append((span.symbol, first, last))
        return days

    def changes(self, name: str) -> list[tuple[Version, Change]]:
        """Each version of `name` with what it changed from the one before."""
        history = self._known(name)
        return [(v, changes(history[i - 1] if i else None, v)) for i, v in enumerate(history)]

    def _known(self, name: str) -> list[Version]:
        history = self.history(name)
        if not history:
            raise UniverseError(f"universe {name} has no recorded version (no {self.folder / name}.txt was seen)")
        return history


def _read_version(path: Path, name: str) -> Version:
    try:
        version = Version.from_json(json.loads(path.read_bytes()))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"universe {name}: version file {path} cannot be read ({error})") from None
    if version.universe != name or version.version != version_id(version.members):
        raise ValueError(f"universe {name}: version file {path} does not hold version {version.version} of {name}")
    return version
