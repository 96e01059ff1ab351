"""Several days through Dagster's own API, against an instance configured by dagster.yaml."""

import datetime as dt

import dagster as dg

from meter_assets.simulator.cli import generate
from meter_assets.simulator.headend import FaultRates
from meter_assets.sql import sql_list
from meter_assets.storage import Lake
from meter_assets.tables import READS_15MIN

from .conftest import materialize_days, query
from .daemon_support import dagster_home


def test_several_days_materialize_with_every_check_passing(tmp_path):
    """A local lake: the same chain on S3 is built by test_open_lake.py and read back there."""
    home, _ = dagster_home(tmp_path)
    root = str(tmp_path / "lake")
    rates = FaultRates(truncated_files=0)
    start = dt.date(2024, 5, 6)
    days = [start + dt.timedelta(days=d) for d in range(4)]
    generate(Lake(root), meters=200, start=start, days=len(days), seed=5, rates=rates, log=lambda *_: None)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        results = materialize_days(root, days, instance=instance)
        assert all(r.success for r in results)
        for result in results[1:]:
            evaluations = result.get_asset_check_evaluations()
            assert len(evaluations) == 10
            assert [e.check_name for e in evaluations if not e.passed] == []
        for asset in (
            "raw_meter_files",
            "reads_15min",
            "reads_hourly",
            "reads_daily",
            "usage_serving",
            "ops_daily_report",
        ):
            materialized = instance.get_materialized_partitions(dg.AssetKey(asset))
            assert materialized == {d.isoformat() for d in days}, asset
        event = instance.get_latest_materialization_event(dg.AssetKey("reads_15min"))
        metadata = event.asset_materialization.metadata
        assert metadata["rows"].value == 200 * 96
        assert metadata["duplicates_collapsed"].value > 0

    lake = Lake(root)
    found = query(
        "SELECT count(*), count(DISTINCT meter_id), count(DISTINCT read_at), min(read_at), max(read_at) FROM "
        f"read_parquet({sql_list(lake.files(READS_15MIN, days[0].isoformat()))})",
        lake=lake,
    )[0]
    # 6 May 2024 in London is British Summer Time: 23:00 UTC on the 5th to 23:00 UTC on the 6th
    assert found == (200 * 96, 200, 96, dt.datetime(2024, 5, 5, 23), dt.datetime(2024, 5, 6, 22, 45))
