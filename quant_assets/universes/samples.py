"""Sample universe files for the synthetic sample data (`quant-assets sample`): a watchlist, the active names of a
portfolio and two indices, written only where no file of that name exists yet (a user's file is never replaced)."""

from __future__ import annotations

import os
from pathlib import Path

from quant_assets.lake import replace_bytes
from quant_assets.providers.symbols import to_bloomberg
from quant_assets.sample import SIZES, Universe
from quant_assets.universes.files import SUFFIX

WATCHLIST_SIZE = 40
ACTIVE_SIZE = 10
BLOOMBERG_EXAMPLE = "BRK.B"  # written as Bloomberg does, to show that any form `canonical` reads will do
INDICES = ("I:SPX", "I:NDX")
HEADER = (
    "# The {name} universe: one symbol per line, '#' starts a comment. Any common form works (BRK.B, BRK-B,\n"
    "# 'BRK/B US Equity', AAPL:US, 'SPX Index', ^GSPC); symbols are stored as the flat files write them.\n"
    "# Edit freely: `quant-assets universes` records each change as a new version, from when it is seen.\n"
    "# The members below count from this date (the sample data's first session), not from today:\n"
    "# since: {since}\n"
)
SINCE = "2026-01-02"


def sample_universes(seed: int = 7, size: str = "small") -> dict[str, list[str]]:
    """The lines of each sample universe file for the sample universe of `seed` and `size`."""
    tickers = Universe(seed, SIZES[size]).stock_tickers
    watchlist = [*dict.fromkeys(["AAPL", "BRK.B", "SPY", *tickers])][:WATCHLIST_SIZE]
    active = [*watchlist[:3], *watchlist[3::4]][:ACTIVE_SIZE]
    shown = [to_bloomberg(t) if t == BLOOMBERG_EXAMPLE else t for t in watchlist]
    return {"watchlist": sorted(shown), "active": sorted(active), "indices": list(INDICES)}


def write_sample_universes(folder: str | os.PathLike, seed: int = 7, size: str = "small") -> list[Path]:
    """Write the sample universe files into `folder` where none of that name exists; returns the files written."""
    written = []
    for name, lines in sample_universes(seed, size).items():
        path = Path(folder) / f"{name}{SUFFIX}"
        if path.exists():
            continue
        replace_bytes(path, (HEADER.format(name=name, since=SINCE) + "".join(f"{line}\n" for line in lines)).encode())
        written.append(path)
    return written
