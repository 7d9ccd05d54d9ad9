"""Enriched features over the lake and the adjustment factors: daily features per ticker and session (`daily.py`),
computed over a gap-aware session grid so that every window means the same thing on the first session of a
backfill and in a one-day incremental run. Pure modules: no Dagster import; `defs/features.py` wires them."""
