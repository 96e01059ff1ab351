"""The forecast domain's definitions: weather, the portfolio's load, the day-ahead forecast and its bid."""

import dagster as dg

from meter_assets.forecast.assets import (
    load_forecast,
    load_forecast_job,
    load_forecast_schedule,
    portfolio_load,
    weather,
)

defs = dg.Definitions(
    assets=[weather, portfolio_load, load_forecast], jobs=[load_forecast_job], schedules=[load_forecast_schedule]
)
