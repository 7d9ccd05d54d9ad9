"""The code location in process: what `definitions.py` assembles from the settings, the schedules' requests, the
settings' parsing, and that pure modules stay free of Dagster."""

import datetime as dt
import subprocess
import sys

import dagster as dg
import pytest

from quant_assets.datasets import DATASETS, parse_dataset_names
from quant_assets.definitions import build_definitions
from quant_assets.defs.service import JOBS, SERVICE_DATASETS
from quant_assets.settings import Settings, from_env


def definitions(env: dict) -> dg.Definitions:
    settings = from_env(env)
    return build_definitions(parse_dataset_names(settings.datasets), settings)


def test_the_default_code_location():
    defs = definitions({})
    assert defs.resources["zones"].root == "data" and defs.resources["flatfiles"].root == "data/vendor"
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == {"coverage", "catalog", "rest_stocks_daily", *REFERENCE, *ENRICHED, *QLIB, *SERVICE_DATASETS} | {
        f"{layer}_{d}"
        for d in ("stocks_daily", "stocks_minute", "options_daily", "options_minute")
        for layer in ("raw", "lake")
    }
    jobs = {j.name for j in repo.get_all_jobs()}
    assert jobs >= {
        "ingest_us_equities",
        "freshness_checks",
        "refresh_coverage",
        "refresh_reference",
        "enrich_us_equities",
        "publish_qlib",
        "fetch_rest_daily",
    }
    assert "reconcile_with_rest" not in jobs  # no provider configured: no check that would call the vendor keyless
    assert {s.name for s in repo.schedule_defs} == {
        "ingest_us_equities_daily",
        "freshness_checks_hourly",
        "refresh_coverage_daily",
        "refresh_reference_daily",
        "enrich_us_equities_daily",
        "publish_qlib_daily",
    } | {f"{job.name}_schedule" for job in JOBS}
    assert jobs >= {job.name for job in JOBS} | {"refresh_catalog"}
    job = repo.get_job("ingest_us_equities")
    checks = {k.name for k in job.asset_layer.asset_graph.asset_check_keys}
    assert "fresh" not in checks and {"in_session", "complete_values", "reconciles_with_stocks_minute"} <= checks
    assert {n.name for n in job.graph.node_defs} == {
        "us_equities_sessions",
        "lake_stocks_daily_reconciles_with_stocks_minute",
        "lake_options_daily_reconciles_with_options_minute",
    }


def test_the_day_bars_of_the_features_come_from_rest_when_configured():
    def enriched_deps(env):
        graph = definitions(env).get_repository_def().asset_graph
        return {k.to_user_string() for k in graph.get(dg.AssetKey("enriched_stocks_daily")).parent_keys}

    assert "lake_stocks_daily" in enriched_deps({}) and "rest_stocks_daily" not in enriched_deps({})
    rest = enriched_deps({"QUANT_ASSETS_DAILY_BARS": "rest", "QUANT_ASSETS_DATASETS": "stocks_minute"})
    assert "rest_stocks_daily" in rest and "lake_stocks_daily" not in rest
    defs = definitions({"TIINGO_API_KEY": "k", "QUANT_ASSETS_DAILY_BARS_PROVIDERS": "yahoo,tiingo"})
    assert isinstance(defs.resources["tiingo"].api_key, dg.EnvVar) and defs.resources["tiingo"].configured
    assert defs.resources["yahoo"].configured and not definitions({}).resources["tiingo"].configured
    with pytest.raises(ValueError, match="QUANT_ASSETS_DAILY_BARS_PROVIDERS: unknown provider 'bloomberg'"):
        definitions({"QUANT_ASSETS_DAILY_BARS_PROVIDERS": "tiingo,bloomberg"})


def test_sensors_automation_queue_and_pools(tmp_path, monkeypatch):
    defs = definitions({})
    repo = defs.get_repository_def()
    sensors = {s.name: s for s in repo.sensor_defs}
    on = dg.DefaultSensorStatus.RUNNING
    for name in ("ingest_us_equities_new_files", "ingest_us_equities_gaps", "run_failure_alerts", "dead_runs"):
        assert sensors[name].default_status == on and sensors[name].description
    stopped = definitions({"QUANT_ASSETS_SENSORS": "stopped"}).get_repository_def()
    assert stopped.get_sensor_def("ingest_us_equities_new_files").default_status == dg.DefaultSensorStatus.STOPPED
    graph = repo.asset_graph
    for key in ("enriched_stocks_daily", "qlib_day", "qlib_1min"):
        assert graph.get(dg.AssetKey(key)).automation_condition is not None
    # the vendor pools: the session chains and the REST tables; dagster.yaml limits each to one at a time
    assert graph.get(dg.AssetKey("raw_stocks_daily")).pools == {"vendor_flatfiles"}
    assert graph.get(dg.AssetKey("reference_splits")).pools == {"vendor_rest"}
    from quant_assets_tests.conftest import PROJECT

    (tmp_path / "dagster.yaml").write_text((PROJECT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1 and config.run_queue_config.max_concurrent_runs == 2


def test_with_a_rest_provider_the_reconciliation_check_has_its_own_job_and_stays_out_of_ingest():
    defs = definitions({"MASSIVE_API_BASE_URL": "http://127.0.0.1:8765", "MASSIVE_API_KEY": "pk_secret_value"})
    repo = defs.get_repository_def()
    reconcile = repo.get_job("reconcile_with_rest")
    assert {k.name for k in reconcile.asset_layer.asset_graph.asset_check_keys} == {"reconciles_with_rest_daily"}
    ingest = repo.get_job("ingest_us_equities")
    assert "lake_stocks_daily_reconciles_with_rest_daily" not in {n.name for n in ingest.graph.node_defs}
    assert "reconcile_with_rest_daily" in {s.name for s in repo.schedule_defs}
    massive = defs.resources["massive"]
    assert massive.base_url == "http://127.0.0.1:8765" and "pk_secret_value" not in repr(massive)
    assert isinstance(massive.api_key, dg.EnvVar) and massive.api_key.env_var_name == "MASSIVE_API_KEY"


def test_every_dataset_and_the_s3_source():
    defs = definitions({"QUANT_ASSETS_DATASETS": "all", "QUANT_ASSETS_SOURCE": "s3", "MASSIVE_S3_BUCKET": "b"})
    repo = defs.get_repository_def()
    assert {j.name for j in repo.get_all_jobs()} >= {
        "ingest_us_equities",
        "ingest_crypto",
        "ingest_forex",
        "ingest_indices",
    }
    assert (
        len(repo.asset_graph.get_all_asset_keys())
        == 2 * len(DATASETS) + 2 + len(REFERENCE) + len(ENRICHED) + len(QLIB) + len(SERVICE_DATASETS) + 1
    )  # the catalog
    source = defs.resources["flatfiles"]
    assert source.bucket == "b" and "MASSIVE_S3_SECRET_ACCESS_KEY" not in repr(source)


def test_the_daily_schedule_requests_the_previous_session():
    repo = definitions({}).get_repository_def()
    schedule = repo.get_schedule_def("ingest_us_equities_daily")
    # Tuesday 17 February 2026 at noon: Monday was Presidents' Day, so the previous session is Friday the 13th.
    when = dt.datetime(2026, 2, 17, 12, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    with dg.instance_for_test() as instance:
        [request] = schedule.evaluate_tick(
            dg.build_schedule_context(instance, scheduled_execution_time=when, repository_def=repo)
        ).run_requests
    assert request.partition_key == "2026-02-13" and request.run_key == "2026-02-13"
    assert schedule.cron_schedule == "0 12 * * *" and schedule.execution_timezone == "America/New_York"


def test_settings_are_read_in_one_place_with_clear_errors():
    settings = from_env({"QUANT_ASSETS_TICKERS": "AAPL, BRK.B,,O:SPY*", "QUANT_ASSETS_MAX_FAILURE_SHARE": "0.05"})
    assert settings.tickers == ["AAPL", "BRK.B", "O:SPY*"] and settings.max_failure_share == 0.05
    assert from_env({}) == Settings()
    with pytest.raises(ValueError, match="QUANT_ASSETS_SOURCE must be 'local' or 's3', not 'ftp'"):
        from_env({"QUANT_ASSETS_SOURCE": "ftp"})
    with pytest.raises(ValueError, match="QUANT_ASSETS_MAX_FAILURE_SHARE must be a number, not 'lots'"):
        from_env({"QUANT_ASSETS_MAX_FAILURE_SHARE": "lots"})


REFERENCE = {"reference_splits", "reference_dividends", "reference_tickers", "adjustment_factors"}
QLIB = {"qlib_day", "qlib_1min", "qlib_day_restated"}
ENRICHED = {
    "enriched_stocks_daily",
    "enriched_stocks_daily_restated",
    "enriched_stocks_minute",
    "enriched_options_daily",
}
PURE = [
    "sessions",
    "settings",
    "datasets",
    "errors",
    "flatfiles",
    "lake",
    "raw",
    "ingest",
    "outcomes",
    "plan",
    "progress",
    "tables",
    "quality.rules",
    "quality.gate",
    "quality.coverage",
    "quality.anomaly",
    "quality.reconcile",
    "quality.freshness",
    "quality.schemas",
    "status",
    "providers.client",
    "providers.state",
    "providers.massive",
    "providers.tiingo",
    "providers.yahoo",
    "providers.finnhub",
    "providers.alphavantage",
    "samples.finnhub",
    "samples.alphavantage",
    "providers.symbols",
    "providers.hybrid",
    "providers.health",
    "providers.landing",
    "providers.cache",
    "providers.typed",
    "universes",
    "samples.server",
    "samples.history",
    "samples.tiingo",
    "samples.yahoo",
    "bench_providers",
    "reference.versions",
    "reference.factors",
    "reference.reconcile",
    "reference.tickers",
    "features.daily",
    "features.enrich",
    "features.intraday",
    "features.restate",
    "qlib.symbols",
    "qlib.bins",
    "qlib.directory",
    "qlib.calendars",
    "qlib.fields",
    "qlib.health",
    "sample_rest",
    "clock",
    "catalog",
    "service.summary",
    "service.quotes",
    "service.news",
    "service.fundamentals",
    "service.indicators",
    "samples.alphavantage",
]


def test_pure_modules_do_not_import_dagster():
    code = f"import sys\nfor m in {PURE!r}: __import__('quant_assets.' + m)\nprint('dagster' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_declarative_automation_is_on_by_default_and_follows_the_sensors_setting():
    running = definitions({}).resolve_sensor_def("default_automation_condition_sensor")
    assert isinstance(running, dg.AutomationConditionSensorDefinition)
    assert running.default_status == dg.DefaultSensorStatus.RUNNING
    stopped = definitions({"QUANT_ASSETS_SENSORS": "stopped"}).resolve_sensor_def("default_automation_condition_sensor")
    assert stopped.default_status == dg.DefaultSensorStatus.STOPPED


def test_runs_without_the_jobs_runtime_tag_get_the_same_limit():
    """An asset backfill's runs (the UI launches every backfill as one) carry no job tags: the instance's run
    monitoring gives them the ingest jobs' `dagster/max_runtime`, on SQLite and on Postgres."""
    import yaml

    from quant_assets.defs.ingest import MAX_RUNTIME_SECONDS
    from quant_assets_tests.conftest import PROJECT

    for name in ("dagster.yaml", "deploy/dagster.postgres.yaml"):
        monitoring = yaml.safe_load((PROJECT / name).read_text())["run_monitoring"]
        assert monitoring["enabled"] and monitoring["max_runtime_seconds"] == MAX_RUNTIME_SECONDS, name
