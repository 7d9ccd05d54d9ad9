"""Adjustment factors from splits and dividends: backward adjustment, the convention of CRSP and of most vendors.

The lake keeps raw prices. For each ticker, every corporate action has a factor, and the factor of a session is
the product of the factors of all actions whose ex-date is after it:

    adjusted price  = raw price  * price_factor        (the newest prices are unchanged)
    adjusted volume = raw volume * volume_factor

Choices, documented:
- **Ex-date semantics.** An action's ex-date (`execution_date` of a split, `ex_dividend_date` of a dividend) is the
  first session at the new price; sessions strictly before it are adjusted, the ex-date itself is not.
- **Splits.** `split_from`-for-`split_to`: the price factor is `split_from / split_to` (a 2-for-1 split halves
  earlier prices), the volume factor its inverse.
- **Dividends.** The factor is `1 - cash_amount / close`, with the ticker's raw close of the session before the
  ex-date (from the lake; if it did not trade that day, its last close within `LOOKBACK` sessions). Every cash distribution in USD adjusts: regular (CD), special (SC) and capital gains (LT, ST),
  because the price drops by each on its ex-date. A dividend in another currency, or one at or above that close,
  is skipped and reported. A dividend whose previous close is not in the lake yet is `pending` (factor 1) until it
  is; the table says so.
- **Only finite numbers.** Before anything is computed, `checked_actions` sets aside, each with its reason: a
  record whose ticker is not a vendor symbol (`names.ticker_problem`), a split whose sides are not finite and
  positive or whose ratio `split_from / split_to` is outside `SPLIT_RATIO_RANGE` (1/10,000 to 10,000: from a
  1-for-10,000 reverse split to a 10,000-for-1 split), and a dividend whose cash amount is not finite or is
  negative. `refused_factors` then names the tickers whose cumulative factors are not finite or outside
  `FACTOR_RANGE` (1e-12 to 1e12); the asset keeps their previous factors rather than publish those.
- Several actions on one ex-date multiply. Only actions whose ex-date is on or before the as-of day are applied
  (the caller filters): an announced action changes nothing until it happens.

The table has one row per ticker and ex-date: the action's own factors and the cumulative `price_factor` and
`volume_factor` that apply to the sessions before that ex-date (and on or after the previous one).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import polars as pl

from quant_assets.names import child, ticker_valid
from quant_assets.reference.versions import read_version, version_path, versions, write_version

CASH_TYPES = ("CD", "SC", "LT", "ST")
PRICE_COLUMNS = ("open", "high", "low", "close")
LOOKBACK = 10  # sessions in which to look for the close before an ex-date of a ticker that did not trade that day
TABLE = "adjustment_factors"
SPLIT_RATIO_RANGE = (1e-4, 1e4)  # split_from / split_to
FACTOR_RANGE = (1e-12, 1e12)  # a cumulative price or volume factor
UNUSABLE_SCHEMA = {"action": pl.String(), "ticker": pl.String(), "ex_date": pl.Date(), "reason": pl.String()}

FACTOR_SCHEMA = {
    "ticker": pl.String(),
    "ex_date": pl.Date(),
    "split_factor": pl.Float64(),
    "dividend_factor": pl.Float64(),
    "cash_amount": pl.Float64(),
    "previous_close": pl.Float64(),
    "pending": pl.Boolean(),
    "price_factor": pl.Float64(),
    "volume_factor": pl.Float64(),
}


def distinct_actions(splits: pl.DataFrame, dividends: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """The splits and dividends without the vendor's repeated records (the same action listed twice, which would
    otherwise apply twice), and how many were dropped."""
    unique_splits = splits.unique(["ticker", "execution_date", "split_from", "split_to"], maintain_order=True)
    unique_dividends = dividends.unique(
        ["ticker", "ex_dividend_date", "cash_amount", "dividend_type"], maintain_order=True
    )
    dropped = splits.height - unique_splits.height + dividends.height - unique_dividends.height
    return unique_splits, unique_dividends, dropped


def checked_actions(splits: pl.DataFrame, dividends: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The splits and dividends whose numbers can be used, and the others (action, ticker, ex_date, reason); see
    "Only finite numbers" in the module docstring."""
    low, high = SPLIT_RATIO_RANGE
    ratio = pl.col("split_from") / pl.col("split_to")
    ticker = pl.when(~ticker_valid().fill_null(False)).then(pl.lit("ticker is not a vendor symbol"))
    split_reason = pl.coalesce(
        ticker,
        pl.when(~(pl.col("split_from").is_finite() & pl.col("split_to").is_finite()).fill_null(True)).then(
            pl.lit("split_from or split_to is not a finite number")
        ),
        pl.when((pl.col("split_from") <= 0) | (pl.col("split_to") <= 0)).then(
            pl.lit("split_from or split_to is zero or negative")
        ),
        pl.when(~ratio.is_between(low, high)).then(
            pl.format("split ratio {} is outside {}..{}", ratio.round(6), pl.lit(low), pl.lit(high))
        ),
    )
    dividend_reason = pl.coalesce(
        ticker,
        pl.when(~pl.col("cash_amount").is_finite().fill_null(True)).then(pl.lit("cash_amount is not a finite number")),
        pl.when(pl.col("cash_amount") < 0).then(pl.lit("cash_amount is negative")),
    )
    splits = splits.with_columns(_reason=split_reason)
    dividends = dividends.with_columns(_reason=dividend_reason)
    aside = pl.concat(
        [
            splits.filter(pl.col("_reason").is_not_null()).select(
                action=pl.lit("split"), ticker="ticker", ex_date="execution_date", reason="_reason"
            ),
            dividends.filter(pl.col("_reason").is_not_null()).select(
                action=pl.lit("dividend"), ticker="ticker", ex_date="ex_dividend_date", reason="_reason"
            ),
        ]
    ).cast(UNUSABLE_SCHEMA)
    kept = [frame.filter(pl.col("_reason").is_null()).drop("_reason") for frame in (splits, dividends)]
    return kept[0], kept[1], aside


def refused_factors(table: pl.DataFrame) -> list[str]:
    """The tickers of a factor table whose factors are not finite or outside `FACTOR_RANGE` (never published)."""
    low, high = FACTOR_RANGE
    usable = pl.all_horizontal(
        (pl.col(c).is_finite() & pl.col(c).is_between(low, high)).fill_null(False)
        for c in ("split_factor", "dividend_factor", "price_factor", "volume_factor")
    )
    return sorted(table.filter(~usable)["ticker"].unique().to_list())


def split_actions(splits: pl.DataFrame) -> pl.DataFrame:
    """(ticker, ex_date, split_factor) per split (`checked_actions` first: this one only computes)."""
    return splits.select(
        "ticker",
        pl.col("execution_date").alias("ex_date"),
        (pl.col("split_from") / pl.col("split_to")).alias("split_factor"),
    )


def usable_dividends(dividends: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The dividends that adjust prices (cash, USD, positive), and the others with the reason they do not."""
    reason = (
        pl.when(~pl.col("dividend_type").fill_null("CD").is_in(CASH_TYPES))
        .then(pl.lit("not a cash distribution"))
        .when(pl.col("currency").fill_null("USD") != "USD")
        .then(pl.lit("not in USD"))
        .when(pl.col("cash_amount") <= 0)
        .then(pl.lit("no cash amount"))
    )
    marked = dividends.with_columns(reason=reason)
    return marked.filter(pl.col("reason").is_null()).drop("reason"), marked.filter(pl.col("reason").is_not_null())


def dividend_actions(dividends: pl.DataFrame, closes: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(ticker, ex_date, cash_amount, previous_close, pending) per usable dividend, and the skipped ones with a
    reason. `closes` has (ticker, ex_date, previous_close): the raw close of the session before each ex-date,
    where the lake has it. The factor itself is computed in `factor_table`, which knows a same-day split."""
    usable, skipped = usable_dividends(dividends)
    actions = (
        usable.group_by("ticker", pl.col("ex_dividend_date").alias("ex_date"), maintain_order=True)
        .agg(pl.col("cash_amount").sum())
        .join(closes, on=["ticker", "ex_date"], how="left")
        .with_columns(pending=pl.col("previous_close").is_null())
    )
    too_big = actions.filter(pl.col("cash_amount") >= pl.col("previous_close"))
    actions = actions.filter(~(pl.col("cash_amount") >= pl.col("previous_close")).fill_null(False))
    skipped = pl.concat(
        [
            skipped.select("ticker", pl.col("ex_dividend_date").alias("ex_date"), "cash_amount", "reason"),
            too_big.select("ticker", "ex_date", "cash_amount", reason=pl.lit("at or above the previous close")),
        ]
    )
    return actions, skipped


def factor_table(splits: pl.DataFrame, dividends: pl.DataFrame) -> pl.DataFrame:
    """One row per ticker and ex-date, with cumulative factors (see the module docstring)."""
    rows = pl.concat(
        [
            split_actions(splits).with_columns(
                dividend_factor=pl.lit(1.0), cash_amount=pl.lit(None, pl.Float64), previous_close=pl.lit(None, pl.Float64),
                pending=pl.lit(False),
            ),
            dividends.select(
                "ticker", "ex_date", split_factor=pl.lit(1.0), dividend_factor=pl.lit(1.0),
                cash_amount="cash_amount", previous_close="previous_close", pending="pending",
            ),
        ],
        how="diagonal",
    )  # fmt: skip
    per_day = (
        rows.sort("ticker", "ex_date", "split_factor")  # a fixed order: the products are the same bits every run
        .group_by("ticker", "ex_date", maintain_order=True)
        .agg(
            pl.col("split_factor").product(),
            pl.when(pl.col("cash_amount").is_not_null().any()).then(pl.col("cash_amount").sum()),
            pl.col("previous_close").max(),
            pl.col("pending").any(),
        )
        # The cash of a dividend that goes ex with a split is per new share: compare it with the previous close
        # in new shares.
        .with_columns(
            dividend_factor=pl.when(pl.col("cash_amount").is_null() | pl.col("pending"))
            .then(1.0)
            .otherwise(1.0 - pl.col("cash_amount") / (pl.col("previous_close") * pl.col("split_factor")))
        )
    )
    # The factor before an ex-date multiplies that day's action with every later one: a reverse cumulative product.
    return (
        per_day.sort("ticker", "ex_date", descending=[False, True])
        .with_columns(
            price_factor=(pl.col("split_factor") * pl.col("dividend_factor")).cum_prod().over("ticker"),
            volume_factor=(1.0 / pl.col("split_factor")).cum_prod().over("ticker"),
        )
        .sort("ticker", "ex_date")
        .select(list(FACTOR_SCHEMA))
        .cast(FACTOR_SCHEMA)
    )


def previous_sessions(ex_dates: pl.Series, sessions: list[dt.date]) -> pl.Series:
    """For each ex-date, the last of `sessions` strictly before it (null before the first)."""
    frame = pl.DataFrame({"ex_date": ex_dates}).with_row_index()
    found = frame.sort("ex_date").join_asof(
        pl.DataFrame({"session": sessions}, schema={"session": pl.Date}).sort("session"),
        left_on="ex_date",
        right_on="session",
        strategy="backward",
        allow_exact_matches=False,
    )
    return found.sort("index")["session"]


def adjust(prices: pl.DataFrame | pl.LazyFrame, factors: pl.DataFrame) -> pl.DataFrame | pl.LazyFrame:
    """`prices` (ticker, date and any of open/high/low/close/volume) adjusted: each price times the session's
    price factor, volume times the volume factor; `price_factor` and `volume_factor` added."""
    lazy = isinstance(prices, pl.LazyFrame)
    frame = prices.lazy() if not lazy else prices
    names = frame.collect_schema().names()
    steps = factors.lazy().select("ticker", "ex_date", "price_factor", "volume_factor").sort("ex_date")
    joined = (
        frame.with_row_index("_row")
        .sort("date")
        .join_asof(
            steps,
            left_on="date",
            right_on="ex_date",
            by="ticker",
            strategy="forward",
            allow_exact_matches=False,
            check_sortedness=False,  # both sides are sorted by date; polars cannot verify it within `by` groups
        )
        .with_columns(pl.col("price_factor", "volume_factor").fill_null(1.0))
        .with_columns(
            *(pl.col(c) * pl.col("price_factor") for c in PRICE_COLUMNS if c in names),
            *([pl.col("volume") * pl.col("volume_factor")] if "volume" in names else []),
        )
        .sort("_row")
        .drop("_row", "ex_date")
    )
    return joined if lazy else joined.collect()


def ticker_dir(root: str | os.PathLike, ticker: str) -> Path:
    """The folder of `ticker`'s factor versions (`adjustment_factors/ticker=<T>/`), the ticker URL-quoted."""
    return child(Path(root) / TABLE, f"ticker={quote(ticker, safe='')}")


def manifest_dir(root: str | os.PathLike) -> Path:
    """The manifest's versions: for each ticker, which of its versions is current and a digest of its content."""
    return Path(root) / TABLE / "_manifest"


def digests(table: pl.DataFrame) -> dict[str, str]:
    """A sha256 per ticker of its factor rows (ordered by ex-date, as text): equal digests, equal factors."""
    text = table.sort("ticker", "ex_date").select(
        "ticker",
        row=pl.concat_str([pl.col(c).cast(pl.String).fill_null("-") for c in FACTOR_SCHEMA], separator="|"),
    )
    joined = text.group_by("ticker", maintain_order=True).agg(pl.col("row").str.join("\n"))
    return {t: hashlib.sha256(rows.encode()).hexdigest() for t, rows in joined.iter_rows()}


def write_factors(root: str | os.PathLike, table: pl.DataFrame, as_of: dt.date) -> list[str]:
    """Store a new version of the factors of each ticker whose factors changed since the manifest known on
    `as_of`, and a new manifest; return those tickers. Unchanged tickers' files are not read or touched: the
    manifest's digests decide. A ticker no longer in `table` leaves the manifest (its files stay, as history)."""
    known = read_version(manifest_dir(root), as_of)
    before = {} if known is None else {t: (v, d) for t, v, d in known.select("ticker", "version", "digest").iter_rows()}
    now = digests(table)
    changed = sorted(t for t, digest in now.items() if before.get(t, (None, None))[1] != digest)
    changed += sorted(set(before) - set(now))  # gone: a change too
    by_ticker = {key[0]: frame for key, frame in table.partition_by("ticker", as_dict=True).items()}
    for ticker in changed:
        if ticker in by_ticker:
            write_version(ticker_dir(root, ticker), by_ticker[ticker].sort("ex_date"), as_of)
    manifest = pl.DataFrame(
        [(t, as_of if t in changed else before[t][0], d) for t, d in sorted(now.items())],
        schema={"ticker": pl.String, "version": pl.Date, "digest": pl.String},
        orient="row",
    )
    write_version(manifest_dir(root), manifest, as_of)
    return changed


def read_factors(
    root: str | os.PathLike, as_of: dt.date | None = None, tickers: list[str] | None = None
) -> pl.DataFrame:
    """The factor table as known on `as_of` (the newest, if None), for `tickers` or all, in one read."""
    manifest = read_version(manifest_dir(root), as_of)
    if manifest is None:
        return pl.DataFrame(schema=FACTOR_SCHEMA)
    if tickers is not None:
        manifest = manifest.filter(pl.col("ticker").is_in(tickers))
    paths = [version_path(ticker_dir(root, t), v) for t, v in manifest.select("ticker", "version").iter_rows()]
    return pl.read_parquet(paths).cast(FACTOR_SCHEMA) if paths else pl.DataFrame(schema=FACTOR_SCHEMA)


def factor_versions(root: str | os.PathLike, ticker: str) -> list[dt.date]:
    """The as-of dates of `ticker`'s factor versions, oldest first."""
    return versions(ticker_dir(root, ticker))


def previous_closes(
    dividends: pl.DataFrame,
    daily: Callable[[list[dt.date]], pl.LazyFrame],
    sessions: list[dt.date],
    held: set[dt.date],
) -> pl.DataFrame:
    """(ticker, ex_date, previous_close) per dividend: the ticker's raw close on the last of `sessions` before the
    ex-date or, if it did not trade that day, its last close in the `LOOKBACK` sessions up to it, from
    `daily(days)` (the lake's day bars). Null (the dividend is pending) while the lake does not hold that previous
    session (`held`: the sessions it holds), or when the ticker has no close in the window."""
    empty = pl.DataFrame(schema={"ticker": pl.String, "ex_date": pl.Date, "previous_close": pl.Float64})
    wanted = dividends.select("ticker", pl.col("ex_dividend_date").alias("ex_date")).unique()
    if not wanted.height:
        return empty
    wanted = wanted.with_columns(date=previous_sessions(wanted["ex_date"], sessions))
    position = {s: i for i, s in enumerate(sessions)}
    starts = {d: sessions[max(0, position[d] - LOOKBACK + 1)] for d in wanted["date"].unique() if d in held}
    days = sorted({s for d, start in starts.items() for s in sessions[position[start] : position[d] + 1]} & held)
    lake = daily(days)
    if not days or "ticker" not in lake.collect_schema():
        return wanted.select("ticker", "ex_date", previous_close=pl.lit(None, pl.Float64))
    closes = (
        lake.filter(pl.col("ticker").is_in(wanted["ticker"].unique().implode()))
        .select("ticker", pl.col("date").alias("close_date"), pl.col("close").alias("previous_close"))
        .collect()
        .sort("close_date")
    )
    window = pl.DataFrame(
        {"date": list(starts), "start": list(starts.values())}, schema={"date": pl.Date, "start": pl.Date}
    )
    found = (
        wanted.join(window, on="date", how="left")
        .sort("date")
        .join_asof(
            closes, left_on="date", right_on="close_date", by="ticker", strategy="backward", check_sortedness=False
        )
    )
    in_window = pl.col("start").is_not_null() & (pl.col("close_date") >= pl.col("start"))
    return found.select("ticker", "ex_date", pl.when(in_window).then(pl.col("previous_close")).alias("previous_close"))
