"""The universes folder: one plain text file per universe, `<folder>/<name>.txt`, edited by hand.

One symbol per line, in any form `providers.symbols.canonical` reads (`BRK.B`, `AAPL US Equity`, `BRK/B:US`,
`SPX Index`, `^GSPC`, `BRK-B`); `#` starts a comment, blank lines are ignored. Symbols are kept in the canonical
form, duplicates collapse. A line that is not a symbol is set aside with a reason naming the file and the line; the
other lines still count. A file whose name is not a universe name, or that cannot be read, is set aside whole.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from quant_assets.names import shown
from quant_assets.providers.symbols import Unsupported, canonical

NAME_PATTERN = r"[a-z][a-z0-9_]{0,63}"
NAME_RULE = "a lower-case letter, then up to 63 lower-case letters, digits or '_'"
# `all` is Qlib's name for every symbol of a directory (instruments/all.txt): a universe of that name would replace it.
RESERVED = frozenset({"all"})
SUFFIX = ".txt"
MAX_FILE_BYTES = 4 * 1024 * 1024  # ~200,000 symbols; a larger file is not a hand-edited list
_NAME = re.compile(NAME_PATTERN)


class UniverseError(ValueError):
    """A universe name that is not one, or a universe that does not exist."""


def name_problem(name: object) -> str | None:
    """Why `name` is not a universe name, or None when it is one."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return f"{shown(name)} is not a universe name ({NAME_RULE})"
    if name in RESERVED:
        return f"{name!r} is reserved (Qlib's instruments/{name}.txt lists every symbol of a directory)"
    return None


def checked_name(name: str) -> str:
    """`name` if it is a universe name; `UniverseError` otherwise."""
    if problem := name_problem(name):
        raise UniverseError(problem)
    return name


@dataclass(frozen=True)
class UniverseFile:
    """What one universe file holds: its canonical symbols (sorted, unique) and the lines set aside."""

    name: str
    path: Path
    members: tuple[str, ...]
    set_aside: tuple[str, ...] = ()
    since: dt.date | None = None  # `# since: YYYY-MM-DD`: when the first version's members became members


@dataclass(frozen=True)
class Folder:
    """Every universe file of a folder, by name, and the files set aside whole (reasons naming them)."""

    path: Path
    universes: dict[str, UniverseFile] = field(default_factory=dict)
    set_aside: tuple[str, ...] = ()


SINCE = re.compile(r"#\s*since:\s*(\S+)\s*$")


def parse_since(text: str, where: str) -> tuple[dt.date | None, tuple[str, ...]]:
    """The date of a `# since: YYYY-MM-DD` line (the first), and the reason when it is not a date."""
    for number, line in enumerate(text.splitlines(), 1):
        if match := SINCE.match(line.strip()):
            try:
                return dt.date.fromisoformat(match[1]), ()
            except ValueError:
                return None, (f"{where}:{number}: `since` is not a date (YYYY-MM-DD): {match[1][:40]!r}",)
    return None, ()


def parse_text(text: str, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The canonical members of a universe file's `text` and its set-aside lines, each `<where>:<line>: reason`."""
    members, aside = set(), []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            members.add(canonical(entry))
        except Unsupported as error:
            aside.append(f"{where}:{number}: {error}")
    return tuple(sorted(members)), tuple(aside)


def read_file(path: Path, name: str) -> UniverseFile:
    """The universe `name` from its file `path`; OSError when it cannot be read, ValueError when it is too large."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{size:,} bytes is more than a universe file may hold ({MAX_FILE_BYTES:,})")
    text = path.read_bytes().decode("utf-8-sig", errors="replace")  # a bad byte fails its own line only
    members, aside = parse_text(text, str(path))
    since, wrong = parse_since(text, str(path))
    return UniverseFile(name, path, members, aside + wrong, since)


def read_folder(folder: str | os.PathLike) -> Folder:
    """Every `<name>.txt` of `folder` (none when the folder does not exist). Hidden files and files not ending in
    `.txt` are not universes and are skipped; a `.txt` whose stem is not a universe name, or that cannot be read,
    is set aside with its reason."""
    root = Path(folder)
    if not root.is_dir():
        return Folder(root)
    universes, aside = {}, []
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or path.suffix != SUFFIX:
            continue
        name = path.name[: -len(SUFFIX)]
        if problem := name_problem(name):
            aside.append(f"{path}: not a universe file: {problem}")
            continue
        if not path.is_file():
            aside.append(f"{path}: not a universe file: not a regular file")
            continue
        try:
            universes[name] = read_file(path, name)
        except (OSError, ValueError) as error:
            aside.append(f"{path}: cannot be read: {error}")
    return Folder(root, universes, tuple(aside))
