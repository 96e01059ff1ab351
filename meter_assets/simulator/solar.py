"""Rooftop solar on the simulated homes: what each panel makes per quarter hour, what the home
uses of it, and what it sends to the grid.

A fifth of the homes have panels (2 to 6 kWp, facing anywhere from south-east to south-west).
A panel makes power with the sun's height (the day of the year and the time of day, at a
latitude of the simulated regions), its orientation, and the sky: the day's sunshine, the same
draw that makes the market's prices fall at sunny middays (prices.sunshine), varied by region,
with passing clouds. The home uses its own generation first; the import register reads what
the home needs beyond it, the export register what is left over.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np

from meter_assets.simulator.prices import sunshine
from meter_assets.simulator.retailer import REGIONS, Population

PV_SHARE = 0.20
LATITUDE_DEG, LONGITUDE_DEG = 52.5, -1.5
# the share of a panel's rating it gives in full, high sun (inverter and temperature losses)
PERFORMANCE_RATIO = 0.85


class SolarHomes:
    """The homes with panels (positions in the population), their rating and orientation."""

    def __init__(self, pop: Population, seed: int, share: float = PV_SHARE):
        rng = np.random.default_rng([seed, 12])
        chosen = rng.random(pop.size) < share
        self.rows = np.flatnonzero(chosen)
        self.kwp = np.round(rng.uniform(2.0, 6.0, pop.size)[self.rows] * 4) / 4
        self.azimuth = np.radians(rng.uniform(-45.0, 45.0, pop.size)[self.rows])  # from south, east negative
        self.region = pop.region[self.rows]
        self.seed = seed
        self.position = np.full(pop.size, -1, dtype=np.int64)  # each meter's row here, or -1
        self.position[self.rows] = np.arange(self.rows.size)

    def __len__(self) -> int:
        return int(self.rows.size)

    def generation(self, day: dt.date, starts: np.ndarray) -> np.ndarray:
        """kWh each panel makes in each quarter hour starting at `starts` (UTC datetime64[s])."""
        middle = starts.astype("datetime64[s]") + np.timedelta64(450, "s")
        utc_hours = (middle - middle.astype("datetime64[D]")).astype(np.int64) / 3600.0
        day_of_year = day.timetuple().tm_yday
        declination = math.radians(23.44) * math.sin(2 * math.pi * (284 + day_of_year) / 365.0)
        latitude = math.radians(LATITUDE_DEG)
        hour_angle = np.radians(15.0 * (utc_hours + LONGITUDE_DEG / 15.0 - 12.0))
        sin_height = math.sin(latitude) * math.sin(declination) + math.cos(latitude) * math.cos(declination) * np.cos(
            hour_angle
        )
        sun_height = np.clip(sin_height, 0.0, None)
        # a panel turned toward the sun's side of the sky gets more of it
        facing = 0.8 + 0.2 * np.cos(hour_angle[None, :] - self.azimuth[:, None])
        rng = np.random.default_rng([self.seed, 13, day.toordinal()])
        sky = np.clip(sunshine(self.seed, day) + rng.normal(0, 0.15, len(REGIONS)), 0.0, 1.0)
        clouds = rng.beta(2, 2, (len(REGIONS), len(starts))) * (1 - sky)[:, None]
        clearness = 1.0 - 0.85 * clouds  # (regions, n)
        kw = self.kwp[:, None] * PERFORMANCE_RATIO * sun_height[None, :] * facing * clearness[self.region]
        return kw * 0.25

    def net(self, day: dt.date, load: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The import each home's meter reads (its load less the generation it uses itself) and
        the export of each home with panels (rows as `self.rows`), both kWh per quarter hour."""
        made = self.generation(day, starts)
        used = load[self.rows]
        load = load.copy()
        load[self.rows] = np.clip(used - made, 0.0, None)
        return load, np.clip(made - used, 0.0, None)
