"""Daily and monthly partitions in the market's local time zone (the calendar itself is
`meter_assets.market_calendar`). Built from the settings when first asked for, never at
import, and the same object for the same settings."""

from __future__ import annotations

import datetime as dt
import warnings
from functools import cache

import dagster as dg

from meter_assets.config import settings


def daily_partitions() -> dg.DailyPartitionsDefinition:
    """The market's local days from `METER_START_DATE`."""
    s = settings()
    return _daily(s.start_date, s.market_tz, 0)


def forecast_partitions() -> dg.DailyPartitionsDefinition:
    """The day a forecast is made on: D's partition exists from the start of D (a readings
    partition only once its day has ended)."""
    s = settings()
    return _daily(s.start_date, s.market_tz, 1)


def monthly_partitions() -> dg.MonthlyPartitionsDefinition:
    """Calendar months in the market's time zone, keyed `YYYY-MM`; a month's partition exists
    once the month has ended, and the first is the first month the readings cover in full."""
    s = settings()
    return _monthly(_first_full_month(s.start_date), s.market_tz)


@cache
def _daily(start: dt.date, tz: str, end_offset: int) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone=tz, end_offset=end_offset)


@cache
def _monthly(start: str, tz: str) -> dg.MonthlyPartitionsDefinition:
    return dg.MonthlyPartitionsDefinition(start_date=start, timezone=tz, fmt="%Y-%m")


def _first_full_month(start: dt.date) -> str:
    first = start if start.day == 1 else (start.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return first.strftime("%Y-%m")


def earlier_days(start_offset: int, end_offset: int) -> dg.TimeWindowPartitionMapping:
    """A day's dependency on a window of days around it (`start_offset` to `end_offset`), where
    the first days of the history have no earlier days to read."""
    # allow_nonexistent_upstream_partitions is in beta: its warning, printed each time the code
    # location loads (every run), tells an operator nothing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.TimeWindowPartitionMapping(
            start_offset=start_offset, end_offset=end_offset, allow_nonexistent_upstream_partitions=True
        )
