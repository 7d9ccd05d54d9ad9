"""Spreading the sessions of a session chain's run over a Dask cluster (`SessionCluster`), or running them in this
process one after the other (no address: the default).

Why a resource and not the dagster-dask executor: an executor distributes steps, and the session chain
(`chain.py`) is one step for a whole range, because a range is one run (`BackfillPolicy.single_run`) in which each
session's failure is handled on its own. A step-level executor would put the whole range on one worker. The
resource spreads the sessions of that one step instead: each session, through every selected layer, is one Dask
task; the step gathers their small results as they complete and applies them in session order, so the run's
events are those of a run in one process.

The workers run the layers' own code on the same files: they need this package (the same environment) and the
same data folder at the same path (the same machine, or a shared volume: NFS, EFS, a ReadWriteMany PVC). Relative
folders are made absolute in the run's process before they are sent. What a task carries back is small: each
layer's metadata and check summary, or its error, and the lines it logged.
"""

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

_LOGGER = logging.getLogger("quant_assets.cluster")


class SessionCluster(dg.ConfigurableResource):
    """Where the sessions of a session chain's run are built: in this process (no address, the default) or on
    the Dask cluster whose scheduler is at `address` (`QUANT_ASSETS_DASK_ADDRESS`)."""

    address: str = Field(
        default="",
        description="Dask scheduler, e.g. tcp://10.0.0.5:8786; empty builds the sessions in the run's process.",
    )
    connect_timeout_seconds: float = Field(default=30.0, description="Seconds to wait for the scheduler.")

    def map_in_order(self, function: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        """`function(item)` for each of `items`, yielded in the order of `items`.

        Without an address, calls it here one item after the other. With one, submits every item to the cluster
        at once, gathers the results as they complete and yields each as soon as those before it are in, so only
        results that wait for an earlier one are held. A task that failed on the cluster itself (its worker died
        on every try, its result would not travel) is yielded as the exception, in its place.
        """
        items = list(items)
        if not self.address:
            for item in items:
                yield function(item)
            return
        from distributed import Client, as_completed

        with Client(self.address, timeout=self.connect_timeout_seconds, set_as_default=False) as client:
            futures = client.map(function, items, pure=False)
            position = {future.key: index for index, future in enumerate(futures)}
            done: dict[int, Any] = {}
            following = 0
            for future in as_completed(futures, loop=client.loop):
                try:
                    done[position[future.key]] = future.result()
                except Exception as error:  # the task's own errors are results; this is the cluster's
                    done[position[future.key]] = error
                future.release()
                while following in done:
                    yield done.pop(following)
                    following += 1


@dataclass(frozen=True)
class ResourceCopy:
    """A resource as it travels to a worker: its class and field values (a Dagster resource does not unpickle,
    and one built again from its fields leaves cached clients, such as S3FlatFiles' boto client, behind). A
    relative `root` folder is made absolute here, since a worker's working directory is its own."""

    kind: type
    fields: dict[str, Any] = field(repr=False)  # secrets among them (S3 keys): never in a repr or a log

    @classmethod
    def of(cls, resource: dg.ConfigurableResource) -> "ResourceCopy":
        fields = {name: getattr(resource, name) for name in type(resource).model_fields}
        if isinstance(fields.get("root"), str):
            fields["root"] = str(Path(fields["root"]).resolve())
        return cls(type(resource), fields)

    def build(self):
        return self.kind(**self.fields)


class LogLines:
    """The log of a layer on a worker, which has no Dagster context: it keeps each line for the run's process to
    log in the step's log (`replay`), and writes it to the worker's own log too."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []

    def log(self, level: int, message: object) -> None:
        self.lines.append((level, str(message)))
        _LOGGER.log(level, message)

    def debug(self, message: object) -> None:
        self.log(logging.DEBUG, message)

    def info(self, message: object) -> None:
        self.log(logging.INFO, message)

    def warning(self, message: object) -> None:
        self.log(logging.WARNING, message)

    def error(self, message: object) -> None:
        self.log(logging.ERROR, message)

    def replay(self, log: logging.Logger, min_level: int = logging.DEBUG) -> None:
        for level, message in self.lines:
            if level >= min_level:
                log.log(level, message)


def worker_name() -> str:
    """This Dask worker's address and process id (`local` outside a worker)."""
    try:
        from distributed import get_worker

        address = get_worker().address
    except (ImportError, ValueError):
        address = "local"
    return f"{address} (pid {os.getpid()})"
