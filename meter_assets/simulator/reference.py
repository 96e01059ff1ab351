"""Reference exports of the simulated retailer, in the contract docs/contracts.md documents."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from meter_assets.simulator.prices import PRICES_KEY, day_ahead_prices
from meter_assets.simulator.retailer import (
    FIRST_CUSTOMER_ID,
    REGIONS,
    Population,
    temperature_forecasts,
)
from meter_assets.storage import Lake

# plan, band, local start, local end, unit rate before and after the mid-month change
TARIFF_BANDS = (
    ("FLEX", "all_day", "00:00", "24:00", "0.2450", "0.2486"),
    ("EV-TOU", "off_peak", "00:00", "05:00", "0.0750", "0.0850"),
    ("EV-TOU", "standard", "05:00", "16:00", "0.2650", "0.2750"),
    ("EV-TOU", "peak", "16:00", "19:00", "0.3850", "0.3950"),
    ("EV-TOU", "standard", "19:00", "24:00", "0.2650", "0.2750"),
)
# A plan that follows the day-ahead market, the way the GB dynamic tariffs do: each half
# hour's price per kWh is 2.2 times the market's, plus an adder in the evening peak, capped at
# 1.00 a kWh; negative market prices pass through. Plan, band, local start, local end, and the
# adder before and after the mid-month change.
DYNAMIC_BANDS = (
    ("DYNAMIC", "day", "00:00", "16:00", "0.0000", "0.0000"),
    ("DYNAMIC", "peak", "16:00", "19:00", "0.1200", "0.1300"),
    ("DYNAMIC", "day", "19:00", "24:00", "0.0000", "0.0000"),
)
DYNAMIC_MULTIPLIER, DYNAMIC_CAP = "2.2000", "1.0000"
# What each plan pays for a kWh a home sends to the grid: a flat rate, a time-of-use one that
# pays more in the evening peak, or the day-ahead price itself (no adder, no cap: a negative
# price makes exporting a charge). Plan, band, local start, local end, and the rate before and
# after the mid-month change (for the day-ahead export: the multiplier).
EXPORT_BANDS = (
    ("FLEX", "export", "00:00", "24:00", "0.1500", "0.1500"),
    ("EV-TOU", "export_day", "00:00", "16:00", "0.0800", "0.0900"),
    ("EV-TOU", "export_peak", "16:00", "19:00", "0.2400", "0.2500"),
    ("EV-TOU", "export_day", "19:00", "24:00", "0.0800", "0.0900"),
    ("DYNAMIC", "export", "00:00", "24:00", None, None),
)
DYNAMIC_EXPORT_MULTIPLIER = "1.0000"
# the share of homes not on the EV plan that choose the dynamic one
DYNAMIC_SHARE = 0.11
PLAN_NAMES = {"FLEX": "Flexible single rate", "EV-TOU": "EV time of use", "DYNAMIC": "Half-hourly day-ahead tracker"}
STANDING_CHARGE = {"FLEX": ("0.6050", "0.6097"), "EV-TOU": ("0.5500", "0.5800"), "DYNAMIC": ("0.4800", "0.4900")}
TARIFF_HISTORY_START = dt.date(2023, 10, 1)
# Share of customers on the single-rate or the dynamic plan who move to the other one during
# the simulated range (on a day drawn in it): their bills that month have both plans' lines.
PLAN_SWITCH_SHARE = 0.03
# Share of move-ins who are already customers, taking on a second premise (a let, a
# relative's home): from then on they hold two meters on one account.
SECOND_PREMISE_SHARE = 0.25


@dataclass(frozen=True)
class Tenancies:
    """Who occupied each premise when; `valid_to` is exclusive, None while current. `plan` is
    the plan each occupant started on; `switches` the customers who changed plan since: the
    day and the new plan."""

    meter_id: np.ndarray
    customer_id: np.ndarray
    valid_from: list[dt.date]
    valid_to: list[dt.date | None]
    plan: list[str]
    joined: list[dt.date]
    region: list[str]
    switches: dict[int, tuple[dt.date, str]] = field(default_factory=dict)

    def plan_periods(self, row: int) -> list[tuple[str, dt.date, dt.date | None]]:
        """The plans of one tenancy row's occupant while they held it: (plan, from, until)."""
        first, end = self.valid_from[row], self.valid_to[row]
        switch = self.switches.get(int(self.customer_id[row]))
        if switch is None or (end is not None and switch[0] >= end) or switch[0] <= first:
            return [(switch[1] if switch and switch[0] <= first else self.plan[row], first, end)]
        return [(self.plan[row], first, switch[0]), (switch[1], switch[0], end)]


def price_change_date(start: dt.date, days: int) -> dt.date:
    """The 15th of the month, on or before the middle of the simulated range."""
    middle = start + dt.timedelta(days=days // 2)
    if middle.day >= 15:
        return middle.replace(day=15)
    return (middle.replace(day=1) - dt.timedelta(days=1)).replace(day=15)


def tenancies(pop: Population, start: dt.date, days: int, seed: int) -> Tenancies:
    """One occupant per premise at the start; some move out, and after a void a new one moves in.

    Some of those who move in are customers already (the first occupant of another premise),
    so they hold two meters on one account from the day they move in.
    """
    rng = np.random.default_rng([seed, 5])
    m = pop.size
    first_joined = [start - dt.timedelta(days=int(d)) for d in rng.integers(60, 3000, m)]
    ev_plan = pop.ev & (rng.random(m) < 0.7)
    moves = rng.random(m) < min(0.9, 0.03 * days / 30)
    move_day = rng.integers(1, max(2, days), m)
    void_days = rng.integers(0, 8, m)

    # drawn from streams of their own, so every other draw is as it was before they existed
    dynamic = np.random.default_rng([seed, 11]).random((2, m)) < DYNAMIC_SHARE
    second = np.random.default_rng([seed, 10])
    second_premise = second.random(m) < SECOND_PREMISE_SHARE
    other = second.integers(0, max(1, m - 1), m)
    first_row, incoming_row = [], {}

    meter_id, customer_id, valid_from, valid_to, plan, joined, region = [], [], [], [], [], [], []
    next_customer = FIRST_CUSTOMER_ID
    for i in range(m):
        first_row.append(len(customer_id))
        region_name = REGIONS[pop.region[i]][0]
        out = start + dt.timedelta(days=int(move_day[i])) if moves[i] else None
        meter_id.append(int(pop.meter_id[i]))
        customer_id.append(next_customer)
        valid_from.append(first_joined[i])
        valid_to.append(out)
        plan.append("EV-TOU" if ev_plan[i] else "DYNAMIC" if dynamic[0, i] else "FLEX")
        joined.append(first_joined[i])
        region.append(region_name)
        next_customer += 1
        if out is not None:
            move_in = out + dt.timedelta(days=int(void_days[i]))
            incoming_row[i] = len(customer_id)
            meter_id.append(int(pop.meter_id[i]))
            customer_id.append(next_customer)
            valid_from.append(move_in)
            valid_to.append(None)
            plan.append("EV-TOU" if pop.ev[i] and rng.random() < 0.5 else "DYNAMIC" if dynamic[1, i] else "FLEX")
            joined.append(move_in)
            region.append(region_name)
            next_customer += 1
    for i, row in incoming_row.items():
        if second_premise[i] and m > 1:
            holder = first_row[int(other[i]) + (int(other[i]) >= i)]
            customer_id[row], plan[row], joined[row], region[row] = (
                customer_id[holder],
                plan[holder],
                joined[holder],
                region[holder],
            )
    # a few customers change plan, from a stream of its own
    switching = np.random.default_rng([seed, 15])
    switches = {}
    for c, p, first in sorted({(c, p, j) for c, p, j in zip(customer_id, plan, joined, strict=True)}):
        chance, day = switching.random(), int(switching.integers(1, max(2, days)))
        on = start + dt.timedelta(days=day)
        if chance < PLAN_SWITCH_SHARE and p in ("FLEX", "DYNAMIC") and first < on and c not in switches:
            switches[c] = (on, "DYNAMIC" if p == "FLEX" else "FLEX")
    return Tenancies(
        meter_id=np.array(meter_id, dtype=np.int32),
        customer_id=np.array(customer_id, dtype=np.int32),
        valid_from=valid_from,
        valid_to=valid_to,
        plan=plan,
        joined=joined,
        region=region,
        switches=switches,
    )


def tariffs(start: dt.date, days: int) -> pa.Table:
    """Type-2 tariff history (contract version 2): every plan's bands, with a mid-month price change."""
    change = price_change_date(start, days)
    rows: list[dict] = []
    for version, (valid_from, valid_to) in enumerate(((TARIFF_HISTORY_START, change), (change, None))):
        fixed = [(plan, band, a, b, rates[version], None, None, None) for plan, band, a, b, *rates in TARIFF_BANDS]
        day_ahead = [
            (plan, band, a, b, None, DYNAMIC_MULTIPLIER, adders[version], DYNAMIC_CAP)
            for plan, band, a, b, *adders in DYNAMIC_BANDS
        ]
        export = [
            (plan, band, a, b, rates[version], None if rates[version] else DYNAMIC_EXPORT_MULTIPLIER, None, None)
            for plan, band, a, b, *rates in EXPORT_BANDS
        ]
        for plan, band, band_start, band_end, rate, multiplier, adder, cap in fixed + day_ahead + export:
            direction = "export" if (plan, band, band_start) in {e[:3] for e in EXPORT_BANDS} else "import"
            rows.append(
                {
                    "tariff_id": len(rows) + 1,
                    "plan_id": plan,
                    "plan_name": PLAN_NAMES[plan],
                    "direction": direction,
                    "band": band,
                    "band_start": band_start,
                    "band_end": band_end,
                    "pricing": "fixed" if rate is not None else "day_ahead",
                    "unit_rate": rate,
                    "price_multiplier": multiplier,
                    "price_adder": adder,
                    "price_cap": cap,
                    "standing_charge": STANDING_CHARGE[plan][version] if direction == "import" else None,
                    "currency": "GBP",
                    "valid_from": valid_from,
                    "valid_to": valid_to,
                    "is_current": valid_to is None,
                }
            )
    return pa.Table.from_pylist(rows)


def csv_bytes(table: pa.Table) -> bytes:
    """Plain CSV as a retailer's export tools write it: a header, no quotes, ISO dates."""
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(quoting_style="none", quoting_header="none"))
    return buffer.getvalue()


def write_reference(
    lake: Lake,
    pop: Population,
    start: dt.date,
    days: int,
    seed: int,
    temperature: pa.Table,
    prices: pa.Table | None = None,
    export_from: np.ndarray | None = None,
) -> dict:
    """Write every reference export (the day-ahead prices as first published: `prices`, or made
    here; each meter's first day of export readings: `export_from`, none if not given); returns
    row counts by file."""
    occupancy = tenancies(pop, start, days, seed)
    # one row per account, however many premises it holds, on its plan now
    _, first = np.unique(occupancy.customer_id, return_index=True)
    switches = occupancy.switches
    customers = pa.table(
        {
            "customer_id": occupancy.customer_id[first],
            "account_name": [f"Account {c}" for c in occupancy.customer_id[first].tolist()],
            "region": [occupancy.region[i] for i in first],
            "plan_id": [switches.get(int(occupancy.customer_id[i]), (None, occupancy.plan[i]))[1] for i in first],
            "joined_on": [occupancy.joined[i] for i in first],
        }
    )
    # the plan history of those who changed plan: the first plan until the change, the new one after
    changed = [i for i in first if int(occupancy.customer_id[i]) in switches]
    customer_plans = pa.table(
        {
            "customer_id": pa.array([int(occupancy.customer_id[i]) for i in changed for _ in (0, 1)], pa.int32()),
            "plan_id": pa.array(
                [p for i in changed for p in (occupancy.plan[i], switches[int(occupancy.customer_id[i])][1])],
                pa.string(),
            ),
            "valid_from": pa.array(
                [d for i in changed for d in (occupancy.joined[i], switches[int(occupancy.customer_id[i])][0])],
                pa.date32(),
            ),
            "valid_to": pa.array(
                [d for i in changed for d in (switches[int(occupancy.customer_id[i])][0], None)], pa.date32()
            ),
        }
    )
    meters = pa.table(
        {
            "meter_id": pop.id_array,
            "region": [REGIONS[r][0] for r in pop.region.tolist()],
            "collection_group": pop.group,
            "head_end": pop.vendors,
            "installed_on": pa.array([dt.date(2019, 1, 1)] * pop.size, pa.date32()),
            "removed_on": pa.nulls(pop.size, pa.date32()),
            "load_class": np.where(pop.heating, "heating", np.where(pop.ev, "ev", "ordinary")).tolist(),
            "export_from": pa.array(
                export_from.tolist() if export_from is not None else [None] * pop.size, pa.date32()
            ),
        }
    )
    assignments = pa.table(
        {
            "meter_id": pa.array(pop.ids[occupancy.meter_id - pop.meter_id[0]], pa.string()),
            "customer_id": occupancy.customer_id,
            "valid_from": pa.array(occupancy.valid_from, pa.date32()),
            "valid_to": pa.array(occupancy.valid_to, pa.date32()),
        }
    )
    files = {
        "reference/customers.csv": customers,
        "reference/customer_plans.csv": customer_plans,
        "reference/meters.csv": meters,
        "reference/meter_assignments.csv": assignments,
        "reference/tariffs.csv": tariffs(start, days),
        "reference/temperature.csv": temperature,
        "reference/temperature_forecast.csv": temperature_forecasts(temperature, seed),
        PRICES_KEY: prices if prices is not None else day_ahead_prices(start, days, temperature, seed),
    }
    for key, table in files.items():
        lake.write_bytes(key, csv_bytes(table))
    return {key: table.num_rows for key, table in files.items()}
