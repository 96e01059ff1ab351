"""Late and corrected files, picked up by the raw arrivals sensor under Dagster's real daemon."""

import datetime as dt
import time
from decimal import Decimal

import dagster as dg

from meter_assets.config import settings
from meter_assets.market_calendar import local_day_of
from meter_assets.simulator.cli import generate, release_late
from meter_assets.simulator.headend import FaultRates
from meter_assets.sql import parquet
from meter_assets.storage import Lake
from meter_assets.tables import RAW_METER_FILES, READS_15MIN, READS_DAILY, READS_HOURLY, REPORT_TABLES

from .conftest import materialize_days, query
from .daemon_support import daemon_env, dagster_home, start_daemon, stop, wait_for

TABLES = (RAW_METER_FILES, READS_15MIN, READS_HOURLY, READS_DAILY)


def _snapshot(lake: Lake, days: list[dt.date]) -> dict:
    return {
        (table, day): (keys := lake.keys(table, day.isoformat()), [lake.read_bytes(k) for k in keys])
        for table in TABLES
        for day in days
    }


def _sensor_state(instance: dg.DagsterInstance):
    states = [s for s in instance.all_instigator_state() if s.name == "raw_arrivals_sensor"]
    return states[0] if states else None


def _ticks(instance: dg.DagsterInstance) -> list:
    state = _sensor_state(instance)
    return list(instance.get_ticks(state.instigator_origin_id, state.selector_id)) if state else []


def _sensor_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs() if r.tags.get("meter/trigger", "").startswith("raw_arrivals")]


def _runs_done(instance: dg.DagsterInstance, delivered_wall: float, dates: set[dt.date]) -> list | None:
    """The sensor's runs, once a tick that began after the delivery has ended and runs of every
    one of `dates` have finished (None before). A delivery the sensor sees half-written is two
    arrivals for a date, two runs of it; a tick begun after it ended has seen every file."""
    ended = {"SUCCESS", "SKIPPED"}
    if not any(t.timestamp > delivered_wall and t.status.value in ended for t in _ticks(instance)):
        return None
    runs = _sensor_runs(instance)
    rebuilt = {dt.date.fromisoformat(r.tags["dagster/partition"]) for r in runs}
    return runs if rebuilt >= dates and all(r.is_finished for r in runs) else None


def test_late_files_rebuild_exactly_their_dates(tmp_path):
    # a local lake: the sensor's listing of an S3 lake has its own tests (test_arrivals.py)
    lake_root = str(tmp_path / "lake")
    home, workspace = dagster_home(tmp_path)

    today = dt.datetime.now(settings().tz).date()
    # the same week every run, whatever today is: London's clocks go forward on its 4th day
    # (30 March 2025, 23 hours), one of the two dates whose late files arrive
    start = dt.date(2025, 3, 27)
    days = [start + dt.timedelta(days=d) for d in range(7)]
    late_dates = {days[1], days[3]}
    rates = FaultRates(late_file=0.06, correction=0.06, corrected_meters=0.1, truncated_files=0, malformed=0.0005)
    lake = Lake(lake_root)
    generate(lake, meters=120, start=start, days=len(days), seed=21, rates=rates, truth=True, log=lambda *_: None)

    env = daemon_env(home, lake_root, start)
    daemon_log = open(tmp_path / "daemon.log", "w")
    # the lake as the days' runs left it; the daemon's instance needs none of their events
    materialize_days(lake_root, days)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        before = _snapshot(lake, days)
        reports_before = {d: lake.keys(REPORT_TABLES["summary"], d.isoformat()) for d in days}

        daemon = start_daemon(workspace, env, daemon_log)
        try:
            wait_for(
                lambda: (
                    (s := _sensor_state(instance)) is not None
                    and s.instigator_data
                    and getattr(s.instigator_data, "cursor", None)
                ),
                120,
                "the sensor's first tick",
            )
            assert _sensor_runs(instance) == [], "the first tick records the lake without requesting runs"

            released = release_late(lake, today, dates=late_dates)
            released_at, released_wall = time.monotonic(), time.time()
            assert any("-b1" in k for k in released) and any("-c1" in k for k in released)

            runs = wait_for(lambda: _runs_done(instance, released_wall, late_dates), 300, "the sensor's runs")
            seconds_to_rebuilt = time.monotonic() - released_at
            print(f"late file to rebuilt partition: {seconds_to_rebuilt:.1f} s, {len(runs)} runs")

            assert {r.tags["dagster/partition"] for r in runs} == {d.isoformat() for d in late_dates}
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
            assert all(int(r.tags["meter/new_files"]) > 0 and float(r.tags["meter/hours_late"]) > 24 for r in runs)

            # the daemon restarts; its cursor is in the instance, and further ticks find nothing new
            stop(daemon)
            ticks_before = len(_ticks(instance))
            daemon = start_daemon(workspace, env, daemon_log)
            wait_for(lambda: len(_ticks(instance)) >= ticks_before + 2, 120, "two ticks after the restart")
            assert len(_sensor_runs(instance)) == len(runs)
        finally:
            stop(daemon)
            daemon_log.close()

    after = _snapshot(lake, days)
    unchanged = [d for d in days if d not in late_dates]
    assert [k for k in before if k[1] in unchanged and before[k] != after[k]] == []

    # the rebuilt dates' operations reports list the released files as late; the others are untouched
    reports_after = {d: lake.keys(REPORT_TABLES["summary"], d.isoformat()) for d in days}
    assert [d for d in days if reports_before[d] != reports_after[d]] == sorted(late_dates)
    for day in late_dates:
        late_files = lake.files(REPORT_TABLES["late_files"], day.isoformat())
        listed = {k for (k,) in query(f"SELECT file_key FROM {parquet(late_files)}", lake=lake)}
        mine = {k for k in released if local_day_of(dt.datetime.strptime(k[4:17], "%Y/%m/%d/%H")) == day}
        assert mine and mine <= listed
    assert all(before[(READS_15MIN, d)][0] != after[(READS_15MIN, d)][0] for d in late_dates)

    truth = parquet([lake.uri(f"simulator/truth/date={d}/reads.parquet") for d in late_dates])
    curated = parquet([f for d in late_dates for f in lake.files(READS_15MIN, d.isoformat())])
    mismatches = query(
        # what the head-end never delivered is the platform's estimate
        f"""SELECT * FROM {truth} AS t FULL JOIN {curated} AS c USING (meter_id, read_at)
            WHERE CASE WHEN t.quality_flag = 'missing'
                       THEN c.estimated_by IS DISTINCT FROM 'platform' OR c.kwh IS NULL
                       ELSE c.kwh IS DISTINCT FROM t.kwh OR c.quality_flag IS DISTINCT FROM t.quality_flag END
            LIMIT 5""",
        lake=lake,
    )
    assert mismatches == [], "late readings and corrected values are in the rebuilt dates"
    (corrected,) = query(f"SELECT count(*) FROM {curated} WHERE version = 2", lake=lake)[0]
    assert corrected > 0


def test_a_late_nem12_file_rebuilds_exactly_the_days_it_carries(tmp_path):
    """A NEM12 file's key says nothing of its days: the sensor reads them from the file."""
    home, workspace = dagster_home(tmp_path)
    lake_root = str(tmp_path / "lake")
    start = dt.date(2025, 3, 3)
    days = [start + dt.timedelta(days=d) for d in range(4)]
    clean = FaultRates(late_file=0, resend=0, correction=0, dead=0, malformed=0, truncated_files=0)
    lake = Lake(lake_root)
    generate(lake, meters=40, start=start, days=len(days), seed=4, rates=clean, log=lambda *_: None)
    nem12_meter = "QB01000001-E1"
    meters = lake.read_bytes("reference/meters.csv").decode()
    lake.write_bytes("reference/meters.csv", (meters + f"{nem12_meter},North,99,nem12,2019-01-01,,ordinary\n").encode())

    env = daemon_env(home, lake_root, start)
    # one AEST day, 5 March: 4 March 14:00 to 5 March 14:00 UTC, the 4th and 5th in London (GMT)
    carried = {days[1], days[2]}
    values = [f"0.{100 + i}" for i in range(48)]
    nem12_file = "\n".join(
        [
            "100,NEM12,202503060300,MDP1,RETAILER1",
            "200,QB01000001,E1,1,E1,N1,SERIAL1,kWh,30,",
            ",".join(["300", "20250305", *values, "A", "", "", "20250306020000", ""]),
            "900",
        ]
    ).encode()
    daemon_log = open(tmp_path / "daemon.log", "w")
    materialize_days(lake_root, days)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        before = _snapshot(lake, days)
        daemon = start_daemon(workspace, env, daemon_log)
        try:
            wait_for(
                lambda: (s := _sensor_state(instance)) is not None and getattr(s.instigator_data, "cursor", None),
                120,
                "the sensor's first tick",
            )
            lake.write_bytes("raw/nem12/agent/NEM12#late#MDP1#RETAILER1.csv", nem12_file)
            delivered_wall = time.time()

            runs = wait_for(lambda: _runs_done(instance, delivered_wall, carried), 300, "the sensor's runs")
        finally:
            stop(daemon)
            daemon_log.close()

    assert {r.tags["dagster/partition"] for r in runs} == {d.isoformat() for d in carried}
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert {r.tags["meter/trigger"] for r in runs} == {"raw_arrivals_nem12"}
    after = _snapshot(lake, days)
    assert [k for k in before if k[1] not in carried and before[k] != after[k]] == []
    curated = parquet([f for d in sorted(carried) for f in lake.files(READS_15MIN, d.isoformat())])
    rows = query(
        f"SELECT count(*), sum(kwh), min(read_at), max(read_at) FROM {curated} "
        "WHERE meter_id = ? AND quality_flag = 'actual'",
        [nem12_meter],
        lake=lake,
    )
    total = sum(Decimal(v) for v in values)
    assert rows == [(96, total, dt.datetime(2025, 3, 4, 14), dt.datetime(2025, 3, 5, 13, 45))]
