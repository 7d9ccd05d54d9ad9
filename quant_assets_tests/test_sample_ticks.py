"""The synthetic tick files (trades, quotes, index values) are what the vendor ships: exact headers, field counts,
market hours, value ranges and quirks, streamed in pieces that do not change the bytes.

Files are read with gzip + csv or polars (every column as text), not with the lake's reader.
"""

import csv
import datetime as dt
import gzip
import io
import os
import re
from functools import cache

import numpy as np
import polars as pl
import pytest

from quant_assets.datasets import DATASETS, Kind
from quant_assets.quality.rules import rules_for
from quant_assets.sample import (
    SIZES,
    Universe,
    folder_writer,
    generate,
    gzip_bytes,
    gzip_chunks,
    s3_writer,
    session_chunks,
)
from quant_assets.sample_ticks import tick_text_chunks
from quant_assets.sessions import exchange_calendar, extended_hours

D = dt.date
UNIVERSE = Universe(7, SIZES["small"])
BEFORE, AFTER = D(2026, 2, 20), D(2026, 2, 23)  # a Friday before the 6-decimal switch, the Monday it starts
# The real headers, as the vendor's files have them (option trades without participant_timestamp).
HEADERS = {
    "stocks_trades": "ticker,conditions,correction,exchange,id,participant_timestamp,price,sequence_number,"
    "sip_timestamp,size,tape,trf_id,trf_timestamp",
    "stocks_quotes": "ticker,ask_exchange,ask_price,ask_size,bid_exchange,bid_price,bid_size,conditions,indicators,"
    "participant_timestamp,sequence_number,sip_timestamp,tape,trf_timestamp",
    "options_trades": "ticker,conditions,correction,exchange,price,sip_timestamp,size",
    "options_quotes": "ticker,ask_exchange,ask_price,ask_size,bid_exchange,bid_price,bid_size,sequence_number,"
    "sip_timestamp",
    "crypto_trades": "ticker,conditions,exchange,id,participant_timestamp,price,size",
    "forex_quotes": "ticker,ask_exchange,ask_price,bid_exchange,bid_price,participant_timestamp",
    "indices_values": "ticker,value,timestamp",
}
TICKS = tuple(HEADERS)
# (dataset, session): ordinary days on both sides of the switch, plus the days with odd hours.
DAYS = [(name, day) for name in TICKS for day in (BEFORE, AFTER)] + [
    ("stocks_trades", D(2025, 11, 28)),  # early close: post-market ends 17:00 ET
    ("stocks_quotes", D(2025, 11, 28)),
    ("options_trades", D(2025, 11, 28)),
    ("forex_quotes", D(2026, 2, 22)),  # Sunday: the forex week opens at 22:00 UTC
    ("crypto_trades", D(2026, 2, 22)),
    ("indices_values", D(2026, 2, 16)),  # Presidents' Day: an index file, a quiet hour
]
PRICES = ("price", "value", "ask_price", "bid_price")
SIZES_ = ("size", "ask_size", "bid_size")


@cache
def text(name: str, session: dt.date, rows_per_chunk: int = 500_000) -> str:
    return b"".join(tick_text_chunks(DATASETS[name], session, UNIVERSE, rows_per_chunk)).decode()


@cache
def rows(name: str, session: dt.date) -> tuple[list[str], list[list[str]]]:
    header, *body = csv.reader(io.StringIO(text(name, session)))
    return header, body


def frame(name: str, session: dt.date) -> pl.DataFrame:
    return pl.read_csv(io.StringIO(text(name, session)), infer_schema=False)


def typed(name: str, session: dt.date) -> pl.DataFrame:
    """The file as the lake types it (codes stay text; the row rules do not read them)."""
    casts = {Kind.FLOAT: pl.Float64, Kind.INT: pl.Int64, Kind.TIMESTAMP: pl.Int64}
    out = frame(name, session).with_columns(pl.col(c).cast(casts[k]) for c, k in DATASETS[name].columns if k in casts)
    stamps = [c for c, k in DATASETS[name].columns if k is Kind.TIMESTAMP]
    return out.with_columns(pl.col(c).cast(pl.Datetime("ns", "UTC")) for c in stamps)


def ns(moment) -> int:
    return int(moment.timestamp()) * 10**9


def allowed_hours(name: str, session: dt.date) -> tuple[int, int]:
    """[start, end) in ns of the ticks a dataset has on `session`."""
    dataset = DATASETS[name]
    if name.startswith("stocks"):
        return tuple(ns(t) for t in extended_hours(dataset.calendar, session))
    xnys = exchange_calendar("XNYS")
    if name.startswith(("options", "indices")) and xnys.is_session(session):
        return xnys.session_open(session).value, xnys.session_close(session).value
    start, end = (ns(t) for t in extended_hours(dataset.calendar, session))  # the whole UTC (or NY) day
    if name == "forex_quotes" and session.weekday() == 6:
        start += 22 * 3600 * 10**9
    if name == "forex_quotes" and session.weekday() == 4:
        end -= 3 * 3600 * 10**9
    return start, end


@pytest.mark.parametrize("name", TICKS)
def test_exact_headers(name):
    for session in (BEFORE, AFTER):
        assert text(name, session).split("\n", 1)[0] == HEADERS[name]
    assert HEADERS[name] == ",".join(DATASETS[name].header)
    assert "participant_timestamp" not in HEADERS["options_trades"]


@pytest.mark.parametrize("name,session", DAYS)
def test_every_row_has_the_header_field_count(name, session):
    header, body = rows(name, session)
    assert header == HEADERS[name].split(",")
    assert body and all(len(row) == len(header) for row in body)
    assert text(name, session).endswith("\n")
    if session in (BEFORE, AFTER):
        assert 1_000 <= len(body) <= 60_000  # small: a few thousand to a few tens of thousands of rows


@pytest.mark.parametrize("name,session", DAYS)
def test_values_in_hours_and_in_range(name, session):
    data = frame(name, session)
    time = DATASETS[name].time_column
    assert data[time].str.contains(r"^\d{19}$").all()
    start, end = allowed_hours(name, session)
    stamps = data[time].cast(pl.Int64)
    assert start <= stamps.min() and stamps.max() < end
    for column in [c for c in PRICES if c in data.columns]:
        assert (data[column].cast(pl.Float64) > 0).all(), column
    for column in [c for c in SIZES_ if c in data.columns]:
        assert (data[column].cast(pl.Float64) >= 0).all(), column
    if "bid_price" in data.columns:
        assert (data["bid_price"].cast(pl.Float64) < data["ask_price"].cast(pl.Float64)).all()
    if "participant_timestamp" in data.columns and time == "sip_timestamp":
        participant = data["participant_timestamp"].cast(pl.Int64)
        known = participant != 0
        assert (participant.filter(known) < stamps.filter(known)).all()  # slightly before the SIP stamp
        assert ((stamps - participant).filter(known) < 10**9).all()


@pytest.mark.parametrize("name,session", DAYS)
def test_rows_pass_the_lake_row_rules(name, session):
    data = typed(name, session).lazy()
    for rule in rules_for(DATASETS[name], session):
        assert rule.evaluate(data).collect().to_series().all(), rule.name


@pytest.mark.parametrize("name,session", DAYS)
def test_ticker_major_then_time(name, session):
    data = frame(name, session).select("ticker", stamp=pl.col(DATASETS[name].time_column).cast(pl.Int64))
    runs = data["ticker"].rle()
    assert runs.struct.field("value").n_unique() == runs.len()  # each ticker in one run
    same_ticker = data["ticker"] == data["ticker"].shift(1)
    ascending = data["stamp"] >= data["stamp"].shift(1)
    assert ascending.filter(same_ticker).all()
    assert runs.len() > 1


def test_stock_trade_quirks():
    raw = text("stocks_trades", BEFORE)
    assert re.search(r',"\d+(,\d+)+",', raw)  # a quoted code list: `"12,37"`
    data = frame("stocks_trades", BEFORE)
    n = data.height
    conditions = data["conditions"]
    assert conditions.is_null().any() and conditions.str.contains(r"^\d+$").any()
    assert conditions.str.contains(",").any()
    trf = data["trf_id"].is_not_null()
    assert 0 < trf.sum() < n / 2  # empty for most trades, filled for the ones reported through a TRF
    assert (trf == data["trf_timestamp"].is_not_null()).all()
    assert (data.filter(trf)["exchange"] == "4").all()
    assert data["id"].is_null().any()  # an empty id in a few rows
    ids = data["id"].drop_nulls()
    assert ids.str.contains(r"^\d+$").any() and ids.str.contains(r"[^0-9]").any()  # opaque strings
    assert not ids.str.contains(r"[,\"\n]").any()
    assert 0 < (data["participant_timestamp"] == "0").sum() < n / 100
    assert (data["correction"] == "0").sum() > 0.99 * n
    assert set(data["tape"]) <= {"1", "2", "3"}
    assert data["exchange"].cast(pl.Int64).is_between(1, 21).all()
    quotes = frame("stocks_quotes", BEFORE)
    assert quotes["trf_timestamp"].is_null().sum() > 0.9 * quotes.height and quotes["trf_timestamp"].is_not_null().any()
    assert text("options_trades", BEFORE).count('"') > 0  # option code lists are quoted too
    assert frame("crypto_trades", BEFORE)["id"].is_null().any()


@pytest.mark.parametrize("name", ["stocks_trades", "stocks_quotes"])
def test_six_decimals_from_2026_02_23_and_shortest_form_before(name):
    header = HEADERS[name].split(",")
    numbers = [c for c in ("price", "size", "ask_price", "ask_size", "bid_price", "bid_size") if c in header]
    after, before = frame(name, AFTER), frame(name, BEFORE)
    for column in numbers:
        assert after[column].str.contains(r"^\d+\.\d{6}$").all(), column
        assert not before[column].str.contains(r"\.\d{6}$|\.\d*0$").any(), column  # `21`, `0.1952`
    for column in [c for c in numbers if c.endswith("size")]:
        assert before[column].str.contains(r"^\d+$").all()  # whole shares or lots before the switch
    for column in [c for c in numbers if c.endswith("price")]:
        assert before[column].str.contains(r"\.").any() and before[column].str.contains(r"^\d+$").any()
    if name == "stocks_trades":
        fractional = after["size"].filter(~after["size"].str.ends_with(".000000"))
        assert 0 < fractional.len() < after.height / 10  # fractional shares in a few rows
    # Only US stocks switched: options keep the shortest form.
    assert not frame("options_trades", AFTER)["price"].str.contains(r"\.\d{6}$").any()


def test_quote_sizes_are_round_lots_before_2025_11_03_and_shares_after():
    lots = frame("stocks_quotes", D(2025, 10, 31))["ask_size"].cast(pl.Int64)
    shares = frame("stocks_quotes", D(2025, 11, 3))["ask_size"].cast(pl.Int64)
    assert lots.min() >= 1 and (lots % 100 != 0).mean() > 0.9
    assert (shares % 100 == 0).all()


def test_prices_sit_near_the_minute_bars():
    minute = gzip.decompress(next(session_chunks(DATASETS["stocks_minute"], BEFORE, UNIVERSE))).decode()
    bars = pl.read_csv(io.StringIO(minute), schema_overrides={"ticker": pl.String})
    trades = frame("stocks_trades", BEFORE).with_columns(pl.col("price").cast(pl.Float64))
    levels = bars.group_by("ticker").agg(bar=pl.col("close").median())
    joined = trades.group_by("ticker").agg(trade=pl.col("price").median()).join(levels, on="ticker")
    ratio = joined["trade"] / joined["bar"]
    assert joined.height > 10 and ratio.is_between(0.8, 1.25).all()


def test_pieces_do_not_change_the_bytes():
    pieces = list(tick_text_chunks(DATASETS["stocks_trades"], BEFORE, UNIVERSE, rows_per_chunk=1_000))
    lines = text("stocks_trades", BEFORE).count("\n") - 1
    assert len(pieces) == -(-lines // 1_000) > 1  # more rows than one piece holds
    assert pieces[0].startswith(HEADERS["stocks_trades"].encode() + b"\n")
    assert all(piece.endswith(b"\n") for piece in pieces)
    assert not any(piece.startswith(b"ticker,") for piece in pieces[1:])
    joined = b"".join(pieces).decode()
    assert joined == text("stocks_trades", BEFORE)
    assert joined == b"".join(tick_text_chunks(DATASETS["stocks_trades"], BEFORE, UNIVERSE, 7_777)).decode()
    for name in ("options_quotes", "indices_values"):
        assert text(name, AFTER, 333) == text(name, AFTER)


def test_deterministic_across_calls_and_by_seed():
    dataset = DATASETS["stocks_quotes"]
    first = b"".join(tick_text_chunks(dataset, AFTER, Universe(7, SIZES["small"])))
    assert first == b"".join(tick_text_chunks(dataset, AFTER, Universe(7, SIZES["small"])))
    assert first != b"".join(tick_text_chunks(dataset, AFTER, Universe(8, SIZES["small"])))


def test_gzip_chunks_is_one_gzip_member_like_gzip_bytes():
    pieces = [b"ticker,value\n", b"", b"I:SPX,1\n" * 1000, b"I:NDX,2\n"]
    data = b"".join(gzip_chunks(pieces, level=1))
    assert data == gzip_bytes(b"".join(pieces), level=1)
    assert data[4:8] == b"\0\0\0\0"  # mtime 0
    assert gzip.decompress(data) == b"".join(pieces)


def test_folder_writer_writes_the_streamed_bytes_and_keeps_unchanged_files(tmp_path):
    datasets = [DATASETS["stocks_trades"], DATASETS["forex_quotes"], DATASETS["stocks_daily"]]
    keys = generate(datasets, BEFORE, BEFORE, folder_writer(tmp_path))
    assert keys == [f"{d.key_prefix}2026/02/2026-02-20.csv.gz" for d in datasets]
    for dataset, key in zip(datasets, keys):
        data = (tmp_path / key).read_bytes()
        assert data == b"".join(session_chunks(dataset, BEFORE, UNIVERSE))
        if not dataset.is_aggregate:
            assert gzip.decompress(data).decode() == text(dataset.name, BEFORE)
    path = tmp_path / keys[0]
    os.utime(path, ns=(10**18, 10**18))
    generate(datasets[:1], BEFORE, BEFORE, folder_writer(tmp_path))
    assert path.stat().st_mtime_ns == 10**18  # same bytes: the file is left alone
    generate(datasets[:1], BEFORE, BEFORE, folder_writer(tmp_path), seed=8)
    assert path.stat().st_mtime_ns != 10**18
    assert not list(tmp_path.rglob("*.tmp"))


def test_s3_writer_streams_small_and_multipart_uploads():
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="flatfiles")
        write = s3_writer(client, "flatfiles")
        write("small.csv.gz", iter([b"abc", b"", b"def"]))
        assert client.get_object(Bucket="flatfiles", Key="small.csv.gz")["Body"].read() == b"abcdef"
        # 20 MB in 1 MB pieces: boto3 switches to a multipart upload, whose parts must be whole (>= 5 MB).
        pieces = [np.random.default_rng(i).bytes(1 << 20) for i in range(20)]
        write("big.csv.gz", iter(pieces))
        head = client.head_object(Bucket="flatfiles", Key="big.csv.gz")
        assert "-" in head["ETag"]  # a multipart ETag
        assert client.get_object(Bucket="flatfiles", Key="big.csv.gz")["Body"].read() == b"".join(pieces)
