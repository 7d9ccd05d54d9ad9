"""The code location: every asset, check, job, schedule and resource, assembled in one place from the layers'
fragments (`defs/`) with `Definitions.merge`, and global policies applied once.

Settings come from environment variables; `settings.py` reads them and lists them all.
"""

from __future__ import annotations

import dagster as dg

from quant_assets.datasets import Dataset, parse_dataset_names
from quant_assets.defs.catalog import catalog_defs
from quant_assets.defs.features import feature_layers, features_defs
from quant_assets.defs.ingest import chain_keys, ingest_defs
from quant_assets.defs.operations import operations_defs
from quant_assets.defs.providers import provider_resources
from quant_assets.defs.qlib import qlib_defs
from quant_assets.defs.quality import quality_defs
from quant_assets.defs.reference import reference_defs
from quant_assets.defs.resources import resources_from
from quant_assets.defs.rest import rest_defs
from quant_assets.defs.sensors import sensor_defs
from quant_assets.defs.service import service_defs
from quant_assets.defs.universes import universes_defs
from quant_assets.settings import Settings, from_env


def build_definitions(datasets: list[Dataset], settings: Settings) -> dg.Definitions:
    """The session chains (raw_, lake_ assets and their checks) of `datasets`, one ingest job and schedule per
    calendar, the quality checks, coverage ledger and their jobs, the reference data and adjustment factors, the
    enriched features, the Qlib directories, the sensors that watch the source and failed runs, and the resources
    `settings` describe."""
    quality, freshness_checks = quality_defs(datasets, settings.freshness_deadline)
    enriched_layers = feature_layers(datasets)
    reference, rest_checks = reference_defs(datasets, settings.rest_configured)
    layers = dg.Definitions.merge(
        # Checks that run on their own schedule (freshness) or need a provider (REST) stay out of the ingest jobs.
        ingest_defs(datasets, enriched_layers, excluded_checks=[*freshness_checks, *rest_checks]),
        quality,
        reference,
        features_defs(datasets, settings.daily_bars),
        qlib_defs(datasets, settings.qlib_features, universes=True, bars=settings.daily_bars),
        rest_defs(settings.daily_bars_providers),
        universes_defs(settings),
        service_defs(),
        operations_defs(),
    )
    written = [k for a in layers.assets or [] for k in (a.keys if isinstance(a, dg.AssetsDefinition) else [a.key])]
    zones = [k for k in written if not k.to_user_string().startswith("qlib_")]  # the catalog's zones, not Qlib's
    return dg.Definitions.merge(
        layers,
        catalog_defs(zones),
        sensor_defs(
            chain_keys(datasets, enriched_layers),
            settings.gap_window,
            settings.gap_max_sessions,
            settings.sensors_running,
        ),
        dg.Definitions(
            resources={**resources_from(settings), **provider_resources(settings)},
            # One process per run: steps are polars-bound and use every core already, while a process per step
            # would pay the seconds of importing Dagster for each asset.
            executor=dg.in_process_executor,
            loggers={"console": dg.colored_console_logger.configured({"log_level": "INFO"})},
        ),
    )


settings = from_env()
defs = build_definitions(parse_dataset_names(settings.datasets), settings)
