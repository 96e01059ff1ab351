"""The forecast domain's definitions: weather, the portfolio's load, the day-ahead forecast and its bid."""

import dagster as dg

from meter_assets.forecast import assets


def defs() -> dg.Definitions:
    """Made when the code location loads: the settings are read then, not at import."""
    return dg.Definitions(
        assets=[assets.weather, *assets.build()],
        jobs=[assets.load_forecast_job],
        schedules=assets.build_schedules(),
    )
