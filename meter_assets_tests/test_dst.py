import datetime as dt
import subprocess
import sys

import pytest

from meter_assets.market_calendar import intervals_in_day, local_day_bounds, utc_hours
from meter_assets.simulator.cli import generate
from meter_assets.simulator.headend import FaultRates
from meter_assets.storage import Lake
from meter_assets.tables import READS_15MIN, READS_DAILY, READS_HOURLY

from .conftest import materialize_days, query, table_files


@pytest.mark.parametrize(
    "day, intervals, hours, utc_start",
    [
        (dt.date(2024, 3, 31), 92, 23, dt.datetime(2024, 3, 31, 0)),
        (dt.date(2024, 10, 27), 100, 25, dt.datetime(2024, 10, 26, 23)),
        (dt.date(2024, 7, 1), 96, 24, dt.datetime(2024, 6, 30, 23)),
    ],
)
def test_local_day_bounds_follow_the_clock_change(day, intervals, hours, utc_start):
    assert intervals_in_day(day) == intervals
    assert len(utc_hours(day)) == hours
    assert local_day_bounds(day)[0] == utc_start


@pytest.mark.parametrize(
    "day, tz, intervals, utc_start",
    [
        (dt.date(2024, 4, 7), "Australia/Sydney", 100, dt.datetime(2024, 4, 6, 13)),
        (dt.date(2024, 3, 10), "America/New_York", 92, dt.datetime(2024, 3, 10, 5)),
        (dt.date(2024, 3, 31), "Australia/Brisbane", 96, dt.datetime(2024, 3, 30, 14)),
    ],
)
def test_the_calendar_serves_any_market_zone(day, tz, intervals, utc_start):
    assert intervals_in_day(day, tz) == intervals
    assert local_day_bounds(day, tz)[0] == utc_start


def test_the_calendar_and_the_simulator_need_no_dagster():
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, meter_assets.market_calendar, meter_assets.simulator.cli; print('dagster' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "False"


@pytest.fixture(scope="module")
def fall_back(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("fall") / "lake")
    clean = FaultRates(
        late_file=0, resend=0, correction=0, estimated=0.01, offline=0, dead=0, drift=0, malformed=0, truncated_files=0
    )
    generate(
        Lake(root),
        meters=150,
        start=dt.date(2024, 10, 27),
        days=1,
        seed=2,
        rates=clean,
        truth=True,
        log=lambda *_: None,
    )
    materialize_days(root, [dt.date(2024, 10, 27)])
    return root


def _per_meter_intervals(root: str, day: dt.date) -> set[int]:
    return {
        r[0]
        for r in query(f"SELECT count(*) FROM read_parquet({table_files(root, READS_15MIN, day)}) GROUP BY meter_id")
    }


def test_spring_forward_day_has_92_intervals_per_meter(after_release):
    assert _per_meter_intervals(after_release, dt.date(2024, 3, 31)) == {92}
    assert _per_meter_intervals(after_release, dt.date(2024, 3, 30)) == {96}


def test_fall_back_day_has_100_intervals_per_meter(fall_back):
    assert _per_meter_intervals(fall_back, dt.date(2024, 10, 27)) == {100}


@pytest.mark.parametrize("day", [dt.date(2024, 3, 31)])
def test_local_day_totals_match_ground_truth_spring(after_release, generated, day):
    _assert_daily_totals_match_truth(after_release, generated, day, 92)


def test_local_day_totals_match_ground_truth_fall(fall_back):
    _assert_daily_totals_match_truth(fall_back, fall_back, dt.date(2024, 10, 27), 100)


def _assert_daily_totals_match_truth(root: str, truth_root: str, day: dt.date, intervals: int):
    start, end = local_day_bounds(day)
    truth = f"read_parquet('{truth_root}/simulator/truth/date={day}/reads.parquet')"
    mismatches = query(
        f"""
        WITH delivered AS (
            SELECT meter_id, coalesce(sum(kwh), 0) AS kwh, count(*) AS intervals
            FROM {truth} WHERE read_at >= ? AND read_at < ? GROUP BY meter_id
        ),
        -- what the head-end never delivered, the platform estimated: the day holds both
        platform AS (
            SELECT meter_id, sum(kwh) FILTER (WHERE estimated_by = 'platform') AS kwh
            FROM read_parquet({table_files(root, READS_15MIN, day)}) GROUP BY meter_id
        ),
        expected AS (
            SELECT meter_id, delivered.kwh + coalesce(platform.kwh, 0) AS kwh, delivered.intervals
            FROM delivered LEFT JOIN platform USING (meter_id)
        )
        SELECT * FROM expected FULL JOIN read_parquet({table_files(root, READS_DAILY, day)}) AS daily USING (meter_id)
        WHERE daily.kwh IS DISTINCT FROM expected.kwh OR daily.intervals <> ? OR expected.intervals <> ?
           OR daily.local_date <> ?
        LIMIT 5
        """,
        [start, end, intervals, intervals, day],
    )
    assert mismatches == []
    (hours,) = query(f"SELECT count(DISTINCT hour_start) FROM read_parquet({table_files(root, READS_HOURLY, day)})")[0]
    assert hours == intervals // 4
