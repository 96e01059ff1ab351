"""The code location: every asset, check, job and resource, assembled in one place."""

import dagster as dg

from meter_assets.curated.assets import reads_15min
from meter_assets.ingest.assets import raw_meter_files
from meter_assets.reference.assets import reference_assets
from meter_assets.resources import resources
from meter_assets.rollups.assets import reads_daily, reads_hourly

daily_assets = [raw_meter_files, reads_15min, reads_hourly, reads_daily]

daily_readings_job = dg.define_asset_job(
    "daily_readings_job",
    selection=dg.AssetSelection.assets(*daily_assets),
    description="Inventory, curate and roll up one local day of meter readings.",
)

reference_job = dg.define_asset_job(
    "reference_job",
    selection=dg.AssetSelection.assets(*reference_assets),
    description="Reload the reference dimensions from the retailer's exports.",
)

defs = dg.Definitions(
    assets=[*reference_assets, *daily_assets],
    jobs=[daily_readings_job, reference_job],
    resources=resources(),
)
