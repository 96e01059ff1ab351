"""The forecast tests' retailer: 120 days of a 1,000-meter portfolio's load and weather in two
regions, and the published forecast of the whole portfolio."""

import datetime as dt

import dagster as dg
import pyarrow.parquet as pq

from meter_assets.forecast.assets import weather
from meter_assets.reference.assets import reference_assets
from meter_assets.simulator.portfolio import write_portfolio_history
from meter_assets.storage import Lake
from meter_assets.tables import FORECAST

from .conftest import resources_for

START = dt.date(2024, 1, 1)
DAYS = 120
METERS = 1000
# A retailer in two regions: the regions' forecasts and their sum against the portfolio's own
# are exercised as with seven, and each region is a training and a backtest of its own (the
# full-scale benchmark forecasts all seven).
REGIONS = 2
# days of actual load after the history that forecasts are judged against: a forecast made on
# D reads the portfolio's load up to D - 1 only, so D + 1 is held back from it
HELD_BACK = 7


def write_history(tmp_path_factory) -> str:
    """120 days of a 1,000-meter portfolio's load and weather in two regions, straight from the
    load model, and the week after them as the actuals held back from the forecasts."""
    root = str(tmp_path_factory.mktemp("forecast") / "lake")
    write_portfolio_history(
        Lake(root), METERS, START, DAYS + 1 + HELD_BACK, seed=3, log=lambda *_: None, regions=REGIONS
    )
    dg.materialize([*reference_assets, weather], resources=resources_for(root))
    return root


def portfolio_forecast(root: str, day: dt.date) -> list[dict]:
    """The published forecast of the whole portfolio (the regions' rows beside it left out)."""
    rows = pq.read_table(Lake(root).files(FORECAST, day.isoformat())[0]).to_pylist()
    return [r for r in rows if r["series"] == "portfolio"]
