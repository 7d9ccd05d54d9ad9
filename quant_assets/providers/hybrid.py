"""One source of a dataset from many providers: an ordered chain, cheapest first: the response cache, then the paid
providers, then the free one.

For each symbol the chain asks, in order:

1. the cache of every provider (`Caching(mode="only")`: nothing is sent, no rate slot or budget is used), unless
   the run forces a refresh;
2. each provider over the network, until one answers. A provider that cannot serve the symbol (an index on
   Tiingo) is skipped with its reason, before anything is sent; one that is unavailable (rate limited past what
   it may wait, breaker open, 5xx or 429 after its retries, budget spent, not entitled) or whose answer is an
   error (a vendor's error in a 200, a malformed body) passes the symbol to the next.

An answer ends the chain, even an empty one: no bars for a symbol on those days is a real answer, and a second
provider would only be asked to contradict it. A symbol that fails everywhere fails alone, with every provider's
reason; the others land. Each row carries the provider it came from.

Symbols run concurrently (a thread pool over the shared clients), so that with a slow server the run time is set
by the providers' rate limits, not by their latency.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from quant_assets.providers.cache import Caching, NotCached
from quant_assets.providers.errors import ProviderError
from quant_assets.providers.symbols import Unsupported

DEFAULT_WORKERS = 8


class DailyBarsProvider(Protocol):
    """A vendor module's daily bars (`providers/bars.py`)."""

    def daily_bars(
        self, symbol: str, start: dt.date, end: dt.date, caching: Caching | None = None
    ) -> tuple[pl.DataFrame, list[str]]: ...


@dataclass
class Fetched:
    """What the chain made of one symbol: the rows and the provider that gave them (None when none did), whether
    they came from the cache, each provider's reason for not giving them, and the records set aside."""

    symbol: str
    start: dt.date
    end: dt.date
    frame: pl.DataFrame | None = None
    provider: str | None = None
    cached: bool = False
    reasons: list[str] = field(default_factory=list)
    set_aside: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.frame is None

    @property
    def fell_back(self) -> bool:
        """Whether a provider earlier in the chain was passed over for this symbol."""
        return self.frame is not None and bool(self.reasons)

    def error(self) -> str:
        """Why the symbol has no rows, every provider's reason."""
        return f"{self.symbol} {self.start}..{self.end}: no provider answered: " + "; ".join(self.reasons)


class HybridSource:
    """Daily bars from `providers` (by name, in order: cheapest first), each answer cached for `ttl` seconds."""

    def __init__(
        self,
        providers: Mapping[str, DailyBarsProvider],
        ttl: float,
        force: bool = False,
        workers: int = DEFAULT_WORKERS,
    ):
        if not providers:
            raise ValueError("a hybrid source needs at least one provider")
        self.providers = list(providers.items())
        self.ttl = ttl
        self.force = force
        self.workers = max(1, workers)

    def fetch(self, symbol: str, start: dt.date, end: dt.date) -> Fetched:
        """`symbol`'s bars in [start, end]: from the cache of any provider, else from the first that answers."""
        return self.cached(symbol, start, end) or self.fetched(symbol, start, end)

    def cached(self, symbol: str, start: dt.date, end: dt.date) -> Fetched | None:
        """`symbol`'s bars from the cache of the first provider that holds them (nothing is sent), or None (or
        always None when the run forces a refresh)."""
        if self.force:
            return None
        for name, provider in self.providers:
            try:
                frame, aside = provider.daily_bars(symbol, start, end, Caching(self.ttl, "only"))
            except (NotCached, Unsupported, ProviderError):
                continue
            return self._answered(Fetched(symbol, start, end), name, frame, aside, cached=True)
        return None

    def fetched(self, symbol: str, start: dt.date, end: dt.date) -> Fetched:
        """`symbol`'s bars from the first provider that answers over the network (the answer then cached)."""
        out = Fetched(symbol, start, end)
        for name, provider in self.providers:
            try:
                frame, aside = provider.daily_bars(symbol, start, end, Caching(self.ttl, "refresh"))
            except Unsupported as error:
                out.reasons.append(f"{name} skipped: {error}")
                continue
            except ProviderError as error:
                out.reasons.append(f"{name}: {type(error).__name__}: {error}")
                continue
            return self._answered(out, name, frame, aside, cached=False)
        return out

    def fetch_all(self, requests: Iterable[tuple[str, dt.date, dt.date]]) -> Iterator[Fetched]:
        """`fetch` of every (symbol, start, end): first every answer the cache holds, in this thread (a lookup is
        local and quick: threads would only contend for the interpreter), then the others over the network,
        concurrently, so that the providers' rate limits set the pace, not their latency."""
        misses = []
        for request in requests:
            hit = self.cached(*request)
            if hit is None:
                misses.append(request)
            else:
                yield hit
        if self.workers == 1 or len(misses) <= 1:
            yield from (self.fetched(*request) for request in misses)
            return
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="hybrid") as pool:
            yield from pool.map(lambda request: self.fetched(*request), misses)

    @staticmethod
    def _answered(out: Fetched, name: str, frame: pl.DataFrame, aside: list[str], cached: bool) -> Fetched:
        out.frame = frame.with_columns(provider=pl.lit(name, pl.String))
        out.provider, out.cached, out.set_aside = name, cached, aside
        return out
