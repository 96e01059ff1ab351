"""The arrival-finding logic behind the raw arrivals sensor, on both lake backends."""

import datetime as dt
import gzip
import time

from meter_assets.ingest.arrivals import Cursor, find_arrivals, listing_prefixes
from meter_assets.storage import Lake

TODAY = dt.date(2026, 11, 28)
WINDOW = 35
DAY = dt.timedelta(days=1)


def look(lake: Lake, cursor: Cursor, now: dt.datetime, sweep_every=dt.timedelta(hours=24)):
    arrivals, new_cursor = find_arrivals(
        lake,
        cursor,
        now=now,
        today=TODAY,
        window_days=WINDOW,
        sweep_every=sweep_every,
        first_partition=dt.date(2024, 1, 1),
    )
    # the cursor is stored as a string between ticks and across daemon restarts
    return arrivals, Cursor.parse(new_cursor.dump())


def put(lake: Lake, hour: dt.datetime, name: str, body: bytes = b"x") -> str:
    key = f"{hour:raw/%Y/%m/%d/%H}/{name}.csv.gz"
    lake.write_bytes(key, gzip.compress(body))
    return key


def test_recent_arrivals_give_one_request_per_date_and_never_twice(lake_root):
    lake = Lake(lake_root)
    on_time = put(lake, dt.datetime(2026, 11, 20, 10), "alpha-g000-2026112010-b1")
    now = dt.datetime(2026, 11, 28, 9)
    arrivals, cursor = look(lake, Cursor(), now)
    assert arrivals == [], "the first look records the lake as it is"

    # a key outside the hour layout under a date folder rebuilds that date (its inventory
    # reports it); one without a date is ignored
    stray = "raw/2026/11/14/notes.txt"
    lake.write_bytes(stray, b"a key outside the raw layout")
    lake.write_bytes("raw/2026/11/xx/10/junk.csv.gz", b"no date")
    late = [put(lake, dt.datetime(2026, 11, 14, h % 24), f"alpha-g{h:03d}-late-b1") for h in range(30)]
    other = put(lake, dt.datetime(2026, 11, 3, 12), "beta-g003-2026110312-c1")
    arrivals, cursor = look(lake, cursor, now + dt.timedelta(minutes=1))
    by_date = {a.partition: a for a in arrivals}
    assert set(by_date) == {dt.date(2026, 11, 14), dt.date(2026, 11, 3)}
    assert sorted(o.key for o in by_date[dt.date(2026, 11, 14)].files) == sorted([*late, stray])
    assert [o.key for o in by_date[dt.date(2026, 11, 3)].files] == [other]
    assert on_time not in {o.key for a in arrivals for o in a.files}
    tags = by_date[dt.date(2026, 11, 14)].tags()
    assert tags["meter/new_files"] == "31" and float(tags["meter/hours_late"]) > 24 * 13

    again, cursor = look(lake, cursor, now + dt.timedelta(minutes=2))
    assert again == []


def test_a_wide_window_lists_whole_months_and_finds_the_same_files(lake_root):
    # by hand: 27 February to 2 April 2025 is two days, March, two days
    assert listing_prefixes({dt.date(2025, 2, 27) + k * DAY for k in range(35)}) == [
        "raw/2025/02/27/",
        "raw/2025/02/28/",
        "raw/2025/03/",
        "raw/2025/04/01/",
        "raw/2025/04/02/",
    ]
    lake = Lake(lake_root)

    def wide(cursor: Cursor, now: dt.datetime):
        # 100 days back from 28 November: 20 August to 27 November, September and October whole
        arrivals, new = find_arrivals(
            lake, cursor, now=now, today=TODAY, window_days=100, sweep_every=DAY, first_partition=dt.date(2024, 1, 1)
        )
        return arrivals, Cursor.parse(new.dump())

    now = dt.datetime(2026, 11, 28, 9)
    arrivals, cursor = wide(Cursor(), now)
    assert arrivals == []
    mid_month = put(lake, dt.datetime(2026, 10, 14, 12), "alpha-g001-2026101412-b1")
    oldest_day = put(lake, dt.datetime(2026, 8, 20, 12), "beta-g002-2026082012-c1")
    outside = put(lake, dt.datetime(2026, 8, 18, 12), "beta-g003-2026081812-c1")
    arrivals, cursor = wide(cursor, now + dt.timedelta(minutes=1))
    assert {a.partition: [o.key for o in a.files] for a in arrivals} == {
        dt.date(2026, 10, 14): [mid_month],
        dt.date(2026, 8, 20): [oldest_day],
    }
    assert outside not in {o.key for a in arrivals for o in a.files}, "older than the window: the sweep's"
    assert wide(cursor, now + dt.timedelta(minutes=2))[0] == []


def test_a_replaced_file_counts_as_a_new_arrival(lake_root):
    lake = Lake(lake_root)
    key = put(lake, dt.datetime(2026, 11, 20, 10), "alpha-g000-2026112010-b1", b"first")
    now = dt.datetime(2026, 11, 28, 9)
    _, cursor = look(lake, Cursor(), now)
    time.sleep(1.1)  # object stores stamp modification times to the second
    put(lake, dt.datetime(2026, 11, 20, 10), "alpha-g000-2026112010-b1", b"second, other content")
    arrivals, cursor = look(lake, cursor, now + dt.timedelta(minutes=1))
    assert [(a.partition, [o.key for o in a.files]) for a in arrivals] == [(dt.date(2026, 11, 20), [key])]
    first_run_key = arrivals[0].run_key
    time.sleep(1.1)
    put(lake, dt.datetime(2026, 11, 20, 10), "alpha-g000-2026112010-b1", b"third")
    arrivals, _ = look(lake, cursor, now + dt.timedelta(minutes=2))
    assert len(arrivals) == 1 and arrivals[0].run_key != first_run_key


def test_files_for_old_dates_are_found_by_the_sweep_once(lake_root):
    lake = Lake(lake_root)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    _, cursor = look(lake, Cursor(), now)
    old = put(lake, dt.datetime(2025, 3, 10, 8), "alpha-g001-2025031008-b1")
    stray = "raw/2025/03/10/8/not-an-hour-folder.csv.gz"  # reported by the date's inventory
    lake.write_bytes(stray, b"no hour")
    recent_only, cursor = look(lake, cursor, now + dt.timedelta(hours=1))
    assert recent_only == [], "a date older than the window is not listed on every tick"

    swept, cursor = look(lake, cursor, now + dt.timedelta(hours=25))
    assert [(a.partition, a.path, sorted(o.key for o in a.files)) for a in swept] == [
        (dt.date(2025, 3, 10), "sweep", sorted([old, stray]))
    ]
    next_day, cursor = look(lake, cursor, now + dt.timedelta(hours=50))
    # the next sweep lists what changed since the last one (with a short overlap): not this file
    assert next_day == []
    later, _ = look(lake, cursor, now + dt.timedelta(hours=75))
    assert later == []


def nem12_file(*dates: dt.date) -> bytes:
    days = [",".join(["300", f"{d:%Y%m%d}", *["0.1"] * 48, "A", "", "", "", ""]) for d in dates]
    return "\n".join(
        ["100,NEM12,202611280300,MDP1,RETAILER1", "200,QB01000001,E1,1,E1,N1,S1,kWh,30,", *days, "900"]
    ).encode()


def test_a_nem12_file_requests_exactly_the_days_it_carries_and_only_once(lake_root):
    lake = Lake(lake_root)
    # landing times as S3 keeps them: the upload's
    lake.write_bytes(
        "raw/nem12/agent/first.csv", nem12_file(dt.date(2026, 11, 1)), landed_at=dt.datetime(2026, 11, 2, 3)
    )
    now = dt.datetime(2026, 11, 28, 9)
    arrivals, cursor = look(lake, Cursor(), now)
    assert arrivals == [], "the first look records the lake as it is"

    # AEST days: 5 November is 4 Nov 14:00 to 5 Nov 14:00 UTC, so London's 4th and 5th; 20
    # November's also reach into the 19th; a file any name, zipped or not, anywhere below the prefix
    lake.write_bytes(
        "raw/nem12/agent/b/late.dat",
        gzip.compress(nem12_file(dt.date(2026, 11, 5), dt.date(2026, 11, 20))),
        landed_at=dt.datetime(2026, 11, 24, 8),
    )
    arrivals, cursor = look(lake, cursor, now + dt.timedelta(minutes=1))
    by_date = {a.partition: sorted(o.key for o in a.files) for a in arrivals}
    late = ["raw/nem12/agent/b/late.dat"]
    assert by_date == {
        dt.date(2026, 11, 4): late,
        dt.date(2026, 11, 5): late,
        dt.date(2026, 11, 19): late,
        dt.date(2026, 11, 20): late,
    }
    assert {a.path for a in arrivals} == {"nem12"}

    again, cursor = look(lake, cursor, now + dt.timedelta(minutes=2))
    assert again == []
    # the same key delivered again with other content is a new arrival
    lake.write_bytes(
        "raw/nem12/agent/b/late.dat", nem12_file(dt.date(2026, 11, 6)), landed_at=dt.datetime(2026, 11, 26)
    )
    arrivals, cursor = look(lake, cursor, now + dt.timedelta(minutes=3))
    assert sorted(a.partition for a in arrivals) == [dt.date(2026, 11, 5), dt.date(2026, 11, 6)]
