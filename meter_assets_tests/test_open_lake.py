"""The lake read by engines that are not this code: DuckDB's `delta` extension and `deltalake`.

After a rebuild the old files are still in the partition's folder (until vacuum), so a
plain glob double-counts; a Delta reader sees exactly the published version. Expected
figures come from the simulator's ground truth and fault manifest.
"""

import datetime as dt
from decimal import Decimal

import duckdb
import duckdb_extension_delta
import pytest
from deltalake import DeltaTable

from meter_assets.simulator.cli import generate
from meter_assets.simulator.headend import FaultRates
from meter_assets.storage import Lake, load_extension
from meter_assets.tables import METERS, QUARANTINE, READS_15MIN, READS_DAILY, REPORT_TABLES

from .conftest import materialize_days, new_bucket

DAYS = [dt.date(2024, 5, 14), dt.date(2024, 5, 15)]  # 96 quarter hours each
N_METERS = 40
BUILT = ("raw_meter_files", "reads_15min", "reads_hourly", "reads_daily", "ops_daily_report")
# no fault that changes what a meter measured, and a few damaged rows for the quarantine
RATES = FaultRates(
    late_file=0, resend=0, correction=0, estimated=0, offline=0, dead=0, drift=0, malformed=0.002, truncated_files=0
)


@pytest.fixture(scope="module", params=["local", "s3"])
def built(request, tmp_path_factory) -> Lake:
    """Built once per backend for this module's tests, which only read it."""
    if request.param == "s3":
        request.getfixturevalue("s3_endpoint")
        lake_root = f"s3://{new_bucket()}/meter-lake"
    else:
        lake_root = str(tmp_path_factory.mktemp("open") / "lake")
    lake = Lake(lake_root)
    generate(lake, meters=N_METERS, start=DAYS[0], days=len(DAYS), seed=5, rates=RATES, truth=True, log=lambda *_: None)
    # the tables read here (and what writes them), not the usage page's or the forecast's
    materialize_days(lake_root, DAYS, only=BUILT)
    materialize_days(lake_root, DAYS[:1], only=BUILT)  # the first day rebuilt: two builds in its folder
    return lake


def _duckdb(lake: Lake) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    lake.configure_duckdb(con)  # only the S3 secret: the reader is DuckDB's own
    load_extension(con, duckdb_extension_delta, "delta")
    return con


def _truth(con, lake: Lake) -> dict:
    """Per day: kWh the head-end delivered to the curated layer (every truth reading but the damaged
    rows, which the platform estimates instead)."""
    truth = f"read_parquet([{', '.join(repr(lake.uri(f'simulator/truth/date={d}/reads.parquet')) for d in DAYS)}])"
    faults = f"read_parquet([{', '.join(repr(lake.uri(f'simulator/faults/date={d}/faults.parquet')) for d in DAYS)}])"
    rows = con.execute(f"""
        SELECT CAST(timezone('Europe/London', t.read_at AT TIME ZONE 'UTC') AS DATE) AS day,
               sum(t.kwh) FILTER (WHERE f.meter_id IS NULL), count(*), count(f.meter_id)
        FROM {truth} AS t
        LEFT JOIN (SELECT DISTINCT meter_id, read_at FROM {faults} WHERE kind = 'malformed_row') AS f
          USING (meter_id, read_at)
        GROUP BY day ORDER BY day""").fetchall()
    return {day: (kwh, n, damaged) for day, kwh, n, damaged in rows}


def test_duckdb_delta_scan_reads_exactly_the_published_rows(built):
    lake = built
    con = _duckdb(lake)
    truth = _truth(con, lake)
    assert set(truth) == set(DAYS) and all(n == N_METERS * 96 for _, n, _ in truth.values())
    damaged = sum(d for _, _, d in truth.values())
    assert damaged > 0, "the simulator damaged some rows"

    curated = dict(
        (day, rest)
        for day, *rest in con.execute(f"""
        SELECT date, count(*), count(DISTINCT (meter_id, read_at)), sum(kwh) FILTER (WHERE estimated_by = 'platform'),
               sum(kwh) FILTER (WHERE estimated_by IS DISTINCT FROM 'platform'),
               count(*) FILTER (WHERE estimated_by = 'platform' AND kwh IS NOT NULL)
        FROM delta_scan('{lake.table_uri(READS_15MIN)}') GROUP BY date""").fetchall()
    )
    platform = {day: curated[day][2] or 0 for day in DAYS}
    for day in DAYS:
        rows, distinct, _, kwh, missing = curated[day]
        assert rows == distinct == N_METERS * 96, f"{day}: one row per meter and quarter hour"
        assert kwh == truth[day][0] and missing == truth[day][2]

    # the positive control: the rebuilt day's folder holds both builds, and a glob counts both
    folder = lake.uri(READS_15MIN.folder(DAYS[0].isoformat()))
    (globbed,) = con.execute(f"SELECT count(*) FROM read_parquet('{folder}/*.parquet')").fetchone()
    assert globbed == 2 * N_METERS * 96

    daily = dict(
        (day, rest)
        for day, *rest in con.execute(
            f"SELECT date, count(*), sum(kwh) FROM delta_scan('{lake.table_uri(READS_DAILY)}') GROUP BY date"
        ).fetchall()
    )
    # the day's kWh: what the head-end delivered and what the platform estimated for the rest
    assert daily == {day: [N_METERS, truth[day][0] + platform[day]] for day in DAYS}

    (quarantined,) = con.execute(
        f"SELECT count(*) FROM delta_scan('{lake.table_uri(QUARANTINE)}') WHERE scope = 'row'"
    ).fetchone()
    assert quarantined == damaged

    regions = dict(
        con.execute(f"""
        SELECT date, sum(kwh) FROM delta_scan('{lake.table_uri(REPORT_TABLES["region_energy"])}')
        GROUP BY date""").fetchall()
    )
    assert regions == {day: truth[day][0] + platform[day] for day in DAYS}
    (region_names,) = con.execute(
        f"SELECT count(DISTINCT region) FROM delta_scan('{lake.table_uri(METERS)}')"
    ).fetchone()
    (report_rows,) = con.execute(
        f"SELECT count(*) FROM delta_scan('{lake.table_uri(REPORT_TABLES['region_energy'])}') "
        f"WHERE date = DATE '{DAYS[0]}'"
    ).fetchone()
    assert report_rows == region_names


def test_deltalake_reads_exactly_the_published_rows_and_each_version(built):
    lake = built
    truth = _truth(duckdb.connect() if not lake.is_s3 else _duckdb(lake), lake)
    options = lake.storage_options()
    curated = DeltaTable(lake.table_uri(READS_15MIN), storage_options=options)
    for day in DAYS:
        table = curated.to_pyarrow_table(filters=[("date", "=", day)])
        assert table.num_rows == N_METERS * 96
        delivered = [
            v
            for v, by in zip(table.column("kwh").to_pylist(), table.column("estimated_by").to_pylist(), strict=True)
            if by != "platform"
        ]
        assert sum(delivered, Decimal("0.000")) == truth[day][0]

    # every commit is one partition replaced whole: each version holds each day once
    versions = [entry["version"] for entry in curated.history()]
    assert len(versions) == 3  # two days, then the first day again
    for version in versions:
        counts = (
            DeltaTable(lake.table_uri(READS_15MIN), version=version, storage_options=options)
            .to_pyarrow_table(columns=["date"])
            .group_by("date")
            .aggregate([("date", "count")])
            .to_pylist()
        )
        assert all(c["date_count"] == N_METERS * 96 for c in counts)

    quarantine = DeltaTable(lake.table_uri(QUARANTINE), storage_options=options).to_pyarrow_table()
    assert quarantine.filter(quarantine.column("scope").to_numpy(zero_copy_only=False) == "row").num_rows == sum(
        d for _, _, d in truth.values()
    )
