"""The spine tried as an attacker and an unlucky operator would: corrupt downloads never land, memory stays bounded
on hostile files, nothing is read from outside the source, overlapping runs are safe, a killed run leaves nothing
behind, and every failure says what to do. Real files, real servers, real processes."""

import datetime as dt
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from quant_assets.datasets import DATASETS
from quant_assets.flatfiles import DEFAULT_BATCH_BYTES, FlatFileError, vendor_key
from quant_assets.ingest import IngestOptions, build_partition
from quant_assets.lake import partition_path
from quant_assets.raw import land, raw_path, read_landed, replaced_path, sha256_of
from quant_assets.settings import from_env
from quant_assets.sources import LocalFlatFiles, S3FlatFiles
from quant_assets_tests.conftest import (
    PROJECT,
    TEST_KEY,
    TEST_SECRET,
    materializations,
    materialize_spine,
    run_cli,
    s3_client,
    s3_source,
    write_vendor_file,
)

DAY, MINUTE = DATASETS["stocks_daily"], DATASETS["stocks_minute"]
SESSION = dt.date(2026, 2, 20)
KEY = vendor_key(DAY, SESSION)


@pytest.fixture
def uploaded(s3_endpoint, bucket, february):
    s3_client(s3_endpoint).put_object(Bucket=bucket, Key=KEY, Body=(february / KEY).read_bytes())
    return bucket


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if ".tmp-" in p.name)


@pytest.mark.parametrize(
    "fault, problem",
    [("flip", "not a valid gzip file"), ("short", "the gzip stream is truncated")],
    ids=["flipped-byte", "cut-short-with-matching-length"],
)
def test_a_corrupt_download_never_lands(s3_endpoint, uploaded, faulty_proxy, tmp_path, february, fault, problem):
    source = s3_source(faulty_proxy.endpoint, uploaded, max_attempts=2)
    faulty_proxy.get_faults = [fault] * 4
    with pytest.raises(FlatFileError) as info:
        land(source, DAY, SESSION, tmp_path)
    message = str(info.value)
    assert message.startswith(f"stocks_daily 2026-02-20: {KEY}: the download is corrupt: {problem}")
    assert not raw_path(tmp_path, DAY, SESSION).exists() and read_landed(tmp_path, DAY, SESSION) is None
    [kept] = (tmp_path / "_rejected").rglob("*.csv.gz")  # nothing is lost: the bad bytes are kept aside
    assert kept.read_bytes() != (february / KEY).read_bytes()
    assert leftovers(tmp_path) == []
    faulty_proxy.get_faults = []
    landed = land(source, DAY, SESSION, tmp_path)  # the next run lands the true file
    assert landed.downloaded and raw_path(tmp_path, DAY, SESSION).read_bytes() == (february / KEY).read_bytes()


@pytest.mark.parametrize("fault", ["flip", "short"])
def test_a_ranged_part_damaged_under_a_matching_length_never_lands(s3_endpoint, bucket, faulty_proxy, tmp_path, fault):
    """A multipart download (parallel ranged GETs): one part comes back damaged, with headers that look right."""
    text = b"".join(b"ROW%07d,1,1,1,1,1,1771563600000000000,1\n" % i for i in range(90_000))
    body = gzip.compress(text, compresslevel=0)  # stored blocks: ~3.6 MB, four 1 MiB parts
    s3_client(s3_endpoint).put_object(Bucket=bucket, Key=KEY, Body=body)
    source = s3_source(faulty_proxy.endpoint, bucket, max_attempts=2, multipart_chunksize_mb=1, max_concurrency=2)
    faulty_proxy.get_faults = [fault] * 8  # every ranged GET of this download
    with pytest.raises(FlatFileError, match="the download is corrupt: ") as info:
        land(source, DAY, SESSION, tmp_path)
    assert "ETag" in str(info.value) or "gzip" in str(info.value) or "bytes, the source said" in str(info.value)
    assert not raw_path(tmp_path, DAY, SESSION).exists() and leftovers(tmp_path) == []
    assert sum(1 for request in faulty_proxy.seen if request.startswith("GET")) >= 4  # it was fetched in parts


def test_a_single_part_etag_must_be_the_md5_of_the_bytes(tmp_path, february):
    class LyingSource(LocalFlatFiles):  # a real local source whose listing claims another version's ETag
        def head(self, key):
            info = super().head(key)
            return type(info)(key=info.key, etag='"0123456789abcdef0123456789abcdef"', size=info.size)

    with pytest.raises(FlatFileError, match=r"the MD5 of the downloaded bytes \([0-9a-f]{32}\) is not the ETag"):
        land(LyingSource(root=str(february)), DAY, SESSION, tmp_path)
    assert not raw_path(tmp_path, DAY, SESSION).exists()


@pytest.mark.parametrize(
    "fault, cause",
    [
        ("cutoff", "the body was cut off before its end"),
        ("412", "the ETag changed during the download (the vendor replaced the file)"),
        ("503", "throttled by the endpoint (HTTP 503"),
    ],
)
def test_each_s3_failure_names_endpoint_key_attempts_and_cause(
    s3_endpoint, uploaded, faulty_proxy, tmp_path, fault, cause
):
    source = s3_source(faulty_proxy.endpoint, uploaded, max_attempts=2)
    if fault == "503":
        faulty_proxy.faults = ["503"] * 10  # throttled on every request, the HEAD included
    else:
        faulty_proxy.get_faults = [fault] * 10
    with pytest.raises(FlatFileError) as info:
        land(source, DAY, SESSION, tmp_path)
    message = str(info.value)
    assert message.startswith(f"stocks_daily 2026-02-20: {KEY}: ") and cause in message
    assert f"s3://{uploaded}/{KEY} at {faulty_proxy.endpoint}" in message
    if fault != "412":  # a changed ETag is a fact, not retried
        assert "after 2 attempts" in message
    assert leftovers(tmp_path) == []


def test_a_corrupt_raw_file_left_by_an_older_version_is_fetched_again(february, tmp_path):
    vendor, data = tmp_path / "vendor", tmp_path / "data"
    write_vendor_file(vendor, DAY, SESSION, (february / KEY).read_bytes(), compress=False)
    source = LocalFlatFiles(root=str(vendor))
    assert materialize_spine([DAY], source, data, partition_key=SESSION.isoformat()).success
    # An older version landed a damaged copy of the right size and recorded the sha256 of those bytes.
    raw = raw_path(data / "raw", DAY, SESSION)
    damaged = bytearray(raw.read_bytes())
    damaged[len(damaged) // 2] ^= 0x20
    raw.write_bytes(bytes(damaged))
    sidecar = raw.with_name(raw.name + ".json")
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "sha256": sha256_of(raw)}))
    (partition_path(data / "lake", "stocks_daily", SESSION)).unlink()
    first = materialize_spine([DAY], source, data, partition_key=SESSION.isoformat(), raise_on_error=False)
    assert not first.success  # the lake finds it corrupt, and says so
    assert read_landed(data / "raw", DAY, SESSION).corrupt.startswith("not a valid gzip file")
    second = materialize_spine([DAY], source, data, partition_key=SESSION.isoformat())
    [raw_event] = materializations(second, "raw_stocks_daily")
    assert raw_event.metadata["downloaded"].value is True  # fetched again, not "already current"
    assert raw.read_bytes() == (february / KEY).read_bytes()
    assert partition_path(data / "lake", "stocks_daily", SESSION).exists()


def test_a_landed_copy_whose_bytes_changed_is_fetched_again(february, tmp_path):
    source = LocalFlatFiles(root=str(february))
    land(source, DAY, SESSION, tmp_path)
    raw = raw_path(tmp_path, DAY, SESSION)
    damaged = bytearray(raw.read_bytes())
    damaged[100] ^= 1  # bit rot: same size, same ETag on record
    raw.write_bytes(bytes(damaged))
    again = land(source, DAY, SESSION, tmp_path)
    assert again.downloaded and raw.read_bytes() == (february / KEY).read_bytes()


def test_the_local_source_refuses_links_and_paths_outside_its_root(tmp_path, february):
    vendor = tmp_path / "vendor"
    outside = tmp_path / "elsewhere" / "2026-02-20.csv.gz"
    outside.parent.mkdir()
    outside.write_bytes((february / KEY).read_bytes())
    link = vendor / KEY
    link.parent.mkdir(parents=True)
    link.symlink_to("/etc/passwd")
    other = vendor / vendor_key(DAY, dt.date(2026, 2, 19))
    other.symlink_to(outside)  # a valid file, but outside the vendor folder
    source = LocalFlatFiles(root=str(vendor))
    for session in (SESSION, dt.date(2026, 2, 19)):
        with pytest.raises(FlatFileError, match="is a symbolic link: the local source serves only regular files"):
            land(source, DAY, session, tmp_path / "raw")
    assert source.list_objects(DAY.key_prefix) == []
    assert not (tmp_path / "raw" / KEY).exists()
    with pytest.raises(Exception, match="is not a key inside the local source"):
        source.head("../elsewhere/2026-02-20.csv.gz")
    # A touch or a copy of the folder is not a vendor replacement: the ETag is the content's MD5.
    plain = LocalFlatFiles(root=str(february))
    before = plain.head(KEY).etag
    os.utime(february / KEY, (time.time(), time.time() + 5))
    assert plain.head(KEY).etag == before
    assert before.strip('"') == __import__("hashlib").md5((february / KEY).read_bytes()).hexdigest()


LAND = """
import datetime as dt, sys
from quant_assets.datasets import DATASETS
from quant_assets.raw import land
from quant_assets.sources import LocalFlatFiles
landed = land(LocalFlatFiles(root=sys.argv[1]), DATASETS["stocks_daily"], dt.date(2026, 2, 20), sys.argv[2])
print(landed.downloaded, landed.replaced_etag)
"""


def test_two_processes_landing_a_replaced_file_keep_the_old_version(tmp_path, february):
    vendor, raw = tmp_path / "vendor", tmp_path / "raw"
    old = (february / KEY).read_bytes()
    write_vendor_file(vendor, DAY, SESSION, old, compress=False)
    first = land(LocalFlatFiles(root=str(vendor)), DAY, SESSION, raw)
    new = gzip.compress(gzip.decompress(old).rsplit(b"\n", 2)[0] + b"\n")  # the vendor republishes, a row fewer
    write_vendor_file(vendor, DAY, SESSION, new, compress=False)
    runs = [
        subprocess.Popen([sys.executable, "-c", LAND, str(vendor), str(raw)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = sorted(run.communicate(timeout=120)[0].split()[0] for run in runs)
    assert outputs == ["False", "True"]  # one landed it; the other waited, then found it current
    assert raw_path(raw, DAY, SESSION).read_bytes() == new
    archived = sorted((raw / "_replaced").rglob("*.csv.gz"))
    assert archived == [replaced_path(raw, KEY, first.etag)] and archived[0].read_bytes() == old
    assert leftovers(raw) == []


KILLED = """
import datetime as dt, sys
from quant_assets.datasets import DATASETS
from quant_assets.raw import land
from quant_assets.sources import S3FlatFiles
source = S3FlatFiles(endpoint_url=sys.argv[1], bucket=sys.argv[2], access_key_id=sys.argv[3],
                     secret_access_key=sys.argv[4], max_attempts=1)
land(source, DATASETS["stocks_daily"], dt.date(2026, 2, 20), sys.argv[5])
"""


def test_a_run_killed_mid_copy_leaves_nothing_after_the_next_run(s3_endpoint, uploaded, faulty_proxy, tmp_path):
    raw = tmp_path / "raw"
    # A file large enough that the copy has written part of it when the connection stalls (stored gzip blocks).
    text = b"".join(b"ROW%07d,1,1,1,1,1,1771563600000000000,1\n" % i for i in range(120_000))
    s3_client(s3_endpoint).put_object(Bucket=uploaded, Key=KEY, Body=gzip.compress(text, compresslevel=0))
    faulty_proxy.get_faults = ["stall"]
    args = [faulty_proxy.endpoint, uploaded, TEST_KEY, TEST_SECRET, str(raw)]
    child = subprocess.Popen([sys.executable, "-c", KILLED, *args], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not leftovers(raw) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(raw), "the copy never started"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert leftovers(raw)  # kill -9 mid-copy: the temporary file is still there
    landed = land(s3_source(s3_endpoint, uploaded), DAY, SESSION, raw)
    assert landed.downloaded and leftovers(raw) == []


MEASURE = """
import datetime as dt, json, sys
from pathlib import Path
from quant_assets.datasets import DATASETS
from quant_assets.flatfiles import ReadLimits
from quant_assets.ingest import IngestOptions, build_partition
from quant_assets.raw import LandedFile
path, name, session, out, cap, batch = sys.argv[1:7]
dataset = DATASETS[name]
landed = LandedFile.of(path, "us_stocks_sip/minute_aggs_v1/2026/02/" + session + ".csv.gz")
options = IngestOptions(limits=ReadLimits(max_inflated_bytes=int(cap) or None), batch_bytes=int(batch))
try:
    build_partition(landed, dataset, dt.date.fromisoformat(session), Path(out) / "lake", Path(out) / "quarantine",
                    options)
    error = ""
except Exception as exc:
    error = str(exc)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"error": error, "peak_mib": hwm / 1024}))
"""


def measure(path, out, cap=0, batch=4 * 2**20, session="2026-02-20") -> dict:
    args = [str(path), "stocks_minute", session, str(out), str(cap), str(batch)]
    result = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def big_minute_file(february, path: Path, copies: int, shift_days: int = 0) -> int:
    """A large stock minute file: the generated day repeated under distinct tickers (valid rows, no duplicates)."""
    day = pl.read_csv(february / vendor_key(MINUTE, SESSION), infer_schema=False)
    frames = [day.with_columns(ticker=pl.col("ticker") + f"X{i}") for i in range(copies)]
    frame = pl.concat(frames)
    if shift_days:
        frame = frame.with_columns(
            (pl.col("window_start").cast(pl.Int64) + shift_days * 86_400 * 10**9).cast(pl.String)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(frame.write_csv().encode(), compresslevel=1))
    return frame.height


def test_a_file_stamped_with_the_wrong_day_is_rejected_within_the_clean_files_memory(february, tmp_path):
    clean, shifted = tmp_path / "clean.csv.gz", tmp_path / "shifted.csv.gz"
    rows = big_minute_file(february, clean, 590)  # a full-size day: ~2.2M rows, ~170 MB of text
    big_minute_file(february, shifted, 590, shift_days=1)
    assert rows > 2_000_000
    good = measure(clean, tmp_path / "a", batch=DEFAULT_BATCH_BYTES)  # as a run reads it
    bad = measure(shifted, tmp_path / "b", batch=DEFAULT_BATCH_BYTES)
    assert good["error"] == ""
    assert f"quality gate: {rows:,} of {rows:,} rows (100.00%) failed checks" in bad["error"]
    assert bad["peak_mib"] <= 1.25 * good["peak_mib"], (good, bad)
    assert (
        pl.scan_parquet(partition_path(tmp_path / "b" / "quarantine", "stocks_minute", SESSION))
        .select(pl.len())
        .collect()
        .item()
        == rows
    )


def test_a_gzip_bomb_fails_at_the_cap_in_bounded_memory(february, tmp_path):
    text = gzip.decompress((february / vendor_key(MINUTE, SESSION)).read_bytes())
    header, body = text.split(b"\n", 1)
    body = b"\n".join(body.split(b"\n")[:250]) + b"\n"  # valid rows, fewer than deflate's 32 KiB window
    block = body * (64 * 2**20 // len(body))  # ~64 MiB of valid rows, compressed once, repeated as members
    member = gzip.compress(block, compresslevel=9)
    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(gzip.compress(header + b"\n") + member * 24)  # ~1.5 GiB of text from a few MiB
    assert bomb.stat().st_size < 40 * 2**20
    result = measure(bomb, tmp_path / "out", cap=512 * 2**20)
    assert "the file inflates to more than 536,870,912 bytes, the cap for stocks_minute" in result["error"]
    assert "nothing was written, the raw file is kept" in result["error"]
    assert result["peak_mib"] < 700, result
    assert not (tmp_path / "out" / "lake" / "stocks_minute" / "date=2026-02-20").exists()
    assert leftovers(tmp_path / "out") == []


def test_implausible_values_and_invalid_utf8_are_reported_by_row(tmp_path):
    header = "ticker,volume,open,close,high,low,window_start,transactions\n"
    good = "AAPL,10,1,2,3,0.5,1771563600000000000,4\n"
    rows = "".join(f"T{i}{good[4:]}" for i in range(200))
    path = write_vendor_file(tmp_path / "v", DAY, SESSION, header + rows + "A" * 100_000 + good[4:])
    landed = __import__("quant_assets.raw", fromlist=["LandedFile"]).LandedFile.of(path, KEY)
    stats = build_partition(landed, DAY, SESSION, tmp_path / "lake", tmp_path / "q", IngestOptions())
    bad = pl.read_parquet(partition_path(tmp_path / "q", "stocks_daily", SESSION))
    assert stats.rows == 200 and bad["vendor_row"].to_list() == [201]
    assert bad["reason"][0].startswith("ticker is not a vendor symbol") and "at most 40 characters" in bad["reason"][0]
    raw = (header + good * 3).encode() + b"MS\xffT,1,1,2,3,0.5,1771563600000000000,4\n"
    path = write_vendor_file(tmp_path / "u", DAY, SESSION, raw)
    landed = type(landed).of(path, KEY)
    with pytest.raises(FlatFileError) as info:
        build_partition(landed, DAY, SESSION, tmp_path / "lake2", tmp_path / "q2", IngestOptions())
    assert str(info.value).startswith(f"stocks_daily 2026-02-20: {KEY}, row 4 (line 5): invalid UTF-8")


def test_credentials_in_the_endpoint_url_are_refused_without_repeating_them():
    url = "http://user:s3cr3t@127.0.0.1:9000"
    with pytest.raises(ValueError) as info:
        from_env({"MASSIVE_S3_ENDPOINT": url})
    assert "MASSIVE_S3_ACCESS_KEY_ID" in str(info.value) and "s3cr3t" not in str(info.value)
    with pytest.raises(ValueError) as info:
        S3FlatFiles(endpoint_url=url, bucket="b", access_key_id="k", secret_access_key="s")
    assert "s3cr3t" not in str(info.value)
    result = run_cli("quant-assets", "coverage", cwd=PROJECT, env={"MASSIVE_S3_ENDPOINT": url}, check=False)
    assert result.returncode == 1 and "s3cr3t" not in result.stderr + result.stdout
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_the_command_prints_one_line_when_the_source_is_unreachable(s3_endpoint, tmp_path):
    env = {
        "QUANT_ASSETS_SOURCE": "s3",
        "MASSIVE_S3_ENDPOINT": s3_endpoint,
        "MASSIVE_S3_BUCKET": "no-such-bucket",
        "MASSIVE_S3_ACCESS_KEY_ID": TEST_KEY,
        "MASSIVE_S3_SECRET_ACCESS_KEY": TEST_SECRET,
    }
    result = run_cli("quant-assets", "coverage", "--data", str(tmp_path), cwd=tmp_path, env=env, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert (
        line.startswith("quant-assets coverage: ")
        and f"the bucket 'no-such-bucket' does not exist at {s3_endpoint}" in line
    )


SLOW_RUN = """
import time
import dagster as dg

@dg.asset
def slow():
    time.sleep(300)

dg.materialize([slow], instance=dg.DagsterInstance.get())
"""


def test_a_killed_run_is_marked_failed_and_frees_the_queue(tmp_path, monkeypatch):
    import dagster as dg

    from quant_assets.defs import operations

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = instance.get_runs()
            if runs and runs[0].status == dg.DagsterRunStatus.STARTED and operations.run_pids(instance, runs[0].run_id):
                break
            time.sleep(0.2)
        [run] = instance.get_runs()
        assert operations.run_pids(instance, run.run_id) == [child.pid]
        monkeypatch.setattr(operations, "GRACE_SECONDS", 0)
        result = operations.dead_runs(dg.build_sensor_context(instance=instance))
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED  # alive: left alone
        assert "no dead runs" in str(result)
        child.send_signal(signal.SIGKILL)
        child.wait()
        operations.dead_runs(dg.build_sensor_context(instance=instance))
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        messages = [e.message for e in instance.all_logs(run.run_id) if e.message]
        assert any(f"(pid {child.pid}) is no longer alive" in m for m in messages)
