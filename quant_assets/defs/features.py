"""The enriched layer's Dagster wiring. The work is in `features/`.

- `enriched_stocks_daily`, partitioned by session like the lake, computed from `lake_stocks_daily` (each session
  with the `lookback` sessions before it), the session VWAPs (kept by `enriched_stocks_minute`, else from
  `lake_stocks_minute`) and the newest `adjustment_factors`; its own job and daily schedule, after the reference
  refresh that the factors need.
- `enriched_stocks_daily_restated`: when factors change, the enriched history of just the changed tickers.
- `enriched_stocks_minute` and `enriched_options_daily` need nothing but their own session, so they are layers of
  the session chain (`extra_layers` of the ingest): in a range run every good session flows through them as through
  the lake.
"""

import datetime as dt
import time
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from quant_assets.datasets import DATASETS, Calendar, Dataset
from quant_assets.defs.chain import BACKFILL_POLICY, FOLLOW, ON_CHANGE, Built, ChainContext, SessionLayer, range_results
from quant_assets.defs.ingest import previous_session_schedule
from quant_assets.defs.partitions import session_partitions
from quant_assets.defs.resources import DataZones
from quant_assets.errors import SessionError
from quant_assets.features.daily import FeatureSet, session_vwap
from quant_assets.features.enrich import CHUNK, enrich_daily, followers, vwap_path
from quant_assets.features.intraday import minute_features, option_features, session_bars, sort_minutes
from quant_assets.features.restate import (
    read_feature_set,
    restate,
    restated_dir,
    restated_tickers,
    write_feature_set,
)
from quant_assets.flatfiles import vendor_key
from quant_assets.lake import partition_path, scan, sessions_in, temporary_path, write_parquet
from quant_assets.providers.landing import DATASET as REST_DAILY
from quant_assets.reference.factors import TABLE as FACTORS
from quant_assets.reference.factors import manifest_dir, read_factors
from quant_assets.reference.versions import latest_version, read_version
from quant_assets.sessions import parse_session, regular_hours

DAILY, MINUTE = DATASETS["stocks_daily"], DATASETS["stocks_minute"]
OPTIONS = DATASETS["options_daily"]
ENRICHED_DAILY = f"enriched_{DAILY.name}"
DEFAULTS = FeatureSet()


class FeatureConfig(dg.Config):
    """The feature set of a run: windows in sessions (launchpad, or a run config file with `-c`)."""

    return_windows: list[int] = Field(default=list(DEFAULTS.return_windows))
    volatility_windows: list[int] = Field(default=list(DEFAULTS.volatility_windows))
    sma_windows: list[int] = Field(default=list(DEFAULTS.sma_windows))
    ema_windows: list[int] = Field(default=list(DEFAULTS.ema_windows))
    rsi_windows: list[int] = Field(default=list(DEFAULTS.rsi_windows))
    atr_windows: list[int] = Field(default=list(DEFAULTS.atr_windows))
    relative_volume_windows: list[int] = Field(default=list(DEFAULTS.relative_volume_windows))
    smoothing_span: int = Field(default=DEFAULTS.smoothing_span)

    def feature_set(self) -> FeatureSet:
        return FeatureSet.from_mapping(self.model_dump())


def build_enriched_daily(datasets: list[Dataset], bars: str = "flatfiles") -> dg.AssetsDefinition:
    """`enriched_stocks_daily`, its day bars from `lake_stocks_daily` (`bars="flatfiles"`) or from
    `rest_stocks_daily` (`"rest"`, QUANT_ASSETS_DAILY_BARS=rest: a user without a flat-file subscription)."""
    minute = MINUTE if MINUTE in datasets else None
    source = REST_DAILY if bars == "rest" else DAILY.name
    # The session's own lake partition: the asset reads the lookback before it itself, so that declarative
    # automation requests the session whose lake partition was updated; the run then also builds again the later
    # sessions already in the enriched zone whose windows reach it (`followers`).
    deps = [dg.AssetDep(REST_DAILY if bars == "rest" else f"lake_{DAILY.name}"), dg.AssetDep(FACTORS)]
    if minute:
        deps.append(dg.AssetDep(f"lake_{minute.name}"))

    @dg.asset(
        name=ENRICHED_DAILY,
        group_name="enriched",
        partitions_def=session_partitions(DAILY.calendar),
        backfill_policy=BACKFILL_POLICY,
        deps=deps,
        automation_condition=FOLLOW,
        kinds={"parquet", "polars"},
        description=f"Daily features per ticker of {source}'s day bars, on adjusted prices (returns, volatility, SMA, EMA, RSI, ATR, dollar "
        "volume, overnight gap, relative volume, VWAP from minute bars; see features/daily.py for each definition), "
        f"each session computed with the {DEFAULTS.lookback} sessions before it, so a backfill's first session and a "
        "one-day run agree. A run also builds again the later sessions already enriched whose windows reach its "
        "sessions (an older session's lake partition built again changes their rolling features). Under "
        "data/enriched/stocks_daily/date=YYYY-MM-DD/.",
    )
    def enriched_daily(context: dg.AssetExecutionContext, config: FeatureConfig, zones: DataZones):
        features = config.feature_set()
        factors = read_factors(zones.reference_root)
        factors_version = latest_version(manifest_dir(zones.reference_root))
        if factors_version is None:
            context.log.warning("no adjustment_factors yet: the features are computed on raw prices")
        requested = sorted(parse_session(k) for k in context.partition_keys)
        later = followers(DAILY.calendar, requested, sessions_in(zones.enriched_root, DAILY.name), features.lookback)
        sessions = sorted([*requested, *later])
        write_feature_set(zones.enriched_root, DAILY.name, features)
        started, built, missing, failed = time.perf_counter(), {}, [], []
        for first in range(0, len(sessions), CHUNK):
            chunk = sessions[first : first + CHUNK]
            out = enrich_daily(
                zones.lake_root,
                source,
                minute.name if minute else None,
                DAILY.calendar,
                chunk,
                factors,
                features,
                factors_version,
                zones.enriched_root,
            )
            for session in chunk:
                frame = out.get(session)
                if frame is None:
                    if session in requested:  # a later session whose lake partition has gone: left as it is
                        missing.append(session)
                    continue
                if isinstance(frame, SessionError):  # an unreadable lake partition: this session alone fails
                    context.log.error(f"{ENRICHED_DAILY}: {frame}")
                    if session in requested:  # a later session keeps its partition until its lake is mended
                        failed.append(frame)
                    continue
                path = write_parquet(frame, partition_path(zones.enriched_root, DAILY.name, session))
                built[session.isoformat()] = _metadata(frame, path, factors_version, features)
        also = {s.isoformat(): built.pop(s.isoformat()) for s in later if s.isoformat() in built}
        context.log.info(
            f"{ENRICHED_DAILY}: {len(built)} sessions built, {len(missing)} without a lake partition, {len(failed)} "
            f"failed, and {len(also)} later sessions whose windows reach them built again, in "
            f"{time.perf_counter() - started:.1f} s"
        )
        yield from range_results(
            context,
            ENRICHED_DAILY,
            built,
            missing,
            f"have no {source if bars == 'rest' else 'lake_' + source} partition, so no features",
            also=also,
            failed=failed,
        )

    return enriched_daily


RESTATED_DAILY = f"{ENRICHED_DAILY}_restated"


def stale_tickers(zones: DataZones) -> tuple[list[str], dt.date | None]:
    """The tickers whose current factors are newer than the factors their enriched rows (or their latest
    restatement) were computed with, and the factors' version."""
    reference = zones.reference_root
    manifest = read_version(manifest_dir(reference))
    version = latest_version(manifest_dir(reference))
    held = sessions_in(zones.enriched_root, DAILY.name)
    if manifest is None or not held:
        return [], version
    # A ticker's oldest rows count: a later enrich run stamps its new sessions with the new factors, but the older
    # sessions still carry the old adjustment.
    computed = (
        scan(zones.enriched_root, DAILY.name, held)
        .group_by("ticker")
        .agg(
            pl.col("factors_version").fill_null(dt.date.min).min().alias("computed"),
            ((pl.col("price_factor") != 1.0) | (pl.col("volume_factor") != 1.0)).any().alias("adjusted"),
        )
        .collect()
    )
    restated = pl.DataFrame(
        [
            (t, latest_version(restated_dir(zones.enriched_root, DAILY.name, t)))
            for t in restated_tickers(zones.enriched_root, DAILY.name)
        ],
        schema={"ticker": pl.String, "restated": pl.Date},
        orient="row",
    )
    # Candidates: tickers with factors, and tickers whose rows were adjusted or restated but that have no factors
    # any more (an action the vendor retracted): for those, "no factors" is as new as the manifest.
    gone = computed.filter(pl.col("adjusted")).select("ticker").vstack(restated.select("ticker")).unique()
    gone = gone.join(manifest.select("ticker"), on="ticker", how="anti").with_columns(version=pl.lit(version))
    candidates = pl.concat([manifest.select("ticker", "version"), gone])
    stale = (
        candidates.join(computed, on="ticker", how="inner")
        .join(restated, on="ticker", how="left")
        .filter(pl.col("version") > pl.max_horizontal("computed", "restated").fill_null(dt.date.min))
    )
    return sorted(stale["ticker"]), version


def build_restated_daily() -> dg.AssetsDefinition:
    @dg.asset(
        name=RESTATED_DAILY,
        group_name="enriched",
        deps=[FACTORS, ENRICHED_DAILY],
        kinds={"parquet", "polars"},
        automation_condition=ON_CHANGE,
        description="When adjustment_factors change, the enriched daily history of just the changed tickers, "
        "recomputed with the new factors and stored per ticker (data/enriched/stocks_daily/_restated/); no session "
        "file is rewritten. Read the enriched table with features.restate.read_enriched_daily, which prefers a "
        "restated row over a session's row adjusted with older factors.",
    )
    def restated_daily(context: dg.AssetExecutionContext, zones: DataZones):
        tickers, version = stale_tickers(zones)
        written = {}
        if tickers and version is not None:
            factors = read_factors(zones.reference_root, tickers=tickers)
            features = read_feature_set(zones.enriched_root, DAILY.name)  # the columns the session rows have
            written = restate(
                zones.lake_root, zones.enriched_root, DAILY.name, DAILY.calendar, tickers, factors, version, features
            )
        context.log.info(f"{RESTATED_DAILY}: {len(written)} tickers restated with factors {version}")
        return dg.MaterializeResult(
            metadata={
                "restated_tickers": dg.MetadataValue.json(sorted(written)),
                "rows": dg.MetadataValue.int(sum(written.values())),
                "factors_version": dg.MetadataValue.text(str(version)),
            }
        )

    return restated_daily


def _metadata(frame: pl.DataFrame, path: Path, factors_version: dt.date | None, features: FeatureSet) -> dict:
    return {
        "dagster/row_count": dg.MetadataValue.int(frame.height),
        "tickers_adjusted": dg.MetadataValue.int(frame.filter(pl.col("price_factor") != 1.0).height),
        "factors_version": dg.MetadataValue.text(str(factors_version)),
        "features": dg.MetadataValue.json(features.columns()),
        "path": dg.MetadataValue.path(str(path)),
    }


def features_defs(datasets: list[Dataset], bars: str = "flatfiles") -> dg.Definitions:
    """`enriched_stocks_daily` with its job and schedule, and its restatement asset with its job, when stocks_daily
    is enabled or the day bars come from REST (`bars`). (The chain's enriched layers come from `feature_layers`.)"""
    if DAILY not in datasets and bars != "rest":
        return dg.Definitions()
    asset = build_enriched_daily(datasets, bars)
    job = dg.define_asset_job(
        "enrich_us_equities",
        selection=[asset],
        partitions_def=session_partitions(DAILY.calendar),
        description="Compute the enriched daily features for the selected sessions.",
    )
    schedule = previous_session_schedule(
        job,
        DAILY.calendar,
        at="0 13",
        description="Computes the previous session's features at 13:00 New York, after its ingest (12:00) and the "
        "reference refresh (12:30).",
    )
    restated = build_restated_daily()
    restate_job = dg.define_asset_job(
        "restate_enriched",
        selection=[restated],
        description="Rewrite the enriched daily history of the tickers whose adjustment factors changed.",
    )
    return dg.Definitions(assets=[asset, restated], jobs=[job, restate_job], schedules=[schedule])


def _lake_session(chain: ChainContext, dataset: Dataset, session: dt.date) -> pl.DataFrame:
    if not partition_path(chain.zones.lake_root, dataset.name, session).exists():
        raise SessionError(
            dataset.name, session, vendor_key(dataset, session), f"no lake partition; materialize lake_{dataset.name}"
        )
    return scan(chain.zones.lake_root, dataset.name, [session]).drop("date").collect()


def intraday_layer() -> SessionLayer:
    """`enriched_stocks_minute`: the session's minute bars with `return_1m` and `vwap_cumulative` (part-0.parquet),
    and 5-, 15- and 60-minute bars aligned to the open (bars_<n>m.parquet), in the partition's folder."""
    name = f"enriched_{MINUTE.name}"

    def build(chain: ChainContext, session: dt.date) -> Built:
        minutes = sort_minutes(_lake_session(chain, MINUTE, session))
        open_at, close_at = regular_hours(session)
        path = partition_path(chain.zones.enriched_root, MINUTE.name, session)
        bars = session_bars(minutes, open_at, close_at)
        features = minute_features(minutes, open_at, close_at)
        vwaps = session_vwap(minutes, open_at, close_at).collect()  # for enriched_stocks_daily
        # Everything computed first; then each file through a temporary name, part-0 last: it marks the partition
        # complete, and a failed run leaves the previous partition whole.
        outputs = [(path.with_name(f"bars_{n}m.parquet"), frame) for n, frame in bars.items()]
        outputs += [(vwap_path(chain.zones.enriched_root, MINUTE.name, session), vwaps), (path, features)]
        path.parent.mkdir(parents=True, exist_ok=True)
        temporaries = [temporary_path(target) for target, _ in outputs]
        try:
            for temporary, (_, frame) in zip(temporaries, outputs):
                frame.write_parquet(temporary, compression="zstd", compression_level=1)
            for temporary, (target, _) in zip(temporaries, outputs):
                temporary.replace(target)
        finally:
            for temporary in temporaries:
                temporary.unlink(missing_ok=True)
        return Built(
            {
                "dagster/row_count": dg.MetadataValue.int(features.height),
                **{f"bars_{n}m": dg.MetadataValue.int(frame.height) for n, frame in bars.items()},
                "regular_session": f"{open_at:%H:%M}-{close_at:%H:%M} UTC",
                "path": dg.MetadataValue.path(str(path)),
            }
        )

    spec = dg.AssetSpec(
        name,
        deps=[f"lake_{MINUTE.name}"],
        group_name="enriched",
        kinds={"parquet", "polars"},
        description="Per session: the minute bars with return_1m and the cumulative VWAP of the regular session, "
        "and 5-, 15- and 60-minute bars aligned to the open (early closes respected), under "
        "data/enriched/stocks_minute/date=YYYY-MM-DD/ (see features/intraday.py). Raw prices.",
    )
    return SessionLayer(MINUTE, spec, build)


def options_layer() -> SessionLayer:
    """`enriched_options_daily`: each contract's underlying, days to expiry and moneyness."""
    name = f"enriched_{OPTIONS.name}"

    def build(chain: ChainContext, session: dt.date) -> Built:
        options = _lake_session(chain, OPTIONS, session)
        stocks = _lake_session(chain, DAILY, session)
        frame = option_features(options, stocks, session)
        path = write_parquet(frame, partition_path(chain.zones.enriched_root, OPTIONS.name, session))
        unmatched = frame.filter(pl.col("underlying_close").is_null())["underlying"].unique().sort().to_list()
        if unmatched:
            chain.log.warning(f"{name} {session}: no stock close for the roots {', '.join(unmatched[:10])}")
        return Built(
            {
                "dagster/row_count": dg.MetadataValue.int(frame.height),
                "underlyings_without_close": dg.MetadataValue.json(unmatched[:50]),
                "path": dg.MetadataValue.path(str(path)),
            }
        )

    spec = dg.AssetSpec(
        name,
        deps=[f"lake_{OPTIONS.name}", f"lake_{DAILY.name}"],
        group_name="enriched",
        kinds={"parquet", "polars"},
        description="Per session and contract: underlying (OCC root mapped to its stock ticker), expiry, call/put, "
        "strike, days to expiry, the underlying's close, moneyness (close / strike), its log and in-the-money, "
        "under data/enriched/options_daily/date=YYYY-MM-DD/ (see features/intraday.py).",
    )
    return SessionLayer(OPTIONS, spec, build)


def feature_layers(datasets: list[Dataset]) -> dict[Calendar, list[SessionLayer]]:
    """The enriched layers of the session chains, for the datasets they need."""
    layers = []
    if MINUTE in datasets:
        layers.append(intraday_layer())
    if OPTIONS in datasets and DAILY in datasets:
        layers.append(options_layer())
    return {Calendar.XNYS: layers} if layers else {}
