"""Daily and monthly partitions in the market's local time zone (the calendar itself is
`meter_assets.market_calendar`)."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from meter_assets.config import settings

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=settings().start_date.isoformat(),
    timezone=settings().market_tz,
)


def _first_full_month(start: dt.date) -> str:
    first = start if start.day == 1 else (start.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return first.strftime("%Y-%m")


# Calendar months in the market's time zone, keyed `YYYY-MM`; a month's partition exists
# once the month has ended, and the first is the first month the readings cover in full.
monthly_partitions = dg.MonthlyPartitionsDefinition(
    start_date=_first_full_month(settings().start_date),
    timezone=settings().market_tz,
    fmt="%Y-%m",
)
