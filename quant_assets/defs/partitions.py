"""One Dagster partitions definition per calendar: a partition key per session date (`YYYY-MM-DD`).

Every layer of a chain (raw, lake, and what comes later) uses the same partitions definition object, so a
backfill over a range is planned as one range, not split into chunks.
"""

import datetime as dt
from functools import cache

import dagster as dg

from quant_assets.datasets import Calendar
from quant_assets.sessions import CRON_DAYS, calendar_timezone, xnys_holidays
from quant_assets.settings import partitions_start

PARTITION_FORMAT = "%Y-%m-%d"


@cache
def session_partitions(calendar: Calendar, start: str | None = None) -> dg.TimeWindowPartitionsDefinition:
    """The one partitions definition for `calendar`: a key per session date.

    The newest partition is the session in progress (`end_offset=1`): a weekday calendar's Friday window runs to
    Monday, so without the offset Friday's files, published on Saturday, would have no partition until Monday.
    """
    start = start or partitions_start()
    timezone = calendar_timezone(calendar)
    exclusions = None
    if calendar is Calendar.XNYS:
        exclusions = [dt.datetime.combine(day, dt.time(), tzinfo=None) for day in xnys_holidays(start)]
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule=f"0 0 * * {CRON_DAYS[calendar]}",
        start=start,
        fmt=PARTITION_FORMAT,
        timezone=timezone,
        end_offset=1,
        exclusions=exclusions,
    )
