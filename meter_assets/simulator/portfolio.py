"""A long portfolio-load history straight from the load model, for forecasting tests and benchmarks.

Months or years of readings through head-end files would take hours to simulate and curate;
the forecast only needs the portfolio's total per quarter hour (`portfolio_load`) and the
weather, so this writes those partitions (and the reference exports) directly. With
`scale`, `meters` simulated meters stand for `meters * scale` (the load is multiplied).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
from deltalake import write_deltalake

from meter_assets.config import settings
from meter_assets.simulator.reference import write_reference
from meter_assets.simulator.retailer import hourly_temperature, interval_load_kwh, population
from meter_assets.storage import Lake
from meter_assets.tables import PORTFOLIO_LOAD


def write_portfolio_history(
    lake: Lake, meters: int, start: dt.date, days: int, seed: int, scale: int = 1, log=print
) -> int:
    """Reference exports (with the weather) and `portfolio_load` for `days` days from `start`."""
    pop = population(meters, seed)
    temperature = hourly_temperature(start, days, seed)
    write_reference(lake, pop, start, days, seed, temperature)
    tz = settings().tz
    history = []
    for d in range(days):
        day = start + dt.timedelta(days=d)
        load, starts = interval_load_kwh(pop, day, tz, temperature, seed)
        kwh = np.round(load.sum(axis=0) * scale, 3)
        table = pa.table(
            {
                "interval_start": pa.array(starts.astype("datetime64[us]")),
                "kwh": pa.array([f"{v:.3f}" for v in kwh]).cast(pa.decimal128(18, 3)),
                "meters": pa.array(np.full(len(starts), meters * scale), pa.int32()),
                "missing": pa.array(np.zeros(len(starts)), pa.int32()),
                "date": pa.array([day] * len(starts), pa.date32()),
            }
        )
        history.append(table)
        if d % 30 == 29:
            log(f"{day}: portfolio load computed")
    # years of days in one Delta commit, written by deltalake itself, as any other writer could
    write_deltalake(
        lake.table_uri(PORTFOLIO_LOAD),
        pa.concat_tables(history),
        partition_by=["date"],
        mode="overwrite",
        storage_options=lake.storage_options(),
    )
    return days
