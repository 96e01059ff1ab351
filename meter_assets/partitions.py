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


def raw_hour_prefix(hour: dt.datetime) -> str:
    return hour.strftime("raw/%Y/%m/%d/%H/")


def local_day_of(utc: dt.datetime) -> dt.date:
    """The local calendar day a naive-UTC instant falls in."""
    return utc.replace(tzinfo=dt.UTC).astimezone(settings().tz).date()
