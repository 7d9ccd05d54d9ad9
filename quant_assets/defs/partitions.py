"""One Dagster partitions definition per calendar: a partition key per session date (`YYYY-MM-DD`).

Every layer of a chain (raw, lake, and what comes later) uses the same partitions definition object, so a
backfill over a range is planned as one range, not split into chunks.
"""

import datetime as dt
from functools import cache
from zoneinfo import ZoneInfo

import dagster as dg

from quant_assets.datasets import Calendar
from quant_assets.sessions import CRON_DAYS, calendar_timezone, xnys_holidays
from quant_assets.settings import partitions_end, partitions_start

PARTITION_FORMAT = "%Y-%m-%d"


@cache
def session_partitions(
    calendar: Calendar, start: str | None = None, end: str | None = None
) -> dg.TimeWindowPartitionsDefinition:
    """The one partitions definition for `calendar`: a key per session date from `start`
    (`QUANT_ASSETS_START_DATE`).

    The newest partition is the session in progress (`end_offset=1`): a weekday calendar's Friday window runs to
    Monday, so without the offset Friday's files, published on Saturday, would have no partition until Monday.
    With an end (`QUANT_ASSETS_END_DATE`, a history or the demo's month), the last partition is the last session
    on or before it.
    """
    start = start or partitions_start()
    end = end or partitions_end()
    timezone = calendar_timezone(calendar)
    exclusions = None
    if calendar is Calendar.XNYS:
        exclusions = [dt.datetime.combine(day, dt.time(), tzinfo=None) for day in xnys_holidays(start)]
    partitions = dg.TimeWindowPartitionsDefinition(
        cron_schedule=f"0 0 * * {CRON_DAYS[calendar]}",
        start=start,
        fmt=PARTITION_FORMAT,
        timezone=timezone,
        end_offset=1,
        exclusions=exclusions,
    )
    if not end:
        return partitions
    # the window of the last session on or before `end`, whose end (the next session) bounds the definition
    noon = dt.datetime.combine(dt.date.fromisoformat(end), dt.time(12), tzinfo=ZoneInfo(timezone))
    last = partitions.time_window_for_partition_key(partitions.get_partition_key_for_timestamp(noon.timestamp()))
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=f"0 0 * * {CRON_DAYS[calendar]}",
        start=start,
        end=last.end.strftime(PARTITION_FORMAT),
        fmt=PARTITION_FORMAT,
        timezone=timezone,
        exclusions=exclusions,
    )
