"""Publishing builds to a Delta table, on a local folder and on S3: concurrent builds never lose
a partition or leave an empty or mixed one, the build that started last is the one published,
a build cannot change a column's type under the partitions already published, and tables
published together are finished together when the step dies between their commits."""

import datetime as dt
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from meter_assets import storage
from meter_assets.maintenance import vacuum_lake
from meter_assets.storage import PUBLISHING, Build, Lake
from meter_assets.tables import QUARANTINE, READS_DAILY

ROWS = 500


def _build(lake: Lake, day: str, value: int) -> Build:
    build = lake.build(READS_DAILY, day)
    build.write_parquet(
        "part-0000.parquet",
        pa.table({"meter_id": pa.array(range(ROWS), pa.int32()), "kwh": pa.array([value] * ROWS, pa.int64())}),
    )
    return build


def _race(lake: Lake, builds: list[Build]) -> list:
    start = threading.Barrier(len(builds))

    def publish(build):
        start.wait()
        return lake.publish(build)

    with ThreadPoolExecutor(len(builds)) as pool:
        return list(pool.map(publish, builds))


def _rows(lake: Lake, day: str, table=READS_DAILY, version: int | None = None) -> list[int]:
    table = DeltaTable(lake.table_uri(table), version=version, storage_options=lake.storage_options())
    return table.to_pyarrow_table(filters=[("date", "=", dt.date.fromisoformat(day))]).column("kwh").to_pylist()


def test_builds_of_different_days_all_land(lake_root):
    lake = Lake(lake_root)
    _race(lake, [_build(lake, "2024-06-01", 0)])  # the table exists
    days = [f"2024-06-{d:02d}" for d in range(2, 10)]
    publications = _race(lake, [_build(lake, day, n) for n, day in enumerate(days)])
    assert all(p.published for p in publications)
    assert len({p.version for p in publications}) == len(days), "one commit each"
    for n, day in enumerate(days):
        assert _rows(lake, day) == [n] * ROWS


def test_builds_of_one_day_leave_exactly_the_newest(lake_root):
    lake = Lake(lake_root)
    day = "2024-06-01"
    _race(lake, [_build(lake, day, 99)])
    builds = [_build(lake, day, n) for n in range(6)]  # started in this order
    publications = _race(lake, list(reversed(builds)))
    newest = builds[-1].id
    assert _rows(lake, day) == [5] * ROWS, "the build that started last, whole and alone"
    assert lake.keys(READS_DAILY, day) == [builds[-1].key("part-0000.parquet")]
    superseded = [p for p in publications if not p.published]
    assert superseded and all(p.superseded_by is not None and p.superseded_by <= newest for p in superseded)
    # a superseded build's files are gone at once, not left for the vacuum
    folder = {o.key for o in lake.list(READS_DAILY.folder(day))}
    assert all(not any(k.startswith(READS_DAILY.folder(day) + "/" + p.build) for k in folder) for p in superseded)


def test_a_new_column_is_added_and_a_changed_type_refused(lake_root):
    lake = Lake(lake_root)
    _race(lake, [_build(lake, "2024-06-01", 7)])
    wider = lake.build(READS_DAILY, "2024-06-02")
    wider.write_parquet(
        "part-0000.parquet", pa.table({"meter_id": pa.array([1], pa.int32()), "kwh": [8], "estimated_kwh": [0.5]})
    )
    lake.publish(wider)
    table = DeltaTable(lake.table_uri(READS_DAILY), storage_options=lake.storage_options()).to_pyarrow_table()
    by_day = {str(r["date"]): r["estimated_kwh"] for r in table.to_pylist()}
    assert by_day["2024-06-01"] is None and by_day["2024-06-02"] == 0.5

    changed = lake.build(READS_DAILY, "2024-06-03")
    changed.write_parquet("part-0000.parquet", pa.table({"meter_id": ["M1"], "kwh": [9]}))
    with pytest.raises(TypeError, match="meter_id"):
        lake.publish(changed)
    assert changed.objects() == [], "the refused build's files are deleted"
    assert _rows(lake, "2024-06-01") == [7] * ROWS, "the published partitions read as before"


def test_two_steps_racing_keep_one_steps_pair_of_tables(lake_root):
    """Like two runs curating one day at once: each publishes its quarantine, then its readings."""
    lake = Lake(lake_root)
    day = "2024-06-01"
    steps = []
    for n in range(4):
        readings = _build(lake, day, n)
        quarantine = lake.build(QUARANTINE, day, same_as=readings)
        quarantine.write_parquet("part-0000.parquet", pa.table({"kwh": [n]}))
        steps.append((quarantine, readings))
    start = threading.Barrier(len(steps))

    def publish(step):
        start.wait()
        return lake.publish_together(list(step))

    with ThreadPoolExecutor(len(steps)) as pool:
        list(pool.map(publish, reversed(steps)))
    quarantined = DeltaTable(lake.table_uri(QUARANTINE), storage_options=lake.storage_options()).to_pyarrow_table()
    assert quarantined.column("kwh").to_pylist() == [3] and _rows(lake, day) == [3] * ROWS


# A step publishing a day's quarantine and readings, killed (SIGKILL) right after the first commit.
DIES_BETWEEN_COMMITS = """
import os, signal, sys
import pyarrow as pa
from meter_assets.storage import Lake
from meter_assets.tables import QUARANTINE, READS_DAILY

lake, day, value = Lake(sys.argv[1]), sys.argv[2], int(sys.argv[3])
quarantine = lake.build(QUARANTINE, day)
readings = lake.build(READS_DAILY, day, same_as=quarantine)
for build in (quarantine, readings):
    build.write_parquet("part-0000.parquet", pa.table({"meter_id": pa.array(range(500), pa.int32()),
                                                       "kwh": pa.array([value] * 500, pa.int64())}))
publish = Lake.publish

def publish_then_die(self, build, metadata=None):
    publish(self, build, metadata)
    os.kill(os.getpid(), signal.SIGKILL)

Lake.publish = publish_then_die
lake.publish_together([quarantine, readings])
"""


def _pair(lake: Lake, day: str, value: int) -> list:
    quarantine = lake.build(QUARANTINE, day)
    readings = lake.build(READS_DAILY, day, same_as=quarantine)
    for build in (quarantine, readings):
        build.write_parquet(
            "part-0000.parquet",
            pa.table({"meter_id": pa.array(range(ROWS), pa.int32()), "kwh": pa.array([value] * ROWS, pa.int64())}),
        )
    return lake.publish_together([quarantine, readings])


def _killed_between_commits(lake_root: str, day: str, value: int) -> None:
    died = subprocess.run([sys.executable, "-c", DIES_BETWEEN_COMMITS, lake_root, day, str(value)], capture_output=True)
    assert died.returncode == -9, died.stderr.decode()


def test_a_pair_killed_between_its_commits_is_finished_not_left_mixed(lake_root, monkeypatch):
    lake = Lake(lake_root)
    day = "2024-06-01"
    _pair(lake, day, 1)
    assert not lake.list(PUBLISHING), "a pair that landed leaves no record"
    _killed_between_commits(lake_root, day, 2)
    # the state the record is there for: the new quarantine beside the old readings
    assert _rows(lake, day, QUARANTINE) == [2] * ROWS and _rows(lake, day) == [1] * ROWS
    assert len(lake.list(PUBLISHING)) == 1
    assert lake.finish_publishing() == [], "a fresh record may be a live step's: left to it"
    assert _rows(lake, day) == [1] * ROWS

    # the daily vacuum (like any step's publication) finishes a record older than the grace
    monkeypatch.setattr(storage, "PUBLISHING_GRACE_S", 0)
    vacuum_lake(lake, retention_hours=168)
    assert _rows(lake, day) == [2] * ROWS and _rows(lake, day, QUARANTINE) == [2] * ROWS
    assert not lake.list(PUBLISHING)


def test_a_dead_pair_superseded_since_is_not_published_over_the_newer_one(lake_root):
    lake = Lake(lake_root)
    day = "2024-06-01"
    _pair(lake, day, 1)
    _killed_between_commits(lake_root, day, 2)
    dead_quarantine_version = DeltaTable(lake.table_uri(QUARANTINE), storage_options=lake.storage_options()).version()
    _pair(lake, day, 3)  # a later run of the same day
    assert lake.finish_publishing(older_than_s=0) == []
    assert _rows(lake, day) == [3] * ROWS and _rows(lake, day, QUARANTINE) == [3] * ROWS
    assert not lake.list(PUBLISHING)
    # the quarantine the dead step did publish stays readable in the table's history
    assert _rows(lake, day, QUARANTINE, version=dead_quarantine_version) == [2] * ROWS
