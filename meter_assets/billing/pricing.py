"""What a customer owes for a month: usage priced per interval, then money in exact decimals.

DuckDB sums each customer's kWh by the tariff row (plan, version, time-of-use band) in
force at each quarter hour's local time, and counts each customer's days of supply by the
standing charge in force that day. Python then turns those sums into money with
`decimal.Decimal`: every line is rounded once, to the penny, half up; totals are sums of
rounded lines. No binary float ever holds money.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

import duckdb

PENNY = Decimal("0.01")

# Every (plan, local day, local quarter hour) of the month with the tariff row in force.
PRICE_GRID_SQL = """
CREATE OR REPLACE TEMP TABLE price_grid AS
WITH local_days AS (
    SELECT CAST(unnest(generate_series($month_start, $month_end - INTERVAL 1 DAY, INTERVAL 1 DAY)) AS DATE) AS local_date
),
slots AS (
    SELECT unnest(range(96)) AS slot
)
SELECT
    tariffs.plan_id,
    local_days.local_date,
    slots.slot,
    tariffs.tariff_id,
    tariffs.band,
    tariffs.unit_rate
FROM local_days
CROSS JOIN slots
JOIN tariffs
  ON local_days.local_date >= tariffs.valid_from
 AND (tariffs.valid_to IS NULL OR local_days.local_date < tariffs.valid_to)
 AND printf('%02d:%02d', slots.slot // 4, 15 * (slots.slot % 4)) >= tariffs.band_start
 AND printf('%02d:%02d', slots.slot // 4, 15 * (slots.slot % 4)) < tariffs.band_end
"""

USAGE_SQL = """
WITH local_readings AS (
    SELECT
        meter_id,
        kwh,
        quality_flag,
        timezone($tz, read_at AT TIME ZONE 'UTC') AS local_at
    FROM reads
    WHERE kwh IS NOT NULL
),
supplied AS (
    SELECT
        assignments.customer_id,
        customers.plan_id,
        CAST(local_readings.local_at AS DATE)                                  AS local_date,
        hour(local_readings.local_at) * 4 + minute(local_readings.local_at) // 15 AS slot,
        local_readings.kwh,
        local_readings.quality_flag
    FROM local_readings
    JOIN assignments
      ON assignments.meter_id = local_readings.meter_id
     AND CAST(local_readings.local_at AS DATE) >= assignments.valid_from
     AND (assignments.valid_to IS NULL OR CAST(local_readings.local_at AS DATE) < assignments.valid_to)
    JOIN customers ON customers.customer_id = assignments.customer_id
    WHERE CAST(local_readings.local_at AS DATE) >= $month_start
      AND CAST(local_readings.local_at AS DATE) < $month_end
)
SELECT
    supplied.customer_id,
    price_grid.tariff_id,
    price_grid.band,
    price_grid.unit_rate,
    coalesce(sum(supplied.kwh) FILTER (WHERE supplied.quality_flag = 'actual'), 0)    AS measured_kwh,
    coalesce(sum(supplied.kwh) FILTER (WHERE supplied.quality_flag <> 'actual'), 0)   AS estimated_kwh
FROM supplied
JOIN price_grid USING (plan_id, local_date, slot)
GROUP BY ALL
ORDER BY supplied.customer_id, price_grid.tariff_id
"""

SUPPLY_DAYS_SQL = """
WITH local_days AS (
    SELECT CAST(unnest(generate_series($month_start, $month_end - INTERVAL 1 DAY, INTERVAL 1 DAY)) AS DATE) AS local_date
),
standing AS (
    SELECT DISTINCT plan_id, standing_charge, valid_from, valid_to FROM tariffs
)
SELECT
    assignments.customer_id,
    standing.standing_charge,
    count(*) AS days
FROM local_days
JOIN assignments
  ON local_days.local_date >= assignments.valid_from
 AND (assignments.valid_to IS NULL OR local_days.local_date < assignments.valid_to)
JOIN customers ON customers.customer_id = assignments.customer_id
JOIN standing
  ON standing.plan_id = customers.plan_id
 AND local_days.local_date >= standing.valid_from
 AND (standing.valid_to IS NULL OR local_days.local_date < standing.valid_to)
GROUP BY ALL
ORDER BY assignments.customer_id, standing.standing_charge
"""


@dataclass
class EnergyLine:
    tariff_id: int
    band: str
    unit_rate: Decimal
    measured_kwh: Decimal
    estimated_kwh: Decimal

    @property
    def kwh(self) -> Decimal:
        return self.measured_kwh + self.estimated_kwh

    @property
    def amount(self) -> Decimal:
        return (self.kwh * self.unit_rate).quantize(PENNY, ROUND_HALF_UP)


@dataclass
class StandingLine:
    daily_rate: Decimal
    days: int

    @property
    def amount(self) -> Decimal:
        return (self.daily_rate * self.days).quantize(PENNY, ROUND_HALF_UP)


@dataclass
class Bill:
    customer_id: int
    energy: list[EnergyLine] = field(default_factory=list)
    standing: list[StandingLine] = field(default_factory=list)
    tax_rate: Decimal = Decimal("0")
    adjustments_carried: Decimal = Decimal("0.00")

    @property
    def measured_kwh(self) -> Decimal:
        return sum((line.measured_kwh for line in self.energy), Decimal("0.000"))

    @property
    def estimated_kwh(self) -> Decimal:
        return sum((line.estimated_kwh for line in self.energy), Decimal("0.000"))

    @property
    def is_estimated(self) -> bool:
        return self.estimated_kwh > 0

    @property
    def energy_charge(self) -> Decimal:
        return sum((line.amount for line in self.energy), Decimal("0.00"))

    @property
    def supply_days(self) -> int:
        return sum(line.days for line in self.standing)

    @property
    def standing_charge(self) -> Decimal:
        return sum((line.amount for line in self.standing), Decimal("0.00"))

    @property
    def tax(self) -> Decimal:
        return ((self.energy_charge + self.standing_charge) * self.tax_rate).quantize(PENNY, ROUND_HALF_UP)

    @property
    def total_due(self) -> Decimal:
        return self.energy_charge + self.standing_charge + self.tax + self.adjustments_carried

    def energy_by_band(self) -> dict[str, dict[str, str]]:
        """Each priced line, keyed `band@rate` (a mid-month price change gives two lines)."""
        return {
            f"{line.band}@{line.unit_rate}": {"kwh": str(line.kwh), "rate": str(line.unit_rate), "amount": str(line.amount)}
            for line in self.energy
        }


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """First day and the first day after a `YYYY-MM` month."""
    start = dt.date.fromisoformat(f"{month}-01")
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


def compute_bills(con: duckdb.DuckDBPyConnection, month: str, tz: str, tax_rate: Decimal) -> dict[int, Bill]:
    """Bills for every customer supplied in the month.

    The connection must have views `reads` (the month's `reads_15min`, plus the UTC hours
    either side), `assignments`, `customers` and `tariffs`.
    """
    start, end = month_bounds(month)
    params = {"month_start": start, "month_end": end}
    con.execute(PRICE_GRID_SQL, params)
    bills: dict[int, Bill] = {}

    def bill_for(customer_id: int) -> Bill:
        if customer_id not in bills:
            bills[customer_id] = Bill(customer_id=customer_id, tax_rate=tax_rate)
        return bills[customer_id]

    for customer_id, rate, days in con.execute(SUPPLY_DAYS_SQL, params).fetchall():
        bill_for(customer_id).standing.append(StandingLine(daily_rate=Decimal(rate), days=days))
    usage = con.execute(USAGE_SQL, {**params, "tz": tz}).fetchall()
    for customer_id, tariff_id, band, rate, measured, estimated in usage:
        bill_for(customer_id).energy.append(
            EnergyLine(tariff_id=tariff_id, band=band, unit_rate=Decimal(rate),
                       measured_kwh=Decimal(measured), estimated_kwh=Decimal(estimated))
        )
    return bills
