"""Publishing builds to a Delta table, on a local folder and on S3: concurrent builds never lose
a partition or leave an empty or mixed one, the build that started last is the one published,
and a build cannot change a column's type under the partitions already published."""

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from meter_assets.storage import Build, Lake
from meter_assets.tables import QUARANTINE, READS_DAILY

ROWS = 500


def _build(lake: Lake, day: str, value: int) -> Build:
    build = lake.build(READS_DAILY, day)
    build.write_parquet("part-0000.parquet", pa.table({"meter_id": pa.array(range(ROWS), pa.int32()),
                                                       "kwh": pa.array([value] * ROWS, pa.int64())}))
    return build


def _race(lake: Lake, builds: list[Build]) -> list:
    start = threading.Barrier(len(builds))

    def publish(build):
        start.wait()
        return lake.publish(build)

    with ThreadPoolExecutor(len(builds)) as pool:
        return list(pool.map(publish, builds))


def _rows(lake: Lake, day: str) -> list[int]:
    table = DeltaTable(lake.table_uri(READS_DAILY), storage_options=lake.storage_options())
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
    wider.write_parquet("part-0000.parquet", pa.table({"meter_id": pa.array([1], pa.int32()), "kwh": [8],
                                                      "estimated_kwh": [0.5]}))
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
        return [lake.publish(build) for build in step]

    with ThreadPoolExecutor(len(steps)) as pool:
        list(pool.map(publish, reversed(steps)))
    quarantined = DeltaTable(lake.table_uri(QUARANTINE), storage_options=lake.storage_options()).to_pyarrow_table()
    assert quarantined.column("kwh").to_pylist() == [3] and _rows(lake, day) == [3] * ROWS
