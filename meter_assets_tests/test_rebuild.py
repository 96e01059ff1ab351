import datetime as dt
import os
import shutil

import dagster as dg
import pytest

from meter_assets.curated.readings import READS_15MIN
from meter_assets.jobs import daily_assets
from meter_assets.storage import Lake

from .conftest import materialize_days, query, resources_for, table_files

DAY = dt.date(2024, 3, 31)


def _contents(root: str) -> list[tuple]:
    return query(f"SELECT * FROM read_parquet({table_files(root, READS_15MIN, DAY)}, hive_partitioning = false) ORDER BY meter_id, read_at")


def test_rebuilding_a_partition_gives_identical_data(after_release, tmp_path):
    root = str(tmp_path / "lake")
    shutil.copytree(after_release, root)
    lake = Lake(root)
    before = _contents(root)
    old_bytes = [open(f, "rb").read() for f in lake.files(READS_15MIN, DAY.isoformat())]
    old_version = lake.manifest(READS_15MIN, DAY.isoformat())["version"]

    materialize_days(root, [DAY])

    assert lake.manifest(READS_15MIN, DAY.isoformat())["version"] != old_version
    assert _contents(root) == before
    assert [open(f, "rb").read() for f in lake.files(READS_15MIN, DAY.isoformat())] == old_bytes


def test_interrupted_rebuild_leaves_the_previous_partition_whole(after_release, tmp_path, monkeypatch):
    root = str(tmp_path / "lake")
    shutil.copytree(after_release, root)
    lake = Lake(root)
    before = _contents(root)
    manifest_before = lake.manifest(READS_15MIN, DAY.isoformat())

    real_publish = Lake.publish

    def crash_before_swap(self, table, partition, version_key, stats):
        if table == READS_15MIN:
            # the new files are fully or partly written when the process dies
            self.write_bytes(f"{version_key}/part-9999.parquet", b"PAR1\x00\x00")
            raise KeyboardInterrupt("process killed mid-write")
        return real_publish(self, table, partition, version_key, stats)

    monkeypatch.setattr(Lake, "publish", crash_before_swap)
    with pytest.raises(KeyboardInterrupt):
        dg.materialize(daily_assets, partition_key=DAY.isoformat(), resources=resources_for(root),
                       selection=["reads_15min"])
    monkeypatch.undo()

    assert lake.manifest(READS_15MIN, DAY.isoformat()) == manifest_before
    assert _contents(root) == before

    # and the next successful build cleans up the abandoned version
    materialize_days(root, [DAY])
    versions = [d for d in os.listdir(lake.uri(f"{READS_15MIN}/date={DAY}")) if d.startswith("v=")]
    assert len(versions) == 2
    assert _contents(root) == before
