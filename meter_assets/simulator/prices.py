"""The day-ahead market's price for each settlement period, as a dynamic tariff reads it.

A published series like the GB day-ahead auction's half-hourly results (in GBP per MWh): a
night trough, a morning shoulder and an evening peak on working days, flatter weekends, dearer
in winter and on cold days, cheaper when it is windy, and in the middle of sunny days from
spring to autumn (solar), where windy, sunny weekends go below zero; on a few cold, still
evenings scarcity sends the peak to several times its usual height. One price per settlement
period of the local day (46, 48 or 50), published at 16:00 local time the day before.
Deterministic for a seed and day, like the rest of the simulator.

Like any reference export, the series is sometimes corrected after it was published: a few
consecutive periods of a day get another price in an export sent days later (the whole
series again, as a retailer's export tools send it), held with the late files until it lands.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import numpy as np
import pyarrow as pa

from meter_assets.config import settings
from meter_assets.market_calendar import settlement_period_starts
from meter_assets.simulator.retailer import weekend_likeness

CURRENCY = "GBP"
PRICES_KEY = "reference/day_ahead_prices.csv"
CORRECTIONS_KEY = "simulator/faults/day_ahead_prices.parquet"
PUBLISHED_AT_LOCAL = dt.time(16, 0)
# a day-ahead auction clears between these (GBP per MWh)
FLOOR_PER_MWH, CEILING_PER_MWH = -500.0, 4000.0


def _bump(hours: np.ndarray, centre: float, width: float) -> np.ndarray:
    distance = (hours - centre + 12) % 24 - 12
    return np.exp(-0.5 * (distance / width) ** 2)


def _daily_temperatures(temperature: pa.Table, tz) -> dict[dt.date, float]:
    """The mean over regions and hours of each local day's observed temperature."""
    observed = temperature.column("observed_at").to_numpy().astype("datetime64[h]")
    values = temperature.column("temperature_c").to_numpy()
    hours, index = np.unique(observed, return_inverse=True)
    mean_by_hour = np.bincount(index, values) / np.bincount(index)
    by_day: dict[dt.date, list[float]] = {}
    for hour, value in zip(hours.astype(dt.datetime).tolist(), mean_by_hour.tolist(), strict=True):
        day = hour.replace(tzinfo=dt.UTC).astimezone(tz).date()
        by_day.setdefault(day, []).append(value)
    return {day: sum(v) / len(v) for day, v in by_day.items()}


def sunshine(seed: int, day: dt.date) -> float:
    """How clear the day's sky is, 0 to 1: the draw the day's prices are made with (their
    second), so that sunny middays are cheap on the days panels make the most."""
    rng = np.random.default_rng([seed, 9, day.toordinal()])
    rng.beta(2, 3)  # the wind
    return float(rng.beta(2, 2))


def day_ahead_prices(start: dt.date, days: int, temperature: pa.Table, seed: int) -> pa.Table:
    """Every settlement period's price of `days` local days from `start`."""
    tz = settings().tz
    country = settings().market_country
    temperatures = _daily_temperatures(temperature, tz)
    columns: dict[str, list] = {
        "settlement_date": [],
        "settlement_period": [],
        "period_start": [],
        "price_per_mwh": [],
        "currency": [],
        "published_at": [],
    }
    for d in range(days):
        day = start + dt.timedelta(days=d)
        starts = settlement_period_starts(day, str(tz))
        local = [s.replace(tzinfo=dt.UTC).astimezone(tz) for s in starts]
        hours = np.array([t.hour + t.minute / 60 for t in local])
        rng = np.random.default_rng([seed, 9, day.toordinal()])
        winter = math.cos(2 * math.pi * (day.timetuple().tm_yday - 15) / 365.25)  # 1 in January, -1 in July
        sun_season = (1 - winter) / 2
        weekend = weekend_likeness(day, country)
        wind = rng.beta(2, 3)
        sun = rng.beta(2, 2) * sun_season
        temp = temperatures.get(day, 10.0)

        level = 80 + 18 * winter + 2.5 * max(0.0, 12 - temp) - 35 * wind - 10 * weekend
        shape = (
            -22 * _bump(hours, 4.5, 2.0)
            + 18 * (1 - 0.6 * weekend) * _bump(hours, 8.0, 1.3)
            + 55 * (1 - 0.3 * weekend) * _bump(hours, 18.0, 1.5)
        )
        solar = -(10 + 70 * sun**2) * sun_season * _bump(hours, 13.0, 2.5)
        if temp < 5 and wind < 0.25 and rng.random() < 0.5:  # a cold, still evening: scarcity
            shape += rng.uniform(150, 700) * _bump(hours, 18.0, 1.0)
        noise = np.zeros(len(hours))
        shocks = rng.normal(0, 4.0, len(hours))
        for i in range(len(hours)):
            noise[i] = 0.6 * (noise[i - 1] if i else 0.0) + shocks[i]
        price = np.clip(level + shape + solar + noise, FLOOR_PER_MWH, CEILING_PER_MWH)

        published = dt.datetime.combine(day - dt.timedelta(days=1), PUBLISHED_AT_LOCAL, tzinfo=tz)
        columns["settlement_date"] += [day] * len(starts)
        columns["settlement_period"] += list(range(1, len(starts) + 1))
        columns["period_start"] += starts
        columns["price_per_mwh"] += [Decimal(f"{p:.2f}") for p in price.tolist()]
        columns["currency"] += [CURRENCY] * len(starts)
        columns["published_at"] += [published.astimezone(dt.UTC).replace(tzinfo=None)] * len(starts)
    return pa.table(
        {
            "settlement_date": pa.array(columns["settlement_date"], pa.date32()),
            "settlement_period": pa.array(columns["settlement_period"], pa.int16()),
            "period_start": pa.array(columns["period_start"], pa.timestamp("s")),
            "price_per_mwh": pa.array(columns["price_per_mwh"], pa.decimal128(10, 2)),
            "currency": pa.array(columns["currency"], pa.string()),
            "published_at": pa.array(columns["published_at"], pa.timestamp("s")),
        }
    )


def price_corrections(prices: pa.Table, share: float, seed: int) -> pa.Table:
    """The corrections a share of the series' days get: 1 to 4 consecutive periods of the day
    repriced (by 0.8 to 1.2 times, and 1 to 15 away), in an export that lands 2 to 5 days after
    the day; as rows (settlement_date, settlement_period, price_per_mwh as first published,
    corrected_per_mwh, arrival)."""
    rng = np.random.default_rng([seed, 10])
    rows = prices.to_pylist()
    by_day: dict[dt.date, list[dict]] = {}
    for row in rows:
        by_day.setdefault(row["settlement_date"], []).append(row)
    out: dict[str, list] = {
        "settlement_date": [],
        "settlement_period": [],
        "price_per_mwh": [],
        "corrected_per_mwh": [],
        "arrival": [],
    }
    for day in sorted(by_day):
        if rng.random() >= share:
            continue
        periods = by_day[day]
        count = int(rng.integers(1, 5))
        first = int(rng.integers(0, len(periods) - count + 1))
        arrival = day + dt.timedelta(days=int(rng.integers(2, 6)))
        for row in periods[first : first + count]:
            moved = float(row["price_per_mwh"]) * rng.uniform(0.8, 1.2) + rng.choice([-1, 1]) * rng.uniform(1, 15)
            out["settlement_date"].append(day)
            out["settlement_period"].append(row["settlement_period"])
            out["price_per_mwh"].append(row["price_per_mwh"])
            out["corrected_per_mwh"].append(Decimal(f"{moved:.2f}"))
            out["arrival"].append(arrival)
    return pa.table(
        {
            "settlement_date": pa.array(out["settlement_date"], pa.date32()),
            "settlement_period": pa.array(out["settlement_period"], pa.int16()),
            "price_per_mwh": pa.array(out["price_per_mwh"], pa.decimal128(10, 2)),
            "corrected_per_mwh": pa.array(out["corrected_per_mwh"], pa.decimal128(10, 2)),
            "arrival": pa.array(out["arrival"], pa.date32()),
        }
    )


def corrected_versions(prices: pa.Table, corrections: pa.Table) -> list[tuple[dt.date, pa.Table]]:
    """Each export the corrections make, by the day it lands: the series with every correction
    that has landed by then (so the last one holds them all)."""
    versions = []
    arrivals = sorted(set(corrections.column("arrival").to_pylist()))
    for arrival in arrivals:
        landed = {
            (c["settlement_date"], c["settlement_period"]): c["corrected_per_mwh"]
            for c in corrections.to_pylist()
            if c["arrival"] <= arrival
        }
        price = [
            landed.get((d, p), v)
            for d, p, v in zip(
                prices.column("settlement_date").to_pylist(),
                prices.column("settlement_period").to_pylist(),
                prices.column("price_per_mwh").to_pylist(),
                strict=True,
            )
        ]
        versions.append((arrival, prices.set_column(3, "price_per_mwh", pa.array(price, pa.decimal128(10, 2)))))
    return versions


# Homes on the dynamic plan move part of their use (a dishwasher, a washing machine, a car's
# charge) toward the day's cheap periods, as the customers of real dynamic tariffs do: this
# share of each day's use is spread over the day in proportion to exp(-(price - the day's
# mean) / SHIFT_SCALE_PER_MWH); the day's kWh stay the same.
SHIFTED_SHARE = 0.15
SHIFT_SCALE_PER_MWH = 30.0


class DynamicHomes:
    """Which meters' holders are on a plan on each day, and the load they shift toward cheap periods."""

    def __init__(self, meter_ids: np.ndarray, occupancy, plan: str, prices: pa.Table):
        index = np.searchsorted(meter_ids, occupancy.meter_id)
        # each stretch of days a premise's occupant was on the plan (a change of plan ends one)
        periods = [
            (index[row], first.toordinal(), (end or dt.date.max).toordinal())
            for row in range(len(occupancy.meter_id))
            for on, first, end in occupancy.plan_periods(row)
            if on == plan
        ]
        self.meters = np.array([m for m, _, _ in periods], dtype=np.int64)
        self.first = np.array([f for _, f, _ in periods], dtype=np.int64)
        self.end = np.array([e for _, _, e in periods], dtype=np.int64)
        self.size = len(meter_ids)
        starts = prices.column("period_start").to_numpy().astype("datetime64[s]").astype(np.int64)
        self.price_of = dict(zip(starts.tolist(), prices.column("price_per_mwh").to_numpy().astype(float), strict=True))

    def held(self, day: dt.date) -> np.ndarray:
        """A mask over the meters: those whose holder is on the plan on `day`."""
        mask = np.zeros(self.size, dtype=bool)
        ordinal = day.toordinal()
        mask[self.meters[(self.first <= ordinal) & (ordinal < self.end)]] = True
        return mask

    def shift(self, day: dt.date, load: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """`load` (meters, intervals; kWh) with the plan's homes' shifted share respread toward
        the day's cheap periods (unchanged where the day has no prices)."""
        seconds = starts.astype(np.int64)
        price = np.array([self.price_of.get(int(s - s % 1800), np.nan) for s in seconds])
        rows = np.flatnonzero(self.held(day))
        if not rows.size or np.isnan(price).any():
            return load
        weight = np.exp(-(price - price.mean()) / SHIFT_SCALE_PER_MWH)
        weight /= weight.sum()
        total = load[rows].sum(axis=1, keepdims=True)
        load[rows] = (1 - SHIFTED_SHARE) * load[rows] + SHIFTED_SHARE * total * weight[None, :]
        return load
