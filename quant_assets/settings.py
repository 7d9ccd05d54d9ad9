"""Settings from environment variables, each with a default that runs on a fresh clone: the one place that reads
them and the one place each default is defined, for the code location and the `quant-assets` command alike.

    QUANT_ASSETS_DATASETS     datasets to enable, comma-separated, or `all`
                              (default: stocks_daily,stocks_minute,options_daily,options_minute)
    QUANT_ASSETS_SOURCE       `local` (default) or `s3`
    QUANT_ASSETS_VENDOR_DIR   the local source folder (default: data/vendor)
    QUANT_ASSETS_DATA         the data folder with raw/, lake/, quarantine/ (default: data)
    QUANT_ASSETS_MIN_FREE_MB  a run fails at its start when the data folder's disk has less free space than this
                              (MiB; 0: no minimum; default: 100)
    QUANT_ASSETS_TICKERS      keep only these tickers in the lake, comma-separated, globs allowed (default: all)
    QUANT_ASSETS_START_DATE   first partition (default: 2026-01-02, the year of the demo's sample month)
    QUANT_ASSETS_END_DATE     last partition (default: none, the partitions run to the session in progress;
                              `make demo` and `make dev` set it and the start to the sample month)
    QUANT_ASSETS_MAX_FAILURE_SHARE   share of rows that may be quarantined before a partition is rejected (0.01)
    QUANT_ASSETS_MAX_VOLUME_DROP     warn when rows or tickers drop this share below the trailing median (0.5)
    QUANT_ASSETS_FRESHNESS_DEADLINE  a session is late if not in the lake by this time (New York) on the next
                                     session (12:00)
    QUANT_ASSETS_BATCH_MB     inflated text read, checked and written per batch (32)
    QUANT_ASSETS_MAX_ROWS     refuse a file with more rows than this (default per frequency: 10M day, 20M minute,
                              20G tick; see flatfiles.DEFAULT_LIMITS)
    QUANT_ASSETS_MAX_INFLATED_GB     refuse a file that inflates to more than this (default per frequency: 2 day,
                                     4 minute, 1024 tick)
    QUANT_ASSETS_MAX_TICKER_LENGTH   a longer ticker is a row defect, as one that is not a vendor symbol (40)
    QUANT_ASSETS_QLIB_FEATURES       enriched feature columns also written to qlib_day, comma-separated, e.g.
                                     `return_5,rsi_14` (default: none; see `quant-assets status` for the columns)
    QUANT_ASSETS_SENSORS      `running` (default) or `stopped`: how the new-file and gap sensors start in a new
                              instance (the UI's Automation page turns them on and off afterwards)
    QUANT_ASSETS_GAP_WINDOW   sessions back from the newest that the gap sensor looks at (30)
    QUANT_ASSETS_GAP_MAX_SESSIONS    sessions per run the gap sensor requests at most (10)
    QUANT_ASSETS_ALERT_WEBHOOK_URL   post run-failure alerts to this URL as JSON: read only through
                                     `dagster.EnvVar`, and only when set (default: alerts are only written under
                                     data/alerts/)
    QUANT_ASSETS_DASK_ADDRESS a Dask scheduler (tcp://host:8786) whose workers build the sessions of a session
                              chain's run (default: none, the run's own process builds them; see
                              deploy/README.md)
    QUANT_ASSETS_UNIVERSES    the folder of named universes, one `<name>.txt` of symbols each (watchlist.txt,
                              active.txt, ...), edited by hand; versions are recorded under
                              <data>/reference/universes/ (default: data/universes)
    QUANT_ASSETS_DEBUG        1: the `quant-assets` command shows tracebacks instead of one line (default: off)
    QUANT_ASSETS_UI_TRUSTED_HOSTS    host names (host or host:port, comma-separated) that `quant-assets ui` answers
                                     besides 127.0.0.1, localhost and its --host, e.g. the name of a proxy in
                                     front of it (default: none)
    MASSIVE_S3_ENDPOINT       S3 endpoint (default: https://files.massive.com)
    MASSIVE_S3_BUCKET         S3 bucket (default: flatfiles)
    MASSIVE_S3_ACCESS_KEY_ID, MASSIVE_S3_SECRET_ACCESS_KEY
                              vendor S3 credentials: only their names are here; the code location reads them
                              through `dagster.EnvVar` (only with the s3 source)
    MASSIVE_API_BASE_URL      the Massive REST API (default: https://api.massive.com)
    MASSIVE_API_KEY           the REST API key: read only through `dagster.EnvVar`, and only when set (the local
                              provider server of the demo needs none)
    TIINGO_API_BASE_URL, FINNHUB_API_BASE_URL, ALPHAVANTAGE_API_BASE_URL, YAHOO_CHART_BASE_URL
                              the other REST providers (defaults: their public hosts; the demo and tests point
                              them at local servers)
    TIINGO_API_KEY, FINNHUB_API_KEY, ALPHAVANTAGE_API_KEY
                              their keys: read only through `dagster.EnvVar`, and only when set (Yahoo's chart
                              endpoint takes none). A provider is used when its key or a base URL of one's own is
                              set (Yahoo: always)
    QUANT_ASSETS_DAILY_BARS   where `enriched_stocks_daily` (and so `qlib_day`) takes its day bars: `flatfiles`
                              (default: lake_stocks_daily) or `rest` (rest_stocks_daily, for a user without a
                              flat-file subscription)
    QUANT_ASSETS_DAILY_BARS_PROVIDERS  the providers of rest_stocks_daily, in order, cheapest first after the cache
                              (default: tiingo,massive,yahoo)
    QUANT_ASSETS_AUDIT_RETENTION_DAYS  days of providers' raw responses kept in the audit zone
                              (data/raw/providers/; default 90; 0 keeps them all); pruned after each provider job
    QUANT_ASSETS_PROVIDER_LIMITS  a provider plan's limits and prices over the documented defaults, as
                              `provider.field=value` pairs, comma-separated (fields: per_second, per_minute, per_hour,
                              per_day, cost_per_request, daily_budget, max_wait_seconds; `none` removes a rate or
                              the budget),
                              e.g. `tiingo.per_hour=10000,alphavantage.daily_budget=none`
    QUANT_ASSETS_NOW          fixes the provider jobs' clock (an ISO 8601 time): budgets, cursors, as-of versions
                              and snapshot slots read it (tests, replays); unset: the real time

A pure module: no Dagster import; `defs/resources.py` turns these settings into resources.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_DATA = "data"
DEFAULT_VENDOR_DIR = "data/vendor"
DEFAULT_UNIVERSES_DIR = "data/universes"
# The REST providers besides Massive: (base URL variable, default base URL, key variable or None).
REST_PROVIDERS: dict[str, tuple[str, str, str | None]] = {
    "tiingo": ("TIINGO_API_BASE_URL", "https://api.tiingo.com", "TIINGO_API_KEY"),
    "finnhub": ("FINNHUB_API_BASE_URL", "https://finnhub.io", "FINNHUB_API_KEY"),
    "alphavantage": ("ALPHAVANTAGE_API_BASE_URL", "https://www.alphavantage.co", "ALPHAVANTAGE_API_KEY"),
    "yahoo": ("YAHOO_CHART_BASE_URL", "https://query1.finance.yahoo.com", None),
}
DAILY_BARS_SOURCES = ("flatfiles", "rest")
DEFAULT_DAILY_BARS_PROVIDERS = ("tiingo", "massive", "yahoo")
DEFAULT_AUDIT_RETENTION_DAYS = 90
LIMIT_FIELDS = ("per_second", "per_minute", "per_hour", "per_day", "cost_per_request", "daily_budget",
                "max_wait_seconds")  # fmt: skip
UNIVERSES_ENV = "QUANT_ASSETS_UNIVERSES"
# The sample data is February 2026: from here its month is a visible part of the partition bar. A real history
# sets QUANT_ASSETS_START_DATE to its first session.
DEFAULT_START = "2026-01-02"
DEFAULT_MAX_FAILURE_SHARE = 0.01
DEFAULT_MAX_VOLUME_DROP = 0.5
DEFAULT_DEADLINE = dt.time(12, 0)
DEFAULT_BATCH_MB = 32
DEFAULT_MAX_TICKER_LENGTH = 40  # OCC option tickers are 21 characters; a 100,000-character ticker is a defect
DEFAULT_ENDPOINT = "https://files.massive.com"
DEFAULT_BUCKET = "flatfiles"
ACCESS_KEY_ENV = "MASSIVE_S3_ACCESS_KEY_ID"
SECRET_KEY_ENV = "MASSIVE_S3_SECRET_ACCESS_KEY"
DEFAULT_API_URL = "https://api.massive.com"
API_KEY_ENV = "MASSIVE_API_KEY"
WEBHOOK_ENV = "QUANT_ASSETS_ALERT_WEBHOOK_URL"
DEFAULT_GAP_WINDOW = 30
DEFAULT_GAP_MAX_SESSIONS = 10
UI_TRUSTED_HOSTS_ENV = "QUANT_ASSETS_UI_TRUSTED_HOSTS"
DATA_ENV = "QUANT_ASSETS_DATA"
MIN_FREE_ENV = "QUANT_ASSETS_MIN_FREE_MB"
# A run starting below this much free space (MiB) would fail in the middle of a write: a minute session's raw file
# and lake partition take tens of MiB, a tick session's gigabytes.
DEFAULT_MIN_FREE_MB = 100


@dataclass(frozen=True)
class Settings:
    """Every setting of the project, as read from the environment."""

    datasets: str | None = None  # parsed by datasets.parse_dataset_names
    source: str = "local"
    vendor_dir: str = DEFAULT_VENDOR_DIR
    data: str = DEFAULT_DATA
    min_free_mb: int = DEFAULT_MIN_FREE_MB
    tickers: list[str] = field(default_factory=list)
    start_date: str = DEFAULT_START
    end_date: str | None = None  # the last partition; None: through the session in progress
    max_failure_share: float = DEFAULT_MAX_FAILURE_SHARE
    max_volume_drop: float = DEFAULT_MAX_VOLUME_DROP
    freshness_deadline: dt.time = DEFAULT_DEADLINE
    batch_mb: int = DEFAULT_BATCH_MB
    max_rows: int = 0  # 0: the dataset's default
    max_inflated_gb: float = 0
    max_ticker_length: int = DEFAULT_MAX_TICKER_LENGTH
    debug: bool = False
    s3_endpoint: str = DEFAULT_ENDPOINT
    s3_bucket: str = DEFAULT_BUCKET
    api_base_url: str = DEFAULT_API_URL
    dask_address: str = ""  # empty: the run's process builds the sessions
    qlib_features: list[str] = field(default_factory=list)  # enriched columns also written to qlib_day
    api_key_set: bool = False  # whether MASSIVE_API_KEY is set; its value is read only through dagster.EnvVar
    sensors_running: bool = True
    gap_window: int = DEFAULT_GAP_WINDOW
    gap_max_sessions: int = DEFAULT_GAP_MAX_SESSIONS
    webhook_set: bool = False  # whether QUANT_ASSETS_ALERT_WEBHOOK_URL is set; read only through dagster.EnvVar
    ui_trusted_hosts: list[str] = field(default_factory=list)  # hosts `quant-assets ui` answers besides its own
    universes_dir: str = DEFAULT_UNIVERSES_DIR  # one <name>.txt of symbols per universe
    provider_urls: dict[str, str] = field(default_factory=lambda: {n: v[1] for n, v in REST_PROVIDERS.items()})
    provider_keys_set: frozenset[str] = frozenset()  # providers whose key variable is set (values via EnvVar only)
    daily_bars: str = "flatfiles"  # where enriched_stocks_daily takes its bars: flatfiles or rest
    daily_bars_providers: tuple[str, ...] = DEFAULT_DAILY_BARS_PROVIDERS
    audit_retention_days: int = DEFAULT_AUDIT_RETENTION_DAYS
    provider_limits: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def rest_configured(self) -> bool:
        """Whether a REST provider was configured (a key, or a base URL of one's own, such as the local server)."""
        return self.api_key_set or self.api_base_url != DEFAULT_API_URL


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings in `environ` (the process environment by default); a malformed value raises ValueError
    naming the variable."""
    env = os.environ if environ is None else environ

    def get(name: str, default: str) -> str:
        value = env.get(name, "").strip()
        return value or default

    def number(name: str, default: float, kind=float, minimum: float | None = None):
        text = get(name, str(default))
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"{name} must be a number, not {text!r}") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, not {value}")
        return value

    endpoint = get("MASSIVE_S3_ENDPOINT", DEFAULT_ENDPOINT)
    check_endpoint(endpoint)
    api_base_url = get("MASSIVE_API_BASE_URL", DEFAULT_API_URL)
    check_endpoint(api_base_url, "MASSIVE_API_BASE_URL", API_KEY_ENV)
    source = get("QUANT_ASSETS_SOURCE", "local").lower()
    if source not in ("local", "s3"):
        raise ValueError(f"QUANT_ASSETS_SOURCE must be 'local' or 's3', not {source!r}")
    provider_urls = {}
    for name, (variable, default, key) in REST_PROVIDERS.items():
        provider_urls[name] = get(variable, default)
        check_endpoint(provider_urls[name], variable, key or "nothing")
    daily_bars = get("QUANT_ASSETS_DAILY_BARS", "flatfiles").lower()
    if daily_bars not in DAILY_BARS_SOURCES:
        raise ValueError(f"QUANT_ASSETS_DAILY_BARS must be 'flatfiles' or 'rest', not {daily_bars!r}")
    chain = tuple(p.strip().lower() for p in get("QUANT_ASSETS_DAILY_BARS_PROVIDERS", "").split(",") if p.strip())
    chain = chain or DEFAULT_DAILY_BARS_PROVIDERS
    unknown = [p for p in chain if p not in ("massive", *REST_PROVIDERS)]
    if unknown:
        known = ", ".join(("massive", *REST_PROVIDERS))
        raise ValueError(f"QUANT_ASSETS_DAILY_BARS_PROVIDERS: unknown provider {unknown[0]!r} (known: {known})")
    deadline = get("QUANT_ASSETS_FRESHNESS_DEADLINE", DEFAULT_DEADLINE.isoformat("minutes"))
    try:
        freshness_deadline = dt.time.fromisoformat(deadline)
    except ValueError:
        raise ValueError(f"QUANT_ASSETS_FRESHNESS_DEADLINE must be HH:MM, not {deadline!r}") from None
    return Settings(
        datasets=env.get("QUANT_ASSETS_DATASETS"),
        source=source,
        vendor_dir=get("QUANT_ASSETS_VENDOR_DIR", DEFAULT_VENDOR_DIR),
        data=get(DATA_ENV, DEFAULT_DATA),
        min_free_mb=number(MIN_FREE_ENV, DEFAULT_MIN_FREE_MB, int, minimum=0),
        tickers=[t.strip() for t in env.get("QUANT_ASSETS_TICKERS", "").split(",") if t.strip()],
        start_date=_date_setting("QUANT_ASSETS_START_DATE", get("QUANT_ASSETS_START_DATE", DEFAULT_START)),
        end_date=_date_setting("QUANT_ASSETS_END_DATE", get("QUANT_ASSETS_END_DATE", "")) or None,
        max_failure_share=number("QUANT_ASSETS_MAX_FAILURE_SHARE", DEFAULT_MAX_FAILURE_SHARE),
        max_volume_drop=number("QUANT_ASSETS_MAX_VOLUME_DROP", DEFAULT_MAX_VOLUME_DROP),
        freshness_deadline=freshness_deadline,
        batch_mb=number("QUANT_ASSETS_BATCH_MB", DEFAULT_BATCH_MB, int),
        max_rows=number("QUANT_ASSETS_MAX_ROWS", 0, int),
        max_inflated_gb=number("QUANT_ASSETS_MAX_INFLATED_GB", 0),
        max_ticker_length=number("QUANT_ASSETS_MAX_TICKER_LENGTH", DEFAULT_MAX_TICKER_LENGTH, int),
        debug=get("QUANT_ASSETS_DEBUG", "") not in ("", "0"),
        s3_endpoint=endpoint,
        s3_bucket=get("MASSIVE_S3_BUCKET", DEFAULT_BUCKET),
        api_base_url=api_base_url,
        dask_address=get("QUANT_ASSETS_DASK_ADDRESS", ""),
        qlib_features=[f.strip() for f in env.get("QUANT_ASSETS_QLIB_FEATURES", "").split(",") if f.strip()],
        api_key_set=bool(env.get(API_KEY_ENV, "").strip()),
        sensors_running=sensors_running(get("QUANT_ASSETS_SENSORS", "running")),
        gap_window=number("QUANT_ASSETS_GAP_WINDOW", DEFAULT_GAP_WINDOW, int, minimum=1),
        gap_max_sessions=number("QUANT_ASSETS_GAP_MAX_SESSIONS", DEFAULT_GAP_MAX_SESSIONS, int, minimum=1),
        webhook_set=bool(env.get(WEBHOOK_ENV, "").strip()),
        ui_trusted_hosts=[h.strip() for h in env.get(UI_TRUSTED_HOSTS_ENV, "").split(",") if h.strip()],
        universes_dir=get(UNIVERSES_ENV, DEFAULT_UNIVERSES_DIR),
        provider_urls=provider_urls,
        provider_keys_set=frozenset(n for n, (_, _, key) in REST_PROVIDERS.items() if key and env.get(key, "").strip()),
        daily_bars=daily_bars,
        daily_bars_providers=chain,
        provider_limits=provider_limits(get("QUANT_ASSETS_PROVIDER_LIMITS", "")),
        audit_retention_days=number("QUANT_ASSETS_AUDIT_RETENTION_DAYS", DEFAULT_AUDIT_RETENTION_DAYS, int, minimum=0),
    )


def provider_limits(text: str) -> dict[str, dict[str, float | None]]:
    """`QUANT_ASSETS_PROVIDER_LIMITS` as {provider: {field: value}}; ValueError naming the pair that is wrong."""
    out: dict[str, dict[str, float | None]] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = pair.partition("=")
        provider, _, limit = name.strip().lower().partition(".")
        if provider not in ("massive", *REST_PROVIDERS) or limit not in LIMIT_FIELDS or not value.strip():
            raise ValueError(
                f"QUANT_ASSETS_PROVIDER_LIMITS: {pair!r} is not provider.field=value (providers: massive, "
                f"{', '.join(REST_PROVIDERS)}; fields: {', '.join(LIMIT_FIELDS)})"
            )
        value = value.strip().lower()
        try:
            number = None if value == "none" else float(value)
        except ValueError:
            raise ValueError(f"QUANT_ASSETS_PROVIDER_LIMITS: {pair!r}: {value!r} is not a number or none") from None
        if number is None and limit in ("cost_per_request", "max_wait_seconds"):
            raise ValueError(f"QUANT_ASSETS_PROVIDER_LIMITS: {pair!r}: {limit} needs a number (none only removes a "
                             "rate or the daily budget)")  # fmt: skip
        if number is not None and (number < 0 or number != number or number == float("inf")):
            raise ValueError(f"QUANT_ASSETS_PROVIDER_LIMITS: {pair!r}: a limit is a finite number >= 0")
        if number is not None and limit.startswith("per_"):
            if number < 1 or not number.is_integer():
                raise ValueError(f"QUANT_ASSETS_PROVIDER_LIMITS: {pair!r}: a rate is a whole number of requests, at "
                                 "least 1 (none removes it)")  # fmt: skip
            number = int(number)
        out.setdefault(provider, {})[limit] = number
    return out


def sensors_running(text: str) -> bool:
    if text.lower() not in ("running", "stopped"):
        raise ValueError(f"QUANT_ASSETS_SENSORS must be 'running' or 'stopped', not {text!r}")
    return text.lower() == "running"


def check_endpoint(
    url: str, what: str = "the S3 endpoint", instead: str = f"{ACCESS_KEY_ENV} and {SECRET_KEY_ENV}"
) -> None:
    """Refuse an endpoint URL that carries credentials (`https://user:secret@host`, or `?apiKey=`): they would end
    up in logs, metadata and provenance. The message never repeats them."""
    parts = urlsplit(url)
    if parts.username or parts.password or "key" in parts.query.lower():
        raise ValueError(
            f"{what} must not carry credentials (user:password@ or a key in the URL, host {parts.hostname!r}); set "
            f"{instead} instead"
        )


def _date_setting(name: str, value: str) -> str:
    """`value` of the setting `name`: an ISO date (YYYY-MM-DD), or empty."""
    if value:
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{name} must be a date (YYYY-MM-DD), not {value!r}") from None
    return value


def partitions_start() -> str:
    """The first partition date: `QUANT_ASSETS_START_DATE`, or DEFAULT_START (2026-01-02)."""
    return from_env().start_date


def partitions_end() -> str | None:
    """The last partition date (`QUANT_ASSETS_END_DATE`), or None: the partitions run to the session in
    progress."""
    settings = from_env()
    if settings.end_date is not None and settings.end_date < settings.start_date:
        raise ValueError(
            f"QUANT_ASSETS_END_DATE {settings.end_date} is before QUANT_ASSETS_START_DATE {settings.start_date}"
        )
    return settings.end_date
