"""The serving domain's definitions: the usage page's table in PostgreSQL, and the sensor that
prices its days (and their bills) again when the market's prices are corrected."""

import dagster as dg

from meter_assets.serving import assets, jobs, sensors


def defs() -> dg.Definitions:
    """Made when the code location loads: the settings are read then, not at import."""
    return dg.Definitions(assets=assets.build(), jobs=[jobs.usage_serving_job], sensors=sensors.build())
