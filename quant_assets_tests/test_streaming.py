"""Files are streamed batch by batch: rows are conserved exactly (lake + quarantine = vendor rows) whatever the batch
boundaries, defects are found in every batch, and the rules that span batches (duplicates) still hold."""

import csv
import datetime as dt
import gzip
import io

import polars as pl
import pytest

from quant_assets.datasets import DATASETS
from quant_assets.flatfiles import read_batches, vendor_key
from quant_assets.ingest import IngestOptions, build_partition
from quant_assets.lake import partition_path, read_provenance
from quant_assets.quality.gate import QualityGateError
from quant_assets.raw import LandedFile
from quant_assets.sample import folder_writer, generate

TRADES, MINUTE = DATASETS["stocks_trades"], DATASETS["stocks_minute"]
SESSION = dt.date(2026, 2, 24)
SMALL_BATCH = 64 * 2**10  # a few hundred rows per batch: the small generated files span many batches


def generated(tmp_path, dataset, session=SESSION):
    generate([dataset], session, session, folder_writer(tmp_path / "vendor"))
    return tmp_path / "vendor" / vendor_key(dataset, session)


def rewrite(path, change):
    """Rewrite a vendor file through `change(header, rows)`, rows being lists of fields (csv module, so quoted
    code lists stay whole)."""
    text = gzip.decompress(path.read_bytes()).decode()
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], change(rows[0], rows[1:])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *body])
    path.write_bytes(gzip.compress(out.getvalue().encode()))
    return body


def build(path, dataset, tmp_path, batch_bytes=SMALL_BATCH, session=SESSION):
    landed = LandedFile.of(path, vendor_key(dataset, session))
    options = IngestOptions(batch_bytes=batch_bytes)
    return build_partition(landed, dataset, session, tmp_path / "lake", tmp_path / "quarantine", options)


def test_a_tick_file_is_read_in_many_batches_with_consecutive_row_numbers(tmp_path):
    path = generated(tmp_path, TRADES)
    batches = list(read_batches(path, TRADES, SESSION, vendor_key(TRADES, SESSION), batch_bytes=SMALL_BATCH))
    rows = gzip.decompress(path.read_bytes()).decode().count("\n") - 1
    assert len(batches) > 5
    assert [b.first_row for b in batches] == [1 + sum(b.frame.height for b in batches[:i]) for i in range(len(batches))]
    assert sum(b.frame.height for b in batches) == rows
    assert all(b.defects is None for b in batches)


def test_defects_in_several_batches_are_quarantined_and_every_row_is_kept_once(tmp_path):
    path = generated(tmp_path, TRADES)
    price, size = "price", "size"
    targets = {}

    def damage(header, rows):
        n = len(rows)
        for at, column, value, reason in (
            (3, price, "", "column 'price' is empty"),
            (n // 3, size, "ten", "column 'size' value 'ten' is not a valid Float64"),
            (n // 2, price, "-1", "price is zero, negative or NaN"),
            (n - 2, price, "0", "price is zero, negative or NaN"),
        ):
            rows[at][header.index(column)] = value
            targets[at + 1] = reason  # vendor rows count from 1 after the header
        return rows

    body = rewrite(path, damage)
    stats = build(path, TRADES, tmp_path)
    lake = pl.read_parquet(stats.path)
    bad = pl.read_parquet(partition_path(tmp_path / "quarantine", TRADES.name, SESSION))
    assert lake.height + bad.height == len(body)  # nothing lost, nothing twice
    assert dict(zip(bad["vendor_row"].to_list(), bad["reason"].to_list())) == targets
    assert stats.quarantined == 4 and stats.rows == lake.height
    assert stats.gate.failures == {"complete_values": 2, "positive_price": 2}
    # The clean rows are the vendor's rows, in order, with their values.
    kept = [row for i, row in enumerate(body, start=1) if i not in targets]
    header = gzip.decompress(path.read_bytes()).decode().splitlines()[0].split(",")
    assert lake["ticker"].to_list() == [row[header.index("ticker")] for row in kept]
    assert lake["price"].to_list() == [float(row[header.index("price")]) for row in kept]
    assert lake["sip_timestamp"].cast(pl.Int64).to_list() == [int(row[header.index("sip_timestamp")]) for row in kept]
    assert read_provenance(stats.path)["rows"] == str(lake.height)


def test_a_rejected_tick_file_sends_every_row_to_the_quarantine_in_file_order(tmp_path):
    path = generated(tmp_path, TRADES)

    def next_day(header, rows):
        i = header.index("sip_timestamp")
        for row in rows:
            row[i] = str(int(row[i]) + 86_400 * 10**9)
        return rows

    body = rewrite(path, next_day)
    with pytest.raises(QualityGateError, match=r"stocks_trades 2026-02-24: .*100.00%\) failed checks"):
        build(path, TRADES, tmp_path)
    bad = pl.read_parquet(partition_path(tmp_path / "quarantine", TRADES.name, SESSION))
    assert bad["vendor_row"].to_list() == list(range(1, len(body) + 1))
    assert not partition_path(tmp_path / "lake", TRADES.name, SESSION).parent.exists()


def test_a_duplicate_whose_first_copy_is_in_an_earlier_batch_is_found(tmp_path):
    path = generated(tmp_path, MINUTE)
    body = rewrite(path, lambda header, rows: rows + [list(rows[10])])  # the copy lands in the last batch
    stats = build(path, MINUTE, tmp_path, batch_bytes=16 * 2**10)
    bad = pl.read_parquet(partition_path(tmp_path / "quarantine", MINUTE.name, SESSION))
    assert bad["vendor_row"].to_list() == [len(body)] and bad["reason"][0] == "duplicate (ticker, window_start)"
    assert stats.rows == len(body) - 1
    # The same file read in one batch gives the same lake.
    whole = build(path, MINUTE, tmp_path / "one", batch_bytes=2**30)
    assert pl.read_parquet(whole.path).equals(pl.read_parquet(stats.path))
