"""A Postgres server of its own on this machine, for the benchmark and the tests of deploy/dagster.postgres.yaml:
a fresh cluster in a temporary folder, on a free port of 127.0.0.1 with password authentication, and an empty
database for Dagster. Postgres refuses to run as root: as root, its files belong to `postgres` and its commands
run as that user.

A pure module: no Dagster import.
"""

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's postgresql-15 package
DATABASE = "quant_assets"


class Unavailable(RuntimeError):
    """No Postgres server can be started here; the message says why."""


def tools() -> tuple[Path, Path] | None:
    """initdb and pg_ctl of one installation, or None."""
    for folder in (POSTGRES_BIN, *(Path(p).parent for p in filter(None, [shutil.which("initdb")]))):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder / "initdb", folder / "pg_ctl"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_postgres(password: str) -> Iterator[dict]:
    """Start the server, yield {host, port, user, password, db}, stop it and remove its files."""
    found = tools()
    if found is None:
        raise Unavailable(f"no Postgres server binaries (initdb, pg_ctl) in {POSTGRES_BIN} or on PATH")
    initdb, pg_ctl = found
    as_postgres: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="quant-assets-pg-"))
    data, sockets, secret = root / "data", root / "sockets", root / "password"
    sockets.mkdir()
    secret.write_text(password)
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            shutil.rmtree(root)
            raise Unavailable("running as root without runuser: cannot start Postgres as another user")
        try:
            for path in (root, sockets, secret):
                shutil.chown(path, "postgres", "postgres")
        except LookupError:
            shutil.rmtree(root)
            raise Unavailable("running as root and there is no `postgres` user to run Postgres as") from None
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    started = False
    try:
        subprocess.run(
            [*as_postgres, initdb, "-D", data, "-U", "dagster", "--auth=scram-sha-256", f"--pwfile={secret}"],
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
        subprocess.run(
            [*as_postgres, pg_ctl, "-D", data, "-l", root / "server.log", "-o", options, "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
        )
        started = True
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=port, user="dagster", password=password, dbname="postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
        connection.close()
        yield {"host": "127.0.0.1", "port": port, "user": "dagster", "password": password, "db": DATABASE}
    finally:
        if started:
            subprocess.run([*as_postgres, pg_ctl, "-D", data, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
