"""The instance's event log on SQLite, without a new database connection per statement.

Dagster's `SqliteEventLogStorage` opens a SQLAlchemy engine and a SQLite connection for every statement it runs
and closes them after, and closing the last connection of a WAL database checkpoints it: an asset event costs
four or five of those (the run's shard, the cross-run index, tags, check rows), 12-19 ms on this machine, and a
year of day sessions writes ~2,750 of them. This subclass keeps one engine (one pooled connection) per shard, so
the same event costs 2-4 ms (`quant-assets bench ingest --parts year`). Everything else (schema, queries, the
webserver's watching of a run's file) is Dagster's own. The webserver streams a run's log by watching its `.db`
file for changes, but in WAL mode a write changes only the `-wal` file until a checkpoint (which syncs the
database to disk twice): so after each transaction that wrote to a run's file, the storage touches the file
(its modification time, which the file watcher reports as a change) and leaves checkpoints to SQLite's own.

Dagster sends some events as batches (a run's planned materializations, one per session and asset; the
materializations of a partitioned output) but writes them as a batch only when `DAGSTER_EVENT_BATCH_SIZE` is set:
this storage sets it (unless the environment has it) and writes a batch in one transaction per database. A planned
check's rows are written with its event serialised once (Dagster serialises it again for each partition).

`synchronous=NORMAL` (SQLite's recommendation for WAL): a power cut may lose the last events, never corrupt the
database. Postgres (deploy/dagster.postgres.yaml) is for several machines sharing one instance, not for speed: on
one machine it is slower still (docs/performance.md).

`withdraw_planned_checks` drops a run's planned check executions on the sessions it did not evaluate (on any SQL
event log, Postgres included), so a run over current sessions writes nothing for their checks and their earlier
results stand (`chain.py`).

Configured in dagster.yaml as the instance's whole storage (`PooledSqliteStorage`: Dagster's `storage: sqlite`,
same folders under DAGSTER_HOME, with this event log), so an existing DAGSTER_HOME keeps its history:

    storage:
      custom:
        module: quant_assets.defs.storage
        class: PooledSqliteStorage
        config:
          base_dir: {env: DAGSTER_HOME}
"""

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import contextmanager

import yaml
from dagster import AssetCheckKey
from dagster._core.events import ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.event_log import SqlEventLogStorage, SqliteEventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.storage.schedules import SqliteScheduleStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData, serialize_value
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.pool import QueuePool

WITHDRAW_CHUNK = 500  # partitions per statement when planned check executions are withdrawn (SQLite's limits)
# Dagster writes the events it sends in batches (a run's planned materializations, a partitioned output's
# materializations) with `store_event_batch` only when this is set; the pooled storage writes a batch in one
# transaction per database. A value in the environment wins.
EVENT_BATCH_SIZE = ("DAGSTER_EVENT_BATCH_SIZE", "1000")
OPEN_SHARDS = 8  # run shards kept open at a time (least recently used closed first); the index stays open


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with one pooled engine per shard (see the module's docstring)."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict = OrderedDict()
        self._tables: set[str] = set()
        super().__init__(base_dir, inst_data)
        os.environ.setdefault(*EVENT_BATCH_SIZE)  # read by the instance at each event (see EVENT_BATCH_SIZE)
        this = weakref.ref(self)  # a forked child must not use its parent's SQLite connections
        os.register_at_fork(after_in_child=lambda: (storage := this()) is not None and storage._forget_connections())

    def _forget_connections(self) -> None:
        """In a forked child: drop the parent's engines without closing the parent's connections."""
        for engine in self._engines.values():
            engine.dispose(close=False)
        self._engines.clear()
        self._db_lock = threading.Lock()

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str):
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        engine = create_engine(
            self.conn_string_for_shard(shard),
            poolclass=QueuePool,
            pool_size=1,
            max_overflow=2,
            # the storage's lock serialises its use; a webserver calls it from several threads
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        sqlalchemy_event.listen(engine, "connect", _pragmas)
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        while len(self._engines) > OPEN_SHARDS + 1:
            oldest = next(name for name in self._engines if name != INDEX_SHARD_NAME)
            self._engines.pop(oldest).dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str):
        with self._db_lock:
            with self._engine(shard).connect() as conn:
                sqlite = conn.connection.dbapi_connection
                changes = sqlite.total_changes
                with conn.begin():
                    yield conn
                wrote = sqlite.total_changes != changes
            if wrote and shard != INDEX_SHARD_NAME:  # the webserver watches the run's .db file (module docstring)
                os.utime(self.path_for_shard(shard))

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """What `store_event` writes for each event, for a batch of one run's asset events (the planned
        materializations of a run's range, the materializations of a step's output over its partitions): one
        transaction per database instead of two per event. Other events of the batch (a planned check) are stored
        one by one after them."""
        assets = [e for e in events if e.is_dagster_event and e.dagster_event_type in ASSET_EVENTS]
        if len({e.run_id for e in assets}) > 1:
            assets = []
        if assets:
            statements = [self.prepare_insert_event(event) for event in assets]
            with self.run_connection(assets[0].run_id) as conn:
                for statement in statements:
                    conn.execute(statement)
            with self.index_transaction() as conn:
                ids = []
                for statement in statements:
                    with db_result(conn, statement) as result:
                        ids.append(result.inserted_primary_key[0])
                self._store_asset_event_tags(conn, assets, ids)
                for event, event_id in zip(assets, ids, strict=True):
                    self._store_asset_event(conn, event, event_id)
        batched = {id(event) for event in assets}
        for event in events:
            if id(event) not in batched:
                self.store_event(event)

    def _store_asset_check_evaluation_planned(self, event: EventLogEntry, event_id: int | None) -> None:
        """Dagster's rows of a planned check, one per partition of the run, with the planned event serialised once
        (Dagster serialises it again for each partition: 250 times for a year's range, per check)."""
        planned = event.get_dagster_event().event_specific_data
        keys = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
        row = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": serialize_value(event),
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
        }
        with self.index_connection() as conn:
            conn.execute(AssetCheckExecutionsTable.insert(), [{**row, "partition": key} for key in keys])

    def has_table(self, table_name: str) -> bool:
        """Dagster asks before many writes; a table, once there, stays."""
        if table_name not in self._tables and super().has_table(table_name):
            self._tables.add(table_name)
        return table_name in self._tables

    def wipe(self) -> None:
        self._close_engines()  # the files go; the storage (and its watchers) stays in use
        super().wipe()

    def dispose(self) -> None:
        self._close_engines()
        super().dispose()

    def _close_engines(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()


def _pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class PooledSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage (runs, event log, schedules in the same folders under `base_dir`) with the pooled
    event log."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self.base_dir = base_dir
        self._run_storage = SqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        DagsterStorage.__init__(self)

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls.from_local(inst_data=inst_data, **config_value)

    @property
    def event_storage_data(self) -> ConfigurableClassData:
        return ConfigurableClassData(
            __name__,
            PooledSqliteEventLogStorage.__name__,
            yaml.dump({"base_dir": _event_logs_directory(self.base_dir)}, default_flow_style=False),
        )

    @property
    def run_storage_data(self) -> ConfigurableClassData:
        return ConfigurableClassData(
            "dagster._core.storage.runs",
            "SqliteRunStorage",
            yaml.dump({"base_dir": _runs_directory(self.base_dir)}, default_flow_style=False),
        )


def withdraws_planned_checks(instance) -> bool:
    """Whether `withdraw_planned_checks` works on this instance: its event log is SQL (SQLite, Postgres)."""
    return isinstance(instance.event_log_storage, SqlEventLogStorage)


def withdraw_planned_checks(instance, run_id: str, unevaluated: Mapping[AssetCheckKey, Sequence[str]]) -> None:
    """Drop the run's planned executions of each check on the partitions it did not evaluate (`unevaluated`: a
    session already current, one whose file could not be read, a check that does not apply), so each partition's
    latest execution is again the last real evaluation, or none. Dagster plans every check of a run's range when
    the run is created, and a planned execution left without a result resolves to "skipped" when the run succeeds
    and to "execution failed" when it fails, which the UI shows as a failed check. A few statements per check on
    the instance's index (`withdraws_planned_checks` must hold); nothing is written for a partition it evaluated."""
    table = AssetCheckExecutionsTable
    with instance.event_log_storage.index_connection() as conn:
        for key, partition_keys in unevaluated.items():
            for start in range(0, len(partition_keys), WITHDRAW_CHUNK):
                conn.execute(
                    table.delete().where(
                        (table.c.asset_key == key.asset_key.to_string())
                        & (table.c.check_name == key.name)
                        & (table.c.run_id == run_id)
                        & (table.c.execution_status == AssetCheckExecutionRecordStatus.PLANNED.value)
                        & table.c.partition.in_(list(partition_keys[start : start + WITHDRAW_CHUNK]))
                    )
                )
