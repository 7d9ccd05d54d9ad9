"""Shared fixtures: real local servers (moto's S3 server over HTTP), generated vendor files, helpers."""

import datetime as dt
import gzip
import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import boto3
import dagster as dg
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from quant_assets.datasets import DATASETS, Dataset
from quant_assets.defs.cluster import SessionCluster
from quant_assets.defs.ingest import ingest_defs
from quant_assets.defs.resources import DataZones, QualitySettings
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
    fields = dict(
        endpoint_url=endpoint, bucket=bucket, access_key_id=TEST_KEY, secret_access_key=TEST_SECRET, max_attempts=3
    )
    return S3FlatFiles(**{**fields, **overrides})


def spine(*datasets: Dataset) -> list[dg.AssetsDefinition]:
    """The session chains (raw_ and lake_ assets with their checks) of `datasets`, as the code location has them."""
    return list(ingest_defs(list(datasets)).assets)


def materialize_spine(
    datasets, source, data_root, raise_on_error=True, tickers=(), quality=None, instance=None, extra=(), **kwargs
):
    """`dagster.materialize` the spine of `datasets` (plus `extra` assets or checks) on `source` into `data_root`."""
    resources = {
        "flatfiles": source,
        "zones": DataZones(root=str(data_root), tickers=list(tickers)),
        "quality": QualitySettings(**(quality or {})),
        "cluster": SessionCluster(),
    }
    assets = [*spine(*datasets), *extra]
    if instance is not None:
        return dg.materialize(assets, resources=resources, instance=instance, raise_on_error=raise_on_error, **kwargs)
    with dg.instance_for_test() as fresh:
        return dg.materialize(assets, resources=resources, instance=fresh, raise_on_error=raise_on_error, **kwargs)


def materializations(result, asset: str) -> list[dg.AssetMaterialization]:
    """The materialisations of `asset` in a run result, one per partition."""
    events = [e.step_materialization_data.materialization for e in result.get_asset_materialization_events()]
    return [m for m in events if m.asset_key == dg.AssetKey(asset)]


def run_cli(*args: str, cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a console script of this environment (`dagster`, `quant-assets`) as a user would."""
    full_env = {**os.environ, "DAGSTER_HOME": str(cwd / "dagster_home"), **(env or {})}
    (cwd / "dagster_home").mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@contextmanager
def project_ui(cwd: Path, env: dict[str, str]):
    """`quant-assets ui` (what `make dev` runs) on a free port of 127.0.0.1, with its output in `cwd/ui.log`: yields
    the port once it answers; on exit SIGTERM stops the webserver, the daemon and the code server, and the command
    must say it stopped well (exit 0)."""
    port = free_port()
    command = [str(BIN / "quant-assets"), "ui", "-m", "quant_assets.definitions", "--host", "127.0.0.1"]
    with open(cwd / "ui.log", "w") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_for_port(port, timeout=180)
            yield port
        finally:
            process.terminate()
            try:
                assert process.wait(timeout=90) == 0
            except subprocess.TimeoutExpired:
                process.kill()
                raise


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


@pytest.fixture(scope="session")
def plan_limited_s3(tmp_path_factory):
    """A moto S3 server that enforces IAM, holding one day of stock day and minute aggregates, and credentials
    whose policy grants day aggregates only: GET/HEAD of minute aggregates answer 403, as outside a vendor plan.

    A separate process, because moto reads its auth switch from the environment at import.
    """
    import json

    from quant_assets.sample import SIZES, Universe, session_files

    port = free_port()
    # The first six calls (bucket, two objects, user, key, policy) are made before authentication starts.
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "6"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        endpoint = f"http://127.0.0.1:{port}"
        admin = s3_client(endpoint)
        admin.create_bucket(Bucket="plan-bucket")
        session = dt.date(2026, 2, 3)
        for name in ("stocks_daily", "stocks_minute"):
            data = session_files(DATASETS[name], session, Universe(7, SIZES["small"]))
            admin.put_object(Bucket="plan-bucket", Key=vendor_key(DATASETS[name], session), Body=data)
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            aws_access_key_id=TEST_KEY,
            aws_secret_access_key=TEST_SECRET,
            region_name="us-east-1",
        )
        iam.create_user(UserName="subscriber")
        key = iam.create_access_key(UserName="subscriber")["AccessKey"]
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::plan-bucket"]},
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": ["arn:aws:s3:::plan-bucket/us_stocks_sip/day_aggs_v1/*"],
                },
            ],
        }
        iam.put_user_policy(UserName="subscriber", PolicyName="plan", PolicyDocument=json.dumps(policy))
        yield {
            "endpoint": endpoint,
            "bucket": "plan-bucket",
            "session": session,
            "access_key_id": key["AccessKeyId"],
            "secret_access_key": key["SecretAccessKey"],
        }
    finally:
        server.terminate()
        server.wait(timeout=10)


class FaultyProxy:
    """A real HTTP proxy in front of an S3 server that answers the next requests with the faults queued in
    `faults`: "503" (SlowDown), "500" (InternalError) or "reset" (the connection is dropped mid-request); and the
    next GETs (object bodies) with those in `get_faults`: "flip" (one byte of the body flipped, same length),
    "short" (the body cut short, with a Content-Length that matches what is sent), "cutoff" (the full
    Content-Length announced, half the body sent, the connection closed), "412" (PreconditionFailed: the ETag
    changed) or "stall" (half the body, then a long silence)."""

    def __init__(self, upstream: str):
        import http.client
        import http.server
        import threading
        from urllib.parse import urlparse

        self.faults: list[str] = []
        self.get_faults: list[str] = []
        self.stall_seconds = 120.0
        self.seen: list[str] = []
        target = urlparse(upstream)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.seen.append(f"{self.command} {self.path}")
                fault = proxy.faults.pop(0) if proxy.faults else None
                if fault == "reset":
                    import struct

                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if fault in ("503", "500"):
                    code, name = (503, "SlowDown") if fault == "503" else (500, "InternalError")
                    payload = f"<Error><Code>{name}</Code><Message>injected</Message></Error>".encode()
                    self.send_response(code)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                body_fault = None
                if self.command == "GET" and "list-type" not in self.path and proxy.get_faults:
                    body_fault = proxy.get_faults.pop(0)
                if body_fault == "412":
                    payload = b"<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>"
                    self.send_response(412)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = self.headers.get("Host", target.netloc)
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                if body_fault == "flip" and data:
                    data = data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0x20]) + data[len(data) // 2 + 1 :]
                elif body_fault == "short":
                    data = data[: len(data) - max(1, len(data) // 3)]
                length = response.getheader("Content-Length", "0") if self.command == "HEAD" else len(data)
                if body_fault in ("cutoff", "stall"):
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    if body_fault == "stall":
                        time.sleep(proxy.stall_seconds)
                    self.close_connection = True
                    conn.close()
                    return
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def faulty_proxy(s3_endpoint):
    proxy = FaultyProxy(s3_endpoint)
    yield proxy
    proxy.close()
