"""Parsing vendor files: every quirk from the reference notes, and every kind of bad input."""

import csv
import datetime as dt
import gzip

import polars as pl
import pytest

from quant_assets.datasets import DATASETS
from quant_assets.flatfiles import FlatFileError, read_flat_file, session_from_key, vendor_key
from quant_assets_tests.conftest import write_vendor_file

SESSION = dt.date(2026, 2, 24)
UTC = dt.UTC


def parse(tmp_path, name: str, text: str | bytes, session=SESSION, compress=True) -> pl.DataFrame:
    dataset = DATASETS[name]
    path = write_vendor_file(tmp_path, dataset, session, text, compress=compress)
    return read_flat_file(path, dataset, session, vendor_key(dataset, session))


def ns(text: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(text) // 10**9, UTC).replace(microsecond=(int(text) % 10**9) // 1000)


def test_keys_follow_the_vendor_layout():
    assert vendor_key(DATASETS["stocks_minute"], SESSION) == "us_stocks_sip/minute_aggs_v1/2026/02/2026-02-24.csv.gz"
    assert vendor_key(DATASETS["indices_values"], SESSION) == "us_indices/values_v1/2026/02/2026-02-24.csv.gz"
    assert session_from_key("global_crypto/day_aggs_v1/2026/02/2026-02-24.csv.gz") == SESSION
    with pytest.raises(ValueError, match="not a vendor flat-file key"):
        session_from_key("us_stocks_sip/day_aggs_v1/2026/03/2026-02-24.csv.gz")


AGG_QUIRKS = """ticker,volume,open,close,high,low,window_start,transactions
NA,21,0.1952,0.1953,0.1960,0.1950,1771909200000000000,3
NULL,100.500000,114.790000,114.800000,114.810000,114.780000,1771909260000000000,1
BApA,7,21,21.5,22,20,1771909200000000000,2
BAPA,8,30.01,30.02,30.03,30,1771909200000000000,2
BRK.B,1234.567891,500.123456,500.2,500.3,500,1771909200000000000,9
NE.WS.A,1,0.0101,0.0101,0.0101,0.0101,1771909200000000000,1
ZVZZT,3,10,10,10,10,17719092000000000,1
ZXIET,4,10,10,10,10,-60000000000,1
BCpC,5,1.5,1.5,1.5,1.5,1771995600000000000,1
"""


def test_aggregate_quirks_are_kept_exactly(tmp_path):
    frame = parse(tmp_path, "stocks_minute", AGG_QUIRKS)
    assert frame.schema == pl.Schema(DATASETS["stocks_minute"].lake_schema())
    assert frame.schema["window_start"] == pl.Datetime("ns", "UTC")
    # Null-like and case-sensitive tickers survive as written.
    assert frame["ticker"].to_list() == ["NA", "NULL", "BApA", "BAPA", "BRK.B", "NE.WS.A", "ZVZZT", "ZXIET", "BCpC"]
    assert frame["ticker"].null_count() == 0
    assert frame.row(0) == ("NA", 21.0, 0.1952, 0.1953, 0.196, 0.195, ns("1771909200000000000"), 3)
    assert frame.row(1)[:6] == ("NULL", 100.5, 114.79, 114.8, 114.81, 114.78)  # 6 fixed decimals
    assert frame.row(4)[1:3] == (1234.567891, 500.123456)  # fractional volume
    assert frame["volume"].dtype == pl.Float64
    # A 17-digit (truncated) stamp and a pre-1970 stamp are kept as the vendor wrote them; checks flag them.
    stamps = frame["window_start"].cast(pl.Int64).to_list()
    assert stamps[6] == 17719092000000000
    assert stamps[7] == -60000000000
    assert frame["window_start"][7] == dt.datetime(1969, 12, 31, 23, 59, tzinfo=UTC)


def test_columns_are_resolved_by_name_not_position(tmp_path):
    text = "close,open,ticker,low,high,volume,transactions,window_start\n2,1,ABC,0.5,3,10,4,1771909200000000000\n"
    frame = parse(tmp_path, "stocks_daily", text)
    assert frame.columns == list(DATASETS["stocks_daily"].header)
    assert frame.row(0) == ("ABC", 10.0, 1.0, 2.0, 3.0, 0.5, ns("1771909200000000000"), 4)


def test_crlf_and_concatenated_gzip_members(tmp_path):
    header, row1, row2 = AGG_QUIRKS.splitlines()[:3]
    data = gzip.compress(f"{header}\r\n{row1}\r\n".encode()) + gzip.compress(f"{row2}\r\n".encode())
    frame = parse(tmp_path, "stocks_minute", data, compress=False)
    assert frame["ticker"].to_list() == ["NA", "NULL"]
    assert frame["transactions"].to_list() == [3, 1]


def test_stock_trades_codes_ids_and_zero_participant_timestamps(tmp_path):
    text = (
        "ticker,conditions,correction,exchange,id,participant_timestamp,price,sequence_number,sip_timestamp,size,"
        "tape,trf_id,trf_timestamp\n"
        'AAPL,"12,37",0,4,900]:C,1771939800000000123,230.120000,1001,1771939800000000456,0.500000,3,,\n'
        "NA,14,0,11,A0031I,0,10.5,1002,1771939801000000000,100,1,202,1771939801000000001\n"
        "BRK.B,,1,12,,1771939802000000000,500,1003,1771939802000000000,3,2,,\n"
    )
    frame = parse(tmp_path, "stocks_trades", text)
    assert frame["conditions"].to_list() == [[12, 37], [14], []]
    assert frame["id"].to_list() == ["900]:C", "A0031I", ""]
    assert frame["participant_timestamp"].cast(pl.Int64).to_list() == [1771939800000000123, 0, 1771939802000000000]
    assert frame["sip_timestamp"].cast(pl.Int64).to_list()[0] == 1771939800000000456  # nanoseconds kept
    assert frame["size"].to_list() == [0.5, 100.0, 3.0]
    assert frame["trf_id"].to_list() == [None, 202, None]
    assert frame["trf_timestamp"].is_null().to_list() == [True, False, True]


@pytest.mark.parametrize(
    "name, text, expected",
    [
        (
            "stocks_quotes",
            "ticker,ask_exchange,ask_price,ask_size,bid_exchange,bid_price,bid_size,conditions,indicators,"
            "participant_timestamp,sequence_number,sip_timestamp,tape,trf_timestamp\n"
            'BApA,12,21.05,300,11,21.01,200,1,"604,607",1771939800000000000,5,1771939800000000001,1,\n',
            {"ticker": "BApA", "ask_size": 300.0, "conditions": [1], "indicators": [604, 607], "trf_timestamp": None},
        ),
        (
            "options_trades",
            "ticker,conditions,correction,exchange,price,sip_timestamp,size\n"
            "O:SPY230327P00390000,209,0,65,1.25,1679929200000000000,2\n",
            {
                "ticker": "O:SPY230327P00390000",
                "underlying": "SPY",
                "expiration": dt.date(2023, 3, 27),
                "contract_type": "P",
                "strike": 390.0,
                "conditions": [209],
                "size": 2.0,
            },
        ),
        (
            "options_quotes",
            "ticker,ask_exchange,ask_price,ask_size,bid_exchange,bid_price,bid_size,sequence_number,sip_timestamp\n"
            "O:BRKB260320C00500000,301,12.5,10,302,12.1,5,77,1771939800000000000\n",
            {"underlying": "BRKB", "strike": 500.0, "contract_type": "C", "bid_price": 12.1},
        ),
        (
            "crypto_trades",
            "ticker,conditions,exchange,id,participant_timestamp,price,size\n"
            'X:BTC-USD,"1,2",1,abc-123,1771939800000000000,97000.5,0.00012\n',
            {"ticker": "X:BTC-USD", "conditions": [1, 2], "id": "abc-123", "size": 0.00012},
        ),
        (
            "forex_quotes",
            "ticker,ask_exchange,ask_price,bid_exchange,bid_price,participant_timestamp\n"
            "C:EUR-USD,48,1.04512,48,1.04508,1771939800000000000\n",
            {"ticker": "C:EUR-USD", "ask_price": 1.04512},
        ),
        (
            "indices_daily",
            "ticker,open,close,high,low,window_start\nI:SPX,6001.5,6010.25,6020,5990,1771909200000000000\n",
            {"ticker": "I:SPX", "close": 6010.25},
        ),
        (
            "indices_values",
            "ticker,value,timestamp\nI:VIX,17.23,1771939800000000000\n",
            {"ticker": "I:VIX", "value": 17.23},
        ),
        (
            "crypto_minute",
            "ticker,volume,open,close,high,low,window_start,transactions\n"
            "X:ETH-USD,0.5,3000,3001,3002,2999,1771891200000000000,7\n",
            {"ticker": "X:ETH-USD", "volume": 0.5},
        ),
        (
            "forex_daily",
            "ticker,volume,open,close,high,low,window_start,transactions\n"
            "C:USD-JPY,123456,150.1,150.2,150.3,150.0,1771891200000000000,123456\n",
            {"ticker": "C:USD-JPY", "transactions": 123456},
        ),
    ],
)
def test_every_dataset_parses(tmp_path, name, text, expected):
    frame = parse(tmp_path, name, text)
    assert frame.schema == pl.Schema(DATASETS[name].lake_schema())
    row = frame.row(0, named=True)
    assert {k: row[k] for k in expected} == expected


def test_generated_files_equal_an_independent_reading(february):
    """Every value of every row, compared with Python's csv module and float()/int() on the same bytes."""
    for name in ("stocks_minute", "options_daily"):
        dataset = DATASETS[name]
        for session in (dt.date(2026, 2, 20), dt.date(2026, 2, 23)):  # before and after 6-decimal text
            key = vendor_key(dataset, session)
            frame = read_flat_file(february / key, dataset, session, key)
            with gzip.open(february / key, "rt", newline="") as stream:
                rows = list(csv.DictReader(stream))
            assert frame.height == len(rows) > 0
            assert frame["ticker"].to_list() == [r["ticker"] for r in rows]
            for column in ("volume", "open", "close", "high", "low"):
                assert frame[column].to_list() == [float(r[column]) for r in rows], column
            assert frame["window_start"].cast(pl.Int64).to_list() == [int(r["window_start"]) for r in rows]
            assert frame["transactions"].to_list() == [int(r["transactions"]) for r in rows]


HEADER = "ticker,volume,open,close,high,low,window_start,transactions\n"
GOOD_ROW = "AAPL,10,1,2,3,0.5,1771909200000000000,4\n"
KEY = "us_stocks_sip/day_aggs_v1/2026/02/2026-02-24.csv.gz"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "the file is empty (0 bytes)"),
        (gzip.compress(b""), "the file has no header row"),
        (gzip.compress(HEADER.encode()), "the file has a header but no rows"),
        (gzip.compress((HEADER + GOOD_ROW * 5000).encode())[:-200], "the gzip stream is truncated"),
        (b"ticker,volume\nAAPL,1\n", "not a valid gzip file"),
        (
            gzip.compress(b"ticker,volume,open,close,high,low,window_start,vwap\n" + GOOD_ROW.encode()),
            "header does not match stocks_daily: missing ['transactions'], unexpected ['vwap']",
        ),
        (
            gzip.compress((HEADER + GOOD_ROW * 3 + "MSFT,ten,1,2,3,0.5,1771909200000000000,4\n").encode()),
            "row 4 (line 5): column 'volume' value 'ten' is not a valid Float64 (ticker 'MSFT')",
        ),
    ],
    ids=["empty", "no-header", "header-only", "truncated", "not-gzip", "wrong-header", "bad-value"],
)
def test_bad_input_names_dataset_session_key_and_row(tmp_path, data, message):
    with pytest.raises(FlatFileError) as info:
        parse(tmp_path, "stocks_daily", data, compress=False)
    assert str(info.value).startswith(f"stocks_daily 2026-02-24: {KEY}")
    assert message in str(info.value)
    assert (info.value.dataset, info.value.session, info.value.key) == ("stocks_daily", "2026-02-24", KEY)


def test_a_short_row_is_reported(tmp_path):
    with pytest.raises(FlatFileError) as info:
        parse(tmp_path, "stocks_daily", HEADER + GOOD_ROW + "AAPL,1,2\n")
    assert str(info.value) == (
        f"stocks_daily 2026-02-24: {KEY}, row 2 (line 3): short row: 3 fields, the header has 8 (ticker 'AAPL')"
    )
