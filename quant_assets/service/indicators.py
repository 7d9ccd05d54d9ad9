"""`vendor_indicators`: a vendor's technical indicators (Alpha Vantage's SMA, EMA, RSI, MACD) for a universe, spread
over days so that a small daily budget (the free plan's 25 requests) is never what stops a run: the budget plans
the work.

Each run lists the (symbol, indicator) pairs that are due — never fetched, or fetched before the close of the last
completed session — oldest first (never fetched, then the stalest, then by symbol), and asks only as many as
today's budget has requests left (`ProviderClient.requests_left_today`); the rest wait for the next day's runs, and
once every pair is current the daily refresh goes round the universe in the same order. One request answers a
pair's whole history. A pair that failed is asked again after the next close, behind those never asked. Each
attempt is charged, so a retried request costs one more and can leave the day's last planned pair to meet the spent
budget (`BudgetExhausted`, named in the run): it is due again the next day.

Layout: `lake/vendor_indicators/indicator=<NAME>/part.parquet` (e.g. `indicator=SMA_20`), long rows (ticker,
indicator, date, name, value, provider, fetched_at; MACD has three names a date), a pair's rows replaced as a whole
when it is fetched again (atomically: the file is rewritten); `_fetched.parquet` beside it is the ledger (ticker,
indicator, fetched_at, last_date: the vendor's latest date in the answer). A pair that fails keeps its ledger entry and is due again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from quant_assets.lake import replace_parquet
from quant_assets.locks import locked
from quant_assets.names import child, component
from quant_assets.providers.errors import ProviderError
from quant_assets.providers.symbols import Unsupported
from quant_assets.service.summary import Collected

DATASET = "vendor_indicators"
SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "indicator": pl.String(),
    "date": pl.Date(),
    "name": pl.String(),
    "value": pl.Float64(),
    "provider": pl.String(),
    "fetched_at": pl.Datetime("us", "UTC"),
}
LEDGER = "_fetched.parquet"
LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.String(),
    "indicator": pl.String(),
    "fetched_at": pl.Datetime("us", "UTC"),
    "last_date": pl.Date(),
}


@dataclass(frozen=True)
class Indicator:
    """One of a vendor's indicators as a job asks it: `function` (SMA, EMA, RSI, MACD) over `time_period`
    sessions (None for MACD's fixed 12/26/9) of daily closes; `name` is how rows and folders call it."""

    function: str
    time_period: int | None = None

    @classmethod
    def parse(cls, name: str) -> Indicator:
        """`SMA_20` as Indicator("SMA", 20), `MACD` as Indicator("MACD"); ValueError for another shape."""
        function, _, period = name.strip().upper().partition("_")
        if not function.isalpha() or (period and not period.isdigit()):
            raise ValueError(f"{name!r} is not an indicator name such as SMA_20, EMA_12, RSI_14 or MACD")
        return cls(function, int(period) if period else None)

    @property
    def name(self) -> str:
        return component(self.function if self.time_period is None else f"{self.function}_{self.time_period}")


DEFAULT_INDICATORS = (Indicator("SMA", 20), Indicator("EMA", 12), Indicator("RSI", 14), Indicator("MACD"))


def indicator_path(lake_root: str | Path, indicator: Indicator) -> Path:
    return child(lake_root, DATASET, f"indicator={indicator.name}", "part.parquet")


def read_ledger(lake_root: str | Path) -> pl.DataFrame:
    path = Path(lake_root) / DATASET / LEDGER
    return pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=LEDGER_SCHEMA)


def due(
    symbols: Sequence[str], indicators: Sequence[Indicator], ledger: pl.DataFrame, closed: dt.datetime
) -> list[tuple[str, Indicator]]:
    """The (symbol, indicator) pairs not fetched since `closed` (the close of the last completed session), in the
    order they are asked: never fetched first, then the stalest, then by symbol."""
    held = {(r["ticker"], r["indicator"]): r["fetched_at"] for r in ledger.iter_rows(named=True)}
    order = []
    for symbol in symbols:
        for indicator in indicators:
            fetched = held.get((symbol, indicator.name))
            if fetched is None or fetched < closed:
                order.append(((fetched is not None, fetched or closed, symbol, indicator.name), (symbol, indicator)))
    return [pair for _, pair in sorted(order, key=lambda item: item[0])]


def collect_indicators(
    provider,
    symbols: Sequence[str],
    lake_root: str | Path,
    now: dt.datetime,
    closed: dt.datetime,
    indicators: Sequence[Indicator] = DEFAULT_INDICATORS,
    force: bool = False,
) -> Collected:
    """Ask `provider` (an `AlphaVantage`) for the pairs due since `closed` (the last completed session's close)
        that today's budget allows (all pairs with `force`, still within the budget), and land their rows. Requests go one at a time: the free plan's 5 a minute are the
        pace, and each answer is a pair's whole history. A pair that failed is asked again after the next close, behind those never asked. Each
    attempt is charged, so a retried request costs one more and can leave the day's last planned pair to meet the spent
    budget (`BudgetExhausted`, named in the run): it is due again the next day."""
    out = Collected(DATASET)
    ledger = read_ledger(lake_root)
    planned = due(symbols, indicators, pl.DataFrame(schema=LEDGER_SCHEMA) if force else ledger, closed)
    out.skipped = len(symbols) * len(indicators) - len(planned)
    left = provider.client.requests_left_today()
    if left is not None and left < len(planned):
        out.notes.append(
            f"{len(planned)} due, today's budget allows {left}: {len(planned) - left} wait for the next days' runs"
        )
        planned = planned[:left]
    out.asked = len(planned)
    frames: dict[str, list[pl.DataFrame]] = {}
    answered = []
    for symbol, indicator in planned:
        try:
            frame, aside = provider.indicator(indicator.function, symbol, time_period=indicator.time_period)
        except Unsupported as error:
            out.notes.append(f"{symbol} {indicator.name}: {provider.name} skipped: {error}")
            continue
        except ProviderError as error:
            out.failed.append(f"{symbol} {indicator.name}: {provider.name}: {type(error).__name__}: {error}")
            # Asked again after the next close, behind the pairs never asked: a pair that always fails cannot
            # take the day's budget from the others.
            answered.append({"ticker": symbol, "indicator": indicator.name, "fetched_at": now.astimezone(dt.UTC),
                             "last_date": None})  # fmt: skip
            continue
        out.serve(provider.name)
        out.set_aside += aside
        values = [c for c in frame.columns if c not in ("ticker", "date")]
        long = frame.unpivot(index=["ticker", "date"], on=values, variable_name="name", value_name="value")
        frames.setdefault(indicator.name, []).append(
            long.select(
                "ticker",
                pl.lit(indicator.name).alias("indicator"),
                "date",
                "name",
                "value",
                pl.lit(provider.name).alias("provider"),
                pl.lit(now.astimezone(dt.UTC)).alias("fetched_at"),
            ).cast(SCHEMA)  # fmt: skip
        )
        answered.append({"ticker": symbol, "indicator": indicator.name, "fetched_at": now.astimezone(dt.UTC),
                         "last_date": frame["date"].max()})  # fmt: skip
    ledger_file = Path(lake_root) / DATASET / LEDGER
    with locked(ledger_file):  # a schedule's run and a hand run land in turn: neither loses the other's rows
        for indicator in indicators:
            new = frames.get(indicator.name)
            if not new:
                continue
            path = indicator_path(lake_root, indicator)
            fresh = pl.concat(new)
            kept = pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=SCHEMA)
            kept = kept.filter(~pl.col("ticker").is_in(fresh["ticker"].unique().implode()))
            replace_parquet(pl.concat([kept, fresh]).sort("ticker", "date", "name"), path)
            out.rows += fresh.height
            out.written.append(str(path))
        if answered:
            merged = pl.concat([read_ledger(lake_root), pl.DataFrame(answered, schema=LEDGER_SCHEMA)])
            replace_parquet(merged.unique(["ticker", "indicator"], keep="last", maintain_order=True), ledger_file)
    return out


def read_indicators(lake_root: str | Path, indicators: Sequence[str] | None = None) -> pl.LazyFrame:
    """The landed indicator rows (of `indicators` by name, e.g. ["SMA_20"], or all)."""
    folder = Path(lake_root) / DATASET
    files = [
        f for f in sorted(folder.glob("indicator=*/part.parquet"))
        if indicators is None or f.parent.name.removeprefix("indicator=") in indicators
    ]  # fmt: skip
    return pl.scan_parquet(files, schema=SCHEMA) if files else pl.LazyFrame(schema=SCHEMA)


def compare_with_features(
    vendor: pl.DataFrame, ours: pl.DataFrame, pairs: Mapping[str, str], tolerance: float
) -> tuple[int, pl.DataFrame]:
    """The vendor's values against the project's features where both have a (ticker, date): `pairs` maps an
    indicator row's `name` within an indicator (e.g. "SMA_20/SMA") to a feature column (`sma_20`). Returns how
    many were compared, and the rows whose relative difference is past `tolerance`."""
    found, compared = [], 0
    for key, column in pairs.items():
        indicator, name = key.split("/")
        if column not in ours.columns:
            continue
        theirs = vendor.filter((pl.col("indicator") == indicator) & (pl.col("name") == name))
        both = theirs.join(ours.select("ticker", "date", pl.col(column).alias("ours")), on=["ticker", "date"])
        both = both.filter(pl.col("ours").is_not_null() & pl.col("value").is_not_null())
        compared += both.height
        off = (pl.col("value") - pl.col("ours")).abs() > tolerance * pl.col("ours").abs().clip(lower_bound=1e-9)
        found.append(both.filter(off).select("ticker", "date", "indicator", "value", "ours"))
    return compared, pl.concat(found) if found else pl.DataFrame()
