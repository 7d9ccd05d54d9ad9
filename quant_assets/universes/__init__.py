"""Named universes of symbols (`watchlist`, `active`, `indices`, ...): plain text files that users edit without
touching code or restarting anything, recorded as point-in-time versions. Pure: no Dagster import
(`defs/universes.py` is the Dagster side).

- `files`: the folder (`QUANT_ASSETS_UNIVERSES`, default data/universes), one `<name>.txt` per universe, read into
  canonical symbols; lines that are not symbols set aside with `file:line: reason`.
- `versions`: `Universes(folder, data)`: `record` writes a version for each changed universe under
  `<data>/reference/universes/<name>/`; `current`, `history`, `members_as_of`, `spans`, `changes` answer from them.
- `samples`: the sample files `quant-assets sample` writes.
- `report`: what `quant-assets universes` prints.

Qlib's instruments file of a universe is written by `qlib.directory.write_universe_instruments` from `day_spans`.
"""

from quant_assets.universes.files import (
    NAME_PATTERN,
    Folder,
    UniverseError,
    UniverseFile,
    checked_name,
    name_problem,
    parse_text,
    read_folder,
)
from quant_assets.universes.samples import sample_universes, write_sample_universes
from quant_assets.universes.versions import Change, Recorded, Span, Universes, Version, changes, utc, version_id

__all__ = [
    "NAME_PATTERN",
    "Change",
    "Folder",
    "Recorded",
    "Span",
    "UniverseError",
    "UniverseFile",
    "Universes",
    "Version",
    "changes",
    "checked_name",
    "name_problem",
    "parse_text",
    "read_folder",
    "sample_universes",
    "utc",
    "version_id",
    "write_sample_universes",
]
