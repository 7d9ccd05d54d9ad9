"""The dataset registry: every Polygon/Massive flat-file dataset, declared once.

Each `Dataset` says where the vendor keeps the files (key prefix and vendor dataset name), what the real header
is, how each column is typed in the lake, and which calendar decides the sessions. Assets, checks and sources are
generated from these entries; adding a dataset is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import polars as pl


class Calendar(StrEnum):
    """Which days a dataset has files for (see `sessions.py`)."""

    XNYS = "XNYS"  # NYSE sessions: no weekends, no holidays, early closes included
    EVERY_DAY = "24/7"  # crypto
    FOREX = "forex"  # Sunday to Friday
    WEEKDAYS = "weekdays"  # indices: Monday to Friday, market holidays included


class Kind(StrEnum):
    """How a CSV column is typed in the lake."""

    TICKER = "ticker"  # case-sensitive string; never a null token
    STRING = "string"
    FLOAT = "float"  # prices, volumes and sizes (volumes became fractional on 2026-02-23)
    INT = "int"
    TIMESTAMP = "timestamp"  # int64 nanoseconds since the epoch, UTC
    CODES = "codes"  # a bare code, an empty field or a quoted comma list: a list of ints


LAKE_DTYPES: dict[Kind, pl.DataType] = {
    Kind.TICKER: pl.String(),
    Kind.STRING: pl.String(),
    Kind.FLOAT: pl.Float64(),
    Kind.INT: pl.Int64(),
    Kind.TIMESTAMP: pl.Datetime("ns", "UTC"),
    Kind.CODES: pl.List(pl.Int32()),
}


@dataclass(frozen=True)
class Dataset:
    """One vendor flat-file dataset and how it lands in the lake."""

    name: str
    prefix: str
    vendor_dataset: str
    columns: tuple[tuple[str, Kind], ...]
    calendar: Calendar
    frequency: str  # "day", "minute" or "tick"
    time_column: str
    description: str = ""
    derived: tuple[str, ...] = field(default=())  # extra lake columns computed from the ticker

    @property
    def asset_class(self) -> str:
        return self.name.split("_", 1)[0]

    @property
    def header(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def key_prefix(self) -> str:
        """The key prefix every file of this dataset starts with, e.g. `us_stocks_sip/day_aggs_v1/`."""
        return f"{self.prefix}/{self.vendor_dataset}/"

    @property
    def is_aggregate(self) -> bool:
        return self.frequency in ("day", "minute")

    def lake_schema(self) -> dict[str, pl.DataType]:
        """Column name -> polars dtype of the lake table, in vendor header order, then derived columns."""
        schema = {name: LAKE_DTYPES[kind] for name, kind in self.columns}
        schema.update({name: OPTION_CONTRACT_COLUMNS[name] for name in self.derived})
        return schema

    @property
    def required(self) -> tuple[str, ...]:
        """Columns that must have a value in every row (the others may be empty in real files)."""
        return tuple(name for name, kind in self.columns if name not in OPTIONAL_COLUMNS and kind is not Kind.CODES)


# Empty in real files for trades and quotes that did not go through a TRF; an empty code list is a list too.
OPTIONAL_COLUMNS = frozenset({"trf_id", "trf_timestamp", "id"})

T, S, F, N, TS, C = Kind.TICKER, Kind.STRING, Kind.FLOAT, Kind.INT, Kind.TIMESTAMP, Kind.CODES

# Note the vendor's order: open, close, high, low. There is no vwap column.
AGGREGATES = (
    ("ticker", T),
    ("volume", F),
    ("open", F),
    ("close", F),
    ("high", F),
    ("low", F),
    ("window_start", TS),
    ("transactions", N),
)
INDEX_AGGREGATES = (("ticker", T), ("open", F), ("close", F), ("high", F), ("low", F), ("window_start", TS))
INDEX_VALUES = (("ticker", T), ("value", F), ("timestamp", TS))
STOCK_TRADES = (
    ("ticker", T),
    ("conditions", C),
    ("correction", N),
    ("exchange", N),
    ("id", S),
    ("participant_timestamp", TS),
    ("price", F),
    ("sequence_number", N),
    ("sip_timestamp", TS),
    ("size", F),
    ("tape", N),
    ("trf_id", N),
    ("trf_timestamp", TS),
)
STOCK_QUOTES = (
    ("ticker", T),
    ("ask_exchange", N),
    ("ask_price", F),
    ("ask_size", F),
    ("bid_exchange", N),
    ("bid_price", F),
    ("bid_size", F),
    ("conditions", C),
    ("indicators", C),
    ("participant_timestamp", TS),
    ("sequence_number", N),
    ("sip_timestamp", TS),
    ("tape", N),
    ("trf_timestamp", TS),
)
# The vendor's docs add a participant_timestamp that real option trade files lack.
OPTION_TRADES = (
    ("ticker", T),
    ("conditions", C),
    ("correction", N),
    ("exchange", N),
    ("price", F),
    ("sip_timestamp", TS),
    ("size", F),
)
OPTION_QUOTES = (
    ("ticker", T),
    ("ask_exchange", N),
    ("ask_price", F),
    ("ask_size", F),
    ("bid_exchange", N),
    ("bid_price", F),
    ("bid_size", F),
    ("sequence_number", N),
    ("sip_timestamp", TS),
)
CRYPTO_TRADES = (
    ("ticker", T),
    ("conditions", C),
    ("exchange", N),
    ("id", S),
    ("participant_timestamp", TS),
    ("price", F),
    ("size", F),
)
FOREX_QUOTES = (
    ("ticker", T),
    ("ask_exchange", N),
    ("ask_price", F),
    ("bid_exchange", N),
    ("bid_price", F),
    ("participant_timestamp", TS),
)

# Parsed from the OCC symbol `O:<ROOT><YYMMDD><C|P><strike * 1000, 8 digits>`.
OPTION_CONTRACT_COLUMNS: dict[str, pl.DataType] = {
    "underlying": pl.String(),
    "expiration": pl.Date(),
    "contract_type": pl.String(),
    "strike": pl.Float64(),
}
OPTION_DERIVED = tuple(OPTION_CONTRACT_COLUMNS)


def _family(
    asset_class: str, prefix: str, calendar: Calendar, entries: list[tuple[str, str, tuple, str]]
) -> list[Dataset]:
    derived = OPTION_DERIVED if asset_class == "options" else ()
    return [
        Dataset(
            name=f"{asset_class}_{suffix}",
            prefix=prefix,
            vendor_dataset=vendor_dataset,
            columns=columns,
            calendar=calendar,
            frequency=frequency,
            time_column=columns_time_column(columns),
            description=f"{asset_class.capitalize()} {suffix.replace('_', ' ')} from {prefix}/{vendor_dataset}.",
            derived=derived,
        )
        for suffix, vendor_dataset, columns, frequency in entries
    ]


def columns_time_column(columns: tuple[tuple[str, Kind], ...]) -> str:
    """The column that places a row in time: the bar start, the SIP stamp, or the only stamp there is."""
    names = [name for name, kind in columns if kind is Kind.TIMESTAMP]
    for preferred in ("window_start", "sip_timestamp"):
        if preferred in names:
            return preferred
    return names[0]


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        *_family(
            "stocks",
            "us_stocks_sip",
            Calendar.XNYS,
            [
                ("daily", "day_aggs_v1", AGGREGATES, "day"),
                ("minute", "minute_aggs_v1", AGGREGATES, "minute"),
                ("trades", "trades_v1", STOCK_TRADES, "tick"),
                ("quotes", "quotes_v1", STOCK_QUOTES, "tick"),
            ],
        ),
        *_family(
            "options",
            "us_options_opra",
            Calendar.XNYS,
            [
                ("daily", "day_aggs_v1", AGGREGATES, "day"),
                ("minute", "minute_aggs_v1", AGGREGATES, "minute"),
                ("trades", "trades_v1", OPTION_TRADES, "tick"),
                ("quotes", "quotes_v1", OPTION_QUOTES, "tick"),
            ],
        ),
        *_family(
            "crypto",
            "global_crypto",
            Calendar.EVERY_DAY,
            [
                ("daily", "day_aggs_v1", AGGREGATES, "day"),
                ("minute", "minute_aggs_v1", AGGREGATES, "minute"),
                ("trades", "trades_v1", CRYPTO_TRADES, "tick"),
            ],
        ),
        *_family(
            "forex",
            "global_forex",
            Calendar.FOREX,
            [
                ("daily", "day_aggs_v1", AGGREGATES, "day"),
                ("minute", "minute_aggs_v1", AGGREGATES, "minute"),
                ("quotes", "quotes_v1", FOREX_QUOTES, "tick"),
            ],
        ),
        *_family(
            "indices",
            "us_indices",
            Calendar.WEEKDAYS,
            [
                ("daily", "day_aggs_v1", INDEX_AGGREGATES, "day"),
                ("minute", "minute_aggs_v1", INDEX_AGGREGATES, "minute"),
                ("values", "values_v1", INDEX_VALUES, "tick"),
            ],
        ),
    ]
}

# What runs when nothing is configured: day and minute aggregates of stocks and options.
DEFAULT_DATASETS = ("stocks_daily", "stocks_minute", "options_daily", "options_minute")


def get_dataset(name: str) -> Dataset:
    """The registry entry called `name`, or a KeyError that lists the names there are."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}") from None


def parse_dataset_names(text: str | None) -> list[Dataset]:
    """Datasets from a comma-separated list such as `stocks_daily,crypto_minute`; `all` selects every one."""
    if not text or not text.strip():
        return [DATASETS[name] for name in DEFAULT_DATASETS]
    names = [part.strip() for part in text.split(",") if part.strip()]
    if names == ["all"]:
        return list(DATASETS.values())
    return [get_dataset(name) for name in names]
