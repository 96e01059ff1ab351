"""Jobs shared across domains: the daily readings chain, and the reference reload."""

import dagster as dg

from meter_assets.curated.assets import curated_readings
from meter_assets.forecast.assets import portfolio_load, weather
from meter_assets.ingest.assets import raw_meter_files
from meter_assets.reference.assets import reference_assets
from meter_assets.reports.assets import ops_daily_report
from meter_assets.rollups.assets import reads_daily, reads_hourly
from meter_assets.serving.assets import usage_serving

# Everything daily that a date's raw files feed; a late file rebuilds this chain for its date.
daily_assets = [
    raw_meter_files,
    curated_readings,
    reads_hourly,
    reads_daily,
    usage_serving,
    ops_daily_report,
    portfolio_load,
]

daily_readings_job = dg.define_asset_job(
    "daily_readings_job",
    selection=dg.AssetSelection.assets(*daily_assets),
    description="Inventory, curate and roll up one local day of meter readings; refresh its usage page data, "
    "its operations report and the portfolio load the forecast learns from.",
    # the steps run one after another anyway; one process saves a start-up per step
    executor_def=dg.in_process_executor,
)

reference_job = dg.define_asset_job(
    "reference_job",
    selection=dg.AssetSelection.assets(*reference_assets, weather),
    description="Reload the reference dimensions and the weather from the retailer's and provider's exports.",
)
