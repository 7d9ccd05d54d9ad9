"""`news`: company and market news from every given provider (Massive, Finnhub), merged into one row per article.

Layout: partitioned by the article's publication day in New York, one file a day,
`lake/news/date=YYYY-MM-DD/part-0.parquet`, and the streams' cursors in `lake/news/_cursors.parquet` (a hidden name
that no partition scan reads). Only dates become paths: a vendor's ticker, id or URL is data in a row.

One article is one row, whoever served it: its `key` is the sha256 of its URL normalised (scheme and host in lower
case, no query, fragment or trailing slash), or of provider and id when it has no URL. The same article from two
vendors carries both ids, the union of their tickers and providers, Massive's sentiment and the earliest
publication time (whose New York day is its partition). Landing a batch reads only the days of its articles (and
those a few days around them that hold one of their keys: an article whose day moves leaves its old file), merges,
and rewrites a day's file, atomically, only when it changed.

Every provider is asked for every symbol (news from two vendors is merged, not a fallback chain). Each (provider,
stream) has a cursor, `company:<SYMBOL>` or `market:<category>`: Massive's is the last `published_utc` held (asked
again with `published_utc.gte`; the article at the boundary comes back and is de-duplicated), Finnhub's company
news the last day held (asked again from that day to today), Finnhub's market news the largest id held (`minId`).
A stream's articles land only once its whole answer is read (every page), and its cursor moves only after they are
written: a stream that failed publishes nothing and is asked again, from where it was, at the next run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

import polars as pl

from quant_assets.lake import (
    partition_path,
    provenance_metadata,
    remove_partition,
    replace_parquet,
    sessions_in,
    unreadable,
)
from quant_assets.locks import locked
from quant_assets.names import shown, ticker_problem
from quant_assets.providers.errors import ProviderError
from quant_assets.providers.symbols import Unsupported, from_vendor
from quant_assets.service.summary import Collected, concurrently

DATASET = "news"
log = logging.getLogger(__name__)
NEW_YORK = ZoneInfo("America/New_York")
SENTIMENT = pl.Struct({"ticker": pl.String(), "sentiment": pl.String(), "reasoning": pl.String()})
SCHEMA: dict[str, pl.DataType] = {
    "key": pl.String(),
    "published": pl.Datetime("us", "UTC"),
    "day": pl.Date(),
    "title": pl.String(),
    "summary": pl.String(),
    "url": pl.String(),
    "source": pl.String(),
    "category": pl.String(),
    "tickers": pl.List(pl.String()),
    "sentiment": pl.List(SENTIMENT),
    "massive_id": pl.String(),
    "finnhub_id": pl.Int64(),
    "providers": pl.List(pl.String()),
    "fetched_at": pl.Datetime("us", "UTC"),
}
CURSORS = "_cursors.parquet"
CURSOR_SCHEMA: dict[str, pl.DataType] = {
    "provider": pl.String(),
    "stream": pl.String(),
    "published": pl.Datetime("us", "UTC"),  # Massive: the last `published_utc` held
    "day": pl.Date(),  # Finnhub company news: the last day held
    "last_id": pl.Int64(),  # Finnhub market news: the largest id held
    "updated_at": pl.Datetime("us", "UTC"),
}
PROVIDERS = ("massive", "finnhub")
MASSIVE_MARKET = "market:all"  # Massive's market-wide listing has no categories
# Two vendors' times of one article differ by hours: its other copy is looked for this many days around it.
NEIGHBOUR_DAYS = 2
SYMBOLS_PER_BATCH = 100  # symbols fetched, merged and landed together: memory holds one batch's articles
EARLIEST = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)  # an older publication time is a vendor's placeholder
FUTURE_SLACK = dt.timedelta(days=1)  # a publication time past `now` by more than this would hold the cursor there
TEXT_MAX = 20_000  # characters kept of a title or summary


@dataclass(frozen=True)
class Cursor:
    """Where a stream stopped: the field of its provider and kind is set, the others are None."""

    published: dt.datetime | None = None
    day: dt.date | None = None
    last_id: int | None = None

    def advanced(self, other: Cursor) -> Cursor:
        """The later of each field (a forced run that asked from further back never moves a cursor back)."""

        def later(a, b):
            return b if a is None else a if b is None else max(a, b)

        return Cursor(later(self.published, other.published), later(self.day, other.day),
                      later(self.last_id, other.last_id))  # fmt: skip


@dataclass(frozen=True)
class Stream:
    """One provider's listing to follow: a symbol's company news, or a category of market news."""

    provider: str
    name: str  # company:<SYMBOL>, market:<category>
    symbol: str | None = None
    category: str | None = None

    @property
    def label(self) -> str:
        """How `Collected` names it: the symbol, or the market stream."""
        return self.symbol or self.name


@dataclass
class Fetched:
    """What one stream's request gave: its rows (in `SCHEMA`) and the cursor they move it to, or why not."""

    stream: Stream
    rows: pl.DataFrame | None = None
    cursor: Cursor | None = None
    failure: str | None = None
    skipped: str | None = None
    aside: list[str] = field(default_factory=list)


def cursors_path(lake_root: str | Path) -> Path:
    """The cursors' file of the dataset (hidden from partition scans by its leading `_`)."""
    return Path(lake_root) / DATASET / CURSORS


def read_cursors(lake_root: str | Path) -> dict[tuple[str, str], Cursor]:
    """Every stream's cursor, by (provider, stream); none when the file is missing (a first run) or cannot be read
    (every stream is then asked from its lookback again, which de-duplication makes safe)."""
    frame = _cursor_frame(cursors_path(lake_root))
    return {(r["provider"], r["stream"]): Cursor(r["published"], r["day"], r["last_id"])
            for r in frame.iter_rows(named=True)}  # fmt: skip


def collect_company_news(
    providers: Mapping[str, object],
    symbols: Sequence[str],
    lake_root: Path,
    now: dt.datetime,
    lookback_days: int = 30,
    workers: int = 4,
    force: bool = False,
) -> Collected:
    """`symbols`' company news from every provider of `providers` (`"massive"`: a `Massive`, `"finnhub"`: a
    `Finnhub`), each asked from its stream's cursor (the first time, or with `force`, from `lookback_days` before
    `now`), merged into the day partitions under `lake_root` (see the module). `Collected.asked` counts the streams
    (symbol x provider), `served` the streams each provider answered; a stream that failed is a line of `failed`
    (`"SYMBOL: provider: ErrorType: message"`) and keeps its cursor; one a provider cannot serve (an index) is
    skipped with a note."""
    _check(providers, now)
    out = Collected(DATASET)
    wanted = []
    for symbol in dict.fromkeys(symbols):
        if problem := ticker_problem(symbol):
            out.failed.append(f"{shown(symbol)}: {problem}")
        else:
            wanted.append(symbol)
    for start in range(0, len(wanted), SYMBOLS_PER_BATCH):
        batch = wanted[start : start + SYMBOLS_PER_BATCH]
        streams = [Stream(p, f"company:{s}", symbol=s) for s in batch for p in providers]
        _collect(providers, streams, Path(lake_root), now, lookback_days, workers, force, out)
    return out


def collect_market_news(
    providers: Mapping[str, object],
    lake_root: Path,
    now: dt.datetime,
    categories: Sequence[str] = ("general",),
    lookback_days: int = 7,
    force: bool = False,
) -> Collected:
    """Market-wide news: Massive's listing without a ticker (from its cursor, or `lookback_days` before `now`) and
    Finnhub's `/news` of each of `categories` (newer than the largest id held: Finnhub has no date filter, so a
    first run takes what it serves), merged into the day partitions as `collect_company_news` does."""
    _check(providers, now)
    out = Collected(DATASET)
    streams = []
    for provider in providers:
        if provider == "massive":
            streams.append(Stream(provider, MASSIVE_MARKET))
        else:
            streams += [Stream(provider, f"market:{c}", category=c) for c in dict.fromkeys(categories)]
    _collect(providers, streams, Path(lake_root), now, lookback_days, len(streams), force, out)
    return out


def read_news(lake_root: Path, start: dt.date | None = None, end: dt.date | None = None) -> pl.LazyFrame:
    """The news of the days in [start, end] (either open), one row per article in `SCHEMA`."""
    days = [d for d in sessions_in(lake_root, DATASET) if (start is None or d >= start) and (end is None or d <= end)]
    if not days:
        return pl.LazyFrame(schema=SCHEMA)
    paths = [partition_path(lake_root, DATASET, d) for d in days]
    return pl.scan_parquet(paths, hive_partitioning=False).select(list(SCHEMA))


def article_key(url: str | None, provider: str, article_id: object) -> str:
    """The identity of an article: sha256 of its normalised URL (`normalised_url`), or of provider and id."""
    basis = normalised_url(url) if url else None
    return hashlib.sha256((basis or f"{provider}:{article_id}").encode()).hexdigest()


def normalised_url(url: str) -> str | None:
    """`url` with its scheme and host in lower case, no fragment, no trailing slash and no tracking parameters
    (`utm*`); the rest of the query is kept, sorted (Finnhub's `finnhub.io/api/news?id=...` and a site's
    `article.php?id=1` name their article by it). None when it is not an http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        query = sorted(
            (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.lower().startswith("utm")
        )
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), parts.netloc.lower()
    if scheme not in ("http", "https") or not host or not url.isprintable():
        return None
    return f"{scheme}://{host}{parts.path.rstrip('/')}" + (f"?{urlencode(query)}" if query else "")


def _check(providers: Mapping[str, object], now: dt.datetime) -> None:
    if unknown := [p for p in providers if p not in PROVIDERS]:
        raise ValueError(f"news: unknown providers {', '.join(map(shown, unknown))}; known: {', '.join(PROVIDERS)}")
    if now.tzinfo is None:
        raise ValueError(f"news: `now` must carry its time zone, not {now.isoformat()} (naive)")


def _collect(providers, streams: list[Stream], lake_root: Path, now: dt.datetime, lookback_days: int, workers: int,
             force: bool, out: Collected) -> None:  # fmt: skip
    """Fetch `streams` concurrently, land the rows of those that answered, then move their cursors."""
    now = now.astimezone(dt.UTC)
    cursors = {} if force else read_cursors(lake_root)
    before = {name: len(getattr(vendor, "set_aside", [])) for name, vendor in providers.items()}

    def fetch(stream: Stream) -> Fetched:
        cursor = cursors.get((stream.provider, stream.name), Cursor())
        return _fetch(providers[stream.provider], stream, cursor, now, lookback_days)

    served = []
    for fetched in concurrently(fetch, streams, workers):
        stream = fetched.stream
        out.set_aside += fetched.aside
        if fetched.skipped:
            out.notes.append(f"{stream.label}: {stream.provider}: skipped: {fetched.skipped}")
            continue
        out.asked += 1
        if fetched.failure:
            out.failed.append(f"{stream.label}: {stream.provider}: {fetched.failure}")
            continue
        out.serve(stream.provider)
        served.append(fetched)
    for name, vendor in providers.items():
        out.set_aside += getattr(vendor, "set_aside", [])[before[name] :]
    if not served:
        return
    rows = pl.concat([f.rows for f in served])
    with locked(cursors_path(lake_root)):  # two runs (company and market news) may land on the same days
        written, changed = _land(lake_root, rows)
        out.written += written
        out.rows += changed
        moved = {(f.stream.provider, f.stream.name): f.cursor for f in served if f.cursor is not None}
        if moved:
            _advance_cursors(lake_root, moved, now)


def _fetch(vendor: Any, stream: Stream, cursor: Cursor, now: dt.datetime, lookback_days: int) -> Fetched:
    """One stream's request and its rows; a failure is kept as text, never raised (the others go on)."""
    out = Fetched(stream)
    since = now - dt.timedelta(days=lookback_days)
    today = now.astimezone(NEW_YORK).date()
    where = f"news {stream.provider} {stream.name}"
    try:
        if stream.provider == "massive":
            frame = vendor.news(ticker=stream.symbol, published_gte=cursor.published or since)
            out.rows = _from_massive(frame, stream.symbol, now, where, out.aside)
            if out.rows.height:
                out.cursor = Cursor(published=out.rows["published"].max())
        elif stream.symbol is not None:
            first = min(cursor.day or (today - dt.timedelta(days=lookback_days)), today)
            frame = vendor.company_news(stream.symbol, first, today)
            out.rows = _from_finnhub(frame, stream.symbol, now, where, out.aside)
            if out.rows.height:
                out.cursor = Cursor(day=out.rows["day"].max())
        else:
            frame = vendor.market_news(stream.category, min_id=cursor.last_id)
            out.rows = _from_finnhub(frame, None, now, where, out.aside)
            if out.rows.height:
                out.cursor = Cursor(last_id=out.rows["finnhub_id"].max())
    except Unsupported as error:
        out.skipped = str(error)
    except (ProviderError, ValueError, TypeError, OverflowError, pl.exceptions.PolarsError) as error:
        # A provider's failure, or an answer its module could not read: this stream alone fails.
        out.rows, out.cursor = None, None
        out.failure = f"{type(error).__name__}: {str(error)[:500]}"
    return out


def _from_massive(frame: pl.DataFrame, symbol: str | None, now: dt.datetime, where: str,
                  aside: list[str]) -> pl.DataFrame:  # fmt: skip
    """Massive's articles (`Massive.news`) as rows of `SCHEMA`."""
    rows = []
    for article in frame.iter_rows(named=True):
        at = f"{where}: article {shown(article['id'])}"
        if problem := _implausible(article["published_utc"], now):
            aside.append(f"{at}: {problem}; set aside")
            continue
        tickers = _canonical(article["tickers"] or [], "massive", at, aside)
        sentiment = []
        for insight in article["insights"] or []:
            canonical = _canonical([insight["ticker"]], "massive", f"{at} insight", aside)
            if canonical:
                sentiment.append({"ticker": canonical[0], "sentiment": insight["sentiment"],
                                  "reasoning": _text(insight["sentiment_reasoning"])})  # fmt: skip
        rows.append(_row("massive", article["id"], article["published_utc"], article["title"],
                         article["description"], article["article_url"], article["publisher"], None,
                         tickers + ([symbol] if symbol else []), sentiment, now, at, aside))  # fmt: skip
    return pl.DataFrame(rows, schema=SCHEMA)


def _from_finnhub(frame: pl.DataFrame, symbol: str | None, now: dt.datetime, where: str,
                  aside: list[str]) -> pl.DataFrame:  # fmt: skip
    """Finnhub's articles (`Finnhub.company_news` or `market_news`) as rows of `SCHEMA`; `related` holds its
    symbols, comma separated."""
    rows = []
    for article in frame.iter_rows(named=True):
        at = f"{where}: article {article['id']}"
        if problem := _implausible(article["published"], now):
            aside.append(f"{at}: {problem}; set aside")
            continue
        named = [t.strip() for t in (article["related"] or "").split(",") if t.strip()]
        tickers = _canonical(named, "finnhub", at, aside)
        rows.append(_row("finnhub", article["id"], article["published"], article["headline"], article["summary"],
                         article["url"], article["source"], article["category"],
                         tickers + ([symbol] if symbol else []), [], now, at, aside))  # fmt: skip
    return pl.DataFrame(rows, schema=SCHEMA)


def _row(provider: str, article_id, published: dt.datetime, title, summary, url, source, category,
         tickers: list[str], sentiment: list[dict], now: dt.datetime, at: str, aside: list[str]) -> dict:  # fmt: skip
    kept_url = url if url and normalised_url(url) else None
    if url and kept_url is None:
        aside.append(f"{at}: url {shown(url)} is not an http(s) URL; the article is kept without it")
    published = published.astimezone(dt.UTC)
    return {
        "key": article_key(kept_url, provider, article_id),
        "published": published,
        "day": published.astimezone(NEW_YORK).date(),
        "title": _text(title),
        "summary": _text(summary),
        "url": kept_url,
        "source": _text(source),
        "category": _text(category),
        "tickers": sorted(set(tickers)),
        "sentiment": sentiment,
        "massive_id": article_id if provider == "massive" else None,
        "finnhub_id": article_id if provider == "finnhub" else None,
        "providers": [provider],
        "fetched_at": now,
    }


def _canonical(named: list, provider: str, at: str, aside: list[str]) -> list[str]:
    """The canonical symbols of `provider`'s ticker strings; one that is not a symbol is set aside (the article
    stays)."""
    found = []
    for text in named:
        try:
            if problem := ticker_problem(text):
                raise Unsupported(f"{provider}: {problem}")
            found.append(from_vendor(text, provider))
        except ValueError as error:
            aside.append(f"{at}: ticker set aside: {error}")
    return found


def _implausible(published: dt.datetime | None, now: dt.datetime) -> str | None:
    if published is None:
        return "no publication time"
    if published < EARLIEST:
        return f"published {published.isoformat()}, before {EARLIEST.year}"
    if published > now + FUTURE_SLACK:
        return f"published {published.isoformat()}, after now ({now.isoformat()})"
    return None


def _text(value: str | None) -> str | None:
    return None if value is None else value[:TEXT_MAX]


def _merged(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per `key`: both ids, the union of tickers and providers, Massive's sentiment and texts (Finnhub's
    where Massive has none), the earliest publication time and its day, the first time it was fetched."""
    massive_first = frame.sort(["key", pl.col("massive_id").is_null(), "published", "finnhub_id"], nulls_last=True)
    union = dict(keep_nulls=False, empty_as_null=False)
    merged = massive_first.group_by("key", maintain_order=True).agg(
        pl.col("published").min(),
        *(pl.col(c).drop_nulls().first() for c in ("title", "summary", "url", "source", "category")),
        pl.col("tickers").explode(**union).unique().sort(),
        pl.col("sentiment").filter(pl.col("massive_id").is_not_null()).first(),
        pl.col("massive_id").drop_nulls().first(),
        pl.col("finnhub_id").drop_nulls().first(),
        pl.col("providers").explode(**union).unique().sort(),
        pl.col("fetched_at").min(),
    )
    day = pl.col("published").dt.convert_time_zone(str(NEW_YORK)).dt.date().alias("day")
    sentiment = pl.col("sentiment").fill_null(pl.lit([], dtype=SCHEMA["sentiment"]))
    return merged.with_columns(day, sentiment).select(list(SCHEMA)).cast(SCHEMA)


def _read_day(lake_root: Path, day: dt.date, columns: list[str] | None = None) -> pl.DataFrame:
    path = partition_path(lake_root, DATASET, day)
    try:
        frame = pl.read_parquet(path, columns=columns)
        return frame if columns else frame.select(list(SCHEMA)).cast(SCHEMA)
    except Exception as error:  # polars and arrow raise several kinds for a damaged file
        raise unreadable(DATASET, day, path, error) from error


def _land(lake_root: Path, rows: pl.DataFrame) -> tuple[list[str], int]:
    """Merge `rows` into the day files they belong to; (the files written or removed, the rows new or changed).

    Only the days of the new articles are read, and the days around them (`NEIGHBOUR_DAYS`) that hold one of their
    keys (an article whose merged day moves is taken out of its old file)."""
    new = _merged(rows)
    days = set(new["day"].to_list())
    held = set(sessions_in(lake_root, DATASET))
    keys = new.select("key")
    touched = days & held
    around = {d + dt.timedelta(days=k) for d in days for k in range(-NEIGHBOUR_DAYS, NEIGHBOUR_DAYS + 1)}
    for day in sorted((around & held) - touched):
        if _read_day(lake_root, day, ["key"]).join(keys, on="key", how="semi").height:
            touched.add(day)
    before = {day: _read_day(lake_root, day) for day in sorted(touched)}
    combined = _merged(pl.concat([*before.values(), new])) if before else new
    written, changed = [], 0
    for day in sorted(days | touched):
        after = combined.filter(pl.col("day") == day).sort(["published", "key"])
        old = before.get(day)
        if old is not None and old.sort(["published", "key"]).equals(after):
            continue
        path = partition_path(lake_root, DATASET, day)
        if after.height == 0:
            remove_partition(lake_root, DATASET, day)
        else:
            tickers = after["tickers"].explode().drop_nulls().n_unique()
            metadata = provenance_metadata(DATASET, day, {"rows": str(after.height), "tickers": str(tickers)})
            replace_parquet(after, path, metadata)
        written.append(str(path))
        kept = old.hash_rows() if old is not None else pl.Series([], dtype=pl.UInt64)
        changed += after.filter(~after.hash_rows().is_in(kept.implode())).height
    return written, changed


def _advance_cursors(lake_root: Path, moved: Mapping[tuple[str, str], Cursor], now: dt.datetime) -> None:
    """Move the cursors of `moved`'s streams forward (never back), atomically, when one moved; the other streams'
    stay."""
    path = cursors_path(lake_root)
    held = _cursor_frame(path)
    rows = {(r["provider"], r["stream"]): r for r in held.iter_rows(named=True)}
    changed = False
    for (provider, stream), cursor in moved.items():
        old = rows.get((provider, stream))
        was = Cursor(old["published"], old["day"], old["last_id"]) if old else Cursor()
        new = was.advanced(cursor)
        if old and new == was:
            continue
        changed = True
        rows[(provider, stream)] = {"provider": provider, "stream": stream, "published": new.published,
                                    "day": new.day, "last_id": new.last_id, "updated_at": now}  # fmt: skip
    if changed:  # a run that found nothing new writes nothing
        replace_parquet(pl.DataFrame([rows[k] for k in sorted(rows)], schema=CURSOR_SCHEMA), path)


def _cursor_frame(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path).select(list(CURSOR_SCHEMA)).cast(CURSOR_SCHEMA)
    except FileNotFoundError:
        return pl.DataFrame(schema=CURSOR_SCHEMA)
    except Exception as error:  # a damaged file: polars and arrow raise several kinds
        log.warning("news: the cursors in %s cannot be read (%s); every stream is asked from its lookback", path, error)
        return pl.DataFrame(schema=CURSOR_SCHEMA)
