"""The REST providers besides Massive as resources (`tiingo`, `yahoo`, `finnhub`, `alphavantage`), each with its
documented limits as its defaults, its key only through `dagster.EnvVar`, and `connect` giving its endpoints over
one `ProviderClient`. `MassiveRest` is in `resources.py`. The work is in `providers/`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import dagster as dg
from pydantic import Field

from quant_assets.defs.resources import RestProvider
from quant_assets.providers import alphavantage, finnhub, tiingo, yahoo
from quant_assets.providers.cache import ResponseCache
from quant_assets.settings import REST_PROVIDERS, Settings


def _url(name: str) -> str:
    return REST_PROVIDERS[name][1]


class TiingoRest(RestProvider):
    """Tiingo's end-of-day prices (`TIINGO_API_KEY`, sent as `Authorization: Token`). Its limits are not confirmed
    by the vendor: the defaults are the free plan's figures seen by its users (50 an hour, 1,000 a day)."""

    base_url: str = Field(default=_url("tiingo"), description="The API's base URL (TIINGO_API_BASE_URL).")
    api_key: str | None = Field(default=None, repr=False, description="Set only as EnvVar('TIINGO_API_KEY').")
    per_second: int | None = Field(default=1, description="Requests allowed per second, per key, across processes.")
    per_minute: int | None = Field(default=None, description="Requests allowed per minute, per key.")
    per_hour: int | None = Field(default=tiingo.PER_HOUR, description="Requests allowed per hour, per key.")
    per_day: int | None = Field(default=tiingo.PER_DAY, description="Requests allowed per day, per key.")

    @contextmanager
    def connect(
        self, data_root: str | Path, log: Callable[[str], None] | None = None, cache: ResponseCache | None = None
    ) -> Iterator[tiingo.Tiingo]:
        with self.client(tiingo.NAME, tiingo.AUTH, data_root, log, cache) as client:
            yield tiingo.Tiingo(client)


class YahooChart(RestProvider):
    """The free fallback: Yahoo's chart endpoint as yfinance uses it (no key, no official documentation, heavily
    rate limited): slow limits and patient retries by default."""

    KEYLESS: ClassVar[bool] = True
    base_url: str = Field(default=_url("yahoo"), description="The chart endpoint's host (YAHOO_CHART_BASE_URL).")
    api_key: str | None = Field(default=None, repr=False, description="Not used: the chart endpoint takes no key.")
    per_second: int | None = Field(default=yahoo.RATES[0][0], description="Requests allowed per second.")
    per_minute: int | None = Field(default=yahoo.RATES[1][0], description="Requests allowed per minute.")
    per_hour: int | None = Field(default=yahoo.RATES[2][0], description="Requests allowed per hour.")
    per_day: int | None = Field(default=yahoo.RATES[3][0], description="Requests allowed per day.")
    attempts: int = Field(default=4, description="Tries per request (a 429 storm passes with time).")
    backoff_seconds: float = Field(default=2.0, description="First retry wait; doubles, with jitter, up to 30 s.")

    @contextmanager
    def connect(
        self, data_root: str | Path, log: Callable[[str], None] | None = None, cache: ResponseCache | None = None
    ) -> Iterator[yahoo.Yahoo]:
        with self.client(yahoo.NAME, yahoo.AUTH, data_root, log, cache) as client:
            yield yahoo.Yahoo(client)


class FinnhubRest(RestProvider):
    """Finnhub's quotes, news, basic financials and earnings (`FINNHUB_API_KEY`, sent as `X-Finnhub-Token`, or as
    the `token` parameter with `key_in_query`): 30 a second on any plan, 60 a minute on the free one."""

    base_url: str = Field(default=_url("finnhub"), description="The API's base URL (FINNHUB_API_BASE_URL).")
    api_key: str | None = Field(default=None, repr=False, description="Set only as EnvVar('FINNHUB_API_KEY').")
    per_second: int | None = Field(default=finnhub.PER_SECOND, description="Requests allowed per second, per key.")
    per_minute: int | None = Field(default=finnhub.PER_MINUTE, description="Requests allowed per minute, per key.")
    per_day: int | None = Field(default=None, description="Requests allowed per day, per key.")
    key_in_query: bool = Field(
        default=False, description="Send the key as the `token` parameter (some accounts accept only that)."
    )

    @contextmanager
    def connect(
        self, data_root: str | Path, log: Callable[[str], None] | None = None, cache: ResponseCache | None = None
    ) -> Iterator[finnhub.Finnhub]:
        auth = finnhub.AUTH_QUERY if self.key_in_query else finnhub.AUTH
        with self.client(finnhub.NAME, auth, data_root, log, cache) as client:
            yield finnhub.Finnhub(client)


class AlphaVantageRest(RestProvider):
    """Alpha Vantage's technical indicators and daily series (`ALPHAVANTAGE_API_KEY`, which can only travel in the
    query string: the client keeps it out of every URL it logs, audits or caches). The free plan: 25 requests a day
    (at a cost of 1 each, the day's budget: a rate-limit answer with HTTP 200 still counts; jobs plan their work
    with it), 5 a minute."""

    base_url: str = Field(default=_url("alphavantage"), description="The API's base URL (ALPHAVANTAGE_API_BASE_URL).")
    api_key: str | None = Field(default=None, repr=False, description="Set only as EnvVar('ALPHAVANTAGE_API_KEY').")
    per_second: int | None = Field(default=1, description="Requests allowed per second, per key.")
    per_minute: int | None = Field(default=alphavantage.PER_MINUTE, description="Requests allowed per minute.")
    per_day: int | None = Field(
        default=None,
        description="Requests allowed in any 24 hours, per key (none: the daily budget, which resets "
        "at midnight New York time, is the free plan's 25 a day; a rolling window would make the next morning's run "
        "wait for the previous evening's requests).",
    )
    cost_per_request: float = Field(default=alphavantage.COST_PER_REQUEST, description="What one request costs.")
    daily_budget: float | None = Field(default=alphavantage.DAILY_BUDGET, description="Spending allowed per day.")

    @contextmanager
    def connect(
        self, data_root: str | Path, log: Callable[[str], None] | None = None, cache: ResponseCache | None = None
    ) -> Iterator[alphavantage.AlphaVantage]:
        with self.client(alphavantage.NAME, alphavantage.AUTH, data_root, log, cache) as client:
            yield alphavantage.AlphaVantage(client)


def provider_resources(settings: Settings) -> dict[str, RestProvider]:
    """The providers' resources from the settings: base URLs, and keys as `dagster.EnvVar` only when set."""

    def key(name: str):
        variable = REST_PROVIDERS[name][2]
        return dg.EnvVar(variable) if variable and name in settings.provider_keys_set else None

    def limits(name: str) -> dict:
        return settings.provider_limits.get(name, {})

    return {
        "tiingo": TiingoRest(base_url=settings.provider_urls["tiingo"], api_key=key("tiingo"), **limits("tiingo")),
        "yahoo": YahooChart(base_url=settings.provider_urls["yahoo"], **limits("yahoo")),
        "finnhub": FinnhubRest(base_url=settings.provider_urls["finnhub"], api_key=key("finnhub"), **limits("finnhub")),
        "alphavantage": AlphaVantageRest(
            base_url=settings.provider_urls["alphavantage"], api_key=key("alphavantage"), **limits("alphavantage")
        ),
    }
