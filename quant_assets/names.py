"""Names that come from data, made safe: the one identity rule for vendor symbols, the one way a name from data
becomes a path, and the one check of a line of a text index.

Everything a vendor sends is data. A ticker (or an id) becomes a folder or a file name only through `child` (or `joined`, its string form), and a
line of a text index (Qlib's instruments and calendars) only through `index_line`; a symbol is recognised by the
one rule `ticker_problem`, which the flat-file gate (`quality/rules.py`), the REST providers and the Qlib writer
all use. A name that cannot be made safe is a row defect with its reason (`UnsafeName`), never a path.

The ticker alphabet, from the vendor's flat files (../shared/reference/polygon-flat-files.md): letters (a
lower-case letter only after the first character: the share-class marks of `BApA`, `NMCOr`, `BCATrw`), digits,
`.` between parts (`BRK.B`, `NE.WS.A`), `-` between parts (`X:BTC-USD`, `C:EUR-USD` in the files), an optional
market prefix `X:` (crypto), `C:` (forex), `I:` (indices) or `O:` (OCC options, `O:SPY230327P00390000`), and at most
`max_length` characters (40 by default; OCC tickers are 21). Nothing else: no `/`, `\\`, spaces, quotes, control
characters, and no name made only of dots.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import polars as pl

from quant_assets.settings import DEFAULT_MAX_TICKER_LENGTH

TICKER_PATTERN = r"(?:[XCIO]:)?[A-Z0-9][A-Za-z0-9]*(?:[.\-][A-Za-z0-9]+)*"
TICKER_RULE = "letters, digits, '.' or '-' between parts, an optional X:/C:/I:/O: prefix"
NAME_MAX = 255  # bytes of one path component on Linux and macOS filesystems
_TICKER = re.compile(TICKER_PATTERN)


class UnsafeName(ValueError):
    """A name from data that cannot become a path component or a line of a text index."""


def ticker_problem(ticker: object, max_length: int = DEFAULT_MAX_TICKER_LENGTH) -> str | None:
    """Why `ticker` is not a vendor symbol, or None when it is one (see the module docstring)."""
    if not isinstance(ticker, str):
        return f"ticker {shown(ticker)} is not a string"
    if len(ticker) > max_length:
        return f"ticker of {len(ticker):,} characters is longer than {max_length}"
    if not _TICKER.fullmatch(ticker):
        return f"ticker {shown(ticker)} is not a vendor symbol ({TICKER_RULE})"
    return None


def ticker_valid(column: str = "ticker", max_length: int = DEFAULT_MAX_TICKER_LENGTH) -> pl.Expr:
    """True where `column` is a vendor symbol: `ticker_problem` as a polars expression (null stays null)."""
    ticker = pl.col(column)
    return (ticker.str.len_chars() <= max_length) & ticker.str.contains(f"^{TICKER_PATTERN}$")


def shown(value: object, limit: int = 60) -> str:
    """`value` for a message: its repr (control characters escaped), cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def component(name: str) -> str:
    """`name` if it is one safe path component: not empty, not `.` or `..`, no `/`, `\\`, NUL or other control
    characters, at most `NAME_MAX` bytes; `UnsafeName` otherwise."""
    if not isinstance(name, str) or not name:
        raise UnsafeName(f"{shown(name)} is not a file name")
    if name in (".", "..") or "/" in name or "\\" in name or not name.isprintable():
        raise UnsafeName(f"{shown(name)} is not a single safe file name (no '/', '\\', '..' or control characters)")
    if len(name.encode()) > NAME_MAX:
        raise UnsafeName(f"a file name of {len(name.encode()):,} bytes ({shown(name)}) is longer than {NAME_MAX}")
    return name


def child(root: str | os.PathLike, *names: str) -> Path:
    """`root / names[0] / names[1] ...`, each name one safe component (`component`), and the result still inside
    `root` once resolved: the one way a name from data becomes a path (`joined` is the same as a string)."""
    return Path(joined(os.fspath(root), *names))


def joined(root: str, *names: str) -> str:
    """`child` as a string, for the hot paths (a Qlib write makes one path per symbol, 12,000 of them).

    With no `/` and no `..` in any name, only a symbolic link already under `root` can lead out of it, so the link
    is what is resolved and checked: one `lstat` per name, not a `realpath` of the whole path."""
    path = root
    for name in names:
        path = f"{path}/{component(name)}"
        if os.path.islink(path):
            inside, resolved = os.path.realpath(root), os.path.realpath(path)
            if os.path.commonpath([inside, resolved]) != inside:
                raise UnsafeName(f"{'/'.join(names)} resolves to {resolved}, outside {inside}")
    return path


def index_line(*fields: str) -> str:
    """One line of a tab-separated text index (with its newline): a field with a tab, a newline or any other
    character that is not printable (which `str.splitlines` or pandas would split on) raises `UnsafeName`."""
    for value in fields:
        if not value.isprintable():
            raise UnsafeName(f"{shown(value)} cannot be a field of a text index: it holds a control character")
    return "\t".join(fields) + "\n"
