"""Finding raw files that arrived since the last look, and the date partitions they touch.

Two paths, so the cost of a tick does not grow with the years of history in the bucket:

- the recent window (`METER_RECENT_WINDOW_DAYS`, 35 by default) is listed on every tick,
  one prefix per UTC date; per local date the cursor keeps a fingerprint of what was
  there (count, newest arrival, a hash of keys and ETags), so any new or replaced file
  shows as a changed fingerprint;
- older dates are covered by a sweep of the whole `raw/` prefix at most every
  `METER_SWEEP_INTERVAL_HOURS` (24 by default), which picks out files modified since the
  previous sweep;
- NEM12 files (`raw/nem12/`, any key below it) say nothing of their days in their keys: the
  prefix is listed on every tick, and each file modified since the newest one seen is scanned
  for the days it carries (the scan is kept for the inventory); it requests exactly those.

The first look at a lake records what is there without requesting anything: dates that
were never built are a backfill, not an arrival.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache

from meter_assets.config import settings
from meter_assets.ingest import nem12
from meter_assets.ingest.inventory import stray_day
from meter_assets.market_calendar import local_day_of
from meter_assets.storage import Lake, LakeObject

RAW_HOUR_KEY = len("raw/YYYY/MM/DD/HH/")
# A file modified this close to the previous sweep is looked at again (run keys dedupe it).
SWEEP_OVERLAP = dt.timedelta(hours=1)


@dataclass
class Arrival:
    """New or replaced raw files for one date partition."""

    partition: dt.date
    files: list[LakeObject]
    path: str  # "recent" or "sweep"

    @property
    def run_key(self) -> str:
        return f"raw-arrivals:{self.partition.isoformat()}:{content_digest(self.files)}"

    def hours_late(self) -> float:
        """How long after its readings' hour ended the latest of these files arrived (keys
        outside the hour layout have no hour and do not count)."""
        return max(
            (
                (o.modified_at - (hour + dt.timedelta(hours=1))).total_seconds() / 3600
                for o in self.files
                if (hour := hour_of(o)) is not None
            ),
            default=0.0,
        )

    def tags(self) -> dict[str, str]:
        keys = sorted(o.key for o in self.files)
        return {
            "meter/trigger": f"raw_arrivals_{self.path}",
            "meter/partition": self.partition.isoformat(),
            "meter/new_files": str(len(keys)),
            "meter/hours_late": f"{self.hours_late():.1f}",
            "meter/first_arrived_at": min(o.modified_at for o in self.files).isoformat(timespec="seconds"),
            "meter/keys": json.dumps(keys[:5] + ([f"... {len(keys) - 5} more"] if len(keys) > 5 else [])),
        }


@dataclass
class Cursor:
    recent: dict[str, dict] = field(default_factory=dict)  # local date -> fingerprint
    swept_until: str | None = None  # files modified before this were seen by a sweep
    last_sweep: str | None = None
    initialised: bool = False
    # NEM12: the newest modification seen, and the files modified in the overlap before it
    nem12_until: str | None = None
    nem12_recent: dict[str, str] = field(default_factory=dict)  # key -> ETag

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        return cls(**json.loads(text)) if text else cls()

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, separators=(",", ":"))


def content_digest(objects: list[LakeObject]) -> str:
    """A short hash of a set of objects' keys and ETags: changes when any is added or replaced."""
    listing = "\n".join(f"{o.key}:{o.etag}" for o in sorted(objects, key=lambda o: o.key))
    return hashlib.sha1(listing.encode()).hexdigest()[:16]


def hour_of(obj: LakeObject) -> dt.datetime | None:
    try:
        return _hour(obj.key[len("raw/") : RAW_HOUR_KEY - 1])
    except ValueError:
        return None


def partition_of(obj: LakeObject) -> dt.date | None:
    """The date partition of a raw key; for a key outside the hour layout, the day whose
    inventory reports it as unrecognised (None without a date folder)."""
    try:
        return _local_day(obj.key[len("raw/") : RAW_HOUR_KEY - 1])
    except ValueError:
        return stray_day(obj.key)


@lru_cache(maxsize=65536)
def _hour(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y/%m/%d/%H")


@lru_cache(maxsize=65536)
def _local_day(text: str) -> dt.date:
    return local_day_of(_hour(text))


def fingerprint(objects: list[LakeObject]) -> dict:
    newest = max((o.modified_at for o in objects), default=dt.datetime.min)
    return {"n": len(objects), "newest": newest.isoformat(), "hash": content_digest(objects)}


def recent_dates(today: dt.date, window_days: int) -> list[dt.date]:
    """The complete local days of the recent window, oldest first (today is not complete)."""
    return [today - dt.timedelta(days=d) for d in range(window_days, 0, -1)]


def listing_prefixes(utc_dates: set[dt.date]) -> list[str]:
    """The fewest raw prefixes that cover these UTC dates: a month's prefix where every day of
    the month is wanted, a day's prefix otherwise (each listing is a round trip on S3)."""
    prefixes = []
    for month in sorted({d.replace(day=1) for d in utc_dates}):
        following = (month + dt.timedelta(days=32)).replace(day=1)
        days = [month + dt.timedelta(days=k) for k in range((following - month).days)]
        if all(d in utc_dates for d in days):
            prefixes.append(f"raw/{month:%Y/%m}/")
        else:
            prefixes += [f"raw/{d:%Y/%m/%d}/" for d in days if d in utc_dates]
    return prefixes


def scan_recent(lake: Lake, dates: list[dt.date]) -> dict[dt.date, list[LakeObject]]:
    """Every raw file of each date, listed by the UTC days (or whole months) the dates cover."""
    found: dict[dt.date, list[LakeObject]] = {d: [] for d in dates}
    utc_dates = {d + dt.timedelta(days=k) for d in dates for k in (-1, 0, 1)}
    for obj in lake.list_many(listing_prefixes(utc_dates)):
        day = partition_of(obj) if len(obj.key) > RAW_HOUR_KEY else None
        if day in found:
            found[day].append(obj)
    return found


def find_arrivals(
    lake: Lake,
    cursor: Cursor,
    now: dt.datetime,
    today: dt.date,
    window_days: int,
    sweep_every: dt.timedelta,
    first_partition: dt.date,
) -> tuple[list[Arrival], Cursor]:
    """Arrivals since `cursor`, and the cursor to store once their runs are requested."""
    dates = [d for d in recent_dates(today, window_days) if d >= first_partition]
    listing = scan_recent(lake, dates)
    arrivals: list[Arrival] = []
    recent: dict[str, dict] = {}
    for day, objects in listing.items():
        seen = cursor.recent.get(day.isoformat())
        now_print = fingerprint(objects)
        recent[day.isoformat()] = now_print
        if not cursor.initialised or not objects or seen == now_print:
            continue
        newest_seen = dt.datetime.fromisoformat(seen["newest"]) if seen else dt.datetime.min
        new = [o for o in objects if o.modified_at > newest_seen] or objects
        arrivals.append(Arrival(day, new, "recent"))

    swept_until, last_sweep = cursor.swept_until, cursor.last_sweep
    if last_sweep is None or now - dt.datetime.fromisoformat(last_sweep) >= sweep_every:
        if cursor.swept_until is not None:
            arrivals += sweep(
                lake,
                dt.datetime.fromisoformat(cursor.swept_until),
                before=dates[0] if dates else today,
                first_partition=first_partition,
            )
        swept_until, last_sweep = now.isoformat(), now.isoformat()

    nem12_arrivals, nem12_until, nem12_recent = nem12_since(lake, cursor, today, first_partition)
    arrivals += nem12_arrivals
    return arrivals, Cursor(
        recent=recent,
        swept_until=swept_until,
        last_sweep=last_sweep,
        initialised=True,
        nem12_until=nem12_until,
        nem12_recent=nem12_recent,
    )


def nem12_since(
    lake: Lake, cursor: Cursor, today: dt.date, first_partition: dt.date
) -> tuple[list[Arrival], str | None, dict[str, str]]:
    """NEM12 files new or replaced since the cursor, by the complete local days they carry
    (a file with no readable day, by the day it landed); the cursor's new NEM12 fields."""
    objects = lake.list(nem12.PREFIX)
    if not objects:
        return [], cursor.nem12_until, {}
    newest = max(o.modified_at for o in objects)
    recent = {o.key: o.etag for o in objects if o.modified_at > newest - SWEEP_OVERLAP}
    if not cursor.initialised:
        return [], newest.isoformat(), recent
    since = dt.datetime.fromisoformat(cursor.nem12_until) - SWEEP_OVERLAP if cursor.nem12_until else dt.datetime.min
    new = [o for o in objects if o.modified_at > since and cursor.nem12_recent.get(o.key) != o.etag]
    by_date: dict[dt.date, list[LakeObject]] = {}
    limit = settings().max_raw_file_mb << 20
    for obj in new:
        scan = nem12.scan_object(lake, obj, limit)
        days = nem12.reported_days(scan, obj.modified_at, settings().nem12_tz)
        for day in days:
            if first_partition <= day < today:
                by_date.setdefault(day, []).append(obj)
    arrivals = [Arrival(day, objects, "nem12") for day, objects in sorted(by_date.items())]
    return arrivals, max(newest, since + SWEEP_OVERLAP).isoformat(), recent


def sweep(lake: Lake, modified_after: dt.datetime, before: dt.date, first_partition: dt.date) -> list[Arrival]:
    """Files under dates older than the recent window, modified since the last sweep."""
    by_date: dict[dt.date, list[LakeObject]] = {}
    for obj in lake.list("raw/"):
        if len(obj.key) <= RAW_HOUR_KEY or obj.modified_at <= modified_after - SWEEP_OVERLAP:
            continue
        day = partition_of(obj)
        if day is not None and first_partition <= day < before:
            by_date.setdefault(day, []).append(obj)
    return [Arrival(day, objects, "sweep") for day, objects in sorted(by_date.items())]
