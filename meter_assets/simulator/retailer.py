"""The simulated retailer: regions, meters, customers, tenancies, tariffs, weather, load.

Everything is deterministic for a seed: the static population comes from the seed alone,
each day's randomness from the seed and the day, so any day can be generated on its own.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from meter_assets.config import settings
from meter_assets.market_calendar import local_day_bounds

FIRST_METER_ID = 1_000_001
FIRST_CUSTOMER_ID = 5_000_001
METERS_PER_GROUP = 10_000

# name, mean annual temperature (C), seasonal amplitude (C)
REGIONS = (
    ("London", 11.8, 7.0),
    ("South East", 11.0, 6.8),
    ("South West", 11.2, 5.8),
    ("Midlands", 10.2, 6.6),
    ("North West", 9.9, 6.2),
    ("North East", 9.4, 6.4),
    ("Scotland", 8.6, 5.9),
)


@dataclass(frozen=True)
class Population:
    """The static facts about every meter, as numpy arrays indexed by meter position."""

    meter_id: np.ndarray  # int32
    region: np.ndarray  # int8, index into REGIONS
    group: np.ndarray  # int16, collection group
    annual_kwh: np.ndarray  # float32
    profile: np.ndarray  # int8, 0 = out at work, 1 = home in the day
    shift: np.ndarray  # int8, personal timing in quarter hours, -3..3
    heating: np.ndarray  # bool, electric space heating
    ev: np.ndarray  # bool, charges an electric vehicle at home
    nem12: np.ndarray  # bool, read by the meter data agent that sends NEM12

    @property
    def size(self) -> int:
        return len(self.meter_id)

    @functools.cached_property
    def ids(self) -> np.ndarray:
        """Each meter's id as the platform knows it: the head-end's number, or a NEM12 meter's
        `<NMI>-E1`."""
        return np.where(self.nem12, nem12_meter_ids(self.meter_id), self.meter_id.astype(str)).astype(object)

    @functools.cached_property
    def id_array(self) -> pa.Array:
        return pa.array(self.ids, pa.string())

    @property
    def vendors(self) -> list[str]:
        return ["nem12" if n else vendor_of_group(int(g)) for g, n in zip(self.group, self.nem12, strict=True)]

    @property
    def groups(self) -> int:
        return int(self.group.max()) + 1


def group_count(meters: int) -> int:
    """About 10,000 meters a collection group, and never fewer than four groups."""
    return max(4, math.ceil(meters / METERS_PER_GROUP))


def vendor_of_group(group: int) -> str:
    """One head-end in four is the second vendor's."""
    return "beta" if group % 4 == 3 else "alpha"


def nem12_group(group: np.ndarray) -> np.ndarray:
    """With a meter data agent, the groups it reads instead of the first vendor: one in four."""
    return group % 4 == 2


def nmi_of(meter_numbers: np.ndarray) -> np.ndarray:
    """A 10-character NMI for each simulated meter number: `Q` and nine digits."""
    return np.char.add("Q", np.char.zfill(np.asarray(meter_numbers).astype(str), 9))


def nem12_meter_ids(meter_numbers: np.ndarray, suffix: str = "E1") -> np.ndarray:
    return np.char.add(nmi_of(meter_numbers), f"-{suffix}")


def population(meters: int, seed: int, nem12: bool = False, regions: int = len(REGIONS)) -> Population:
    """`meters` meters spread over the first `regions` of REGIONS (all of them by default)."""
    if not 1 <= regions <= len(REGIONS):
        raise ValueError(f"regions must be 1 to {len(REGIONS)}, not {regions}")
    rng = np.random.default_rng([seed, 1])
    groups = group_count(meters)
    annual = np.clip(rng.lognormal(math.log(2700), 0.35, meters), 900, 8000)
    heating = rng.random(meters) < 0.08
    groups_of = (np.arange(meters) * groups // meters).astype(np.int16)
    ev = rng.random(meters) < 0.10
    return Population(
        meter_id=np.arange(FIRST_METER_ID, FIRST_METER_ID + meters, dtype=np.int32),
        region=rng.integers(0, regions, meters).astype(np.int8),
        group=groups_of,
        annual_kwh=annual.astype(np.float32),
        profile=(rng.random(meters) < 0.35).astype(np.int8),
        shift=rng.integers(-3, 4, meters).astype(np.int8),
        heating=heating,
        ev=ev,
        nem12=nem12_group(groups_of) & nem12,
    )


# --- weather --------------------------------------------------------------------------
def hourly_temperature(start: dt.date, days: int, seed: int) -> pa.Table:
    """Hourly temperature per region: season, a daily cycle and persistent weather."""
    first = dt.datetime.combine(start, dt.time()) - dt.timedelta(days=1)
    hours = (days + 2) * 24
    utc = np.array([first + dt.timedelta(hours=h) for h in range(hours)], dtype="datetime64[s]")
    day_of_year = (utc - utc.astype("datetime64[Y]")).astype("timedelta64[h]").astype(float) / 24
    hour = (utc - utc.astype("datetime64[D]")).astype("timedelta64[h]").astype(float)
    rng = np.random.default_rng([seed, 2, start.toordinal()])
    weather = np.cumsum(rng.normal(0, 0.35, hours))
    weather -= np.convolve(weather, np.ones(72) / 72, mode="same")  # persistent, mean-reverting
    columns: dict[str, list] = {"region": [], "observed_at": [], "temperature_c": []}
    for r, (name, mean, amplitude) in enumerate(REGIONS):
        season = mean - amplitude * np.cos(2 * np.pi * (day_of_year - 20) / 365.25)
        daily = 3.5 * np.sin(2 * np.pi * (hour - 9) / 24)
        temp = season + daily + weather * (0.8 + 0.05 * r) + rng.normal(0, 0.3, hours)
        columns["region"].extend([name] * hours)
        columns["observed_at"].extend(utc.astype(dt.datetime))
        columns["temperature_c"].extend(np.round(temp, 1))
    return pa.table(
        {
            "region": pa.array(columns["region"], pa.string()),
            "observed_at": pa.array(columns["observed_at"], pa.timestamp("s")),
            "temperature_c": pa.array(columns["temperature_c"], pa.float64()),
        }
    )


def temperature_forecasts(temperature: pa.Table, seed: int) -> pa.Table:
    """Day-ahead forecasts of the hourly temperatures: issued at 09:00 UTC the day before, off by
    a bias that persists through the day and a little hourly noise."""
    valid = temperature.column("observed_at").to_numpy().astype("datetime64[s]")
    regions = temperature.column("region").to_numpy(zero_copy_only=False)
    days = valid.astype("datetime64[D]")
    issued = (days - np.timedelta64(1, "D")).astype("datetime64[s]") + np.timedelta64(9, "h")
    rng = np.random.default_rng([seed, 8])
    day_index = (days - days.min()).astype(np.int64)
    region_index = np.unique(regions, return_inverse=True)[1]
    bias = rng.normal(0, 0.7, (region_index.max() + 1, day_index.max() + 1))[region_index, day_index]
    values = temperature.column("temperature_c").to_numpy() + bias + rng.normal(0, 0.4, len(valid))
    return pa.table(
        {
            "region": pa.array(regions, pa.string()),
            "issued_at": pa.array(issued, pa.timestamp("s")),
            "valid_at": pa.array(valid, pa.timestamp("s")),
            "temperature_c": pa.array(np.round(values, 1), pa.float64()),
        }
    )


# --- load -----------------------------------------------------------------------------
def _bumps(minute: np.ndarray, bumps: tuple[tuple[float, float, float], ...]) -> np.ndarray:
    """A sum of daily bumps (centre hour, width hours, height) over minutes of the day."""
    hours = minute / 60.0
    shape = np.full_like(hours, 0.35)
    for centre, width, height in bumps:
        distance = (hours - centre + 12) % 24 - 12
        shape += height * np.exp(-0.5 * (distance / width) ** 2)
    return shape


# out at work / home in the day, on weekdays and at weekends
PROFILE_BUMPS = {
    (0, False): ((7.3, 0.8, 0.9), (13.0, 2.5, 0.15), (18.7, 1.6, 1.5), (21.5, 1.2, 0.6)),
    (1, False): ((8.0, 1.2, 0.7), (12.8, 2.0, 0.55), (18.3, 1.7, 1.2), (21.5, 1.3, 0.5)),
    (0, True): ((9.3, 1.2, 0.9), (13.2, 2.2, 0.6), (18.3, 1.7, 1.3), (21.5, 1.3, 0.5)),
    (1, True): ((9.0, 1.3, 0.8), (13.0, 2.2, 0.7), (18.0, 1.8, 1.2), (21.5, 1.3, 0.5)),
}


@functools.cache
def _public_holidays(country: str, year: int) -> frozenset[dt.date]:
    import holidays

    return frozenset(holidays.country_holidays(country, years=range(year - 1, year + 2)))


def weekend_likeness(day: dt.date, country: str) -> float:
    """How much a day's routine is a weekend's: 1 on Saturdays, Sundays and public holidays
    (people are home), a half on a working day next to a holiday (many take it off), else 0."""
    public = _public_holidays(country, day.year)
    if day.weekday() >= 5 or day in public:
        return 1.0
    if any(day + dt.timedelta(days=d) in public for d in (-1, 1)):
        return 0.5
    return 0.0


def interval_load_kwh(
    pop: Population,
    day: dt.date,
    tz,
    temperature: pa.Table,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """True kWh per meter and interval of a local day, and the UTC interval starts.

    Returns a (meters, intervals) float array and the interval starts as datetime64[s].
    """
    start, end = local_day_bounds(day)
    n = int((end - start) / dt.timedelta(minutes=15))
    starts = np.array([start + dt.timedelta(minutes=15 * i) for i in range(n)], dtype="datetime64[s]")
    local = [(start + dt.timedelta(minutes=15 * i)).replace(tzinfo=dt.UTC).astimezone(tz) for i in range(n)]
    minute = np.array([t.hour * 60 + t.minute for t in local], dtype=float)
    weekend = weekend_likeness(day, settings().market_country)
    rng = np.random.default_rng([seed, 3, day.toordinal()])

    # profile shapes for every personal shift, normalised to a daily mean of 1; a day next to
    # a holiday is halfway between a working day's and a weekend's
    shapes = np.zeros((2, 7, n))
    for profile in (0, 1):
        for s, shift in enumerate(range(-3, 4)):
            for is_weekend, share in ((False, 1 - weekend), (True, weekend)):
                if share:
                    shape = _bumps(minute - 15 * shift, PROFILE_BUMPS[(profile, is_weekend)])
                    shapes[profile, s] += share * shape / shape.mean()
    base = shapes[pop.profile, pop.shift + 3]  # (meters, n)

    doy = day.timetuple().tm_yday
    season = 1.0 + 0.22 * math.cos(2 * math.pi * (doy - 15) / 365.25)
    per_interval = (pop.annual_kwh / (365.0 * 96.0))[:, None] * season
    load = base * per_interval * rng.gamma(6.0, 1 / 6.0, base.shape)

    # temperature: cooling barely matters here, heating a lot for electrically heated homes
    temps = _interval_temperatures(temperature, starts)  # (regions, n)
    heating_degrees = np.clip(15.5 - temps, 0, None)[pop.region]  # (meters, n)
    load += 0.025 * heating_degrees * per_interval
    heated = np.flatnonzero(pop.heating)
    if heated.size:
        occupied = np.clip(base[heated], 0.6, None)
        load[heated] += 0.18 * heating_degrees[heated] * 0.25 * occupied / occupied.mean()

    # EV charging: about four nights a week, 7.2 kW for one to four hours from late evening
    drivers = np.flatnonzero(pop.ev & (rng.random(pop.size) < 0.55))
    if drivers.size:
        plug_in = rng.integers(22 * 4, 26 * 4, drivers.size)  # quarter hours from local midnight
        duration = rng.integers(4, 17, drivers.size)
        slot = ((minute // 15)[None, :] - plug_in[:, None]) % 96
        load[drivers] += np.where(slot < duration[:, None], 1.8, 0.0)

    return np.clip(load, 0.0, 5.5), starts


def _interval_temperatures(temperature: pa.Table, starts: np.ndarray) -> np.ndarray:
    regions = temperature.column("region").to_numpy(zero_copy_only=False)
    observed = temperature.column("observed_at").to_numpy().astype("datetime64[s]")
    values = temperature.column("temperature_c").to_numpy()
    hour_of = starts.astype("datetime64[h]").astype("datetime64[s]")
    out = np.empty((len(REGIONS), len(starts)))
    for r, (name, _, _) in enumerate(REGIONS):
        mask = regions == name
        lookup = dict(zip(observed[mask].tolist(), values[mask].tolist(), strict=True))
        out[r] = [lookup[h] for h in hour_of.tolist()]
    return out
