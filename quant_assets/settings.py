"""Settings from environment variables, each with a default that runs on a fresh clone: the one place that reads
them, for the code location (`definitions.py`) and the `quant-assets` command alike. Secrets are passed on as
`dagster.EnvVar`, so Dagster resolves them at run time and shows only the variable's name.

    QUANT_ASSETS_DATASETS     datasets to enable, comma-separated, or `all`
                              (default: stocks_daily,stocks_minute,options_daily,options_minute)
    QUANT_ASSETS_SOURCE       `local` (default) or `s3`
    QUANT_ASSETS_VENDOR_DIR   the local source folder (default: data/vendor)
    QUANT_ASSETS_DATA         the data folder with raw/, lake/, quarantine/ (default: data)
    QUANT_ASSETS_TICKERS      keep only these tickers in the lake, comma-separated, globs allowed (default: all)
    QUANT_ASSETS_START_DATE   first partition (default: 2020-01-02)
    QUANT_ASSETS_MAX_FAILURE_SHARE   share of rows that may be quarantined before a partition is rejected (0.01)
    QUANT_ASSETS_MAX_VOLUME_DROP     warn when rows or tickers drop this share below the trailing median (0.5)
    QUANT_ASSETS_FRESHNESS_DEADLINE  a session is late if not in the lake by this time (New York) on the next
                                     session (12:00)
    MASSIVE_S3_ENDPOINT       S3 endpoint (default: https://files.massive.com)
    MASSIVE_S3_BUCKET         S3 bucket (default: flatfiles)
    MASSIVE_S3_ACCESS_KEY_ID, MASSIVE_S3_SECRET_ACCESS_KEY
                              vendor S3 credentials, read through dagster.EnvVar (only with the s3 source)
"""

import datetime as dt
import os

import dagster as dg

from quant_assets.datasets import Dataset, parse_dataset_names
from quant_assets.quality.freshness import DEFAULT_DEADLINE
from quant_assets.quality.gate import DEFAULT_MAX_FAILURE_SHARE
from quant_assets.resources import DataZones, QualitySettings
from quant_assets.sources import (
    ACCESS_KEY_ENV,
    DEFAULT_BUCKET,
    DEFAULT_ENDPOINT,
    DEFAULT_VENDOR_DIR,
    SECRET_KEY_ENV,
    FlatFileSource,
    LocalFlatFiles,
    S3FlatFiles,
)


def datasets_from_env() -> list[Dataset]:
    return parse_dataset_names(os.environ.get("QUANT_ASSETS_DATASETS"))


def source_from_env() -> FlatFileSource:
    """The flat-file source that `QUANT_ASSETS_SOURCE` selects."""
    kind = os.environ.get("QUANT_ASSETS_SOURCE", "local").strip().lower()
    if kind == "local":
        return LocalFlatFiles(root=os.environ.get("QUANT_ASSETS_VENDOR_DIR", DEFAULT_VENDOR_DIR))
    if kind == "s3":
        return S3FlatFiles(
            endpoint_url=os.environ.get("MASSIVE_S3_ENDPOINT", DEFAULT_ENDPOINT),
            bucket=os.environ.get("MASSIVE_S3_BUCKET", DEFAULT_BUCKET),
            access_key_id=dg.EnvVar(ACCESS_KEY_ENV),
            secret_access_key=dg.EnvVar(SECRET_KEY_ENV),
        )
    raise ValueError(f"QUANT_ASSETS_SOURCE must be 'local' or 's3', not {kind!r}")


def quality_from_env() -> QualitySettings:
    return QualitySettings(
        max_failure_share=float(os.environ.get("QUANT_ASSETS_MAX_FAILURE_SHARE", DEFAULT_MAX_FAILURE_SHARE)),
        max_volume_drop=float(os.environ.get("QUANT_ASSETS_MAX_VOLUME_DROP", "0.5")),
    )


def zones_from_env() -> DataZones:
    tickers = [t.strip() for t in os.environ.get("QUANT_ASSETS_TICKERS", "").split(",") if t.strip()]
    return DataZones(root=os.environ.get("QUANT_ASSETS_DATA", "data"), tickers=tickers)


def freshness_deadline_from_env() -> dt.time:
    return dt.time.fromisoformat(os.environ.get("QUANT_ASSETS_FRESHNESS_DEADLINE", DEFAULT_DEADLINE.isoformat("minutes")))
