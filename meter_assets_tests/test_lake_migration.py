"""`meter-lake migrate`: a lake published with `_manifest.json` files (the format before Delta)
becomes Delta tables in place, readable by any Delta reader and by the assets."""

import datetime as dt
import json

import dagster as dg
import duckdb
import duckdb_extension_delta
import pyarrow as pa

from meter_assets.definitions import assets
from meter_assets.maintenance import migrate_manifests
from meter_assets.storage import Lake, load_extension
from meter_assets.tables import FORECAST, READS_15MIN, REPORT_TABLES, TARIFFS

from .conftest import resources_for

DAY = "2024-05-14"


def _old_publish(lake: Lake, prefix: str, partition: str | None, files: dict[str, pa.Table], **extra) -> None:
    """What the manifest publisher wrote: a version folder, the previous one, and the manifest."""
    folder = f"{prefix}/date={partition}" if partition else prefix
    for version, scale in (("v=20240515T010000-00000001", 2), ("v=20240515T020000-00000002", 1)):
        for name, table in files.items():
            data = (
                table.set_column(
                    table.schema.get_field_index("kwh"),
                    "kwh",
                    pa.array([v * scale for v in table.column("kwh").to_pylist()], pa.int64()),
                )
                if "kwh" in table.column_names
                else table
            )
            lake.write_parquet(f"{folder}/{version}/{name}", data)
    current = f"{folder}/v=20240515T020000-00000002"
    manifest = {
        "table": prefix,
        "partition": partition,
        "version": "v=20240515T020000-00000002",
        "files": [f"{current}/{n}" for n in files if n.endswith(".parquet")],
        "previous_version": "v=20240515T010000-00000001",
        **extra,
    }
    lake.write_bytes(f"{folder}/_manifest.json", json.dumps(manifest).encode())


def _readings() -> pa.Table:
    """Three meters' first quarter hour of the day (23:00 UTC in May)."""
    return pa.table(
        {
            "meter_id": pa.array([1, 2, 3], pa.int32()),
            "read_at": pa.array([dt.datetime(2024, 5, 13, 23)] * 3, pa.timestamp("us")),
            "kwh": pa.array([1, 2, 3], pa.int64()),
            "quality_flag": pa.array(["actual"] * 3),
        }
    )


def test_a_manifest_lake_becomes_delta_and_keeps_working(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    _old_publish(lake, READS_15MIN.path, DAY, {"part-0000.parquet": _readings()})
    _old_publish(lake, TARIFFS.path, None, {"part-0000.parquet": pa.table({"tariff_id": [1, 2]})})
    _old_publish(
        lake,
        FORECAST.path,
        DAY,
        {"forecast.parquet": pa.table({"p50_kwh": [1.5]}), "model_p50.txt": pa.table({"x": [1]})},
    )
    _old_publish(
        lake,
        "reports/ops",
        DAY,
        {
            "summary.parquet": pa.table({"kwh": [6]}),
            "region_energy.parquet": pa.table({"region": ["north"], "kwh": [6]}),
        },
        page="reports/ops/date=2024-05-14/v=20240515T020000-00000002/report.html",
    )
    lake.write_bytes("reports/ops/date=2024-05-14/v=20240515T020000-00000002/report.html", b"<html>report</html>")

    migrated = migrate_manifests(lake, log=lambda *_: None)
    assert migrated == {
        READS_15MIN.path: 3,
        TARIFFS.path: 2,
        FORECAST.path: 1,
        REPORT_TABLES["summary"].path: 1,
        REPORT_TABLES["region_energy"].path: 1,
    }

    con = duckdb.connect()
    load_extension(con, duckdb_extension_delta, "delta")
    # only the current version, none of the one it had replaced (whose kWh were doubled)
    assert con.execute(
        f"SELECT date, sum(kwh), count(*) FROM delta_scan('{lake.table_uri(READS_15MIN)}') GROUP BY date"
    ).fetchall() == [(dt.date(2024, 5, 14), 6, 3)]
    assert con.execute(f"SELECT sum(kwh) FROM delta_scan('{lake.table_uri(REPORT_TABLES['summary'])}')").fetchone() == (
        6,
    )
    assert con.execute(f"SELECT count(*) FROM delta_scan('{lake.table_uri(TARIFFS)}')").fetchone() == (2,)
    assert lake.read_bytes(f"reports/ops_pages/date={DAY}/report.html") == b"<html>report</html>"
    assert lake.exists(f"forecasts/load_models/date={DAY}/model_p50.txt")
    # no manifest and no replaced version is left behind
    left = [o.key for o in lake.list("") if o.key.endswith("_manifest.json") or "v=20240515T010000" in o.key]
    assert left == []

    # the assets read the migrated table: the rollups of the day add up to its 6 kWh
    result = dg.materialize(
        assets("reads_hourly", "reads_daily"), partition_key=DAY, resources=resources_for(lake.root)
    )
    assert result.success
    assert result.asset_materializations_for_node("reads_daily")[0].metadata["kwh"].value == 6

    # and running it again finds nothing to do
    assert migrate_manifests(lake, log=lambda *_: None) == {}
