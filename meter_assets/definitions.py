"""The code location: every asset, check, job, sensor and resource, assembled in one place."""

import dagster as dg

from meter_assets.billing.assets import billing_assets
from meter_assets.billing.jobs import bills_job, issue_bills_job
from meter_assets.billing.schedules import issue_bills_schedule
from meter_assets.billing.sensors import rebuilt_day_bills_sensor
from meter_assets.forecast.assets import load_forecast, load_forecast_job, load_forecast_schedule, weather
from meter_assets.ingest.sensors import raw_arrivals_sensor
from meter_assets.jobs import daily_assets, daily_readings_job, reference_job
from meter_assets.maintenance import lake_vacuum_job, lake_vacuum_schedule
from meter_assets.reference.assets import reference_assets
from meter_assets.resources import resources

defs = dg.Definitions(
    assets=[*reference_assets, weather, *daily_assets, *billing_assets, load_forecast],
    jobs=[daily_readings_job, reference_job, bills_job, issue_bills_job, load_forecast_job, lake_vacuum_job],
    schedules=[issue_bills_schedule, load_forecast_schedule, lake_vacuum_schedule],
    sensors=[raw_arrivals_sensor, rebuilt_day_bills_sensor],
    resources=resources(),
)
