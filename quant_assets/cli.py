"""The `quant-assets` command: sample vendor files and a local REST provider, summarise the lake and its coverage,
plan a run (dry run), show and reset the providers' state, benchmark ingestion, serve the Dagster UI with the
daemon (`ui`, which refuses requests from other sites). Long commands show a progress bar on a terminal only.

Dagster itself is driven with its own CLI (`dagster asset materialize`, `dagster job execute`); this command covers
what Dagster does not.
"""

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from quant_assets.datasets import DATASETS, parse_dataset_names
from quant_assets.errors import (
    INSTEAD,
    DataFolderError,
    check_folder,
    check_writable_folder,
    data_folder_error,
    unwritable_folder,
)
from quant_assets.settings import UI_TRUSTED_HOSTS_ENV, from_env

OTHER_OUT = "pass --out another folder"


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def cmd_sample(args: argparse.Namespace) -> int:
    from quant_assets.sample import folder_writer, generate, s3_writer
    from quant_assets.universes import write_sample_universes

    datasets = parse_dataset_names(args.datasets)
    if args.s3_endpoint:
        import dagster as dg

        from quant_assets.settings import ACCESS_KEY_ENV, SECRET_KEY_ENV
        from quant_assets.sources import S3FlatFiles

        # The same client the S3 source uses (path-style, SigV4, retries), with the same credential variables.
        client = S3FlatFiles(
            endpoint_url=args.s3_endpoint,
            bucket=args.bucket,
            access_key_id=dg.EnvVar(ACCESS_KEY_ENV).get_value("testing"),
            secret_access_key=dg.EnvVar(SECRET_KEY_ENV).get_value("testing"),
        ).client
        if args.create_bucket:
            client.create_bucket(Bucket=args.bucket)
        write, where = s3_writer(client, args.bucket), f"s3://{args.bucket} at {args.s3_endpoint}"
    else:
        check_writable_folder(args.out, from_env().min_free_mb, instead=OTHER_OUT, what="folder")
        write, where = folder_writer(args.out), str(Path(args.out).resolve())
    from quant_assets.progress import progress

    keys = generate(datasets, args.start, args.end, write, seed=args.seed, size=args.size, progress=progress)
    names = ", ".join(d.name for d in datasets)
    print(f"wrote {len(keys)} files ({names}) for {args.start}..{args.end} to {where}")
    if written := write_sample_universes(from_env().universes_dir, seed=args.seed, size=args.size):
        print(f"wrote sample universes {', '.join(p.stem for p in written)} to {written[0].parent.resolve()}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from quant_assets.status import lake_summary, qlib_summary, reference_summary, rest_summary, service_summary

    datasets = parse_dataset_names(args.datasets)
    check_folder(args.data)
    print(lake_summary(Path(args.data) / "lake", datasets))
    if rest := rest_summary(Path(args.data) / "lake"):
        print(rest)
    if service := service_summary(Path(args.data) / "lake"):
        print(service)
    if (Path(args.data) / "enriched").is_dir():
        print(lake_summary(Path(args.data) / "enriched", datasets, zone="enriched"))
    if reference := reference_summary(Path(args.data) / "reference"):
        print(reference)
    if qlib := qlib_summary(Path(args.data) / "qlib"):
        print(qlib)
    return 0


def cmd_coverage(args: argparse.Namespace) -> int:
    import dagster as dg

    from quant_assets.defs.resources import DataZones, resources_from
    from quant_assets.progress import progress
    from quant_assets.quality.coverage import build_ledger, summary, write_ledger

    zones = DataZones(root=args.data, min_free_mb=from_env().min_free_mb)
    zones.check_writable()  # the ledger is written into the lake
    # build_resources resolves the EnvVar credentials exactly as a Dagster run does.
    with dg.build_resources({"flatfiles": resources_from(from_env())["flatfiles"]}) as resources:
        ledger = build_ledger(
            parse_dataset_names(args.datasets),
            resources.flatfiles.list_objects,
            zones.raw_root,
            zones.lake_root,
            zones.quarantine_root,
            progress=progress,
        )
    write_ledger(ledger, zones.lake_root)
    print(summary(ledger))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    import json

    import dagster as dg

    from quant_assets.defs.resources import DataZones, resources_from
    from quant_assets.plan import plan, seconds_per_byte, summary
    from quant_assets.progress import progress

    settings = from_env()
    datasets = parse_dataset_names(args.datasets)
    end = args.end or dt.date.today()
    start = args.start or end - dt.timedelta(days=30)
    check_folder(args.data)
    zones = DataZones(root=args.data)
    with dg.build_resources({"flatfiles": resources_from(settings)["flatfiles"]}) as resources:
        work = plan(
            datasets,
            start,
            end,
            resources.flatfiles.list_objects,
            zones.raw_root,
            zones.lake_root,
            settings.tickers,
            progress=progress,
        )
    if args.json:
        print(json.dumps([{**vars(w), "session": w.session.isoformat()} for w in work], indent=1))
        return 0
    rates = {d.name: seconds_per_byte(zones.lake_root, d) for d in datasets}
    print(f"a run over {start}..{end} would do:")
    print(summary(work, rates))
    return 0


SAMPLE_PROVIDERS = ("massive", "tiingo", "yahoo", "finnhub", "alphavantage")  # on --port, --port + 1, ...


def cmd_sample_rest(args: argparse.Namespace) -> int:
    import signal
    import threading

    from quant_assets.sample_rest import LocalProvider
    from quant_assets.samples.alphavantage import AlphaVantageServer
    from quant_assets.samples.finnhub import FinnhubServer
    from quant_assets.samples.tiingo import TiingoServer
    from quant_assets.samples.yahoo import YahooServer

    wanted = [p.strip() for p in args.providers.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in SAMPLE_PROVIDERS]
    if unknown:
        raise ValueError(f"--providers: no local server for {unknown[0]!r} (known: {', '.join(SAMPLE_PROVIDERS)})")
    servers = []
    try:
        for name in wanted:
            port = args.port + SAMPLE_PROVIDERS.index(name) if args.port else 0
            if name == "massive":
                server = LocalProvider(args.start, args.end, port=port, seed=args.seed)
            elif name == "tiingo":
                quota = args.tiingo_quota or None
                server = TiingoServer(args.start, args.end, port=port, seed=args.seed, quota=quota,
                                      plain_text_over_quota=True)  # fmt: skip
            elif name == "yahoo":
                server = YahooServer(args.start, args.end, port=port, seed=args.seed)
            elif name == "finnhub":
                server = FinnhubServer(args.start, args.end, port=port, seed=args.seed)
            else:
                server = AlphaVantageServer(args.start, args.end, port=port, seed=args.seed)
            servers.append(server.start())
            print(f"serving the {name} REST API for {args.start}..{args.end} on {server.url}", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
    finally:
        for server in servers:
            server.stop()
    return 0


def cmd_providers(args: argparse.Namespace) -> int:
    from quant_assets.providers.health import health_lines, provider_health
    from quant_assets.providers.state import ProviderState, state_dir

    check_folder(args.data)
    if not (state_dir(args.data) / "state.sqlite").exists():
        print(f"no provider has been used with data folder {args.data}")
        return 0
    if args.action == "reset":
        check_writable_folder(args.data)  # the breaker's state is written there
    state = ProviderState(args.data)
    try:
        if args.action == "reset":
            if not args.name:
                raise ValueError("say which provider's breaker to reset, e.g. `quant-assets providers reset massive`")
            if not state.reset_breaker(args.name):
                known = ", ".join(b["name"] for b in state.breakers()) or "none"
                raise ValueError(f"no circuit breaker named {args.name!r} (known: {known})")
            print(f"{args.name}: circuit breaker closed, failure count cleared")
            return 0
    finally:
        state.close()
    rows = provider_health(args.data, hours=args.hours)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"providers (calls in the last {args.hours:g} h; spending today, in each budget's time zone):")
    for line in health_lines(rows):
        print(line)
    return 0


def cmd_universes(args: argparse.Namespace) -> int:
    import json

    from quant_assets.universes import Universes, checked_name
    from quant_assets.universes import report as shown

    store = Universes(args.folder, args.data)
    recorded = store.record()  # an edit shows up at once
    if args.action == "list":
        data = shown.listing(store, recorded)
        print(json.dumps(data, indent=1) if args.json else shown.listing_text(data))
        return 0
    if not args.name:
        raise ValueError(f"say which universe, e.g. `quant-assets universes {args.action} watchlist`")
    name = checked_name(args.name)
    if args.action == "show":
        version = store.version_as_of(name, args.as_of or dt.datetime.now(dt.UTC))
        data = shown.version_data(version, name, args.as_of)
        print(json.dumps(data, indent=1) if args.json else shown.version_text(data))
        return 0
    data = shown.history_data(store, name)
    print(json.dumps(data, indent=1) if args.json else shown.history_text(data))
    return 0


def cmd_run_or_list(args: argparse.Namespace) -> int:
    if args.list or not args.job:
        from quant_assets.defs.service import JOBS

        for job in JOBS:
            cron = job.cron if isinstance(job.cron, str) else " and ".join(job.cron)
            print(f"{job.name:36} {job.dataset:18} {job.scope:10} {','.join(job.providers):24} {cron} (New York)")
        return 0
    return cmd_run(args)


def cmd_run(args: argparse.Namespace) -> int:
    import dagster as dg

    from quant_assets.defs.service import JOBS, run_job

    jobs = {job.name: job for job in JOBS}
    if args.job not in jobs:
        raise ValueError(f"no market-data job {args.job!r}: `quant-assets run --list` lists them")
    try:
        instance = dg.DagsterInstance.get()
    except dg.DagsterInvariantViolationError:
        raise ValueError("DAGSTER_HOME is not set: set it (make does) so that the run shows in the UI") from None
    summary = run_job(jobs[args.job], instance, scope=args.scope, partition=args.partition, force=args.force)
    print(json.dumps(summary, indent=1, default=str) if args.json else summary_text(summary))
    return 0 if summary["success"] else 1


def summary_text(summary: dict) -> str:
    served = ", ".join(f"{k} {v}" for k, v in summary.get("served_by_provider", {}).items()) or "none"
    lines = [
        f"{summary['job']} ({summary['dataset']} for {summary['scope']}): "
        f"{'succeeded' if summary['success'] else 'FAILED'}, run {summary['run_id']}",
        f"  asked {summary.get('symbols_asked', 0)}, held already {summary.get('skipped_as_held', 0)}, served: "
        f"{served}, failed {summary.get('failed', 0)}, no data {summary.get('missing', 0)}",
        f"  {summary.get('rows_written', 0)} rows in {summary.get('files_written', 0)} files; "
        f"{summary.get('requests', 0)} requests, cost {summary.get('cost', 0):g}, {summary.get('seconds', 0):.1f} s",
    ]
    lines += [f"  failed: {line}" for line in summary.get("failed_sample", [])]
    lines += [f"  note: {line}" for line in summary.get("notes", [])]
    if summary.get("error"):
        lines.append(f"  error: {summary['error']}")
    return "\n".join(lines)


def cmd_catalog(args: argparse.Namespace) -> int:
    from quant_assets.catalog import build_catalog, describe

    check_folder(args.data)
    check_writable_folder(args.data)
    path, names = build_catalog(args.data)
    counts = dict(describe(path, names))
    print(f"catalog at {path.resolve()}: {len(counts)} views over {Path(args.data).resolve()}")
    for name in names:
        print(f"  {name:40} {counts[name]:>12,} rows" if name in counts else f"  {name} (macro)")
    print(f'query it: duckdb {path} -c "SELECT * FROM lake_stocks_daily LIMIT 5"')
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from quant_assets.ui import serve

    trusted = [*from_env().ui_trusted_hosts, *(args.trusted_host or [])]
    return serve(args.host, args.port, trusted, workspace=args.workspace, module=args.module, log_level=args.log_level)


def cmd_bench(args: argparse.Namespace) -> int:
    from quant_assets.bench import bench_ingest

    check_writable_folder(Path(args.data) / "bench", from_env().min_free_mb)
    return bench_ingest(Path(args.data) / "bench", repeat=args.repeat, seed=args.seed, parts=tuple(args.parts))


def build_parser() -> argparse.ArgumentParser:
    settings = from_env()
    parser = argparse.ArgumentParser(
        prog="quant-assets",
        description="Sample vendor flat files and a local REST provider, summarise the lake, its coverage and the "
        "reference data, plan a run (dry run), show and reset the providers' state, benchmark ingestion, and serve "
        "the Dagster UI with the daemon. Materialise assets with Dagster's own CLI (see docs/operating.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    dataset_help = (
        f"comma-separated datasets, or 'all' (default: the four stock/option aggregates). Known: {', '.join(DATASETS)}"
    )

    sample = commands.add_parser(
        "sample",
        help="write synthetic vendor files (gzip CSV, the vendor's key layout and headers)",
        description="Write deterministic synthetic vendor files in the vendor's exact format (day and minute "
        "aggregates, and trades, quotes and index values for the tick datasets), streamed, to a folder (default "
        "data/vendor, the local source) or to an S3 endpoint.",
    )
    sample.add_argument("--start", type=_date, required=True, help="first date, YYYY-MM-DD")
    sample.add_argument("--end", type=_date, required=True, help="last date, YYYY-MM-DD (included)")
    sample.add_argument("--datasets", default=None, help=dataset_help)
    sample.add_argument("--out", default="data/vendor", help="folder to write to (default: data/vendor)")
    sample.add_argument(
        "--s3-endpoint",
        default=None,
        help="upload to this S3 endpoint instead of a folder; "
        "credentials from MASSIVE_S3_ACCESS_KEY_ID / MASSIVE_S3_SECRET_ACCESS_KEY",
    )
    sample.add_argument("--bucket", default="flatfiles", help="bucket for --s3-endpoint (default: flatfiles)")
    sample.add_argument("--create-bucket", action="store_true", help="create the bucket first")
    sample.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    sample.add_argument(
        "--size",
        choices=["small", "full"],
        default="small",
        help="small: ~60 stocks; full: the vendor's real size, ~12k stocks, ~2M minute rows and ~25M stock trades "
        "a day (default: small)",
    )
    sample.set_defaults(func=cmd_sample)

    rest = commands.add_parser(
        "sample-rest",
        help="serve the Massive REST API (and Tiingo's, Yahoo's, Finnhub's, Alpha Vantage's) locally over the sample "
        "universe (demo, tests)",
        description="Local HTTP servers on 127.0.0.1 that answer the REST endpoints this project reads in each "
        "vendor's JSON shapes, with the data of the files `quant-assets sample` writes for the same seed: Massive "
        "(/v3/reference/splits, /v3/reference/dividends, /v3/reference/tickers, grouped daily bars, aggregates, "
        "news, the /v3/snapshot quote), Tiingo (/tiingo/daily/<ticker>/prices), Yahoo's chart endpoint "
        "(/v8/finance/chart/<ticker>), Finnhub (quote, company and market news, basic financials, earnings) and "
        "Alpha Vantage (/query: TIME_SERIES_DAILY, SMA, EMA, RSI, MACD). Point MASSIVE_API_BASE_URL, "
        "TIINGO_API_BASE_URL, YAHOO_CHART_BASE_URL, FINNHUB_API_BASE_URL and ALPHAVANTAGE_API_BASE_URL at them. "
        "Runs until interrupted.",
    )
    rest.add_argument("--start", type=_date, required=True, help="first date of the reference data, YYYY-MM-DD")
    rest.add_argument("--end", type=_date, required=True, help="last date, YYYY-MM-DD (included)")
    rest.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default: 8765; 0 picks one)")
    rest.add_argument("--seed", type=int, default=7, help="random seed, as given to `sample` (default: 7)")
    rest.add_argument(
        "--providers",
        default="massive",
        help="which vendors to serve, comma-separated, from massive, tiingo, yahoo, finnhub, alphavantage (default: "
        "massive); each on --port plus its place in that list (massive --port, tiingo --port + 1, yahoo --port + 2, "
        "finnhub --port + 3, alphavantage --port + 4)",
    )
    rest.add_argument(
        "--tiingo-quota",
        type=int,
        default=0,
        help="Tiingo answers its plain-text over-quota 200 after this many requests, as the real one does past its "
        "hourly allocation (default: 0, no quota): the demo's fallback to the free provider",
    )
    rest.set_defaults(func=cmd_sample_rest)

    providers = commands.add_parser(
        "providers",
        help="show each REST provider's health (calls, failures, latency, cache, budget, breaker), or reset a breaker",
        description="Each provider's health from its durable state (data/providers/state.sqlite), shared by every "
        "run: calls, failures and failure rate, retries and seconds waited for rate slots, latency p50/p95 and cache "
        "hits over the last --hours; today's requests and spending against the daily budget (a warning from 80%%); "
        "the circuit breaker (closed, open, half-open) and when it tries again. A provider is OK, DEGRADED (breaker "
        "not closed, over 20%% of calls failed, or 80%% of the budget spent) or FAILING (breaker open and every "
        "call failed). `reset NAME` closes breaker NAME.",
    )
    providers.add_argument("action", choices=["status", "reset"], help="status (default) or reset", nargs="?",
                           default="status")  # fmt: skip
    providers.add_argument("name", nargs="?", default=None, help="the provider whose breaker to reset, e.g. massive")
    providers.add_argument("--data", default=settings.data, help=f"data folder (default: {settings.data})")
    providers.add_argument("--hours", type=float, default=24.0, help="the window of calls summarised (default: 24)")
    providers.add_argument("--json", action="store_true", help="print the summaries as JSON")
    providers.set_defaults(func=cmd_providers)

    status = commands.add_parser(
        "status",
        help="summarise what the lake, the enriched zone, the reference data and the Qlib directories hold",
        description="Sessions, rows, tickers and bytes per lake and enriched dataset (read from the Parquet files), "
        "the newest version of each reference table with the adjustment factors' size, and each Qlib directory's "
        "calendar, symbols and last publication.",
    )
    status.add_argument("--data", default=settings.data, help=f"data folder (default: {settings.data})")
    status.add_argument(
        "--datasets", default="all", help=dataset_help.replace("the four stock/option aggregates", "all")
    )
    status.set_defaults(func=cmd_status)

    coverage = commands.add_parser(
        "coverage",
        help="print the coverage ledger: each dataset's sessions present, missing, quarantined, ...",
        description="Rebuild the coverage ledger (what the `coverage` asset stores) from the configured source "
        "(QUANT_ASSETS_SOURCE, as for Dagster), the raw zone and the lake, save it, and print it: counts per "
        "status, the sessions that need attention, and one line per month with a symbol per session.",
    )
    coverage.add_argument("--data", default=settings.data, help=f"data folder (default: {settings.data})")
    coverage.add_argument("--datasets", default=settings.datasets, help=dataset_help)
    coverage.set_defaults(func=cmd_coverage)

    planner = commands.add_parser(
        "plan",
        help="dry run: what a run over a window would fetch and build, and how long it would take",
        description="For each dataset and session from --start to --end: whether a run would fetch the vendor file "
        "(new, replaced, or never landed; with its bytes), build the lake partition from the landed file (not built, "
        "or built from another file or by older code), skip it (current), or fail for want of a file (missing at the "
        "source); and the estimated raw -> lake time from the timings the newest lake partitions recorded. Reads the "
        "configured source (QUANT_ASSETS_SOURCE, as for Dagster), the raw zone and the lake; changes nothing. "
        "The decisions are those the raw and lake layers make.",
    )
    planner.add_argument(
        "--start", type=_date, default=None, help="first date, YYYY-MM-DD (default: 30 days before --end)"
    )
    planner.add_argument("--end", type=_date, default=None, help="last date, YYYY-MM-DD, included (default: today)")
    planner.add_argument("--datasets", default=settings.datasets, help=dataset_help)
    planner.add_argument("--data", default=settings.data, help=f"data folder (default: {settings.data})")
    planner.add_argument("--json", action="store_true", help="print every (dataset, session) as JSON instead")
    planner.set_defaults(func=cmd_plan)

    universes = commands.add_parser(
        "universes",
        help="list the named universes (watchlist, active, ...), show one's members, or its history",
        description="Named universes of symbols: one <name>.txt per universe in --folder, one symbol per line "
        "('#' starts a comment), in any common form (BRK.B, BRK-B, 'BRK/B US Equity', AAPL:US, 'SPX Index', ^GSPC; "
        "stored as the flat files write them). Every use first records a new version of each file that changed "
        "(under <data>/reference/universes/, with the UTC time it was seen), so an edit shows up at once and past "
        "memberships stay answerable. `universes` lists each universe (members, current version, as of, lines set "
        "aside as not symbols, with file:line); `universes show NAME [--as-of DATE]` prints its members now or at "
        "the end of DATE (UTC); `universes history NAME` prints each version with the symbols it added and removed.",
    )
    universes.add_argument(
        "action", nargs="?", choices=["list", "show", "history"], default="list", help="list (default), show, history"
    )
    universes.add_argument("name", nargs="?", default=None, help="the universe, for show and history")
    universes.add_argument(
        "--as-of",
        type=_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="show: the members at the end of this day (UTC), YYYY-MM-DD",
    )
    universes.add_argument("--json", action="store_true", help="print JSON instead")
    universes.add_argument("--data", default=settings.data, help=f"data folder (default: {settings.data})")
    universes.add_argument(
        "--folder",
        default=settings.universes_dir,
        help=f"folder of the universe files (QUANT_ASSETS_UNIVERSES; default: {settings.universes_dir})",
    )
    universes.set_defaults(func=cmd_universes)

    catalog = commands.add_parser(
        "catalog",
        help="write data/catalog.duckdb: DuckDB views over every zone (lake, quarantine, enriched, reference, ...)",
        description="Write <data>/catalog.duckdb (atomically): DuckDB views, not copies, over every zone that holds "
        "files: lake_<dataset>, quarantine_<dataset>, enriched_<dataset> (restatements applied), reference_<table> "
        "(newest), reference_<table>_versions and the macro reference_<table>_as_of(day), adjustment_factors, "
        "stocks_daily_adjusted (raw x factor), coverage, rest_stocks_daily and the market-data datasets. The views "
        "name files by absolute path, so the catalog opens from any working directory; a query of one session reads "
        "one partition. Prints each view's rows.",
    )
    catalog.add_argument("--data", default=settings.data, help=f"data folder (default: {settings.data})")
    catalog.set_defaults(func=cmd_catalog)

    run = commands.add_parser(
        "run",
        help="run one market-data job now (quotes, news, fundamentals, earnings, indicators, EOD prices)",
        description="Run a job of the market-data registry (defs/service.py JOBS) now, on the configured Dagster "
        "instance (DAGSTER_HOME), so the run shows in the UI; prints its summary: symbols asked, held already, "
        "served per provider, failed with reason, rows, requests, cost, seconds. A session-partitioned job (quotes, "
        "EOD prices) runs for the current session unless --partition says otherwise. `--list` lists the jobs with "
        "their schedules. The same runs: `dagster job execute -m quant_assets.definitions -j JOB`.",
    )
    run.add_argument("job", nargs="?", default=None, help="the job, e.g. finnhub_quote_active")
    run.add_argument("--scope", default=None, help="another universe than the job's own (news: `market`)")
    run.add_argument("--partition", default=None, metavar="YYYY-MM-DD", help="the session, for quotes and EOD prices")
    run.add_argument("--force", action="store_true", help="ask again what is held (cursors, versions, snapshots)")
    run.add_argument("--list", action="store_true", help="list the jobs, their data and schedules")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(func=cmd_run_or_list)

    ui = commands.add_parser(
        "ui",
        help="the Dagster UI on 127.0.0.1 and the daemon, refusing requests from other sites (what `make dev` runs)",
        description="Serve the Dagster UI (Dagster's webserver, in this process) and run the daemon beside it (the "
        "sensors, schedules and run queue), as `dagster dev` does, until Ctrl-C or SIGTERM, which stop both. The "
        "instance is DAGSTER_HOME's. Unlike `dagster dev`, a request whose Host header is not 127.0.0.1, "
        "localhost, --host or a trusted host is refused (400: a foreign name resolved to this machine, DNS "
        "rebinding), a browser's request from a page of another origin (its Origin, Sec-Fetch-Site or Referer) to "
        "/graphql, its websocket or any request other than GET, HEAD and OPTIONS is refused (403), and a GraphQL mutation sent by GET is refused (405). "
        "Clients that are not browsers (curl, Dagster's GraphQL client) send no Origin and pass. There is no login: "
        "to share the UI, put an authenticating proxy in front of it and name the proxy's host with "
        "--trusted-host.",
    )
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    ui.add_argument("--port", type=int, default=3000, help="port to listen on (default: 3000)")
    ui.add_argument(
        "--trusted-host",
        action="append",
        metavar="HOST[:PORT]",
        help="also answer this Host, and pages from http(s)://HOST[:PORT] (a proxy's name); repeatable, added to "
        f"{UI_TRUSTED_HOSTS_ENV} (comma-separated; now: {','.join(settings.ui_trusted_hosts) or 'unset'})",
    )
    target = ui.add_mutually_exclusive_group()
    target.add_argument("-w", "--workspace", help="a workspace.yaml to load the code locations from")
    target.add_argument(
        "-m",
        "--module",
        default="quant_assets.definitions",
        help="the module of the code location, when no --workspace (default: quant_assets.definitions)",
    )
    ui.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        default="info",
        help="log level of the daemon (default: info)",
    )
    ui.set_defaults(func=cmd_ui)

    bench = commands.add_parser("bench", help="benchmarks", description="Benchmarks, as ratios to a reference.")
    which = bench.add_subparsers(dest="which", required=True)
    ingest = which.add_parser(
        "ingest",
        help="raw -> lake on full-size files: a minute day vs gzip -dc, a Dagster range of 1 and 10 sessions, "
        "a stock trades day streamed",
        description="Generate (once, cached under <data>/bench) full-size stock minute aggregates and one day of "
        "stock trades, then measure, as ratios to references taken in the same process: (day) raw -> lake of one "
        "minute day against `gzip -dc` of the same file, with and without the quality gate, and its peak memory in "
        "a fresh process; (range) one Dagster run over 1 and over 10 minute sessions, each in a fresh process: "
        "peak memory, the fixed overhead of a run and the time per session; (ticks) the trades day streamed into "
        "the lake: rows, seconds, ratio to gzip -dc, peak memory. Budgets: day at most 0.65x gzip -dc, under 1 GiB, "
        "checks at most +25%; 10-session peak within 15% of the 1-session peak; ticks at most 1.0x gzip -dc and "
        "under 1.5 GiB; (features) a year of daily features for 12k tickers in one run against a plain scan_parquet "
        "of the same lake, under 20 s, and the VWAPs of the minute day at most 1.0x its raw -> lake; (cluster) the "
        "10-session range with its sessions built by a local Dask cluster of two workers against one process: the "
        "speed-up, without a budget; (providers) 1,000 watchlist tickers of daily bars from the local Tiingo-like "
        "server (50 ms a response, 25 requests a second enforced) through the hybrid source into the lake, within "
        "1.15x of the 40 s the limit allows, then again from the response cache: 0 requests, under 2 s; (year) a "
        "year of full-size stocks_daily files (250 sessions) through `dagster asset materialize` in one run, then "
        "again with nothing to do, each a fresh process on a fresh instance, on the project's instance and on "
        "Dagster's stock SQLite storage as the reference, the no-op as the planner does it (no run), and a profiled "
        "run's share in the event storage: first run at most 20 s, nothing to do at most 5 s, the year's peak "
        "memory within 15% of one session's. Exits 1 when a budget is exceeded.",
    )
    ingest.add_argument("--data", default=settings.data, help=f"data folder (default: {settings.data})")
    ingest.add_argument("--repeat", type=int, default=9, help="timed repetitions; the best is reported (default 9)")
    ingest.add_argument("--seed", type=int, default=7, help="random seed of the generated files (default: 7)")
    ingest.add_argument(
        "--parts",
        nargs="+",
        choices=["day", "range", "ticks", "features", "qlib", "cluster", "providers", "year"],
        default=["day", "range", "cluster", "ticks", "features", "qlib", "providers", "year"],
        help="which measurements to run (default: all eight)",
    )
    ingest.set_defaults(func=cmd_bench)
    return parser


def folder_error(error: Exception, args: argparse.Namespace) -> DataFolderError | None:
    """`error` as a DataFolderError if a folder that cannot be written caused it (read-only, full, a file, no
    permission), wherever it was raised: the write funnels raise one already; another write names its file, or
    else the folder the command writes to (--out, --data) is named."""
    if isinstance(error, DataFolderError):
        return error
    if not isinstance(error, OSError):
        return None
    sample = args.command == "sample"
    instead = OTHER_OUT if sample else INSTEAD
    if error.filename:
        return data_folder_error(error, error.filename, instead=instead)
    if sample and not args.s3_endpoint:
        return unwritable_folder(error, args.out, instead=instead, what="folder")
    if getattr(args, "data", None):
        return unwritable_folder(error, args.data)
    return None


def main(argv: list[str] | None = None) -> int:
    """Run a command; a failure is one line on stderr naming the command (set QUANT_ASSETS_DEBUG=1 for the
    traceback) and exit status 1, or 2 when a folder it writes cannot be written (read-only, full, a file)."""
    try:
        parser = build_parser()
    except ValueError as error:  # a malformed setting
        print(f"quant-assets: {error}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if from_env().debug:
            raise
        if (unwritable := folder_error(error, args)) is not None:
            print(f"quant-assets {args.command}: {unwritable}", file=sys.stderr)
            return 2
        print(f"quant-assets {args.command}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
