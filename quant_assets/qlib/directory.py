"""A Qlib provider directory written a session at a time: `calendars/day.txt`, `instruments/all.txt` and
`features/<folder>/<field>.day.bin`.

Every session has a fixed index: its position among the exchange calendar's sessions from the directory's first
session (`QlibDirectory.start`), whatever the data seen so far. The calendar file lists every session from the start
to the newest one written, so a session written out of order, or a symbol that skips sessions, never shifts a
value; a later session only appends. Writing one session touches that session's slot in each of its symbols' bins
(`bins.put_many`) and rewrites the two small text files. Runs of one directory take turns under its lock, so
sessions can be written in any order by parallel processes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from quant_assets.datasets import Calendar
from quant_assets.lake import replace_bytes
from quant_assets.locks import locked
from quant_assets.qlib.bins import DTYPE, put_many
from quant_assets.qlib.symbols import feature_folder, qlib_symbol
from quant_assets.sessions import sessions

FREQ = "day"
DATE_FORMAT = "%Y-%m-%d"


def _write_text(path: Path, text: str) -> None:
    replace_bytes(path, text.encode())


@dataclass(frozen=True)
class QlibDirectory:
    """One provider directory for `calendar`'s sessions from `start` on."""

    root: Path
    calendar: Calendar
    start: dt.date

    def index(self, session: dt.date) -> int:
        """The session's fixed position in the calendar."""
        days = sessions(self.calendar, self.start, session)
        if not days or days[-1] != session:
            raise ValueError(f"{session} is not a {self.calendar.value} session on or after {self.start}")
        return len(days) - 1

    def session_at(self, index: int, until: dt.date) -> dt.date:
        return sessions(self.calendar, self.start, until)[index]

    def calendar_path(self) -> Path:
        return self.root / "calendars" / f"{FREQ}.txt"

    def instruments_path(self) -> Path:
        return self.root / "instruments" / "all.txt"

    def bin_path(self, symbol: str, field: str) -> Path:
        return self.root / "features" / feature_folder(symbol) / f"{field.lower()}.{FREQ}.bin"

    def written_sessions(self) -> int:
        """How many sessions the calendar file lists."""
        path = self.calendar_path()
        return sum(1 for _ in path.open()) if path.exists() else 0

    def write_session(self, session: dt.date, frame: pl.DataFrame, fields: Sequence[str]) -> int:
        """Write `frame` (one row per vendor `ticker`, a column per field) into `session`'s slot of each symbol's
        bins; extend the calendar to `session` if it is newer; update the instruments. Returns the symbols written."""
        index = self.index(session)
        with locked(self.root):
            tickers = frame["ticker"].to_list()
            columns = {field: frame[field].cast(pl.Float32).to_numpy() for field in fields}
            for row, ticker in enumerate(tickers):
                symbol = qlib_symbol(ticker)
                for field in fields:
                    put_many(self.bin_path(symbol, field), {index: float(columns[field][row])})
            if index + 1 > self.written_sessions():
                days = sessions(self.calendar, self.start, session)
                _write_text(self.calendar_path(), "".join(f"{d:{DATE_FORMAT}}\n" for d in days))
            self.write_instruments(fields[0])
        return len(tickers)

    def write_instruments(self, field: str = "close") -> None:
        """`instruments/all.txt` from the bins of `field`: each symbol's first and last session with a value (the
        bins hold no padding outside them), so a delisted symbol ends where it stopped."""
        days = sessions(self.calendar, self.start, self.session_limit())
        lines = []
        features = self.root / "features"
        for folder in sorted(features.iterdir()) if features.is_dir() else []:
            path = folder / f"{field}.{FREQ}.bin"
            if not path.exists():
                continue
            header = np.fromfile(path, dtype=DTYPE, count=1)
            first = int(header[0])
            last = first + path.stat().st_size // 4 - 2
            symbol = _symbol_of(folder.name)
            lines.append(f"{symbol}\t{days[first]:{DATE_FORMAT}}\t{days[last]:{DATE_FORMAT}}\n")
        _write_text(self.instruments_path(), "".join(lines))

    def session_limit(self) -> dt.date:
        """The newest session the calendar file lists (the start if none)."""
        path = self.calendar_path()
        if not path.exists():
            return self.start
        *_, last = path.read_text().split()
        return dt.date.fromisoformat(last)


def _symbol_of(folder: str) -> str:
    """The instruments name of a feature folder: Qlib matches names case-insensitively, so the folder name serves,
    upper-cased, with our `_` marks kept lower-case (`bc_pc` -> `BC_pC`) and the reader's prefix dropped."""
    name = folder.removeprefix("_qlib_")
    out, mark = [], False
    for char in name:
        out.append(char if mark else char.upper())
        mark = char == "_"
    return "".join(out)
