"""The market's calendar: local days and months, and the UTC instants and hours they cover,
correct across clock changes. Pure functions (no Dagster), for the partitions, pricing, the
reports and the simulator alike; `tz` defaults to the market's time zone (`METER_MARKET_TZ`)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from meter_assets.config import settings

INTERVAL = dt.timedelta(minutes=15)


def _zone(tz: str | None) -> ZoneInfo:
    return ZoneInfo(tz) if tz else settings().tz


def local_day_bounds(day: dt.date, tz: str | None = None) -> tuple[dt.datetime, dt.datetime]:
    """UTC start (inclusive) and end (exclusive) of a local calendar day, as naive UTC."""
    zone = _zone(tz)
    start = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return start.astimezone(dt.UTC).replace(tzinfo=None), end.astimezone(dt.UTC).replace(tzinfo=None)


def intervals_in_day(day: dt.date, tz: str | None = None) -> int:
    """92 on the spring-forward day, 100 on the fall-back day, 96 otherwise."""
    start, end = local_day_bounds(day, tz)
    return int((end - start) / INTERVAL)


SETTLEMENT_PERIOD = dt.timedelta(minutes=30)


def settlement_period_starts(day: dt.date, tz: str | None = None) -> list[dt.datetime]:
    """The UTC starts of a local day's settlement periods, numbered from 1 in this order: 46 on
    the spring-forward day, 50 on the fall-back day, 48 otherwise."""
    start, end = local_day_bounds(day, tz)
    return [start + i * SETTLEMENT_PERIOD for i in range(int((end - start) / SETTLEMENT_PERIOD))]


def utc_hours(day: dt.date, tz: str | None = None) -> list[dt.datetime]:
    """The 23, 24 or 25 UTC hours that make up a local day."""
    start, end = local_day_bounds(day, tz)
    return [start + dt.timedelta(hours=h) for h in range(int((end - start).total_seconds() // 3600))]


def local_day_of(utc: dt.datetime, tz: str | None = None) -> dt.date:
    """The local calendar day a naive-UTC instant falls in."""
    return utc.replace(tzinfo=dt.UTC).astimezone(_zone(tz)).date()


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """First day and the first day after a `YYYY-MM` month."""
    start = dt.date.fromisoformat(f"{month}-01")
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


def month_days(month: str) -> list[str]:
    """The local days of a `YYYY-MM` month, as `YYYY-MM-DD` (a daily partition's key)."""
    start, end = month_bounds(month)
    return [(start + dt.timedelta(days=d)).isoformat() for d in range((end - start).days)]
