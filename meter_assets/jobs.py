"""Jobs that span domains. They name their assets by key, so a domain's sensor can start or watch
them without importing the domains above it; `definitions.py` resolves the keys."""

import dagster as dg

# Everything daily that a date's raw files feed; a late file rebuilds this chain for its date.
DAILY_CHAIN = (
    "raw_meter_files",
    "reads_15min",
    "reads_15min_quarantine",
    "reads_15min_export",
    "reads_hourly",
    "reads_daily",
    "usage_serving",
    "ops_daily_report",
    "portfolio_load",
)

# The retailer's exports and the weather provider's: reloaded together, not partitioned.
REFERENCE = ("customers", "meters", "meter_assignments", "tariffs", "temperature", "temperature_forecast")

daily_readings_job = dg.define_asset_job(
    "daily_readings_job",
    selection=dg.AssetSelection.assets(*DAILY_CHAIN),
    description="Inventory, curate and roll up one local day of meter readings; refresh its usage page data, "
    "its operations report and the portfolio load the forecast learns from.",
    # the steps run one after another anyway; one process saves a start-up per step
    executor_def=dg.in_process_executor,
)

reference_job = dg.define_asset_job(
    "reference_job",
    selection=dg.AssetSelection.assets(*REFERENCE),
    description="Reload the reference dimensions and the weather from the retailer's and provider's exports.",
)
