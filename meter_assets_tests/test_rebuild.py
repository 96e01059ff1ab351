import datetime as dt
import os
import shutil

import dagster as dg
import pytest

from meter_assets.definitions import daily_assets
from meter_assets.storage import Lake
from meter_assets.tables import READS_15MIN

from .conftest import materialize_days, query, resources_for, table_files

DAY = dt.date(2024, 3, 31)


def _contents(root: str) -> list[tuple]:
    return query(
        f"SELECT * FROM read_parquet({table_files(root, READS_15MIN, DAY)}, hive_partitioning = false) "
        "ORDER BY meter_id, read_at"
    )


def test_rebuilding_a_partition_gives_identical_data(after_release, tmp_path):
    root = str(tmp_path / "lake")
    shutil.copytree(after_release, root)
    lake = Lake(root)
    before = _contents(root)
    old_keys = lake.keys(READS_15MIN, DAY.isoformat())
    old_bytes = [open(f, "rb").read() for f in lake.files(READS_15MIN, DAY.isoformat())]
    old_version = lake.delta(READS_15MIN).version()

    materialize_days(root, [DAY])

    assert lake.delta(READS_15MIN).version() > old_version
    assert lake.keys(READS_15MIN, DAY.isoformat()) != old_keys, "a new build replaced the partition"
    assert _contents(root) == before
    assert [open(f, "rb").read() for f in lake.files(READS_15MIN, DAY.isoformat())] == old_bytes
    # the previous version is still there to read, until it is vacuumed
    assert lake.snapshot(READS_15MIN, old_version).keys(DAY.isoformat()) == old_keys


def test_interrupted_rebuild_leaves_the_previous_partition_whole(after_release, tmp_path, monkeypatch):
    root = str(tmp_path / "lake")
    shutil.copytree(after_release, root)
    lake = Lake(root)
    before = _contents(root)
    version_before = lake.delta(READS_15MIN).version()
    keys_before = lake.keys(READS_15MIN, DAY.isoformat())

    real_publish = Lake.publish

    def crash_before_commit(self, build, metadata=None):
        if build.table == READS_15MIN:
            # the new files are fully or partly written when the process dies
            self.write_bytes(build.key("part-9999.parquet"), b"PAR1\x00\x00")
            raise KeyboardInterrupt("process killed mid-write")
        return real_publish(self, build, metadata)

    monkeypatch.setattr(Lake, "publish", crash_before_commit)
    with pytest.raises(KeyboardInterrupt):
        dg.materialize(
            daily_assets(),
            partition_key=DAY.isoformat(),
            resources=resources_for(root),
            selection=["reads_15min", "reads_15min_quarantine", "reads_15min_export"],
        )
    monkeypatch.undo()

    assert lake.delta(READS_15MIN).version() == version_before
    assert lake.keys(READS_15MIN, DAY.isoformat()) == keys_before
    assert _contents(root) == before

    # the abandoned build's files are garbage that no reader sees, and vacuum deletes them
    folder = lake.uri(READS_15MIN.folder(DAY.isoformat()))
    abandoned = {f for f in os.listdir(folder)} - {os.path.basename(k) for k in keys_before}
    assert any(name.endswith("part-9999.parquet") for name in abandoned)
    lake.vacuum(READS_15MIN, retention_hours=0)
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(k) for k in keys_before)
    materialize_days(root, [DAY])
    assert _contents(root) == before
