"""The documentation: the README stays a front door, every relative link resolves, the MkDocs site builds strictly,
and the README's five-minute tour runs as written."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_BYTES = 12_500
TOUR_MARK = "<!-- tour -->"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def relative_links(path: Path) -> list[str]:
    """The links of a Markdown file that point inside the repository (not URLs, not bare anchors), code left out."""
    text = CODE_SPAN.sub("", FENCE.sub("", path.read_text()))
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def tour_commands(readme: str) -> list[str]:
    """The commands of the README's tour: the fenced block after the tour mark, one command a line, comments cut."""
    after = readme.split(TOUR_MARK, 1)
    assert len(after) == 2, f"README.md has no {TOUR_MARK} mark before its tour"
    block = re.match(r"\s*```bash\n(.*?)\n```", after[1], re.S)
    assert block, f"README.md: no ```bash block right after {TOUR_MARK}"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    return [re.sub(r"\s+#\s[^'\"]*$", "", line).strip() for line in lines]


def test_readme_is_a_front_door():
    size = README.stat().st_size
    assert size <= README_MAX_BYTES, (
        f"README.md is {size:,} bytes; move detail into docs/ (at most {README_MAX_BYTES:,})"
    )


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path):
    broken = []
    for target in relative_links(path):
        file = target.split("#", 1)[0]
        if file and not (path.parent / file).exists():
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)}: links to missing files: {broken}"


def test_mkdocs_builds_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (it is in the dev dependency group: make setup installs it)")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"
    assert (tmp_path / "site" / "index.html").exists()


def test_tour_has_its_four_steps():
    commands = tour_commands(README.read_text())
    assert commands[0] == "make dev"
    joined = "\n".join(commands)
    assert "dagster job execute -m quant_assets.definitions -j ingest_us_equities" in joined
    assert "dagster/asset_partition_range_start" in joined and "dagster/asset_partition_range_end" in joined
    assert "quant-assets catalog" in commands
    assert "duckdb.connect('data/catalog.duckdb')" in joined
    assert "qlib.init(" in joined and "D.features(" in joined
    assert not any(c.endswith("\\") for c in commands), "one command a line: the test runs them line by line"


def _has_catalog_command() -> bool:
    cli = (ROOT / "quant_assets" / "cli.py").read_text()
    return (ROOT / "quant_assets" / "catalog.py").exists() and '"catalog"' in cli


@pytest.mark.skipif(not _has_catalog_command(), reason="`quant-assets catalog` is not there yet (issue 24, part 1)")
def test_tour_runs_as_written(tmp_path):
    """The tour's commands, as the README writes them, in a fresh working folder after `quant-assets sample`: the
    range ingest, the catalog and its query. The UI (`make dev`) is left out; so is the Qlib read, which needs the
    Qlib directories that only `make demo` builds."""
    bin_dir = ROOT / ".venv" / "bin"
    if not (bin_dir / "quant-assets").exists():
        pytest.skip("no .venv with the project installed (make setup)")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    home = tmp_path / "data" / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANT_ASSETS_", "DAGSTER_", "MASSIVE_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    sample = subprocess.run(
        ["quant-assets", "sample", "--start", "2026-02-01", "--end", "2026-02-28"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert sample.returncode == 0, sample.stderr[-2000:]

    steps = [c for c in tour_commands(README.read_text()) if c != "make dev" and "qlib" not in c]
    script = "set -eo pipefail\n" + "".join(f"echo '=== step {i}'\n{c}\n" for i, c in enumerate(steps))
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    outputs = dict(re.findall(r"=== step (\d+)\n(.*?)(?==== step |\Z)", result.stdout, re.S))
    ingest = next(i for i, c in enumerate(steps) if "ingest_us_equities" in c)
    query = next(i for i, c in enumerate(steps) if "duckdb.connect" in c)
    assert "RUN_SUCCESS" in out, out[-4000:]
    assert (tmp_path / "data" / "lake" / "stocks_daily" / "date=2026-02-20" / "part-0.parquet").exists()
    assert (tmp_path / "data" / "catalog.duckdb").exists()
    table = outputs[str(query)]
    assert "ticker" in table and "close" in table, table
    assert len(re.findall(r"^│ \S+\s+│\s+[\d.]+ │$", table, re.M)) == 5, table
    assert ingest < query
