"""Vendor tickers as Qlib symbols and feature folders.

Qlib lower-cases a symbol to find its folder (`features/<symbol lower-case>/`), reads `instruments/all.txt` with
pandas (so a symbol spelled like a missing value, `NA`, becomes NaN), and stores Windows-reserved names with a
`_qlib_` prefix (`code_to_fname`). Vendor tickers never contain `_`, so the rules below mark every change with one
and cannot collide with a real ticker. They depend on the ticker alone, never on which other tickers exist, so a
symbol's name is the same in every incremental run:

- symbols are upper-case, as Qlib's `dump_all` writes them; a lower-case letter (the vendor's share-class marks,
  `BCpC` = BC preferred C) becomes `_` + the letter: `BCpC` -> `BC_PC`, whose folder `bc_pc` no longer collides
  with `BCPC`'s `bcpc` (and `_P` always reads back as `p`);
- a name equal to a pandas missing-value token (`NA`, `NULL`, `NAN`, `NONE`, `N/A`, any case) gets a trailing `_`;
- only vendor symbols of at most `MAX_TICKER` characters have a Qlib symbol (`names.ticker_problem`): the
  letters, digits, `.`, `-` and `:` they are made of can never leave `features/` or break a line of
  `instruments/all.txt`;
- the folder of a Windows-reserved name (`CON`, `PRN`, `AUX`, `NUL`, `COM0`-`COM9`, `LPT0`-`LPT9`) is
  `_qlib_<name>`, as Qlib's reader expects.
"""

from __future__ import annotations

import re

from quant_assets.names import UnsafeName, ticker_problem

NA_TOKENS = frozenset(
    t.upper()
    for t in ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "1.#IND", "1.#QNAN", "<NA>", "N/A",
              "NA", "NULL", "NaN", "None", "nan", "null", "n/a")
)  # fmt: skip
WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"COM{i}" for i in range(10)] + [f"LPT{i}" for i in range(10)]
)
MAX_TICKER = 100  # longer tickers have no symbol (the lake's own bound is 40): every folder name stays short
_LOWER = re.compile(r"[a-z]")


def qlib_symbol(ticker: str) -> str:
    """The symbol written to `instruments/*.txt` for a vendor ticker (see the module docstring); `UnsafeName` for
    a ticker that is not a vendor symbol (`names.ticker_problem`), which must never name a folder or a line."""
    problem = ticker_problem(ticker, MAX_TICKER)
    if problem:
        raise UnsafeName(f"no Qlib symbol: {problem}")
    symbol = _LOWER.sub(lambda m: "_" + m.group(0), ticker).upper()
    if symbol.upper() in NA_TOKENS:
        symbol += "_"
    return symbol


def feature_folder(symbol: str) -> str:
    """The folder under `features/` where Qlib's reader looks for `symbol`'s bins."""
    if symbol.upper() in WINDOWS_RESERVED:
        symbol = "_qlib_" + symbol
    return symbol.lower()
