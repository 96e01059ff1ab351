"""Write, audit, publish: a build whose blocking check fails is never published.

Each test materializes a day as usual, then injects a failure and builds it again: the
step fails, nothing downstream runs, and readers keep getting the previous version.
"""

import shutil

import dagster as dg
import pytest

from meter_assets.definitions import daily_assets
from meter_assets.reports.assets import page_key
from meter_assets.resources import CheckThresholds
from meter_assets.storage import Lake
from meter_assets.tables import QUARANTINE, READS_15MIN, READS_DAILY, READS_HOURLY, REPORT_TABLES

from .conftest import resources_for, spring_days

DAY = spring_days()[2]


@pytest.fixture
def lake(after_release, tmp_path) -> Lake:
    root = str(tmp_path / "lake")
    shutil.copytree(after_release, root)
    return Lake(root)


def _published(lake: Lake, tables) -> dict:
    return {
        t.path: (lake.keys(t, DAY.isoformat()), [lake.read_bytes(k) for k in lake.keys(t, DAY.isoformat())])
        for t in tables
    }


def _materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def _failed_checks(result) -> set[str]:
    return {c.check_name for c in result.get_asset_check_evaluations() if not c.passed}


def test_reads_15min_over_its_quarantine_threshold_keeps_the_old_day(lake):
    before = _published(lake, [READS_15MIN, QUARANTINE, READS_HOURLY, READS_DAILY])
    # the faulty simulated day quarantines a few rows: with no quarantine allowed for this run (as an
    # operator sets it in the launchpad), the gate shuts
    no_quarantine = {"resources": {"thresholds": {"config": {"quarantine_max_rate": 0}}}}
    result = dg.materialize(
        daily_assets(),
        partition_key=DAY.isoformat(),
        resources=resources_for(lake.root),
        run_config=no_quarantine,
        raise_on_error=False,
    )
    assert not result.success
    assert _failed_checks(result) == {"quarantine_rate_below_threshold"}
    assert _materialized(result) == {"raw_meter_files"}, "nothing from reads_15min on was recorded or run"
    assert _published(lake, [READS_15MIN, QUARANTINE, READS_HOURLY, READS_DAILY]) == before


def test_reads_daily_that_does_not_add_up_keeps_the_old_day(lake, monkeypatch):
    from meter_assets.rollups import assets as rollups

    before = _published(lake, [READS_DAILY])
    # a defect that loses every seventh meter from the daily rollup
    monkeypatch.setattr(
        rollups,
        "DAILY_SQL",
        rollups.DAILY_SQL.replace("GROUP BY meter_id", "GROUP BY meter_id HAVING hash(meter_id) % 7 <> 0"),
    )
    result = dg.materialize(
        daily_assets(),
        partition_key=DAY.isoformat(),
        resources=resources_for(lake.root),
        selection=["reads_daily", "ops_daily_report"],
        raise_on_error=False,
    )
    assert not result.success
    assert _failed_checks(result) == {"daily_equals_hourly_equals_15min"}
    assert _materialized(result) == set(), "ops_daily_report did not run on the withheld rollup"
    assert _published(lake, [READS_DAILY]) == before


def test_a_report_that_does_not_reconcile_keeps_the_old_report_and_page(lake, monkeypatch):
    from meter_assets.reports import ops

    tables = list(REPORT_TABLES.values())
    before = _published(lake, tables)
    page = lake.read_bytes(page_key(DAY.isoformat()))
    # a defect that drops the meters with no known region from the region table
    monkeypatch.setattr(
        ops,
        "REGION_ENERGY_SQL",
        ops.REGION_ENERGY_SQL.replace(
            "    GROUP BY 1\n),\nweek_before", "    WHERE hash(meter_id) % 5 <> 0\n    GROUP BY 1\n),\nweek_before"
        ),
    )
    result = dg.materialize(
        daily_assets(),
        partition_key=DAY.isoformat(),
        resources=resources_for(lake.root),
        selection=["ops_daily_report"],
        raise_on_error=False,
    )
    assert not result.success
    assert _failed_checks(result) == {"region_totals_reconcile_with_reads_daily"}
    assert _materialized(result) == set()
    assert _published(lake, tables) == before
    assert lake.read_bytes(page_key(DAY.isoformat())) == page


def test_the_duplicate_check_counts_each_repeated_reading_and_only_those(tmp_path):
    import datetime as dt
    from decimal import Decimal

    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from meter_assets.curated.checks import curated_checks
    from meter_assets.curated.readings import CurationResult

    start = dt.datetime(2024, 3, 30, 0)  # a day of 96 quarter hours in London (GMT)
    quarters = [start + dt.timedelta(minutes=15 * q) for q in range(96)]
    rows = [(m, at) for m in (1, 2, 3) for at in quarters]
    # by hand: meter 2 twice at 00:00 and three times at 23:45 (3 extra rows), meter 3 once at 12:00
    rows += [(2, quarters[0]), (2, quarters[95]), (2, quarters[95]), (3, quarters[48])]
    path = str(tmp_path / "day.parquet")
    pq.write_table(
        pa.table(
            {
                "meter_id": [m for m, _ in rows],
                "read_at": [at for _, at in rows],
                "kwh": pa.array([Decimal("0.500")] * len(rows), pa.decimal128(12, 3)),
            }
        ),
        path,
    )
    con = duckdb.connect()
    con.execute("CREATE TEMP TABLE expected_meters AS SELECT * FROM (VALUES (1), (2), (3)) AS t(meter_id)")
    result = CurationResult(
        rows=len(rows),
        files=[path],
        by_flag={"actual": len(rows)},
        staged_rows=len(rows),
        quarantined_rows=0,
        quarantined_files=0,
        duplicate_rows=0,
        corrected_rows=0,
        clock_corrected_rows=0,
    )
    checks = {
        c.check_name: c
        for c in curated_checks(
            con, [path], result, 96, start, start + dt.timedelta(days=1), CheckThresholds.from_settings()
        )
    }
    duplicates = checks["one_row_per_meter_interval"]
    assert not duplicates.passed
    assert duplicates.metadata["duplicate_rows"].value == 4
    assert duplicates.metadata["first_meters"].value == [2, 3]
    assert checks["complete_for_local_day"].passed, "every meter has all 96 quarter hours"
