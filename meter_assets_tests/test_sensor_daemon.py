"""Late and corrected files, picked up by the raw arrivals sensor under Dagster's real daemon.

One daemon session, as an operator's week goes: the head-ends' late and corrected CSV files
for two dates, a restart of the daemon, then a late NEM12 file whose key says nothing of the
days it carries."""

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
from .daemon_support import daemon_env, dagster_home, sensor_state, start_daemon, stop, wait_for

TABLES = (RAW_METER_FILES, READS_15MIN, READS_HOURLY, READS_DAILY)
NEM12_METER = "QB01000001-E1"
# one AEST day, 1 April 2025: 31 March 14:00 to 1 April 14:00 UTC, the 31st and the 1st in London (BST)
NEM12_CARRIED = {dt.date(2025, 3, 31), dt.date(2025, 4, 1)}
NEM12_VALUES = [f"0.{100 + i}" for i in range(48)]
NEM12_FILE = "\n".join(
    [
        "100,NEM12,202504020300,MDP1,RETAILER1",
        "200,QB01000001,E1,1,E1,N1,SERIAL1,kWh,30,",
        ",".join(["300", "20250401", *NEM12_VALUES, "A", "", "", "20250402020000", ""]),
        "900",
    ]
).encode()


def _snapshot(lake: Lake, days: list[dt.date]) -> dict:
    return {
        (table, day): (keys := lake.keys(table, day.isoformat()), [lake.read_bytes(k) for k in keys])
        for table in TABLES
        for day in days
    }


def _sensor_state(instance: dg.DagsterInstance):
    return sensor_state(instance, "raw_arrivals_sensor")


def _ticks(instance: dg.DagsterInstance) -> list:
    state = _sensor_state(instance)
    return list(instance.get_ticks(state.instigator_origin_id, state.selector_id)) if state else []


def _sensor_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs() if r.tags.get("meter/trigger", "").startswith("raw_arrivals")]


def _runs_done(
    instance: dg.DagsterInstance, delivered_wall: float, dates: set[dt.date], earlier: tuple = ()
) -> list | None:
    """The sensor's runs since the `earlier` ones, once a tick that began after the delivery has
    ended and runs of every one of `dates` have finished (None before). A delivery the sensor sees
    half-written is two arrivals for a date, two runs of it; a tick begun after it ended has seen
    every file."""
    ended = {"SUCCESS", "SKIPPED"}
    if not any(t.timestamp > delivered_wall and t.status.value in ended for t in _ticks(instance)):
        return None
    known = {r.run_id for r in earlier}
    runs = [r for r in _sensor_runs(instance) if r.run_id not in known]
    rebuilt = {dt.date.fromisoformat(r.tags["dagster/partition"]) for r in runs}
    return runs if rebuilt >= dates and all(r.is_finished for r in runs) else None


def test_late_files_rebuild_exactly_their_dates_and_a_nem12_file_the_days_it_carries(tmp_path):
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
    # a meter whose data agent sends NEM12, known to the retailer, whose file comes late
    meters = lake.read_bytes("reference/meters.csv").decode()
    lake.write_bytes(
        "reference/meters.csv", (meters + f"{NEM12_METER},North,99,nem12,2019-01-01,,ordinary,\n").encode()
    )

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
            after_csv = _snapshot(lake, days)
            reports_after_csv = {d: lake.keys(REPORT_TABLES["summary"], d.isoformat()) for d in days}

            # the daemon restarts; its cursor is in the instance, and further ticks find nothing new
            stop(daemon)
            ticks_before = len(_ticks(instance))
            daemon = start_daemon(workspace, env, daemon_log)
            wait_for(lambda: len(_ticks(instance)) >= ticks_before + 2, 120, "two ticks after the restart")
            assert len(_sensor_runs(instance)) == len(runs)

            # a NEM12 file's key says nothing of its days: the sensor reads them from the file
            lake.write_bytes("raw/nem12/agent/NEM12#late#MDP1#RETAILER1.csv", NEM12_FILE)
            delivered_wall = time.time()
            nem12_runs = wait_for(
                lambda: _runs_done(instance, delivered_wall, NEM12_CARRIED, earlier=tuple(runs)),
                300,
                "the NEM12 file's runs",
            )
        finally:
            stop(daemon)
            daemon_log.close()

    # the CSV files: exactly their dates were rebuilt
    unchanged = [d for d in days if d not in late_dates]
    assert [k for k in before if k[1] in unchanged and before[k] != after_csv[k]] == []

    # the rebuilt dates' operations reports list the released files as late; the others are untouched
    assert [d for d in days if reports_before[d] != reports_after_csv[d]] == sorted(late_dates)
    for day in late_dates:
        late_files = lake.files(REPORT_TABLES["late_files"], day.isoformat())
        listed = {k for (k,) in query(f"SELECT file_key FROM {parquet(late_files)}", lake=lake)}
        # (a corrected day-ahead price export lands with them: reference data, no day's file)
        mine = {
            k
            for k in released
            if k.startswith("raw/") and local_day_of(dt.datetime.strptime(k[4:17], "%Y/%m/%d/%H")) == day
        }
        assert mine and mine <= listed
    assert all(before[(READS_15MIN, d)][0] != after_csv[(READS_15MIN, d)][0] for d in late_dates)

    truth = parquet([lake.uri(f"simulator/truth/date={d}/reads.parquet") for d in late_dates])
    curated = parquet([f for d in late_dates for f in lake.files(READS_15MIN, d.isoformat())])
    mismatches = query(
        # what the head-end never delivered is the platform's estimate
        f"""SELECT * FROM {truth} AS t
            FULL JOIN (SELECT * FROM {curated} WHERE meter_id <> '{NEM12_METER}') AS c USING (meter_id, read_at)
            WHERE CASE WHEN t.quality_flag = 'missing'
                       THEN c.estimated_by IS DISTINCT FROM 'platform' OR c.kwh IS NULL
                       ELSE c.kwh IS DISTINCT FROM t.kwh OR c.quality_flag IS DISTINCT FROM t.quality_flag END
            LIMIT 5""",
        lake=lake,
    )
    assert mismatches == [], "late readings and corrected values are in the rebuilt dates"
    (corrected,) = query(f"SELECT count(*) FROM {curated} WHERE version = 2", lake=lake)[0]
    assert corrected > 0

    # the NEM12 file: exactly the two London days its AEST day covers were rebuilt
    assert {r.tags["dagster/partition"] for r in nem12_runs} == {d.isoformat() for d in NEM12_CARRIED}
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in nem12_runs)
    assert {r.tags["meter/trigger"] for r in nem12_runs} == {"raw_arrivals_nem12"}
    after = _snapshot(lake, days)
    assert [k for k in after_csv if k[1] not in NEM12_CARRIED and after_csv[k] != after[k]] == []
    carried = parquet([f for d in sorted(NEM12_CARRIED) for f in lake.files(READS_15MIN, d.isoformat())])
    rows = query(
        f"SELECT count(*), sum(kwh), min(read_at), max(read_at) FROM {carried} "
        "WHERE meter_id = ? AND quality_flag = 'actual'",
        [NEM12_METER],
        lake=lake,
    )
    total = sum(Decimal(v) for v in NEM12_VALUES)
    assert rows == [(96, total, dt.datetime(2025, 3, 31, 14), dt.datetime(2025, 4, 1, 13, 45))]
