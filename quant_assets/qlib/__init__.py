"""Microsoft Qlib provider directories (see ../shared/reference/qlib-format.md): symbol names Qlib can read back
(`symbols.py`), `.bin` files updated one calendar slot at a time (`bins.py`), and a directory written a session at a
time with fixed calendar indexes (`directory.py`). Pure modules: no Dagster import.

Work in progress (issue 15): the Dagster assets `qlib_day` / `qlib_1min`, the fields (adjusted prices, factor,
change, features), the publication gate, the read-back tests with pyqlib and the benchmark come next.
"""
