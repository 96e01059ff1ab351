"""The billing domain's definitions: bills, their issue, and the sensor that carries late data into them."""

import dagster as dg

from meter_assets.billing import assets, jobs, schedules, sensors


def defs() -> dg.Definitions:
    """Made when the code location loads: the settings are read then, not at import."""
    return dg.Definitions(
        assets=assets.build(),
        jobs=[jobs.bills_job, jobs.issue_bills_job],
        schedules=schedules.build(),
        sensors=sensors.build(),
    )
