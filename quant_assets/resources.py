"""Where the zones live on disk, and which tickers the lake keeps: one resource shared by every asset."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from quant_assets.quality.gate import DEFAULT_MAX_FAILURE_SHARE


class DataZones(dg.ConfigurableResource):
    """The data folder and its zones: `raw/` (vendor files as landed), `lake/` (typed Parquet per session) and
    `quarantine/` (rows set aside). Relative paths are taken from the working directory."""

    root: str = Field(default="data", description="Folder that holds the raw, lake and quarantine zones.")
    tickers: list[str] = Field(
        default_factory=list,
        description="Keep only these tickers in the lake (exact, case-sensitive; `*` and `?` globs allowed, "
        "e.g. `O:SPY*`). Empty keeps every ticker. Raw files are always landed whole.",
    )

    @property
    def raw_root(self) -> Path:
        return Path(self.root) / "raw"

    @property
    def lake_root(self) -> Path:
        return Path(self.root) / "lake"

    @property
    def quarantine_root(self) -> Path:
        return Path(self.root) / "quarantine"


class QualitySettings(dg.ConfigurableResource):
    """Thresholds of the quality gate and the quality checks."""

    max_failure_share: float = Field(
        default=DEFAULT_MAX_FAILURE_SHARE,
        description="Share of a session's rows that may fail row rules and be quarantined; above it the whole "
        "partition is rejected (all rows quarantined, lake untouched, downstream not materialised).",
    )
    max_volume_drop: float = Field(
        default=0.5, description="Warn when a session's rows or tickers fall this share below the trailing median."
    )
    anomaly_window: int = Field(default=20, description="Earlier sessions in the trailing median.")
    price_tolerance: float = Field(
        default=0.01, description="Relative tolerance between minute-derived and day open/close in reconciliation."
    )
    volume_tolerance: float = Field(
        default=1e-6, description="Relative tolerance on 'sum of minute volume <= day volume' in reconciliation."
    )
