"""Reference data and corporate actions: versioned splits, dividends and tickers (`versions.py`), and the
adjustment factors derived from them (`factors.py`). Pure modules: no Dagster import."""
