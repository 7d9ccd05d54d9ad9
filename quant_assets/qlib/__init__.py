"""Microsoft Qlib provider directories (see ../shared/reference/qlib-format.md): symbol names Qlib reads back
(`symbols.py`), fixed calendar slots for day and 1min (`calendars.py`), `.bin` files written a block of slots at a
time (`bins.py`), a directory written a range of sessions at a time in any order (`directory.py`), the fields in
Qlib's conventions (`fields.py`) and the publication gate (`health.py`). Pure modules: no Dagster import; the
assets are in `defs/qlib.py`.
"""
