"""The code location: every asset, check, job, sensor and resource, assembled in one place."""

import dagster as dg

from meter_assets.ingest.sensors import raw_arrivals_sensor
from meter_assets.jobs import daily_assets, daily_readings_job, reference_job
from meter_assets.reference.assets import reference_assets
from meter_assets.resources import resources

defs = dg.Definitions(
    assets=[*reference_assets, *daily_assets],
    jobs=[daily_readings_job, reference_job],
    sensors=[raw_arrivals_sensor],
    resources=resources(),
)
