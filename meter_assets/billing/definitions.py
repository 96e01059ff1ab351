"""The billing domain's definitions: bills, their issue, and the sensor that carries late data into them."""

import dagster as dg

from meter_assets.billing.assets import billing_assets
from meter_assets.billing.jobs import bills_job, issue_bills_job
from meter_assets.billing.schedules import issue_bills_schedule
from meter_assets.billing.sensors import rebuilt_day_bills_sensor

defs = dg.Definitions(
    assets=billing_assets,
    jobs=[bills_job, issue_bills_job],
    schedules=[issue_bills_schedule],
    sensors=[rebuilt_day_bills_sensor],
)
