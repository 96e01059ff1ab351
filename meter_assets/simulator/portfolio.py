"""A long portfolio-load history straight from the load model, for forecasting tests and benchmarks.

Months or years of readings through head-end files would take hours to simulate and curate;
the forecast only needs each region's total per quarter hour (`portfolio_load`) and the
weather, so this writes those partitions (and the reference exports) directly. With
`scale`, `meters` simulated meters stand for `meters * scale` (the load is multiplied).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import write_deltalake

from meter_assets.config import settings
from meter_assets.simulator.reference import write_reference
from meter_assets.simulator.retailer import REGIONS, hourly_temperature, interval_load_kwh, population
from meter_assets.storage import Lake
from meter_assets.tables import PORTFOLIO_LOAD


def write_portfolio_history(
    lake: Lake,
    meters: int,
    start: dt.date,
    days: int,
    seed: int,
    scale: int = 1,
    log=print,
    regions: int = len(REGIONS),
) -> int:
    """Reference exports (with the weather) and `portfolio_load` for `days` days from `start`,
    of a retailer supplying the first `regions` of the simulator's regions."""
    pop = population(meters, seed, regions=regions)
    temperature = hourly_temperature(start, days, seed)
    write_reference(lake, pop, start, days, seed, temperature)
    tz = settings().tz
    history = []
    regions = [name for name, *_ in REGIONS]
    meters_in = np.bincount(pop.region, minlength=len(regions))
    for d in range(days):
        day = start + dt.timedelta(days=d)
        load, starts = interval_load_kwh(pop, day, tz, temperature, seed)
        # kWh per region and interval (regions x intervals), as the rollup sums readings
        by_region = np.zeros((len(regions), len(starts)))
        np.add.at(by_region, pop.region, load)
        kwh = np.round(by_region * scale, 3)
        table = pa.table(
            {
                "interval_start": pa.array(np.tile(starts, len(regions)).astype("datetime64[us]")),
                "region": pa.array(np.repeat(regions, len(starts))),
                "kwh": pa.array([f"{v:.3f}" for v in kwh.ravel()]).cast(pa.decimal128(18, 3)),
                "meters": pa.array(np.repeat(meters_in * scale, len(starts)), pa.int32()),
                "missing": pa.array(np.zeros(len(regions) * len(starts)), pa.int32()),
                "date": pa.array([day] * (len(regions) * len(starts)), pa.date32()),
            }
        )
        history.append(table.filter(pc.greater(table.column("meters"), 0)))
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
