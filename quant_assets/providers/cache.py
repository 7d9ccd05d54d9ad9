"""The providers' HTTP response cache: hishel's SQLite storage under `data/providers/cache.sqlite`, shared by every
provider and process, consulted before anything else (a hit takes no rate slot, no budget and sends nothing).

Vendors' answers carry no usable caching headers, so entries live for the TTL the caller gives (one per dataset:
a day's bars for hours, a quote for seconds), not for what RFC 9111 would infer. An entry is keyed by the
provider and the request's URL without the key (keys never travel in a URL that is stored). Only whole, valid JSON
answers with HTTP 200 are stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import hishel

from quant_assets.providers.errors import ProviderError

FILE = "cache.sqlite"
DEFAULT_MAX_BYTES = 2 * 1024**3  # hishel evicts the oldest entries past this


class NotCached(ProviderError):
    """`Caching(mode="only")` asked for an answer the cache does not hold: nothing was sent."""


@dataclass(frozen=True)
class Caching:
    """How one request uses the cache: `ttl` seconds an answer is served from it, and `mode`: `use` (the cache,
    else the network, the answer then stored), `only` (the cache alone: `NotCached` on a miss) or `refresh` (the
    network even when cached, the `force` of a run; the answer stored)."""

    ttl: float
    mode: str = "use"

    def __post_init__(self):
        if self.mode not in ("use", "only", "refresh"):
            raise ValueError(f"Caching.mode must be use, only or refresh, not {self.mode!r}")


class ResponseCache:
    """Response bodies by (provider, URL), in hishel's `SqliteStorage` (thread-safe; one file for all processes)."""

    def __init__(self, folder: str | Path, max_bytes: int = DEFAULT_MAX_BYTES):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / FILE
        self._storage = hishel.SqliteStorage(database_path=self.path, max_size=max_bytes)

    def close(self) -> None:
        self._storage.close()

    @staticmethod
    def _key(provider: str, url: str) -> str:
        return hashlib.sha256(f"{provider} GET {url}".encode()).hexdigest()

    def get(self, provider: str, url: str) -> bytes | None:
        """The stored body of `provider`'s answer to `url` (without its key), or None."""
        for entry in self._storage.get_entries(self._key(provider, url)):
            if entry.request.method == "GET" and entry.response.status_code == 200:
                return b"".join(entry.response.stream)
        return None

    def put(self, provider: str, url: str, body: bytes, ttl: float) -> None:
        """Store `body` as `provider`'s answer to `url` for `ttl` seconds."""
        request = hishel.Request(method="GET", url=url)
        response = hishel.Response(status_code=200, stream=iter([body]))
        entry = self._storage.create_entry(request, response, self._key(provider, url), ttl=ttl)
        for _ in entry.response.stream:  # the entry is saved as its stream is read
            pass
