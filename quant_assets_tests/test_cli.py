"""The code location through Dagster's own CLI, and the `quant-assets` command, as a user runs them."""

import datetime as dt

import polars as pl
import pytest

from quant_assets.datasets import DATASETS
from quant_assets.lake import partition_path
from quant_assets_tests.conftest import run_cli

DEFAULT_ASSETS = [
    f"{layer}_{name}"
    for name in ("stocks_daily", "stocks_minute", "options_daily", "options_minute")
    for layer in ("raw", "lake")
]


@pytest.fixture
def workdir(tmp_path, february):
    env = {"QUANT_ASSETS_VENDOR_DIR": str(february), "QUANT_ASSETS_DATA": str(tmp_path / "data")}
    return tmp_path, env


def lake_sessions(data, name):
    return sorted(p.name.removeprefix("date=") for p in (data / "lake" / name).glob("date=*"))


def test_definitions_validate(workdir):
    cwd, env = workdir
    result = run_cli("dagster", "definitions", "validate", "-m", "quant_assets.definitions", cwd=cwd, env=env)
    assert "Validation successful" in result.stdout + result.stderr


def test_definitions_validate_with_every_dataset_and_the_s3_source(workdir):
    cwd, env = workdir
    env = {
        **env,
        "QUANT_ASSETS_DATASETS": "all",
        "QUANT_ASSETS_SOURCE": "s3",
        "MASSIVE_S3_ACCESS_KEY_ID": "x",
        "MASSIVE_S3_SECRET_ACCESS_KEY": "y",
    }
    result = run_cli("dagster", "definitions", "validate", "-m", "quant_assets.definitions", cwd=cwd, env=env)
    assert "Validation successful" in result.stdout + result.stderr


def test_asset_materialize_one_partition_and_a_range(workdir):
    cwd, env = workdir
    select = "raw_stocks_daily,lake_stocks_daily"
    run_cli(
        "dagster",
        "asset",
        "materialize",
        "-m",
        "quant_assets.definitions",
        "--select",
        select,
        "--partition",
        "2026-02-20",
        cwd=cwd,
        env=env,
    )
    assert lake_sessions(cwd / "data", "stocks_daily") == ["2026-02-20"]
    run_cli(
        "dagster",
        "asset",
        "materialize",
        "-m",
        "quant_assets.definitions",
        "--select",
        select,
        "--partition-range",
        "2026-02-12...2026-02-18",
        cwd=cwd,
        env=env,
    )
    assert lake_sessions(cwd / "data", "stocks_daily") == [
        "2026-02-12",
        "2026-02-13",
        "2026-02-17",
        "2026-02-18",
        "2026-02-20",
    ]


def test_job_execute_a_range_then_status(workdir):
    cwd, env = workdir
    tags = '{"dagster/asset_partition_range_start": "2026-02-19", "dagster/asset_partition_range_end": "2026-02-23"}'
    run_cli(
        "dagster",
        "job",
        "execute",
        "-m",
        "quant_assets.definitions",
        "-j",
        "ingest_us_equities",
        "--tags",
        tags,
        cwd=cwd,
        env=env,
    )
    for name in ("stocks_daily", "stocks_minute", "options_daily", "options_minute"):
        assert lake_sessions(cwd / "data", name) == ["2026-02-19", "2026-02-20", "2026-02-23"]
    frame = pl.read_parquet(partition_path(cwd / "data" / "lake", "options_minute", dt.date(2026, 2, 23)))
    assert frame.columns == list(DATASETS["options_minute"].lake_schema())
    status = run_cli("quant-assets", "status", "--data", str(cwd / "data"), cwd=cwd).stdout
    lines = {line.split()[0]: line.split() for line in status.splitlines()[2:]}
    assert lines["stocks_minute"][1:4] == ["3", "2026-02-19", "2026-02-23"]
    rows = sum(pl.read_parquet(p).height for p in (cwd / "data" / "lake" / "stocks_minute").rglob("*.parquet"))
    assert lines["stocks_minute"][4] == f"{rows:,}"


def test_job_execute_a_failing_partition_exits_non_zero_and_says_why(workdir):
    cwd, env = workdir
    result = run_cli(
        "dagster",
        "job",
        "execute",
        "-m",
        "quant_assets.definitions",
        "-j",
        "ingest_us_equities",
        "--tags",
        '{"dagster/partition": "2026-03-02"}',
        cwd=cwd,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert (
        "stocks_daily 2026-03-02: us_stocks_sip/day_aggs_v1/2026/03/2026-03-02.csv.gz: the source has no file "
        "for this session"
    ) in result.stdout + result.stderr


@pytest.mark.parametrize(
    "args, says",
    [
        (["--help"], "{sample,sample-rest,providers,status,coverage,plan,universes,catalog,run,ui,bench}"),
        (["ui", "--help"], "a request whose Host header is not 127.0.0.1, localhost, --host or a trusted host"),
        (["plan", "--help"], "whether a run would fetch the vendor file"),
        (["sample-rest", "--help"], "in each vendor's JSON shapes"),
        (["providers", "--help"], "`reset NAME` closes breaker NAME"),
        (["providers", "--help"], "latency p50/p95 and cache hits over the last --hours"),
        (["universes", "--help"], "past memberships stay answerable"),
        (["run", "--help"], "on the configured Dagster instance (DAGSTER_HOME), so the run shows in the UI"),
        (["bench", "ingest", "--help"], "then again from the response cache: 0 requests, under 2 s"),
        (["sample", "--help"], "in the vendor's exact format"),
        (["status", "--help"], "Sessions, rows, tickers and bytes per lake and enriched dataset"),
        (["coverage", "--help"], "Rebuild the coverage ledger"),
        (["bench", "ingest", "--help"], "Budgets: day at most 0.65x gzip -dc"),
    ],
)
def test_help_says_what_each_command_does(args, says, tmp_path):
    out = " ".join(run_cli("quant-assets", *args, cwd=tmp_path).stdout.split())
    assert says in out


def _on_a_terminal(args: list[str], cwd) -> tuple[bytes, str]:
    """Run a `quant-assets` command with its stderr on a pseudo-terminal (120 columns): what the terminal showed,
    and stdout."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios

    from quant_assets_tests.conftest import BIN

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen([str(BIN / "quant-assets"), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the command closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    stdout = process.stdout.read().decode()
    assert process.wait(timeout=120) == 0
    os.close(master)
    return shown, stdout


def test_long_commands_show_a_progress_bar_on_a_terminal_and_nothing_in_logs(tmp_path):
    args = ["sample", "--start", "2026-01-01", "--end", "2026-01-31", "--datasets", "stocks_daily", "--out"]
    shown, stdout = _on_a_terminal([*args, str(tmp_path / "tty")], tmp_path)
    assert b"stocks_daily:" in shown and b"/20 [" in shown and b"session" in shown
    assert stdout.startswith("wrote 20 files")
    piped = run_cli("quant-assets", *args, str(tmp_path / "piped"), cwd=tmp_path)
    assert piped.stderr == "" and piped.stdout.startswith("wrote 20 files")
    planned = run_cli(
        "quant-assets",
        "plan",
        "--start",
        "2026-01-01",
        "--end",
        "2026-01-31",
        "--datasets",
        "stocks_daily",
        "--data",
        str(tmp_path / "data"),
        cwd=tmp_path,
        env={"QUANT_ASSETS_VENDOR_DIR": str(tmp_path / "piped")},
    )
    assert planned.stderr == "" and "stocks_daily: 20 to fetch" in planned.stdout
