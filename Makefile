# The two commands a fresh machine needs: `make demo` and `make test`. Everything installs from the lock file.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
VENV := .venv
# Qlib's reader, in its own environment (see quant_assets_tests/qlib-reader.txt)
QLIB_VENV := .venv-qlib
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Compile bytecode at install: every Dagster process imports ~2,600 modules, and without .pyc files (where
# PYTHONDONTWRITEBYTECODE is set, as in many containers and CI) each run and CLI call would recompile them.
export UV_COMPILE_BYTECODE := 1
export DAGSTER_HOME := $(CURDIR)/data/dagster_home
SHELL := bash
.SHELLFLAGS := -eo pipefail -c

DEMO_START := 2026-02-01
DEMO_END := 2026-02-28
DEMO_RANGE := {"dagster/asset_partition_range_start": "2026-02-02", "dagster/asset_partition_range_end": "2026-02-27"}
DEMO_REST_PORT := 8765
# The demo's REST bars: the `active` universe from Tiingo, whose local server runs "over quota" after 7 requests
# (its plain-text answer with HTTP 200), so that the other members fall back to the free Yahoo-shaped provider.
DEMO_TIINGO_QUOTA := 7
DEMO_REST := {"ops": {"rest_stocks_daily": {"config": {"universe": "active"}}}}
DEMO_CHECK := {"ops": {"lake_stocks_daily_reconciles_with_rest_daily": {"config": {"start": "2026-02-02", "end": "2026-02-27"}}}}
# The market-data jobs, one of each data type, "on" the sample's last session after its close (QUANT_ASSETS_NOW)
# against local Massive, Finnhub and Alpha Vantage servers; the servers are not the vendors, so their per-minute
# limits are lifted (QUANT_ASSETS_PROVIDER_LIMITS). Alpha Vantage's server starts in January: SMA(20) needs 20
# sessions. Its 25-a-day budget plans the watchlist's 40 symbols over two days.
DEMO_SERVICE_PORT := 8775
DEMO_NOW := 2026-02-27T18:30:00-05:00
DEMO_SERVICE_JOBS := finnhub_quote_active finnhub_news_active finnhub_fundamentals_watchlist \
	finnhub_earnings_watchlist alphavantage_sma_watchlist
# The demo's partitions are the sample month (QUANT_ASSETS_START_DATE/END_DATE), so that the UI of `make dev` opens
# on it full: 19 of 19 sessions, the Materialize dialog and the partition plots on the month, not on today.
# Set either in the environment to override (QUANT_ASSETS_END_DATE= for partitions through today).
demo dev: export QUANT_ASSETS_START_DATE ?= 2026-02-02
demo dev: export QUANT_ASSETS_END_DATE ?= 2026-02-27
QUIET := { grep -v -e ' - DEBUG - ' -e 'Warning: ' -e 'return callback' || true; }

.PHONY: setup demo test dev bench clean

setup: $(VENV)/.synced $(DAGSTER_HOME)/dagster.yaml

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: .tools/bin/uv uv.lock pyproject.toml
	.tools/bin/uv sync --frozen --python $(PYTHON)
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

## demo: install, generate February 2026 of sample vendor files and universes, ingest raw -> lake for the month,
## fetch splits, dividends and tickers from a local Massive REST server, build the adjustment factors, check the
## lake against the REST day bars, fetch the `active` universe's daily bars from local Tiingo (over quota after 7
## requests) and Yahoo servers (the fallback), compute the enriched daily features, write the Qlib directories (an
## instruments file per universe), build the coverage ledger, load them with Qlib, run one market-data job of each
## data type (quotes, news, fundamentals, earnings, vendor indicators) against local Massive, Finnhub and Alpha
## Vantage servers, summarise
demo: setup $(QLIB_VENV)/.synced
	$(BIN)/quant-assets sample --start $(DEMO_START) --end $(DEMO_END)
	$(BIN)/dagster job execute -m quant_assets.definitions -j ingest_us_equities --tags '$(DEMO_RANGE)' 2>&1 \
		| $(QUIET)
	$(BIN)/quant-assets sample-rest --start $(DEMO_START) --end $(DEMO_END) --port $(DEMO_REST_PORT) \
		--providers massive,tiingo,yahoo --tiingo-quota $(DEMO_TIINGO_QUOTA) & server=$$!; \
		trap 'kill $$server' EXIT; \
		export MASSIVE_API_BASE_URL=http://127.0.0.1:$(DEMO_REST_PORT); \
		export TIINGO_API_BASE_URL=http://127.0.0.1:$$(( $(DEMO_REST_PORT) + 1 )); \
		export YAHOO_CHART_BASE_URL=http://127.0.0.1:$$(( $(DEMO_REST_PORT) + 2 )); \
		$(BIN)/dagster job execute -m quant_assets.definitions -j refresh_reference 2>&1 | $(QUIET); \
		echo '$(DEMO_CHECK)' > data/demo_reconcile.json; \
		$(BIN)/dagster job execute -m quant_assets.definitions -j reconcile_with_rest -c data/demo_reconcile.json \
			2>&1 | $(QUIET); \
		echo '$(DEMO_REST)' > data/demo_rest.json; \
		QUANT_ASSETS_DAILY_BARS_PROVIDERS=tiingo,yahoo \
		$(BIN)/dagster job execute -m quant_assets.definitions -j fetch_rest_daily --tags '$(DEMO_RANGE)' \
			-c data/demo_rest.json 2>&1 | $(QUIET)
	$(BIN)/dagster job execute -m quant_assets.definitions -j enrich_us_equities --tags '$(DEMO_RANGE)' 2>&1 \
		| $(QUIET)
	$(BIN)/dagster job execute -m quant_assets.definitions -j publish_qlib --tags '$(DEMO_RANGE)' 2>&1 | $(QUIET)
	$(BIN)/dagster job execute -m quant_assets.definitions -j refresh_coverage 2>&1 | $(QUIET)
	$(QLIB_VENV)/bin/python -c "$$QLIB_DEMO" 2>&1 | grep -v -e '^\[' -e 'Warning' -e 'warn('
	$(BIN)/quant-assets sample-rest --start $(DEMO_START) --end $(DEMO_END) --port $(DEMO_SERVICE_PORT) \
		--providers massive,finnhub & massive=$$!; \
	$(BIN)/quant-assets sample-rest --start 2026-01-02 --end $(DEMO_END) --port $(DEMO_SERVICE_PORT) \
		--providers alphavantage & alphavantage=$$!; \
		trap 'kill $$massive $$alphavantage' EXIT; \
		export MASSIVE_API_BASE_URL=http://127.0.0.1:$(DEMO_SERVICE_PORT); \
		export FINNHUB_API_BASE_URL=http://127.0.0.1:$$(( $(DEMO_SERVICE_PORT) + 3 )); \
		export ALPHAVANTAGE_API_BASE_URL=http://127.0.0.1:$$(( $(DEMO_SERVICE_PORT) + 4 )); \
		export QUANT_ASSETS_NOW=$(DEMO_NOW); \
		export QUANT_ASSETS_PROVIDER_LIMITS=finnhub.per_minute=none,alphavantage.per_minute=none,alphavantage.per_second=10; \
		for job in $(DEMO_SERVICE_JOBS); do $(BIN)/quant-assets run $$job 2>&1 | grep -v -e " - DEBUG - " -e " - INFO - "; done
	$(BIN)/quant-assets status
	$(BIN)/quant-assets universes
	$(BIN)/quant-assets providers

define QLIB_DEMO
import qlib
from qlib.data import D
qlib.init(provider_uri={"day": "data/qlib/day", "1min": "data/qlib/1min"}, region="us")
print(D.features(["AAPL", "BRK.B"], ["$$close", "$$factor", "$$close / $$factor", "$$vwap"], "2026-02-17", "2026-02-20"))
print("watchlist:", D.list_instruments(D.instruments("watchlist"), as_list=True)[:8], "...")
endef
export QLIB_DEMO

# Qlib's reader in its own environment (see quant_assets_tests/qlib-reader.txt), for the Qlib read-back tests.
$(QLIB_VENV)/.synced: .tools/bin/uv quant_assets_tests/qlib-reader.txt
	.tools/bin/uv venv --quiet --allow-existing --python $(PYTHON) $(QLIB_VENV)
	VIRTUAL_ENV=$(CURDIR)/$(QLIB_VENV) .tools/bin/uv pip sync --quiet quant_assets_tests/qlib-reader.txt
	touch $@

## test: formatting and lint (ruff), the documentation's strict build (a broken link or a missing docstring fails
## it), then the whole suite (pytest, two workers), Qlib's reader included
test: setup $(QLIB_VENV)/.synced
	$(BIN)/ruff format --check quant_assets quant_assets_tests
	$(BIN)/ruff check quant_assets quant_assets_tests
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	QUANT_ASSETS_QLIB_PYTHON=$(CURDIR)/$(QLIB_VENV)/bin/python $(BIN)/pytest -n 2 -q

## dev: the Dagster UI on http://127.0.0.1:3000, on the demo's partitions (the sample month; QUANT_ASSETS_END_DATE=
## for partitions through today), and the daemon: the sensors (new files, gaps, failed-run alerts,
## dead runs) and declarative automation run; schedules are off until turned on in the UI. The UI refuses a foreign
## Host (DNS rebinding) and other sites' pages (cross-origin GraphQL, GET mutations): see `quant-assets ui --help`
dev: setup
	$(BIN)/quant-assets ui -w workspace.yaml --host 127.0.0.1 --port 3000

## bench: raw -> lake on full-size files, as ratios to gzip -dc; a Dagster range of 1 and 10 sessions; ticks;
## features; Qlib; 1,000 tickers of REST daily bars against the rate limit, then from the cache; a year of day
## sessions through `dagster asset materialize`, then again with nothing to do
bench: setup
	$(BIN)/quant-assets bench ingest

clean:
	rm -rf data/vendor data/raw data/lake data/quarantine data/enriched data/reference data/providers \
		data/dagster_home data/bench data/alerts data/site data/catalog.duckdb .tools $(VENV) $(QLIB_VENV)
