import ast
import graphlib
import importlib
import os
import pathlib
import subprocess
import sys

import dagster as dg
import pytest

import meter_assets
from meter_assets import tables
from meter_assets.definitions import build
from meter_assets.partitions import daily_partitions, monthly_partitions
from meter_assets.resources import CheckThresholds

# as Dagster loads the code location (meter_assets.definitions.defs calls it)
defs = build()


def test_definitions_hold_every_asset_check_and_job():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "raw_meter_files",
        "reads_15min",
        "reads_15min_quarantine",
        "reads_15min_export",
        "reads_hourly",
        "reads_daily",
        "customers",
        "customer_plans",
        "meters",
        "meter_assignments",
        "tariffs",
        "day_ahead_prices",
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
        "reads_15min_export",
        "reads_hourly",
        "reads_daily",
        "usage_serving",
        "ops_daily_report",
        "portfolio_load",
    ):
        assert graph.get(dg.AssetKey(daily)).partitions_def == daily_partitions()
    quarantine, curated = (graph.get(dg.AssetKey(k)) for k in ("reads_15min_quarantine", "reads_15min"))
    # the readings also read their own past (the last week, the same weekday up to 8 weeks
    # back) and the weather of those days
    assert curated.parent_keys == quarantine.parent_keys | {dg.AssetKey("reads_15min"), dg.AssetKey("temperature")}
    like_days = graph.get_partition_mapping(dg.AssetKey("reads_15min"), dg.AssetKey("reads_15min"))
    days = daily_partitions()
    upstream = like_days.get_upstream_mapped_partitions_result_for_partitions(
        days.subset_with_partition_keys(["2024-05-14"]), days, days
    ).partitions_subset.get_partition_keys()
    assert (min(upstream), max(upstream)) == ("2024-03-19", "2024-05-13")
    assert dg.AssetKey("reads_15min_quarantine") in graph.get(dg.AssetKey("ops_daily_report")).parent_keys
    for monthly in ("bills", "issued_bills", "bill_lines", "bill_adjustments"):
        assert graph.get(dg.AssetKey(monthly)).partitions_def == monthly_partitions()
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == {
        ("raw_meter_files", "every_file_matches_a_contract"),
        ("meter_assignments", "no_meter_day_held_twice"),
        ("customer_plans", "one_plan_a_day"),
        ("day_ahead_prices", "one_price_per_settlement_period"),
        ("tariffs", "every_row_states_its_price"),
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
        ("load_bids", "bid_covers_every_period"),
        # yesterday's partition by the freshness deadline (06:00 market time)
        *((daily, "freshness_check") for daily in ("reads_15min", "reads_hourly", "reads_daily", "usage_serving")),
        ("ops_daily_report", "freshness_check"),
    }
    # a late file's run rebuilds the day's report with its readings
    job = defs.resolve_job_def("daily_readings_job")
    assert dg.AssetKey("ops_daily_report") in job.asset_layer.executable_asset_keys
    assert {j.name for j in defs.jobs} == {
        "daily_readings_job",
        "reference_job",
        "bills_job",
        "issue_bills_job",
        "usage_serving_job",
        "load_forecast_job",
        "lake_vacuum_job",
    }
    # the forecast for day D is made on D, before gate closure: its partition exists from D's start
    forecast = graph.get(dg.AssetKey("load_forecast")).partitions_def
    assert forecast.end_offset == 1 and forecast.timezone == "Europe/London"
    history = graph.get(dg.AssetKey("load_forecast")).partition_mappings[dg.AssetKey("portfolio_load")]
    assert (history.start_offset, history.end_offset) == (-730, -1), "up to the day before the forecast is made"
    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) == {
        "raw_arrivals_sensor",
        "rebuilt_day_bills_sensor",
        "repriced_days_sensor",
        "daily_freshness_sensor",
    }
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors.values())
    assert sensors["raw_arrivals_sensor"].job_name == "daily_readings_job"
    assert sensors["rebuilt_day_bills_sensor"].job_name == "bills_job"
    assert {job.name for job in sensors["repriced_days_sensor"].jobs} == {"usage_serving_job", "bills_job"}
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
    assert daily_partitions().timezone == "Europe/London"
    assert daily_partitions().start.strftime("%Y-%m-%d") == "2024-01-01"
    assert monthly_partitions().get_first_partition_key() == "2024-01"
    assert monthly_partitions().timezone == "Europe/London"
    assert graph.get(dg.AssetKey("bills")).parent_keys == {
        dg.AssetKey(k)
        for k in (
            "reads_15min",
            "reads_15min_export",
            "reads_daily",
            "meter_assignments",
            "customers",
            "customer_plans",
            "tariffs",
            "day_ahead_prices",
        )
    }
    assert graph.get(dg.AssetKey("reads_15min")).parent_keys == {
        dg.AssetKey(k) for k in ("raw_meter_files", "meters", "reads_15min", "temperature")
    }


# the order data flows in: a domain's modules may import the shared modules and the domains before it
FLOW = ("reference", "ingest", "curated", "rollups", "billing", "serving", "reports", "forecast")
ASSEMBLY = {"meter_assets.definitions", "meter_assets.demo"}


def _imports() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports, anywhere in its body."""
    package = pathlib.Path(meter_assets.__file__).parent
    names = {".".join(p.relative_to(package.parent).with_suffix("").parts): p for p in package.rglob("*.py")}
    names = {n.removesuffix(".__init__"): p for n, p in names.items()}
    graph = {}
    for name, path in names.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("meter_assets"):
                found |= {f"{node.module}.{a.name}" for a in node.names} & names.keys() or {node.module}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in names}
        graph[name] = found - {name, "meter_assets"}
    return graph


def _domain(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in FLOW else None


def _upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """The imports that go against the flow."""
    upward = []
    for module, imported in sorted(graph.items()):
        for other in sorted(imported):
            if other in ASSEMBLY and module not in ASSEMBLY:
                upward.append((module, other))
            elif _domain(module) and _domain(other) and FLOW.index(_domain(other)) > FLOW.index(_domain(module)):
                upward.append((module, other))
            elif _domain(module) is None and module not in ASSEMBLY and _domain(other):
                # shared modules serve every domain; only the simulator (a head-end) knows the file contracts
                if not (module.startswith("meter_assets.simulator") and other == "meter_assets.ingest.contracts"):
                    upward.append((module, other))
    return upward


def test_no_module_imports_one_above_it_and_no_cycle():
    graph = _imports()
    assert {"meter_assets.billing.sensors", "meter_assets.jobs", "meter_assets.storage"} <= graph.keys()
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on an import cycle
    assert _upward(graph) == []
    # positive controls: the imports this rule removed are seen when put back
    graph["meter_assets.ingest.sensors"].add("meter_assets.definitions")
    graph["meter_assets.billing.sensors"].add("meter_assets.serving.assets")
    graph["meter_assets.storage"].add("meter_assets.curated.readings")
    assert _upward(graph) == [
        ("meter_assets.billing.sensors", "meter_assets.serving.assets"),
        ("meter_assets.ingest.sensors", "meter_assets.definitions"),
        ("meter_assets.storage", "meter_assets.curated.readings"),
    ]
    graph["meter_assets.storage"].add("meter_assets.resources")
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(graph).prepare()


def test_each_domain_exports_its_own_definitions():
    merged = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    owned = {}
    for domain in FLOW:
        module = importlib.import_module(f"meter_assets.{domain}.definitions")
        for assets in module.defs().assets:
            for key in assets.keys:
                owned.setdefault(key.to_user_string(), []).append(domain)
    assert sorted(owned) == sorted(merged)  # every asset comes from exactly one domain
    assert all(len(domains) == 1 for domains in owned.values())
    assert owned["reads_15min"] == ["curated"] and owned["bills"] == ["billing"]


def test_dagster_loads_the_code_location_as_the_daemon_does():
    # the loader the code server uses: one Definitions object at the module's scope, every
    # job's selection and every sensor's target resolved
    dagster = pathlib.Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [dagster, "definitions", "validate", "-m", "meter_assets.definitions"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful for code location meter_assets.definitions" in done.stdout + done.stderr


def test_the_check_thresholds_are_a_resource_with_the_environments_defaults(monkeypatch):
    from meter_assets.config import settings
    from meter_assets.resources import resources

    thresholds = defs.resources["thresholds"]
    assert isinstance(thresholds, CheckThresholds)
    assert (thresholds.quarantine_max_rate, thresholds.missing_warn_share, thresholds.silent_meters_warn) == (
        0.01,
        0.05,
        250,
    )
    monkeypatch.setenv("METER_SILENT_METERS_WARN", "40")
    settings.cache_clear()
    try:
        assert resources()["thresholds"].silent_meters_warn == 40
    finally:
        monkeypatch.undo()
        settings.cache_clear()


def test_importing_the_package_reads_no_setting():
    # every module imports under settings that cannot be parsed; only building the
    # definitions reads them, and then the bad one is refused by name
    code = """
import importlib, pkgutil, meter_assets
for module in pkgutil.walk_packages(meter_assets.__path__, "meter_assets."):
    importlib.import_module(module.name)
print("imported")
from meter_assets.definitions import build
build()
"""
    env = {**os.environ, "METER_MARKET_TZ": "Nowhere/Nowhere", "METER_START_DATE": "someday"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "imported", done.stderr[-2000:]
    assert done.returncode != 0 and "market_tz" in done.stderr and "start_date" in done.stderr
