import dagster as dg

from meter_assets import tables
from meter_assets.definitions import defs
from meter_assets.partitions import daily_partitions, monthly_partitions


def test_definitions_hold_every_asset_check_and_job():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "raw_meter_files",
        "reads_15min",
        "reads_15min_quarantine",
        "reads_hourly",
        "reads_daily",
        "customers",
        "meters",
        "meter_assignments",
        "tariffs",
        "bills",
        "issued_bills",
        "bill_lines",
        "bill_adjustments",
        "usage_serving",
        "ops_daily_report",
        "temperature",
        "temperature_forecast",
        "portfolio_load",
        "load_forecast",
        "load_bids",
    }
    # every table in the lake is written by an asset in the graph (the lineage is whole)
    assert {table.asset for table in tables.ALL} <= keys
    for daily in (
        "raw_meter_files",
        "reads_15min",
        "reads_15min_quarantine",
        "reads_hourly",
        "reads_daily",
        "usage_serving",
        "ops_daily_report",
        "portfolio_load",
    ):
        assert graph.get(dg.AssetKey(daily)).partitions_def == daily_partitions
    quarantine, curated = (graph.get(dg.AssetKey(k)) for k in ("reads_15min_quarantine", "reads_15min"))
    assert quarantine.parent_keys == curated.parent_keys
    assert dg.AssetKey("reads_15min_quarantine") in graph.get(dg.AssetKey("ops_daily_report")).parent_keys
    for monthly in ("bills", "issued_bills", "bill_lines", "bill_adjustments"):
        assert graph.get(dg.AssetKey(monthly)).partitions_def == monthly_partitions
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
        ("bills", "billed_kwh_reconciles_with_reads_daily"),
        ("ops_daily_report", "region_totals_reconcile_with_reads_daily"),
        ("ops_daily_report", "silent_meters_below_alert_threshold"),
        ("load_forecast", "backtest_beats_baselines"),
    }
    # a late file's run rebuilds the day's report with its readings
    job = defs.get_job_def("daily_readings_job")
    assert dg.AssetKey("ops_daily_report") in job.asset_layer.executable_asset_keys
    assert {j.name for j in defs.jobs} == {
        "daily_readings_job",
        "reference_job",
        "bills_job",
        "issue_bills_job",
        "load_forecast_job",
        "lake_vacuum_job",
    }
    # the forecast for day D is made on D, before gate closure: its partition exists from D's start
    forecast = graph.get(dg.AssetKey("load_forecast")).partitions_def
    assert forecast.end_offset == 1 and forecast.timezone == "Europe/London"
    history = graph.get(dg.AssetKey("load_forecast")).partition_mappings[dg.AssetKey("portfolio_load")]
    assert (history.start_offset, history.end_offset) == (-730, -1), "up to the day before the forecast is made"
    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) == {"raw_arrivals_sensor", "rebuilt_day_bills_sensor"}
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())
    assert sensors["raw_arrivals_sensor"].job_name == "daily_readings_job"
    assert sensors["rebuilt_day_bills_sensor"].job_name == "bills_job"
    schedules = {s.name: s for s in defs.get_repository_def().schedule_defs}
    assert set(schedules) == {"issue_bills_schedule", "load_forecast_schedule", "lake_vacuum_schedule"}
    forecasting = schedules["load_forecast_schedule"]
    # two hours before the 11:00 gate closure, every day, and running from the start
    assert (forecasting.cron_schedule, forecasting.job_name) == ("0 9 * * *", "load_forecast_job")
    assert forecasting.default_status == dg.DefaultScheduleStatus.RUNNING
    schedule = schedules["issue_bills_schedule"]
    assert schedule.job_name == "issue_bills_job"
    # the 4th of each month at 06:00 market time: the default 3 days of grace after the month closes
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 6 4 * *", "Europe/London")
    assert daily_partitions.timezone == "Europe/London"
    assert daily_partitions.start.strftime("%Y-%m-%d") == "2024-01-01"
    assert monthly_partitions.get_first_partition_key() == "2024-01"
    assert monthly_partitions.timezone == "Europe/London"
    assert graph.get(dg.AssetKey("bills")).parent_keys == {
        dg.AssetKey(k) for k in ("reads_15min", "reads_daily", "meter_assignments", "customers", "tariffs")
    }
    assert graph.get(dg.AssetKey("reads_15min")).parent_keys == {dg.AssetKey("raw_meter_files"), dg.AssetKey("meters")}
