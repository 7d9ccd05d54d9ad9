"""The resources every layer shares: where the zones live and which tickers the lake keeps (`zones`), the quality
thresholds (`quality`), the flat-file source (`flatfiles`), the Massive REST API (`massive`), where the
sessions of a run are built (`cluster`) and where run-failure alerts are posted (`alerts`), built from the
settings."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import httpx
from pydantic import Field

from quant_assets.clock import now
from quant_assets.defs.cluster import SessionCluster
from quant_assets.errors import DataFolderError, check_writable_folder
from quant_assets.providers.cache import ResponseCache
from quant_assets.providers.client import MIB, Auth, Policy, ProviderClient
from quant_assets.providers.massive import NAME as MASSIVE
from quant_assets.providers.massive import Massive
from quant_assets.settings import (
    ACCESS_KEY_ENV,
    API_KEY_ENV,
    DEFAULT_API_URL,
    DEFAULT_AUDIT_RETENTION_DAYS,
    DEFAULT_BATCH_MB,
    DEFAULT_DATA,
    DEFAULT_MAX_FAILURE_SHARE,
    DEFAULT_MAX_TICKER_LENGTH,
    DEFAULT_MAX_VOLUME_DROP,
    DEFAULT_MIN_FREE_MB,
    SECRET_KEY_ENV,
    WEBHOOK_ENV,
    Settings,
)
from quant_assets.sources import FlatFileSource, LocalFlatFiles, S3FlatFiles

# Concurrency pools (dagster.yaml, `concurrency: pools`): steps that call a vendor take a slot of its pool, so runs
# launched side by side (a backfill, a sensor's run, the daily schedule) stay within the vendor's limits together.
FLATFILES_POOL = "vendor_flatfiles"
REST_POOL = "vendor_rest"


class DataZones(dg.ConfigurableResource):
    """The data folder and its zones: `raw/` (vendor files as landed), `lake/` (typed Parquet per session),
    `quarantine/` (rows set aside), `reference/` (reference data, factors), `enriched/` (features) and `qlib/`
    (Qlib provider directories). Relative
    paths are taken from the working directory.

    A run checks the folder when it starts (`setup_for_execution`): a folder that is a file, cannot be made or
    written, or whose disk has less than `min_free_mb` free fails the run there, in one sentence that names the
    folder and what to do, rather than in the middle of a write. Failing, not warning: a run that starts on a
    nearly full disk stops half-way through its sessions anyway, and a warning in a step's log is read after the
    failure. Outside a run (sensors, the `quant-assets` command) nothing is checked here."""

    root: str = Field(
        default=DEFAULT_DATA, description="Folder that holds the zones (raw, lake, quarantine, reference, enriched)."
    )
    tickers: list[str] = Field(
        default_factory=list,
        description="Keep only these tickers in the lake (exact, case-sensitive; `*` and `?` globs allowed, "
        "e.g. `O:SPY*`). Empty keeps every ticker. Raw files are always landed whole.",
    )
    audit_retention_days: int = Field(
        default=DEFAULT_AUDIT_RETENTION_DAYS,
        description="Days of providers' raw responses kept under raw/providers/ (0: all); pruned after each "
        "market-data job (QUANT_ASSETS_AUDIT_RETENTION_DAYS).",
    )
    batch_mb: int = Field(
        default=DEFAULT_BATCH_MB,
        description="Inflated text read, checked and written per batch (MiB): memory is bounded by it, not by "
        "the file.",
    )
    min_free_mb: float = Field(
        default=DEFAULT_MIN_FREE_MB,
        description="A run fails at its start when the data folder's disk has less free space than this (MiB); "
        "0 checks only that the folder is writable.",
    )

    def check_writable(self) -> None:
        """Raise a DataFolderError (one sentence: the folder, the problem, what to do) unless the root is a
        writable folder, made if missing, with `min_free_mb` MiB free."""
        check_writable_folder(self.root, self.min_free_mb)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if context.dagster_run is None:  # a sensor's or a script's resources: only runs write the zones
            return
        try:
            self.check_writable()
        except DataFolderError as error:
            raise dg.Failure(description=str(error), allow_retries=False) from None

    @property
    def raw_root(self) -> Path:
        return Path(self.root) / "raw"

    @property
    def lake_root(self) -> Path:
        return Path(self.root) / "lake"

    @property
    def quarantine_root(self) -> Path:
        return Path(self.root) / "quarantine"

    @property
    def reference_root(self) -> Path:
        """Versioned reference tables and adjustment factors."""
        return Path(self.root) / "reference"

    @property
    def enriched_root(self) -> Path:
        """Enriched features, laid out like the lake."""
        return Path(self.root) / "enriched"

    @property
    def qlib_root(self) -> Path:
        """Qlib provider directories, one per frequency (`day/`, `1min/`)."""
        return Path(self.root) / "qlib"


class QualitySettings(dg.ConfigurableResource):
    """Thresholds of the quality gate and the quality checks."""

    max_failure_share: float = Field(
        default=DEFAULT_MAX_FAILURE_SHARE,
        description="Share of a session's rows that may fail row rules and be quarantined; above it the whole "
        "partition is rejected (all rows quarantined, lake untouched, downstream not materialised).",
    )
    max_volume_drop: float = Field(
        default=DEFAULT_MAX_VOLUME_DROP,
        description="Warn when a session's rows or tickers fall this share below the trailing median.",
    )
    max_rows: int = Field(
        default=0, description="Refuse a file with more rows than this; 0 keeps the dataset's default (per frequency)."
    )
    max_inflated_gb: float = Field(
        default=0, description="Refuse a file that inflates to more than this (GiB); 0 keeps the dataset's default."
    )
    max_ticker_length: int = Field(
        default=DEFAULT_MAX_TICKER_LENGTH,
        description="A row whose ticker is longer than this, or not a vendor symbol at all (names.py), is a row defect.",
    )
    anomaly_window: int = Field(default=20, description="Earlier sessions in the trailing median.")
    price_tolerance: float = Field(
        default=0.01, description="Relative tolerance between minute-derived and day open/close in reconciliation."
    )
    volume_tolerance: float = Field(
        default=1e-6, description="Relative tolerance on 'sum of minute volume <= day volume' in reconciliation."
    )


class RestProvider(dg.ConfigurableResource):
    """What every REST provider's resource has: its base URL and key, its limits (shared by every process), cost and
    budget, timeouts, bounds, retries and breaker. The key comes only from the provider's key variable through
    `dagster.EnvVar` and never appears in a log, an event, metadata or a repr. Each provider sets its documented
    limits as its defaults; `max_wait_seconds` is how long a request may wait for a rate slot before the provider
    counts as unavailable (a hybrid source then asks the next)."""

    base_url: str = Field(default=DEFAULT_API_URL, description="The API's base URL.")
    api_key: str | None = Field(default=None, repr=False, description="Set only as dagster.EnvVar(<KEY VARIABLE>).")
    per_second: int | None = Field(default=20, description="Requests allowed per second, per key, across processes.")
    per_minute: int | None = Field(default=1000, description="Requests allowed per minute, per key, across processes.")
    per_hour: int | None = Field(default=None, description="Requests allowed per hour, per key, across processes.")
    per_day: int | None = Field(default=100_000, description="Requests allowed per day, per key, across processes.")
    cost_per_request: float = Field(default=0.0, description="What one request costs, in the budget's unit.")
    daily_budget: float | None = Field(
        default=None, description="Spending allowed per day; past it requests raise BudgetExhausted. None: no cap."
    )
    budget_timezone: str = Field(default="America/New_York", description="Spending resets at midnight here.")
    timeout_seconds: float = Field(default=30.0, description="Seconds to connect, and between two reads.")
    deadline_seconds: float = Field(
        default=120.0, description="Seconds one attempt may take as a whole (connect, headers, body); then retried."
    )
    max_response_mb: float = Field(
        default=64, description="A response body longer than this (MiB) is cut there and refused, not retried."
    )
    max_response_mb_by_endpoint: dict[str, float] = Field(
        default={},
        description="max_response_mb per endpoint, e.g. {'/v2/aggs/grouped/locale/us/market/stocks/{date}': 256}.",
    )
    max_pages: int = Field(default=1000, description="Pages one listing follows at most.")
    max_rows: int = Field(default=1_000_000, description="Results one listing reads at most; past it, it is refused.")
    attempts: int = Field(default=5, description="Tries per request (timeouts, resets, 429 and 5xx are retried).")
    backoff_seconds: float = Field(default=0.5, description="First retry wait; doubles, with jitter, up to 30 s.")
    breaker_failures: int = Field(
        default=10, description="Consecutive failed attempts (timeouts, resets, 5xx; not 429) that open the breaker."
    )
    breaker_reset_seconds: float = Field(default=60.0, description="How long the breaker stays open.")
    max_wait_seconds: float = Field(
        default=300.0, description="Longest wait for a rate slot; a longer one makes the provider unavailable."
    )
    rate_margin_seconds: float = Field(
        default=0.25, description="How far past a rate window's edge a waiting request goes (arrival jitter)."
    )

    @property
    def configured(self) -> bool:
        """Whether this provider may be used: it has a key, or a base URL of one's own (a local server), or needs
        no key at all (`KEYLESS`)."""
        default = type(self).model_fields["base_url"].default
        return bool(self.api_key) or self.base_url != default or getattr(type(self), "KEYLESS", False)

    def policy(self) -> Policy:
        windows = ((self.per_second, 1.0), (self.per_minute, 60.0), (self.per_hour, 3600.0), (self.per_day, 86_400.0))
        rates: list[tuple[int, float]] = []
        for limit, seconds in reversed([w for w in windows if w[0]]):
            if not rates or limit < rates[0][0]:  # a shorter window allowing as many as a longer one never binds
                rates.insert(0, (limit, seconds))
        return Policy(
            rates=tuple(rates),
            cost_per_request=self.cost_per_request,
            daily_budget=self.daily_budget,
            budget_timezone=self.budget_timezone,
            attempts=self.attempts,
            backoff_initial=self.backoff_seconds,
            timeout=self.timeout_seconds,
            deadline=self.deadline_seconds,
            max_bytes=round(self.max_response_mb * MIB),
            max_bytes_by_endpoint=tuple((e, round(mb * MIB)) for e, mb in self.max_response_mb_by_endpoint.items()),
            max_pages=self.max_pages,
            max_rows=self.max_rows,
            breaker_failures=self.breaker_failures,
            breaker_reset_seconds=self.breaker_reset_seconds,
            max_wait=self.max_wait_seconds,
            rate_margin=self.rate_margin_seconds,
        )

    def client(
        self,
        name: str,
        auth: Auth,
        data_root: str | Path,
        log: Callable[[str], None] | None = None,
        cache: ResponseCache | None = None,
    ) -> ProviderClient:
        """A client of this provider, its state, audit files and cache under `data_root`."""
        return ProviderClient(
            name, self.base_url, self.api_key, self.policy(), data_root, log, auth=auth, cache=cache, clock=now
        )


class MassiveRest(RestProvider):
    """The Massive (Polygon) REST API, through the provider client (retries, rate limits shared by every process,
    circuit breaker, daily cost budget, audit trail under `data/raw/providers/massive/`). The key comes only from
    `MASSIVE_API_KEY` through `dagster.EnvVar`; without it, requests go without a key (the local provider server of
    the demo and tests needs none)."""

    base_url: str = Field(default=DEFAULT_API_URL, description="The API's base URL (MASSIVE_API_BASE_URL).")
    api_key: str | None = Field(default=None, repr=False, description="Set only as EnvVar('MASSIVE_API_KEY').")

    @contextmanager
    def connect(
        self, data_root: str | Path, log: Callable[[str], None] | None = None, cache: ResponseCache | None = None
    ) -> Iterator[Massive]:
        """The Massive endpoints, over a client whose state and audit files live under `data_root`."""
        with self.client(MASSIVE, Auth(), data_root, log, cache) as client:
            yield Massive(client)


class AlertWebhook(dg.ConfigurableResource):
    """Where run-failure alerts are posted (a Slack-style incoming webhook, or any URL taking JSON). The URL is
    read only as `EnvVar("QUANT_ASSETS_ALERT_WEBHOOK_URL")` and never logged: such URLs carry their token."""

    url: str | None = Field(default=None, repr=False, description="Set only as EnvVar(QUANT_ASSETS_ALERT_WEBHOOK_URL).")
    timeout_seconds: float = Field(default=10.0, description="Seconds to connect, and between two reads.")

    def post(self, payload: dict) -> str:
        """Post `payload`; returns what happened, in words that never include the URL."""
        if not self.url:
            return "not configured"
        try:
            response = httpx.post(self.url, json=payload, timeout=self.timeout_seconds)
        except httpx.HTTPError as exc:
            return f"failed: {type(exc).__name__}"
        return f"HTTP {response.status_code}"


def resources_from(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The resources of the code location. The S3 keys are passed as `dagster.EnvVar`: Dagster resolves them at
    run time and shows only the variables' names."""
    if settings.source == "s3":
        source: FlatFileSource = S3FlatFiles(
            endpoint_url=settings.s3_endpoint,
            bucket=settings.s3_bucket,
            access_key_id=dg.EnvVar(ACCESS_KEY_ENV),
            secret_access_key=dg.EnvVar(SECRET_KEY_ENV),
        )
    else:
        source = LocalFlatFiles(root=settings.vendor_dir)
    massive = MassiveRest(
        base_url=settings.api_base_url,
        api_key=dg.EnvVar(API_KEY_ENV) if settings.api_key_set else None,
        **settings.provider_limits.get("massive", {}),
    )
    return {
        "alerts": AlertWebhook(url=dg.EnvVar(WEBHOOK_ENV) if settings.webhook_set else None),
        "massive": massive,
        "cluster": SessionCluster(address=settings.dask_address),
        "flatfiles": source,
        "zones": DataZones(
            root=settings.data,
            tickers=settings.tickers,
            batch_mb=settings.batch_mb,
            min_free_mb=settings.min_free_mb,
            audit_retention_days=settings.audit_retention_days,
        ),
        "quality": QualitySettings(
            max_failure_share=settings.max_failure_share,
            max_volume_drop=settings.max_volume_drop,
            max_rows=settings.max_rows,
            max_inflated_gb=settings.max_inflated_gb,
            max_ticker_length=settings.max_ticker_length,
        ),
    }
