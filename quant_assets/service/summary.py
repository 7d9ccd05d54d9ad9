"""What one collection of a service dataset did, for the run's summary: symbols (or streams) asked, served per
provider, failed with every reason, skipped because already held, rows and files written, records set aside."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
SAMPLE = 20  # failures and records set aside shown in a summary


@dataclass
class Collected:
    """The outcome of one collection. `failed` holds one line per symbol, naming it and each provider's reason; a
    symbol that failed is asked again at the next run (nothing of it was published)."""

    dataset: str
    asked: int = 0
    skipped: int = 0
    served: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    rows: int = 0
    written: list[str] = field(default_factory=list)
    set_aside: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def serve(self, provider: str, count: int = 1) -> None:
        self.served[provider] = self.served.get(provider, 0) + count

    def as_dict(self) -> dict:
        """The summary as plain values (run metadata, `--json`)."""
        return {
            "dataset": self.dataset,
            "asked": self.asked,
            "skipped_as_held": self.skipped,
            "served_by_provider": dict(sorted(self.served.items())),
            "failed": len(self.failed),
            "failed_sample": self.failed[:SAMPLE],
            "missing": len(self.missing),
            "missing_sample": self.missing[:SAMPLE],
            "rows_written": self.rows,
            "files_written": len(self.written),
            "set_aside": len(self.set_aside),
            "set_aside_sample": self.set_aside[:SAMPLE],
            "notes": self.notes,
        }


def concurrently(work: Callable[[T], R], items: Sequence[T] | Iterable[T], workers: int) -> Iterator[R]:
    """`work` of each item, in order, over `workers` threads: the providers' rate limits set the pace of a
    collection, not their latency (the clients are thread-safe)."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        yield from map(work, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="collect") as pool:
        yield from pool.map(work, items)
