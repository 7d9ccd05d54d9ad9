import datetime as dt

import dagster as dg
import pytest

from quant_assets.datasets import DATASETS, Calendar
from quant_assets.defs.ingest import ingest_defs
from quant_assets.defs.partitions import session_partitions
from quant_assets.sessions import is_session, sessions
from quant_assets.settings import partitions_end

D = dt.date


def test_xnys_sessions_skip_weekends_and_holidays_and_keep_early_closes():
    nov = sessions(Calendar.XNYS, "2025-11-24", "2025-12-01")
    # Thanksgiving (27th) is closed; the 28th closes early at 13:00 and is a session; 29th/30th are a weekend.
    assert nov == [D(2025, 11, 24), D(2025, 11, 25), D(2025, 11, 26), D(2025, 11, 28), D(2025, 12, 1)]
    assert is_session(Calendar.XNYS, D(2025, 7, 3))  # early close before Independence Day
    assert not is_session(Calendar.XNYS, D(2025, 7, 4))
    assert not is_session(Calendar.XNYS, D(2026, 2, 16))  # Presidents' Day
    assert len(sessions(Calendar.XNYS, "2025-01-01", "2025-12-31")) == 250


def test_other_calendars():
    week = ("2026-02-13", "2026-02-17")  # Friday to Tuesday, Presidents' Day on Monday
    assert sessions(Calendar.EVERY_DAY, *week) == [D(2026, 2, d) for d in (13, 14, 15, 16, 17)]
    assert sessions(Calendar.FOREX, *week) == [D(2026, 2, d) for d in (13, 15, 16, 17)]
    assert sessions(Calendar.WEEKDAYS, *week) == [D(2026, 2, d) for d in (13, 16, 17)]


def test_partition_keys_are_exactly_the_sessions():
    partitions = session_partitions(Calendar.XNYS, "2025-01-01")
    keys = partitions.get_partition_keys_in_range(dg.PartitionKeyRange("2025-11-24", "2026-01-05"))
    expected = [d.isoformat() for d in sessions(Calendar.XNYS, "2025-11-24", "2026-01-05")]
    assert keys == expected
    assert "2025-11-27" not in keys and "2025-12-25" not in keys and "2025-11-29" not in keys
    assert "2025-11-28" in keys
    # Friday's partition exists before Monday: its files are published on Saturday.
    saturday = dt.datetime(2026, 2, 14, 12, tzinfo=dt.UTC)
    assert partitions.get_partition_keys(current_time=saturday)[-1] == "2026-02-13"


def test_one_partitions_definition_serves_every_layer_of_a_calendar():
    names = ("stocks_minute", "options_daily", "crypto_daily")
    by_key = {}
    for chain in ingest_defs([DATASETS[n] for n in names]).assets:
        by_key.update(dict.fromkeys(chain.keys, chain.partitions_def))
    xnys = session_partitions(Calendar.XNYS)
    assert by_key[dg.AssetKey("raw_stocks_minute")] is by_key[dg.AssetKey("lake_options_daily")] is xnys
    assert by_key[dg.AssetKey("lake_crypto_daily")] is session_partitions(Calendar.EVERY_DAY)


def test_an_end_date_makes_the_last_session_on_or_before_it_the_last_partition(monkeypatch):
    """`QUANT_ASSETS_END_DATE` (the demo's month): the partitions stop at the last session on or before it, in
    every calendar, and a later session has no partition whatever the time."""
    later = dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC)
    for end, last in (("2026-02-27", "2026-02-27"), ("2026-02-16", "2026-02-13"), ("2026-02-28", "2026-02-27")):
        keys = session_partitions(Calendar.XNYS, "2026-02-02", end).get_partition_keys(current_time=later)
        assert keys == [d.isoformat() for d in sessions(Calendar.XNYS, "2026-02-02", last)], end
    crypto = session_partitions(Calendar.EVERY_DAY, "2026-02-02", "2026-02-28").get_partition_keys(current_time=later)
    assert (crypto[0], crypto[-1], len(crypto)) == ("2026-02-02", "2026-02-28", 27)
    monkeypatch.setenv("QUANT_ASSETS_START_DATE", "2026-03-02")
    monkeypatch.setenv("QUANT_ASSETS_END_DATE", "2026-02-27")
    with pytest.raises(ValueError, match="QUANT_ASSETS_END_DATE 2026-02-27 is before QUANT_ASSETS_START_DATE"):
        partitions_end()  # what session_partitions reads (it is cached per process)
    monkeypatch.setenv("QUANT_ASSETS_END_DATE", "end of February")
    with pytest.raises(ValueError, match=r"QUANT_ASSETS_END_DATE must be a date \(YYYY-MM-DD\), not 'end of Feb"):
        partitions_end()
