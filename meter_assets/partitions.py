"""Daily partitions in the market's local time zone, and the UTC instants they cover."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from meter_assets.config import settings

INTERVAL = dt.timedelta(minutes=15)

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


def local_day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """UTC start (inclusive) and end (exclusive) of a local calendar day, as naive UTC."""
    tz = settings().tz
    start = dt.datetime.combine(day, dt.time(), tzinfo=tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    return (
        start.astimezone(dt.UTC).replace(tzinfo=None),
        end.astimezone(dt.UTC).replace(tzinfo=None),
    )


def intervals_in_day(day: dt.date) -> int:
    """92 on the spring-forward day, 100 on the fall-back day, 96 otherwise."""
    start, end = local_day_bounds(day)
    return int((end - start) / INTERVAL)


def utc_hours(day: dt.date) -> list[dt.datetime]:
    """The 23, 24 or 25 UTC hours that make up a local day."""
    start, end = local_day_bounds(day)
    return [start + dt.timedelta(hours=h) for h in range(int((end - start).total_seconds() // 3600))]


def local_day_of(utc: dt.datetime) -> dt.date:
    """The local calendar day a naive-UTC instant falls in."""
    return utc.replace(tzinfo=dt.UTC).astimezone(settings().tz).date()
