import dagster as dg

from meter_assets.definitions import defs
from meter_assets.partitions import daily_partitions


def test_definitions_hold_every_asset_check_and_job():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "raw_meter_files", "reads_15min", "reads_hourly", "reads_daily",
        "customers", "meters", "meter_assignments", "tariffs",
    }
    for daily in ("raw_meter_files", "reads_15min", "reads_hourly", "reads_daily"):
        assert graph.get(dg.AssetKey(daily)).partitions_def == daily_partitions
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == {
        ("raw_meter_files", "every_file_matches_a_contract"),
        ("reads_15min", "one_row_per_meter_interval"),
        ("reads_15min", "kwh_within_physical_range"),
        ("reads_15min", "read_at_on_15min_grid"),
        ("reads_15min", "complete_for_local_day"),
        ("reads_15min", "quarantine_rate_below_threshold"),
        ("reads_15min", "missing_share_below_threshold"),
        ("reads_daily", "daily_equals_hourly_equals_15min"),
    }
    assert {j.name for j in defs.jobs} >= {"daily_readings_job", "reference_job"}
    (sensor,) = defs.sensors
    assert sensor.name == "raw_arrivals_sensor" and sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "daily_readings_job"
    assert daily_partitions.timezone == "Europe/London"
    assert daily_partitions.start.strftime("%Y-%m-%d") == "2024-01-01"
    assert graph.get(dg.AssetKey("reads_15min")).parent_keys == {dg.AssetKey("raw_meter_files"), dg.AssetKey("meters")}
