"""Shared fixtures: real local servers (moto's S3 server over HTTP), generated vendor files, helpers."""

import datetime as dt
import gzip
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from quant_assets.datasets import DATASETS, Dataset
from quant_assets.flatfiles import vendor_key
from quant_assets.sources import S3FlatFiles

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The demo month: Presidents' Day (16th) is a holiday, stocks switch to 6-decimal text on the 23rd.
FEB = dt.date(2026, 2, 2), dt.date(2026, 2, 27)
TEST_KEY, TEST_SECRET = "test-access-key", "test-secret-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server, over HTTP on 127.0.0.1, for the whole test session."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_client(endpoint: str, key: str = TEST_KEY, secret: str = TEST_SECRET):
    return boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1").client(
        "s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"})
    )


@pytest.fixture
def bucket(s3_endpoint):
    """A fresh, empty bucket on the moto server."""
    name = f"flatfiles-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


def s3_source(endpoint: str, bucket: str, **overrides) -> S3FlatFiles:
    fields = dict(endpoint_url=endpoint, bucket=bucket, access_key_id=TEST_KEY, secret_access_key=TEST_SECRET,
                  max_attempts=3)  # fmt: skip
    return S3FlatFiles(**{**fields, **overrides})


def run_cli(*args: str, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a console script of this environment (`dagster`, `quant-assets`) as a user would."""
    full_env = {**os.environ, "DAGSTER_HOME": str(cwd / "dagster_home"), **(env or {})}
    (cwd / "dagster_home").mkdir(parents=True, exist_ok=True)
    result = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=full_env, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def write_vendor_file(root: Path, dataset: Dataset, session: dt.date, text: str | bytes, compress=True) -> Path:
    """Put a hand-written vendor file at its key under `root`."""
    path = root / vendor_key(dataset, session)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture(scope="session")
def february(tmp_path_factory) -> Path:
    """Generated vendor files for the four default datasets over February 2026 (shared, read-only)."""
    from quant_assets.sample import folder_writer, generate

    root = tmp_path_factory.mktemp("vendor")
    names = ["stocks_daily", "stocks_minute", "options_daily", "options_minute"]
    generate([DATASETS[n] for n in names], *FEB, folder_writer(root))
    return root
