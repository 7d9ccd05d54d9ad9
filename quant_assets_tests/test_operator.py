"""Operator mistakes with the data folder, on real filesystems: a folder that is read-only, a file, or full is named
in one sentence with what to do, before a run writes (the zones resource, the `quant-assets` command) or when a
write fails (the lake's write functions and the Qlib bins), and nothing half-written is left behind.

The read-only and full filesystems are tmpfs mounts, since root (as the tests run here and in CI) may write into a
folder whatever its mode; where mounting is not permitted those tests skip, saying why.
"""

import datetime as dt
import errno
import shutil
import subprocess
import traceback
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from quant_assets.datasets import DATASETS
from quant_assets.defs.cluster import SessionCluster
from quant_assets.defs.resources import DataZones, QualitySettings
from quant_assets.errors import PROBE_PREFIX, DataFolderError
from quant_assets.flatfiles import vendor_key
from quant_assets.lake import PartitionWriter, partition_path, replace_bytes, sink_partition
from quant_assets.qlib import bins
from quant_assets.sample import folder_writer, generate
from quant_assets.sources import LocalFlatFiles
from quant_assets_tests.conftest import run_cli, spine

DAY, MINUTE = DATASETS["stocks_daily"], DATASETS["stocks_minute"]
SESSION = dt.date(2026, 2, 20)
ELSEWHERE = "set QUANT_ASSETS_DATA to another folder"
RESOURCE_FAILED = (
    "dagster._core.errors.DagsterResourceFunctionError: Error executing resource_fn on ResourceDefinition zones"
)


class Mounts:
    """tmpfs mounts made by a test, unmounted after it."""

    def __init__(self):
        self.mounted: list[Path] = []

    def tmpfs(self, path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            reason = f"cannot mount a tmpfs at {path} ({done.stderr.strip() or done.returncode}): needs root"
            print(reason)
            pytest.skip(reason)
        self.mounted.append(path)
        return path

    def read_only(self, path: Path) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)


@pytest.fixture
def mounts():
    if shutil.which("mount") is None:
        print("no mount command: the tmpfs tests skip")
        pytest.skip("no mount command")
    made = Mounts()
    try:
        yield made
    finally:
        for path in reversed(made.mounted):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.fixture(scope="module")
def vendor(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vendor")
    generate([DAY, MINUTE], SESSION, SESSION, folder_writer(root))
    return root


def run(vendor: Path, data: Path, dataset=DAY, min_free_mb: float = 100):
    """`dagster.materialize` of the session chain of `dataset` for SESSION, as a run of the code location does."""
    resources = {
        "flatfiles": LocalFlatFiles(root=str(vendor)),
        "zones": DataZones(root=str(data), min_free_mb=min_free_mb),
        "quality": QualitySettings(),
        "cluster": SessionCluster(),
    }
    with dg.instance_for_test() as instance:
        return dg.materialize(
            spine(dataset), resources=resources, instance=instance, raise_on_error=False, partition_key=str(SESSION)
        )


def resource_failure(result) -> str:
    """The sentence of the run's failure, which the zones resource raised at the run's start: under Dagster's
    wrapper (every error of a resource's setup gets it), our Failure alone."""
    [failure] = [e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE"]
    error = failure.event_specific_data.error
    assert error.message.startswith(RESOURCE_FAILED), error.message
    assert error.cause.cause is None and error.cause.context is None  # no second error under the sentence
    assert not [e for e in result.all_events if e.event_type_value == "STEP_START"]  # no step ran
    return error.cause.message.removeprefix("dagster._core.definitions.events.Failure: ").rstrip("\n")


def leftovers(root: Path) -> list[Path]:
    """Temporary files and probes a failed write would have left."""
    return [p for p in root.rglob("*") if ".tmp" in p.name or p.name.startswith(PROBE_PREFIX)]


def one_error(error: BaseException) -> str:
    """The error as Python (and Dagster) print it, asserted to be the error alone: no chained cause or context."""
    shown = "".join(traceback.format_exception(error))
    assert "During handling" not in shown and "direct cause" not in shown and "FileNotFoundError" not in shown
    return str(error)


def fill(folder: Path, leave: int = 0, chunk: int = 16 * 1024) -> list[Path]:
    """Fill the filesystem of `folder` with ballast files of `chunk` bytes, then remove `leave` of them."""
    made = []
    while True:
        path = folder / f"ballast-{len(made)}"
        try:
            path.write_bytes(b"\1" * chunk)
        except OSError as error:
            assert error.errno == errno.ENOSPC
            path.unlink(missing_ok=True)
            break
        made.append(path)
    for path in made[:leave]:
        path.unlink()
    return made[leave:]


def test_a_read_only_data_folder_fails_the_run_and_the_command_before_they_write(mounts, tmp_path, vendor):
    mount = mounts.tmpfs(tmp_path / "disk", "4m")
    data = mount / "data"
    data.mkdir()
    mounts.read_only(mount)
    sentence = (
        f"data folder {data} is on a read-only filesystem (EROFS, the filesystem mounted at {mount}); mount it "
        f"read-write, or {ELSEWHERE}"
    )
    result = run(vendor, data)
    assert not result.success
    assert resource_failure(result) == sentence
    assert list(data.iterdir()) == []
    env = {"QUANT_ASSETS_VENDOR_DIR": str(vendor), "QUANT_ASSETS_DATA": str(data)}
    done = run_cli("quant-assets", "coverage", "--data", str(data), cwd=tmp_path, env=env, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"quant-assets coverage: {sentence}\n")
    out = data / "vendor"  # a folder that is not there yet, on the read-only filesystem
    days = ["--start", "2026-02-20", "--end", "2026-02-20"]
    done = run_cli("quant-assets", "sample", *days, "--out", str(out), cwd=tmp_path, check=False)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"quant-assets sample: folder {out}: folder {data} is on a read-only filesystem (EROFS, the filesystem "
        f"mounted at {mount}); mount it read-write, or pass --out another folder\n"
    )


def test_a_data_path_that_is_a_file_is_named_by_the_run_the_commands_and_the_writes(tmp_path, vendor):
    data = tmp_path / "data"
    data.write_text("not a folder")
    sentence = f"data folder {data} is a file, not a folder (ENOTDIR); move the file away, or {ELSEWHERE}"
    result = run(vendor, data)
    assert not result.success and resource_failure(result) == sentence
    env = {"QUANT_ASSETS_VENDOR_DIR": str(vendor)}
    for command in (["coverage"], ["status"], ["plan", "--start", "2026-02-20", "--end", "2026-02-20"]):
        done = run_cli("quant-assets", *command, "--data", str(data), cwd=tmp_path, env=env, check=False)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", f"quant-assets {command[0]}: {sentence}\n")
    with pytest.raises(DataFolderError) as raised:
        replace_bytes(data / "lake" / "published.json", b"{}")
    assert isinstance(raised.value, OSError) and raised.value.errno == errno.ENOTDIR
    assert one_error(raised.value) == (
        f"cannot write {data}/lake/published.json: folder {data} is a file, not a folder (ENOTDIR); move the file "
        f"away, or {ELSEWHERE}"
    )
    assert data.read_text() == "not a folder"


def test_a_nearly_full_disk_fails_the_run_at_its_start(mounts, tmp_path, vendor):
    mount = mounts.tmpfs(tmp_path / "disk", "2m")
    data = mount / "data"
    result = run(vendor, data)  # the default minimum, 100 MiB
    assert not result.success
    assert resource_failure(result) == (
        f"data folder {data} has 2 MiB free on its disk (the filesystem mounted at {mount}), under the minimum of "
        f"100 MiB (QUANT_ASSETS_MIN_FREE_MB); free space on it, or {ELSEWHERE}"
    )
    assert list(data.iterdir()) == []  # made, probed, the probe removed


def test_a_disk_that_fills_up_during_a_run_fails_the_session_in_one_sentence(mounts, tmp_path, vendor):
    """The raw file lands (the data folder's disk has room), the lake's disk is full: the session fails naming the
    lake file, its folder and what to do; no partial or temporary file is left, the raw file is kept."""
    data = mounts.tmpfs(tmp_path / "data", "4m")
    lake = mounts.tmpfs(data / "lake", "32k")  # the session's lake file takes ~60 KB
    result = run(vendor, data, MINUTE, min_free_mb=1)
    assert not result.success
    [failure] = result.get_step_failure_events()
    error = failure.step_failure_data.error
    target = partition_path(lake, MINUTE.name, SESSION)
    sentence = (
        f"cannot write {target}: folder {lake}/{MINUTE.name} is on a full disk (ENOSPC, the filesystem mounted at "
        f"{lake}); free space on it, or {ELSEWHERE}"
    )
    assert f"\n- {MINUTE.name} {SESSION}: {vendor_key(MINUTE, SESSION)}: DataFolderError: {sentence}" in error.message
    assert error.cause is None and error.context is None
    assert "FileNotFoundError" not in "".join(str(e) for e in result.all_events)
    assert not target.exists() and not target.parent.exists()
    assert leftovers(data) == []
    assert (data / "raw" / vendor_key(MINUTE, SESSION)).exists()


def test_the_write_functions_on_a_full_disk_raise_one_error_and_leave_nothing(mounts, tmp_path):
    disk = mounts.tmpfs(tmp_path / "disk", "2m")
    folder = disk / "lake"
    folder.mkdir()
    full = f"is on a full disk (ENOSPC, the filesystem mounted at {disk}); free space on it, or {ELSEWHERE}"
    noise = np.random.default_rng(7).random(2**19)  # 4 MiB of values that hardly compress

    kept = folder / "published.json"
    replace_bytes(kept, b"old")
    with pytest.raises(DataFolderError) as raised:
        replace_bytes(kept, noise.tobytes())
    assert one_error(raised.value) == f"cannot write {kept}: folder {folder} {full}"
    assert kept.read_bytes() == b"old" and leftovers(disk) == []

    target = folder / "stocks_minute" / "date=2026-02-20" / "part-0.parquet"
    frames = (pl.DataFrame({"x": noise[i : i + 2**16]}) for i in range(0, noise.size, 2**16))
    with pytest.raises(DataFolderError) as raised:
        sink_partition(frames, target, {"x": pl.Float64})
    assert one_error(raised.value) == f"cannot write {target}: folder {folder}/stocks_minute {full}"
    assert not target.parent.exists() and leftovers(disk) == []

    writer = PartitionWriter(target, {"x": pl.Float64})
    with pytest.raises(DataFolderError) as raised:
        for i in range(0, noise.size, 2**16):
            writer.write(pl.DataFrame({"x": noise[i : i + 2**16]}))
        writer.commit()
    writer.discard()
    assert one_error(raised.value).startswith(f"cannot write {target}: folder {folder}/stocks_minute")
    assert raised.value.errno == errno.ENOSPC and not target.parent.exists() and leftovers(disk) == []


def test_a_qlib_bin_on_a_full_disk_is_named_and_left_whole(mounts, tmp_path):
    """A new bin that does not fit: one error naming it (not the `FileNotFoundError` of the missing bin that the
    create ran under); a block appended past a bin's end that fits only in part: the bin is cut back to its values."""
    disk = mounts.tmpfs(tmp_path / "disk", "2m")
    folder = disk / "qlib" / "day" / "features" / "aapl"
    folder.mkdir(parents=True)
    bins.write_block(str(folder / "close.day.bin"), 3, np.arange(8, dtype=np.float32).tobytes())
    fill(disk, leave=1)  # one 16 KiB page left
    block = np.ones(2**14, dtype=np.float32).tobytes()  # 64 KiB

    new = folder / "change.day.bin"
    with pytest.raises(DataFolderError) as raised:
        bins.write_block(str(new), 0, block)
    assert one_error(raised.value) == (
        f"cannot write {new}: folder {folder} is on a full disk (ENOSPC, the filesystem mounted at {disk}); free "
        f"space on it, or {ELSEWHERE}"
    )
    assert not new.exists() and leftovers(disk) == []

    with pytest.raises(DataFolderError):
        bins.write_block(str(folder / "close.day.bin"), 11, block)
    start, values = bins.read_bin(folder / "close.day.bin")
    assert start == 3 and values.tolist() == list(range(8))
    assert bins.span(folder / "close.day.bin") == (3, 8)


def test_the_write_functions_on_a_read_only_folder_raise_one_error(mounts, tmp_path):
    disk = mounts.tmpfs(tmp_path / "disk", "2m")
    (disk / "lake").mkdir()
    replace_bytes(disk / "lake" / "published.json", b"old")
    mounts.read_only(disk)
    below = f"is on a read-only filesystem (EROFS, the filesystem mounted at {disk}); mount it read-write, or"
    at = "is on a read-only filesystem (EROFS); mount it read-write, or"
    target = disk / "lake" / "stocks_daily" / "date=2026-02-20" / "part-0.parquet"
    new_bin = disk / "qlib" / "aapl" / "close.day.bin"
    writes = [  # (the file, its nearest folder that exists, the problem, the write)
        (
            disk / "lake" / "published.json",
            disk / "lake",
            below,
            lambda: replace_bytes(disk / "lake/published.json", b"new"),
        ),
        (
            target,
            disk / "lake",
            below,
            lambda: sink_partition(iter([pl.DataFrame({"x": [1.0]})]), target, {"x": pl.Float64}),
        ),
        (new_bin, disk, at, lambda: bins.write_block(str(new_bin), 0, b"\0\0\0\0")),
    ]
    for path, folder, problem, write in writes:
        with pytest.raises(DataFolderError) as raised:
            write()
        assert one_error(raised.value) == f"cannot write {path}: folder {folder} {problem} {ELSEWHERE}", path
    writer = PartitionWriter(target, {"x": pl.Float64})
    with pytest.raises(DataFolderError):
        writer.write(pl.DataFrame({"x": [1.0]}))
    writer.discard()  # no second error
    assert (disk / "lake" / "published.json").read_bytes() == b"old"


def test_sample_filling_its_folder_stops_in_one_sentence(mounts, tmp_path):
    out = mounts.tmpfs(tmp_path / "vendor", "512k")
    month = ["--start", "2026-02-02", "--end", "2026-02-27"]
    env = {"QUANT_ASSETS_MIN_FREE_MB": "0"}  # past the check at the start: the disk fills up while writing
    done = run_cli("quant-assets", "sample", *month, "--out", str(out), cwd=tmp_path, env=env, check=False)
    assert (done.returncode, done.stdout) == (2, "")
    # The sample writer does not say which file was being written: the command names its folder.
    assert (
        done.stderr
        == f"quant-assets sample: folder {out} is on a full disk (ENOSPC); free space on it, or pass --out another folder\n"
    )
    assert leftovers(out) == []
