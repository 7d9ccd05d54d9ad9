"""The Dagster wiring, one module per layer, each returning a `dg.Definitions` that `definitions.py` merges.

The data work itself lives in the pure modules (`raw`, `ingest`, `lake`, `quality/`); these modules only take the
sessions from the partitions, call them, and report metadata and check results.
"""
