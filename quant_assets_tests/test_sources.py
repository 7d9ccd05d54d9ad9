"""Sources over real servers: moto's S3 server over HTTP (no boto3 patching), a local folder, faults injected
by a real proxy, and a plan-limited server that answers 403."""

import datetime as dt
import gzip

import pytest

from quant_assets.datasets import DATASETS
from quant_assets.flatfiles import FlatFileError, FlatFileMissing, FlatFilePermissionError, vendor_key
from quant_assets.raw import land, read_landed, replaced_path, sha256_of
from quant_assets.sources import LocalFlatFiles, ObjectMissing
from quant_assets_tests.conftest import TEST_KEY, TEST_SECRET, run_cli, s3_client, s3_source

DAY = DATASETS["stocks_daily"]
MINUTE = DATASETS["stocks_minute"]
S1, S2 = dt.date(2026, 2, 3), dt.date(2026, 2, 4)


@pytest.fixture(scope="module")
def uploaded(s3_endpoint, tmp_path_factory):
    """Generator output uploaded to the moto server by the `quant-assets sample` command."""
    bucket = "flatfiles-sources"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    tmp_path = tmp_path_factory.mktemp("sample")
    run_cli(
        "quant-assets",
        "sample",
        "--start",
        "2026-02-03",
        "--end",
        "2026-02-04",
        "--datasets",
        "stocks_daily,stocks_minute",
        "--s3-endpoint",
        s3_endpoint,
        "--bucket",
        bucket,
        cwd=tmp_path,
        env={"MASSIVE_S3_ACCESS_KEY_ID": TEST_KEY, "MASSIVE_S3_SECRET_ACCESS_KEY": TEST_SECRET},
    )
    return bucket


def test_s3_lists_heads_and_lands_generated_files(s3_endpoint, uploaded, tmp_path, february):
    source = s3_source(s3_endpoint, uploaded)
    keys = [o.key for o in source.list_objects(DAY.key_prefix)]
    assert keys == [vendor_key(DAY, S1), vendor_key(DAY, S2)]
    landed = land(source, MINUTE, S1, tmp_path / "raw")
    assert landed.downloaded and landed.source == f"s3:{s3_endpoint}/{uploaded}"
    # Byte for byte what the generator wrote (the same bytes it wrote to a folder for the shared fixture).
    local_copy = february / vendor_key(MINUTE, S1)
    assert (tmp_path / "raw" / landed.key).read_bytes() == local_copy.read_bytes()
    assert landed.sha256 == sha256_of(local_copy) and landed.size == local_copy.stat().st_size
    assert landed.etag == s3_client(s3_endpoint).head_object(Bucket=uploaded, Key=landed.key)["ETag"]
    assert read_landed(tmp_path / "raw", MINUTE, S1) == landed


def test_unchanged_files_are_not_downloaded_again_and_replaced_ones_are_kept(s3_endpoint, uploaded, tmp_path):
    source = s3_source(s3_endpoint, uploaded)
    first = land(source, DAY, S2, tmp_path)
    again = land(source, DAY, S2, tmp_path)
    assert not again.downloaded and again.sha256 == first.sha256
    # The vendor republishes the file: a new ETag means a new download, and the old bytes are kept.
    old_bytes = (tmp_path / first.key).read_bytes()
    s3_client(s3_endpoint).put_object(Bucket=uploaded, Key=first.key, Body=old_bytes + b"")  # same bytes
    assert not land(source, DAY, S2, tmp_path).downloaded  # same content, same ETag
    republished = gzip.compress(gzip.decompress(old_bytes).rsplit(b"\n", 2)[0] + b"\n")  # one row fewer
    s3_client(s3_endpoint).put_object(Bucket=uploaded, Key=first.key, Body=republished)
    replaced = land(source, DAY, S2, tmp_path)
    assert replaced.downloaded and replaced.replaced_etag == first.etag and replaced.etag != first.etag
    kept = replaced_path(tmp_path, first.key, first.etag)
    assert kept.name == f"2026-02-04.etag-{first.etag.strip(chr(34))}.csv.gz"
    assert kept.read_bytes() == old_bytes


def test_transient_errors_are_retried(s3_endpoint, uploaded, tmp_path, faulty_proxy, february):
    source = s3_source(faulty_proxy.endpoint, uploaded, max_attempts=5)
    faulty_proxy.faults = ["503", "reset", "500", "503", "reset"]
    landed = land(source, MINUTE, S1, tmp_path)
    assert (tmp_path / landed.key).read_bytes() == (february / vendor_key(MINUTE, S1)).read_bytes()
    assert faulty_proxy.faults == [] and len(faulty_proxy.seen) >= 7


def test_retries_give_up_with_the_error(s3_endpoint, uploaded, tmp_path, faulty_proxy):
    source = s3_source(faulty_proxy.endpoint, uploaded, max_attempts=2)
    faulty_proxy.faults = ["503"] * 10
    with pytest.raises(FlatFileError) as info:
        land(source, DAY, S1, tmp_path)
    assert str(info.value).startswith(f"stocks_daily 2026-02-03: {vendor_key(DAY, S1)}: ")
    assert "throttled by the endpoint (HTTP 503" in str(info.value) and "after 2 attempts" in str(info.value)
    assert not (tmp_path / vendor_key(DAY, S1)).exists()


def test_missing_object(s3_endpoint, uploaded, tmp_path):
    with pytest.raises(FlatFileMissing) as info:
        land(s3_source(s3_endpoint, uploaded), DAY, dt.date(2026, 2, 5), tmp_path)
    assert str(info.value).startswith("stocks_daily 2026-02-05: us_stocks_sip/day_aggs_v1/2026/02/2026-02-05.csv.gz")
    assert "no file for this session" in str(info.value)


def test_403_outside_the_plan_is_a_clear_permission_error(plan_limited_s3, tmp_path):
    p = plan_limited_s3
    source = s3_source(
        p["endpoint"], p["bucket"], access_key_id=p["access_key_id"], secret_access_key=p["secret_access_key"]
    )
    assert land(source, DAY, p["session"], tmp_path).downloaded  # inside the plan
    with pytest.raises(FlatFilePermissionError) as info:
        land(source, MINUTE, p["session"], tmp_path)
    message = str(info.value)
    assert message.startswith("stocks_minute 2026-02-03: us_stocks_sip/minute_aggs_v1/2026/02/2026-02-03.csv.gz")
    assert "403 Forbidden" in message and "plan" in message
    assert not (tmp_path / vendor_key(MINUTE, p["session"])).exists()


def test_local_source(tmp_path, february):
    source = LocalFlatFiles(root=str(february))
    assert [o.key for o in source.list_objects(DAY.key_prefix)][:2] == [
        vendor_key(DAY, dt.date(2026, 2, 2)),
        vendor_key(DAY, S1),
    ]
    landed = land(source, DAY, S1, tmp_path)
    assert (tmp_path / landed.key).read_bytes() == (february / landed.key).read_bytes()
    assert not land(source, DAY, S1, tmp_path).downloaded
    with pytest.raises(ObjectMissing):
        source.head(vendor_key(DAY, dt.date(2026, 2, 16)))


def test_secrets_stay_out_of_reprs(s3_endpoint):
    source = s3_source(s3_endpoint, "b", access_key_id="AKIA-VERY-SECRET", secret_access_key="s3cr3t-value")
    for text in (repr(source), str(source), source.describe()):
        assert "AKIA-VERY-SECRET" not in text and "s3cr3t-value" not in text
