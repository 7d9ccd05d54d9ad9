"""One DuckDB file that queries everything built: `data/catalog.duckdb` holds views, not copies, over every zone.

    quant-assets catalog                     # (re)writes data/catalog.duckdb
    duckdb data/catalog.duckdb -c "SELECT ticker, close FROM lake_stocks_daily WHERE date = DATE '2026-02-20'"

The views read the Parquet files where they are, by absolute path, so the catalog works from any working directory
and sees new sessions as soon as they land (a glob per zone). Partitioned zones are read with hive partitioning on
`date`, so a query of one session reads one partition (`EXPLAIN ANALYZE` shows one file).

- `lake_<dataset>`, `quarantine_<dataset>`: each lake dataset and its quarantined rows (with their reasons).
- `enriched_<dataset>`: the enriched zones (and a view per table a session also holds, e.g.
  `enriched_stocks_minute_bars_5m`, `enriched_stocks_minute_vwap`); `enriched_stocks_daily` with restatements applied, as
  `features.restate.read_enriched_daily` does (a restated row replaces the session's row when it was adjusted
  with newer factors).
- `reference_<table>` (the newest version) and `reference_<table>_versions` (every version, with `as_of`), and the
  table macro `reference_<table>_as_of(day)`: the version known on `day` (point-in-time).
- `adjustment_factors` (the current factors per ticker and ex-date) and `stocks_daily_adjusted`: the lake's day
  bars times the factor of each session (the first ex-date after it, as `reference.factors.adjust` and the features
  use it), with `price_factor` and `volume_factor`.
- `coverage`: the coverage ledger; `rest_stocks_daily`; the market-data datasets `quotes`, `news`,
  `fundamentals_versions` / `earnings_versions` (every as-of version, with `as_of`), `vendor_indicators`.

A view exists only for a zone that holds files; run the catalog again (the `catalog` asset does, after each layer)
when a new zone appears or a restatement or a new version changes which file is current. A pure module.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import duckdb

from quant_assets.features.restate import RESTATED
from quant_assets.lake import PART_NAME
from quant_assets.quality.coverage import ledger_path
from quant_assets.reference.versions import latest_version, version_path

CATALOG = "catalog.duckdb"
DATE = "hive_partitioning = true, hive_types = {'date': DATE}, union_by_name = true"
REFERENCE_TABLES = ("reference_splits", "reference_dividends", "reference_tickers")
ENRICHED_DAILY = "stocks_daily"


def catalog_path(data_root: str | os.PathLike) -> Path:
    """Where the catalog of `data_root` lives: `data_root/catalog.duckdb`."""
    return Path(data_root) / CATALOG


def _text(path: Path | str) -> str:
    """A path as a SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def _sessions(folder: Path, name: str = PART_NAME) -> str | None:
    """`read_parquet` of a partitioned folder's `date=YYYY-MM-DD/<name>` files, or None without any."""
    if not any(folder.glob(f"date=*/{name}")):
        return None
    return f"read_parquet({_text(folder / 'date=*' / name)}, {DATE})"


def _versions(folder: Path, pattern: str = "as_of=*.parquet") -> str | None:
    """Every `as_of=YYYY-MM-DD.parquet` of `folder`, with its `as_of` date, or None."""
    if not any(folder.glob(pattern)):
        return None
    source = (
        f"read_parquet({_text(folder / pattern)}, filename = true, hive_partitioning = false, union_by_name = true)"
    )
    as_of = r"CAST(regexp_extract(filename, 'as_of=(\d{4}-\d{2}-\d{2})', 1) AS DATE) AS as_of"
    return f"SELECT * EXCLUDE (filename), {as_of} FROM {source}"


def views(data_root: str | os.PathLike) -> dict[str, str]:
    """The catalog's statements (view or macro name -> SQL), for the zones under `data_root` that hold files."""
    root = Path(data_root).resolve()
    lake, out = root / "lake", {}
    for zone, prefix in ((lake, "lake"), (root / "quarantine", "quarantine")):
        for folder in (
            sorted(p for p in zone.glob("*") if p.is_dir() and not p.name.startswith("_")) if zone.is_dir() else []
        ):
            if folder.name in SERVICE_FOLDERS or folder.name == "rest_stocks_daily" or not folder.name.isidentifier():
                continue  # their own views below; a folder that is not a dataset's name gets none
            if source := _sessions(folder):
                out[f"{prefix}_{folder.name}"] = f"CREATE VIEW {prefix}_{folder.name} AS SELECT * FROM {source}"
    enriched = root / "enriched"
    for folder in sorted(p for p in enriched.glob("*") if p.is_dir()) if enriched.is_dir() else []:
        if not folder.name.isidentifier():
            continue
        if source := _sessions(folder):
            out[f"enriched_{folder.name}"] = f"CREATE VIEW enriched_{folder.name} AS SELECT * FROM {source}"
        # A session's other tables (enriched_stocks_minute's bars_5m, bars_15m, bars_60m, vwap): a view each.
        others = {p.name for p in folder.glob("date=*/*.parquet") if p.name != PART_NAME}
        for name in sorted(others):
            view = f"enriched_{folder.name}_{Path(name).stem}"
            if view.isidentifier():
                out[view] = f"CREATE VIEW {view} AS SELECT * FROM {_sessions(folder, name)}"
    if "enriched_stocks_daily" in out:
        out["enriched_stocks_daily"] = _restated_view(enriched / ENRICHED_DAILY)
    reference = root / "reference"
    for table in REFERENCE_TABLES:
        if versions := _versions(reference / table):
            out[f"{table}_versions"] = f"CREATE VIEW {table}_versions AS {versions}"
            out[table] = (f"CREATE VIEW {table} AS SELECT * EXCLUDE (as_of) FROM {table}_versions "
                          f"WHERE as_of = (SELECT max(as_of) FROM {table}_versions)")  # fmt: skip
            out[f"{table}_as_of"] = (f"CREATE MACRO {table}_as_of(day) AS TABLE SELECT * EXCLUDE (as_of) FROM "
                                     f"{table}_versions WHERE as_of = (SELECT max(as_of) FROM {table}_versions "
                                     "WHERE as_of <= day)")  # fmt: skip
    factors = reference / "adjustment_factors"
    if (manifest := _versions(factors / "_manifest")) and any(factors.glob("ticker=*/as_of=*.parquet")):
        every = _versions(factors, "ticker=*/as_of=*.parquet")
        out["adjustment_factors"] = (
            f"CREATE VIEW adjustment_factors AS WITH manifest AS ({manifest}), current AS (SELECT ticker, version "
            "FROM manifest WHERE as_of = (SELECT max(as_of) FROM manifest)), every AS ("
            f"{every}) SELECT every.* EXCLUDE (as_of) FROM every JOIN current ON every.ticker = current.ticker "
            "AND every.as_of = current.version"
        )
        if "lake_stocks_daily" in out:
            out["stocks_daily_adjusted"] = (
                "CREATE VIEW stocks_daily_adjusted AS SELECT l.* REPLACE (l.open * coalesce(f.price_factor, 1) AS open, "
                "l.high * coalesce(f.price_factor, 1) AS high, l.low * coalesce(f.price_factor, 1) AS low, "
                "l.close * coalesce(f.price_factor, 1) AS close, l.volume * coalesce(f.volume_factor, 1) AS volume), "
                "coalesce(f.price_factor, 1.0) AS price_factor, coalesce(f.volume_factor, 1.0) AS volume_factor "
                "FROM lake_stocks_daily l ASOF LEFT JOIN adjustment_factors f "
                "ON l.ticker = f.ticker AND l.date < f.ex_date"
            )
    coverage = ledger_path(lake)
    if coverage.exists():
        out["coverage"] = f"CREATE VIEW coverage AS SELECT * FROM read_parquet({_text(coverage)})"
    if source := _sessions(lake / "rest_stocks_daily"):
        out["rest_stocks_daily"] = f"CREATE VIEW rest_stocks_daily AS SELECT * FROM {source}"
    out |= _service_views(lake)
    return out


SERVICE_FOLDERS = ("quotes", "news", "fundamentals", "earnings", "vendor_indicators")


def _service_views(lake: Path) -> dict[str, str]:
    out = {}
    if any((lake / "quotes").glob("date=*/*.parquet")):
        out["quotes"] = f"CREATE VIEW quotes AS SELECT * FROM {_sessions(lake / 'quotes', '*.parquet')}"
    if any((lake / "news").glob("date=*/*.parquet")):
        out["news"] = (f"CREATE VIEW news AS SELECT * FROM read_parquet({_text(lake / 'news' / 'date=*' / '*.parquet')}, "
                       "hive_partitioning = false)")  # fmt: skip
    for dataset in ("fundamentals", "earnings"):
        pattern = "asof=*/*.parquet"
        if any((lake / dataset).glob(pattern)):
            source = f"read_parquet({_text(lake / dataset / pattern)}, hive_partitioning = true, hive_types = {{'asof': DATE}})"
            out[f"{dataset}_versions"] = (f"CREATE VIEW {dataset}_versions AS SELECT * EXCLUDE (\"asof\"), \"asof\" AS as_of "
                                          f"FROM {source}")  # fmt: skip
    if any((lake / "vendor_indicators").glob("indicator=*/part.parquet")):
        glob = _text(lake / "vendor_indicators" / "indicator=*" / "part.parquet")
        out["vendor_indicators"] = (f"CREATE VIEW vendor_indicators AS SELECT * FROM read_parquet({glob}, "
                                    "hive_partitioning = false)")  # fmt: skip
    return out


def _restated_view(folder: Path) -> str:
    base = _sessions(folder)
    latest = []
    for ticker in sorted((folder / RESTATED).glob("ticker=*")) if (folder / RESTATED).is_dir() else []:
        if (version := latest_version(ticker)) is not None:  # as `features.restate.read_enriched_daily` picks it
            latest.append(version_path(ticker, version))
    if not latest:
        return f"CREATE VIEW enriched_stocks_daily AS SELECT * FROM {base}"
    restated = f"read_parquet([{', '.join(_text(p) for p in latest)}], union_by_name = true)"
    return (
        f"CREATE VIEW enriched_stocks_daily AS WITH base AS (SELECT * FROM {base}), restated AS (SELECT * FROM "
        f"{restated}), newer AS (SELECT r.* FROM restated r JOIN base b ON r.ticker = b.ticker AND r.date = b.date "
        "WHERE r.factors_version > coalesce(b.factors_version, DATE '0001-01-01')) "
        "SELECT * FROM base WHERE NOT EXISTS (SELECT 1 FROM newer n WHERE n.ticker = base.ticker AND n.date = base.date) "
        "UNION ALL BY NAME SELECT * FROM newer"
    )


def build_catalog(data_root: str | os.PathLike, path: str | os.PathLike | None = None) -> tuple[Path, list[str]]:
    """Write the catalog of `data_root` (to `path`, default `data_root/catalog.duckdb`) atomically: a new file
    beside it, then a rename, so a reader never opens half a catalog. Returns its path and its views."""
    target = Path(path) if path is not None else catalog_path(data_root)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    temporary.unlink(missing_ok=True)
    statements = views(data_root)
    try:
        with duckdb.connect(str(temporary)) as db:
            for statement in statements.values():
                db.execute(statement)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
        Path(f"{temporary}.wal").unlink(missing_ok=True)
    return target, list(statements)


def describe(path: str | os.PathLike, names: Iterable[str]) -> list[tuple[str, int]]:
    """Each view's row count (macros are skipped), for the CLI and the asset's metadata."""
    with duckdb.connect(str(path), read_only=True) as db:
        known = {r[0] for r in db.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        return [(name, db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]) for name in names if name in known]
