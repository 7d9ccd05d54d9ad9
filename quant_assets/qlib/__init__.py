"""Microsoft Qlib provider directories (see ../shared/reference/qlib-format.md): symbol names Qlib can read back
(`symbols.py`) and `.bin` files updated one calendar slot at a time (`bins.py`). Pure modules: no Dagster import.

Work in progress (issue 15): the Dagster assets `qlib_day` / `qlib_1min`, the calendar and instruments files, the
publication gate and the read-back tests with pyqlib come next.
"""
