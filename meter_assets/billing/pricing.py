"""What a customer owes for a month: usage priced per interval, then money in exact decimals.

DuckDB sums each customer's kWh by the price in force at each quarter hour's local time:
a line is a time-of-use band at one unit rate, whichever tariff rows carry it (the EV
plan's "standard" band is two rows with one rate, so one line; a mid-month price change
gives the band a second line). It counts each customer's days of supply, once a day
however many meters they hold, at the standing charge in force that day. Python then turns
those sums into money with `decimal.Decimal`: every line is rounded once, to the penny,
half up; totals are sums of rounded lines. No binary float ever holds money.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

import duckdb

from meter_assets.config import settings
from meter_assets.market_calendar import local_day_bounds, month_bounds, settlement_period_starts

PENNY = Decimal("0.01")

# The version of the rules in this module, stored with every bill. An issued bill keeps
# the rules it was issued under; when a recomputation under newer rules moves its money,
# the adjustment says which rules changed.
PRICING_RULES = 2
PRICING_RULES_CHANGES = {
    2: "billing rules revised: one energy line per band and unit rate, each rounded once "
    "(was one line per tariff row); standing charge once a day per account",
}

# The tariffs' rows, each with its price as a bill names it: the unit rate of a fixed price,
# or the rule of a day-ahead one ("day-ahead x 2.2000 + 0.1200, cap 1.0000": the settlement
# period's day-ahead price per kWh times the multiplier, plus the adder, rounded to 4 places,
# at most the cap). Import rows charge what a home uses; export rows credit what it sends.
PRICED_TARIFFS_SQL = """
CREATE OR REPLACE TEMP TABLE priced_tariffs AS
SELECT
    *,
    direction = 'export' AS is_export,
    CASE pricing
        WHEN 'fixed' THEN CAST(unit_rate AS VARCHAR)
        ELSE 'day-ahead x ' || CAST(price_multiplier AS VARCHAR)
             || ' + ' || CAST(CAST(coalesce(price_adder, 0) AS DECIMAL(10, 4)) AS VARCHAR)
             || coalesce(', cap ' || CAST(price_cap AS VARCHAR), '')
    END AS price
FROM tariffs
"""

# The day-ahead prices when none are published: day-ahead plans then have no price at all.
NO_PRICES_SQL = """
CREATE OR REPLACE TEMP VIEW day_ahead_prices AS
SELECT CAST(NULL AS TIMESTAMP) AS period_start, CAST(NULL AS DECIMAL(10, 2)) AS price_per_mwh
WHERE false
"""

# No customer's plan ever changed (a lake from before plan history was kept): each is on the
# customers export's plan.
NO_PLAN_CHANGES_SQL = """
CREATE OR REPLACE TEMP VIEW customer_plans AS
SELECT CAST(NULL AS INTEGER) AS customer_id, CAST(NULL AS VARCHAR) AS plan_id, CAST(NULL AS DATE) AS valid_from,
       CAST(NULL AS DATE) AS valid_to
WHERE false
"""

# Plans by a small integer, so the per-reading joins compare integers, not strings.
PLANS_SQL = """
CREATE OR REPLACE TEMP TABLE plans AS
SELECT plan_id, CAST(row_number() OVER (ORDER BY plan_id) AS INTEGER) AS plan_no
FROM (SELECT plan_id FROM customers UNION SELECT plan_id FROM customer_plans UNION SELECT plan_id FROM tariffs)
"""

# Each price a line can carry: a direction's band at a unit rate or a day-ahead rule, numbered
# so the per-reading joins compare integers. Tariff rows that repeat a band and price (in one
# version, or across a price change that kept it) share a number, so they make one line.
PRICE_LINES_SQL = """
CREATE OR REPLACE TEMP TABLE price_lines AS
SELECT
    is_export,
    band,
    pricing,
    price,
    CASE WHEN pricing = 'fixed' THEN any_value(unit_rate) END                         AS unit_rate,
    min(band_start)                                                                   AS band_start,
    CAST(row_number() OVER (ORDER BY is_export, min(band_start), band, pricing, price) AS INTEGER) AS price_no
FROM priced_tariffs
GROUP BY is_export, band, pricing, price
"""

# One local day at a time: who held each meter that day, and which price (band and unit
# rate or rule) each plan had at each of the day's UTC quarter hours (looked up at its local
# clock time, so the 23- and 25-hour days price right), and on a day-ahead price the rate per
# kWh it charges there, from the price of the settlement period the quarter hour is in, found
# by its UTC start, so a clock-change day's 46 or 50 periods each price their own quarter hours
# (a fixed price's rate stays on its line: the readings multiply only where the rate varies).
# Both are tiny; the readings meet them in one hash-joined aggregate, so no reading is
# converted to local time row by row.
# (the customer's plan that day: the customer_plans row in force, else the customers export's;
# a customer who never changed plan has no rows)
DAY_HOLDERS_SQL = """
CREATE OR REPLACE TEMP TABLE day_holders AS
SELECT assignments.meter_id, assignments.customer_id, plans.plan_no
FROM assignments
JOIN customers USING (customer_id)
LEFT JOIN customer_plans AS changes
  ON changes.customer_id = assignments.customer_id
 AND $day >= changes.valid_from
 AND (changes.valid_to IS NULL OR $day < changes.valid_to)
JOIN plans ON plans.plan_id = coalesce(changes.plan_id, customers.plan_id)
WHERE $day >= assignments.valid_from
  AND (assignments.valid_to IS NULL OR $day < assignments.valid_to)
"""

DAY_PRICES_SQL = """
CREATE OR REPLACE TEMP TABLE day_prices AS
WITH utc_quarter_hours AS (
    SELECT unnest(generate_series($utc_start, $utc_end - INTERVAL 15 MINUTE, INTERVAL 15 MINUTE)) AS read_at
),
local_clock AS (
    SELECT read_at, strftime(timezone($tz, read_at AT TIME ZONE 'UTC'), '%H:%M') AS clock
    FROM utc_quarter_hours
)
SELECT DISTINCT
    plans.plan_no,
    tariffs.is_export,
    local_clock.read_at,
    local_clock.clock,
    price_lines.price_no,
    tariffs.pricing = 'day_ahead'                                                     AS day_ahead,
    CASE WHEN tariffs.pricing = 'day_ahead' AND market.price_per_mwh IS NOT NULL THEN CAST(least(
        round(market.price_per_mwh * CAST(0.001 AS DECIMAL(4, 3)) * tariffs.price_multiplier
              + coalesce(tariffs.price_adder, 0), 4),
        tariffs.price_cap) AS DECIMAL(10, 4))
    END                                                                               AS market_rate
FROM local_clock
JOIN priced_tariffs AS tariffs
  ON local_clock.clock >= tariffs.band_start
 AND local_clock.clock < tariffs.band_end
JOIN plans USING (plan_id)
JOIN price_lines USING (is_export, band, pricing, price)
LEFT JOIN day_ahead_prices AS market
  ON tariffs.pricing = 'day_ahead'
 AND market.period_start = time_bucket(INTERVAL 30 MINUTE, local_clock.read_at)
WHERE $day >= tariffs.valid_from
  AND (tariffs.valid_to IS NULL OR $day < tariffs.valid_to)
"""

# A day-ahead price with no published price for a settlement period of a day its customers
# are supplied: the run stops rather than guess.
UNPRICED_PERIODS_SQL = """
SELECT DISTINCT plans.plan_id, time_bucket(INTERVAL 30 MINUTE, day_prices.read_at) AS period_start
FROM day_prices
JOIN plans USING (plan_no)
WHERE day_prices.plan_no IN (SELECT plan_no FROM day_holders)
  AND day_prices.day_ahead
  AND day_prices.market_rate IS NULL
ORDER BY period_start, plans.plan_id
LIMIT 5
"""

# Two prices at one quarter hour of a plan somebody holds, in one direction: overlapping rows
# in the tariffs export. Pricing would have to guess, so the run stops instead.
AMBIGUOUS_PRICES_SQL = """
SELECT
    plans.plan_id || CASE WHEN day_prices.is_export THEN ' (export)' ELSE '' END,
    day_prices.clock,
    string_agg(price_lines.band || ' at ' || price_lines.price, ' and ' ORDER BY price_lines.price_no) AS prices
FROM day_prices
JOIN plans USING (plan_no)
JOIN price_lines USING (price_no)
WHERE day_prices.plan_no IN (SELECT plan_no FROM day_holders)
GROUP BY plans.plan_id, day_prices.is_export, day_prices.read_at, day_prices.clock
HAVING count(*) > 1
ORDER BY plans.plan_id, day_prices.is_export, day_prices.read_at
LIMIT 5
"""

# A reading with no holder is a vacant premises' use: reported, never billed. A held import
# reading with no tariff (off the quarter-hour grid, or outside every band of the plan) is an
# error in the reference data, raised before any bill is written; an export reading on a plan
# without an export tariff earns nothing (counted, see UNCREDITED_EXPORT_SQL).
DAY_USAGE_SQL = """
INSERT INTO usage_by_day
SELECT
    CAST($day AS DATE)                                                                AS local_date,
    day_holders.customer_id,
    readings.is_export,
    day_prices.price_no,
    sum(readings.kwh) - coalesce(sum(readings.kwh) FILTER (WHERE readings.quality_flag <> 'actual'), 0)
                                                                                      AS measured_kwh,
    coalesce(sum(readings.kwh) FILTER (WHERE readings.quality_flag <> 'actual'), 0)   AS estimated_kwh,
    -- of which halved from half-hour readings (NEM12): the meter never measured those quarter hours
    coalesce(sum(readings.kwh) FILTER (WHERE readings.interval_minutes = 30), 0)      AS derived_kwh,
    -- on a day-ahead price, exact: kWh x the rate of each quarter hour, unrounded
    sum(readings.kwh * day_prices.market_rate)                                        AS cost
FROM {readings} AS readings
LEFT JOIN day_holders USING (meter_id)
LEFT JOIN day_prices
  ON day_prices.plan_no = day_holders.plan_no
 AND day_prices.is_export = readings.is_export
 AND day_prices.read_at = readings.read_at
WHERE readings.kwh IS NOT NULL
  AND readings.read_at >= $utc_start
  AND readings.read_at < $utc_end
GROUP BY ALL
"""

USAGE_BY_DAY_SQL = """
CREATE OR REPLACE TEMP TABLE usage_by_day (
    local_date    DATE,
    customer_id   INTEGER,
    is_export     BOOLEAN,
    price_no      INTEGER,
    measured_kwh  DECIMAL(18, 3),
    estimated_kwh DECIMAL(18, 3),
    derived_kwh   DECIMAL(18, 3),
    cost          DECIMAL(24, 7)
)
"""

UNPRICED_SQL = """
SELECT customer_id, min(local_date) AS first_day, CAST(sum(measured_kwh + estimated_kwh) AS VARCHAR) AS kwh
FROM usage_by_day
WHERE customer_id IS NOT NULL AND price_no IS NULL AND NOT is_export
GROUP BY customer_id
ORDER BY customer_id
"""

# export of customers whose plan has no export tariff: sent to the grid, credited nothing
UNCREDITED_EXPORT_SQL = """
SELECT coalesce(sum(measured_kwh + estimated_kwh), 0)
FROM usage_by_day
WHERE customer_id IS NOT NULL AND price_no IS NULL AND is_export
"""

# Once the month is priced, each customer's lines and days are aggregated into small tables
# kept in customer order, so one range of customers reads only its own rows: the month's bills
# are made and written one range at a time, and Python never holds more than a range of them.
ENERGY_LINES_TABLE_SQL = """
CREATE OR REPLACE TEMP TABLE energy_lines AS
SELECT
    usage.customer_id,
    price_lines.price_no,
    price_lines.is_export,
    price_lines.band,
    price_lines.pricing,
    price_lines.price,
    price_lines.unit_rate,
    price_lines.band_start,
    min(usage.local_date)                              AS first_day,
    sum(usage.measured_kwh)                            AS measured_kwh,
    sum(usage.estimated_kwh)                           AS estimated_kwh,
    sum(usage.derived_kwh)                             AS derived_kwh,
    sum(usage.cost)                                    AS cost
FROM usage_by_day AS usage
JOIN price_lines USING (price_no)
WHERE usage.customer_id IS NOT NULL
GROUP BY ALL
ORDER BY usage.customer_id
"""

# Each customer's use per day of the month in Wh (kWh x 1000, exact; 0 where there was
# none), to tell which date partitions moved a bill when it changes. One column per day
# rather than an ordered list aggregate: a plain hash aggregate, cheap at any scale.
DAILY_WH_TABLE_SQL = """
CREATE OR REPLACE TEMP TABLE daily_wh AS
WITH customer_days AS (
    SELECT
        customer_id,
        is_export,
        date_diff('day', $month_start, local_date)                  AS day_of_month,
        CAST((measured_kwh + estimated_kwh) * 1000 AS BIGINT)       AS wh
    FROM usage_by_day
    WHERE customer_id IS NOT NULL
),
-- apart, so that only the customers who export hold a month of export sums; a customer with
-- no export has none (NULL), not a month of zeros
used AS (
    SELECT customer_id, CAST([{days}] AS VARCHAR) AS daily_wh
    FROM customer_days
    WHERE NOT is_export
    GROUP BY customer_id
),
sent AS (
    SELECT customer_id, CAST([{days}] AS VARCHAR) AS daily_export_wh
    FROM customer_days
    WHERE is_export
    GROUP BY customer_id
)
SELECT customer_id, used.daily_wh, sent.daily_export_wh
FROM used
FULL OUTER JOIN sent USING (customer_id)
ORDER BY customer_id
"""

STANDING_LINES_TABLE_SQL = """
CREATE OR REPLACE TEMP TABLE standing_lines AS
SELECT customer_id, standing_charge, count(*) AS days, min(local_date) AS first_day
FROM supply_days
GROUP BY customer_id, standing_charge
ORDER BY customer_id
"""

# The month's customers cut into ranges of `$batch` consecutive ids: the first and last id of each.
CUSTOMER_RANGES_SQL = """
WITH billed AS (
    SELECT customer_id FROM standing_lines
    UNION
    SELECT customer_id FROM energy_lines
),
numbered AS (
    SELECT customer_id, (row_number() OVER (ORDER BY customer_id) - 1) // $batch AS range_no
    FROM billed
)
SELECT min(customer_id), max(customer_id)
FROM numbered
GROUP BY range_no
ORDER BY range_no
"""

# Decimals leave DuckDB as text: Python's Decimal reads text faster than the driver converts.
# One line per customer, band and price, in the order a bill prints them: bands by the
# time of day they start, a band's prices by the first day they applied.
ENERGY_LINES_SQL = """
SELECT
    customer_id,
    is_export,
    band,
    CAST(unit_rate AS VARCHAR)             AS unit_rate,
    CAST(measured_kwh AS VARCHAR)          AS measured_kwh,
    CAST(estimated_kwh AS VARCHAR)         AS estimated_kwh,
    CAST(derived_kwh AS VARCHAR)           AS derived_kwh,
    CASE WHEN pricing = 'day_ahead' THEN price END AS price_rule,
    CASE WHEN pricing = 'day_ahead' THEN CAST(cost AS VARCHAR) END AS cost
FROM energy_lines
WHERE customer_id BETWEEN $first AND $last
ORDER BY customer_id, is_export, band_start, band, first_day, price
"""

DAILY_WH_SQL = "SELECT customer_id, daily_wh, daily_export_wh FROM daily_wh WHERE customer_id BETWEEN $first AND $last"

VACANT_KWH_SQL = """
SELECT coalesce(sum(measured_kwh + estimated_kwh) FILTER (WHERE NOT is_export), 0),
       coalesce(sum(measured_kwh + estimated_kwh) FILTER (WHERE is_export), 0)
FROM usage_by_day
WHERE customer_id IS NULL
"""

# The standing charge is the account's, not the meter's: a day on which a customer holds
# one meter or several is one day of supply, at the standing charge of their plan that day.
SUPPLY_DAYS_SQL = """
CREATE OR REPLACE TEMP TABLE supply_days AS
WITH local_days AS (
    SELECT CAST(unnest(generate_series($month_start, $month_end - INTERVAL 1 DAY, INTERVAL 1 DAY)) AS DATE)
           AS local_date
),
supplied AS (
    SELECT DISTINCT assignments.customer_id, coalesce(changes.plan_id, customers.plan_id) AS plan_id,
           local_days.local_date
    FROM local_days
    JOIN assignments
      ON local_days.local_date >= assignments.valid_from
     AND (assignments.valid_to IS NULL OR local_days.local_date < assignments.valid_to)
    JOIN customers ON customers.customer_id = assignments.customer_id
    LEFT JOIN customer_plans AS changes
      ON changes.customer_id = assignments.customer_id
     AND local_days.local_date >= changes.valid_from
     AND (changes.valid_to IS NULL OR local_days.local_date < changes.valid_to)
),
standing AS (
    SELECT DISTINCT plan_id, standing_charge, valid_from, valid_to FROM tariffs WHERE direction = 'import'
)
SELECT supplied.customer_id, supplied.plan_id, supplied.local_date, standing.standing_charge
FROM supplied
LEFT JOIN standing
  ON standing.plan_id = supplied.plan_id
 AND supplied.local_date >= standing.valid_from
 AND (standing.valid_to IS NULL OR supplied.local_date < standing.valid_to)
"""

# A supplied day needs exactly one standing charge: none (a plan without a tariff that day)
# or two (rows of one plan and day that disagree) is an error in the reference data.
UNCLEAR_STANDING_SQL = """
SELECT
    plan_id,
    local_date,
    count(DISTINCT customer_id)                                                       AS customers,
    coalesce(string_agg(DISTINCT CAST(standing_charge AS VARCHAR), ' and '
                        ORDER BY CAST(standing_charge AS VARCHAR)), 'none')               AS standing_charges
FROM supply_days
GROUP BY plan_id, local_date
HAVING count(DISTINCT standing_charge) <> 1
ORDER BY plan_id, local_date
LIMIT 5
"""

STANDING_LINES_SQL = """
SELECT customer_id, CAST(standing_charge AS VARCHAR) AS standing_charge, days
FROM standing_lines
WHERE customer_id BETWEEN $first AND $last
ORDER BY customer_id, first_day, standing_charge
"""


class UnpricedUsage(ValueError):
    """Readings of a supplied customer that no tariff row prices."""


class AmbiguousTariff(ValueError):
    """Tariff rows that give one quarter hour or one day of supply two prices."""


class MissingPrice(ValueError):
    """A day-ahead plan held on a day whose settlement period has no published price."""


class AmbiguousHolder(ValueError):
    """Assignments that give one meter-day to two customers: no one is shown or billed it."""


# Rows of one key whose periods meet on a day of the range, with the first such day: a meter
# the assignments give two holders (`table` assignments, `key` meter_id, `held` customer_id),
# or a customer the plan history puts on two plans (customer_plans, customer_id, plan_id). The
# reference checks refuse such exports; this stops a run on one that reached the lake another way.
TWO_AT_ONCE_SQL = """
SELECT greatest(a.valid_from, b.valid_from, $first_day) AS day, a.{key}, [a.{held}, b.{held}]
FROM {table} AS a
JOIN {table} AS b
  ON a.{key} = b.{key} AND (a.valid_from, a.{held}) < (b.valid_from, b.{held})
 AND a.valid_from < coalesce(b.valid_to, DATE '9999-12-31') AND b.valid_from < coalesce(a.valid_to, DATE '9999-12-31')
WHERE greatest(a.valid_from, b.valid_from) < $end_day
  AND least(coalesce(a.valid_to, DATE '9999-12-31'), coalesce(b.valid_to, DATE '9999-12-31')) > $first_day
ORDER BY day, a.{key}
LIMIT 10
"""


@dataclass
class EnergyLine:
    """A time-of-use band at one unit rate, or at one day-ahead rule: the kWh it priced in the
    month, and its money."""

    band: str
    # None on a day-ahead line: each quarter hour had the rate of its settlement period
    unit_rate: Decimal | None
    measured_kwh: Decimal
    estimated_kwh: Decimal
    # of the line's kWh, how much was halved from half-hour readings (in measured or estimated)
    derived_kwh: Decimal = Decimal("0.000")
    # a day-ahead line's rule, and the exact sum of its quarter hours' kWh x rate
    price_rule: str | None = None
    cost: Decimal | None = None
    # an export line credits the energy a home sent: its amount is the negative of its value
    is_export: bool = False
    # computed once, with the line: a month's ledger write reads each line's money several times
    kwh: Decimal = field(init=False)
    amount: Decimal = field(init=False)

    def __post_init__(self) -> None:
        self.kwh = self.measured_kwh + self.estimated_kwh
        if self.price_rule is None:
            value = (self.kwh * self.unit_rate).quantize(PENNY, ROUND_HALF_UP)
        else:
            value = self.cost.quantize(PENNY, ROUND_HALF_UP)
        self.amount = -value if self.is_export else value

    @property
    def average_rate(self) -> Decimal | None:
        """A day-ahead line's cost per kWh, to 4 places (what a customer paid on average)."""
        if self.price_rule is None or not self.kwh:
            return None
        return (self.cost / self.kwh).quantize(Decimal("0.0001"), ROUND_HALF_UP)

    def as_json(self) -> str:
        # numbers, not strings: PostgreSQL's jsonb keeps them as exact numerics
        kwh = (
            f'"measured_kwh": {self.measured_kwh}, "estimated_kwh": {self.estimated_kwh}, '
            f'"derived_kwh": {self.derived_kwh}, "kwh": {self.kwh}'
        )
        band = ('"direction": "export", ' if self.is_export else "") + f'"band": {json.dumps(self.band)}'
        if self.price_rule is None:
            return f'{{{band}, "unit_rate": {self.unit_rate}, {kwh}, "amount": {self.amount}}}'
        average = "null" if self.average_rate is None else self.average_rate
        return (
            f'{{{band}, "price_rule": {json.dumps(self.price_rule)}, "unit_rate": null, '
            f'"average_rate": {average}, {kwh}, "cost": {self.cost}, "amount": {self.amount}}}'
        )

    @property
    def fact(self) -> str:
        """What the line was computed from, for the bill's fingerprint."""
        price = self.unit_rate if self.price_rule is None else f"{self.price_rule}={self.cost}"
        derived = f":{self.derived_kwh}" if self.derived_kwh else ""
        direction = "export " if self.is_export else ""
        return f"{direction}{self.band}@{price}:{self.measured_kwh}:{self.estimated_kwh}{derived}"


@dataclass
class StandingLine:
    """Days of supply at one daily standing charge, and their money."""

    daily_rate: Decimal
    days: int
    amount: Decimal = field(init=False)

    def __post_init__(self) -> None:
        self.amount = (self.daily_rate * self.days).quantize(PENNY, ROUND_HALF_UP)

    def as_json(self) -> str:
        return f'{{"daily_rate": {self.daily_rate}, "days": {self.days}, "amount": {self.amount}}}'


@dataclass
class Bill:
    customer_id: int
    month: str = ""
    energy: list[EnergyLine] = field(default_factory=list)
    standing: list[StandingLine] = field(default_factory=list)
    tax_rate: Decimal = Decimal("0")
    adjustments_carried: Decimal = Decimal("0.00")
    daily_wh: list[int] = field(default_factory=list)
    pricing_rules: int = PRICING_RULES
    # what the home sent to the grid: credit lines, and Wh per day (None: no export register)
    export: list[EnergyLine] = field(default_factory=list)
    daily_export_wh: list[int] | None = None

    @property
    def bill_id(self) -> str:
        return bill_id(self.customer_id, self.month)

    @property
    def measured_kwh(self) -> Decimal:
        return sum((line.measured_kwh for line in self.energy), Decimal("0.000"))

    @property
    def estimated_kwh(self) -> Decimal:
        return sum((line.estimated_kwh for line in self.energy), Decimal("0.000"))

    @property
    def derived_kwh(self) -> Decimal:
        return sum((line.derived_kwh for line in self.energy), Decimal("0.000"))

    @property
    def kwh(self) -> Decimal:
        return self.measured_kwh + self.estimated_kwh

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
    def export_kwh(self) -> Decimal:
        return sum((line.kwh for line in self.export), Decimal("0.000"))

    @property
    def export_credit(self) -> Decimal:
        """The export lines' amounts: negative, a credit (a line at a negative rate charges)."""
        return sum((line.amount for line in self.export), Decimal("0.00"))

    @property
    def tax(self) -> Decimal:
        return self.tax_on(self.energy_charge + self.standing_charge)

    def tax_on(self, taxable: Decimal) -> Decimal:
        """The tax line: one rounding, on the sum of the rounded energy and standing lines.
        Export credits are not taxed: a payment for energy a home sells is outside VAT."""
        return (taxable * self.tax_rate).quantize(PENNY, ROUND_HALF_UP)

    @property
    def charges(self) -> Decimal:
        """What the month's supply comes to: energy, standing charge and tax, less the export
        credit, without carried adjustments (negative when the credit is the larger)."""
        return self.energy_charge + self.standing_charge + self.tax + self.export_credit

    @property
    def total_due(self) -> Decimal:
        return self.charges + self.adjustments_carried

    def energy_lines_json(self) -> str:
        """The energy lines as a JSON array, in print order, with exact numbers."""
        return "[" + ", ".join(line.as_json() for line in self.energy) + "]"

    def standing_lines_json(self) -> str:
        return "[" + ", ".join(line.as_json() for line in self.standing) + "]"

    def export_lines_json(self) -> str:
        return "[" + ", ".join(line.as_json() for line in self.export) + "]"

    @property
    def fingerprint(self) -> str:
        """A digest of everything the bill was computed from; equal inputs, equal digest."""
        facts = [
            f"rules {self.pricing_rules}",
            self.month,
            str(self.tax_rate),
            # derived kWh only when there are some, so that bills without them keep their digest
            *sorted(line.fact for line in self.energy),
            *sorted(f"{line.daily_rate}x{line.days}" for line in self.standing),
            ",".join(map(str, self.daily_wh)),
            # export only when the home has some, so that bills without it keep their digest
            *sorted(line.fact for line in self.export),
            *([",".join(map(str, self.daily_export_wh))] if self.daily_export_wh is not None else []),
        ]
        return hashlib.sha256("|".join(facts).encode()).hexdigest()[:32]


def bill_id(customer_id: int, month: str) -> str:
    """Deterministic: one bill per customer and month, the same id on every recomputation."""
    return f"B-{customer_id}-{month}"


def start_usage(con: duckdb.DuckDBPyConnection) -> None:
    """An empty `usage_by_day`, the plans' numbers and the prices' numbers, before pricing days into it."""
    con.execute(USAGE_BY_DAY_SQL)
    con.execute(PRICED_TARIFFS_SQL)
    con.execute(PLANS_SQL)
    con.execute(PRICE_LINES_SQL)


def raise_if_shared(con: duckdb.DuckDBPyConnection, first_day: dt.date, end_day: dt.date) -> None:
    """AmbiguousHolder if the assignments give a meter to two customers on a day from
    `first_day` until `end_day` (exclusive), naming the first day, the meter and the customers;
    AmbiguousTariff if the customer plans put a customer on two plans on such a day."""
    span = {"first_day": first_day, "end_day": end_day}
    shared = con.execute(
        TWO_AT_ONCE_SQL.format(table="assignments", key="meter_id", held="customer_id"), span
    ).fetchall()
    if shared:
        day = shared[0][0]
        examples = "; ".join(f"meter {meter}: customers {customers}" for d, meter, customers in shared if d == day)
        raise AmbiguousHolder(f"{day}: the assignments give a meter to more than one customer: {examples}")
    twice = con.execute(
        TWO_AT_ONCE_SQL.format(table="customer_plans", key="customer_id", held="plan_id"), span
    ).fetchall()
    if twice:
        day = twice[0][0]
        examples = "; ".join(f"customer {customer}: plans {plans}" for d, customer, plans in twice if d == day)
        raise AmbiguousTariff(f"{day}: the customer plans put a customer on two plans: {examples}")


def price_day(con: duckdb.DuckDBPyConnection, day: dt.date, tz: str, readings: str, exports: str | None = None) -> None:
    """Add one local day's kWh per customer and price (band and unit rate) to `usage_by_day`:
    the relation `readings` holds the day's import readings, `exports` its export readings (if any).

    Leaves `day_holders` (who held each meter that day, with their plan) for the caller.
    """
    utc_start, utc_end = local_day_bounds(day, tz)
    params = {"day": day, "utc_start": utc_start, "utc_end": utc_end}
    con.execute(DAY_HOLDERS_SQL, {"day": day})
    con.execute(DAY_PRICES_SQL, {**params, "tz": tz})
    ambiguous = con.execute(AMBIGUOUS_PRICES_SQL).fetchall()
    if ambiguous:
        examples = "; ".join(f"plan {plan} at {clock}: {prices}" for plan, clock, prices in ambiguous)
        raise AmbiguousTariff(
            f"{day}: tariff rows in force give one quarter hour two prices "
            f"(overlapping bands in the tariffs export): {examples}"
        )
    unpriced = con.execute(UNPRICED_PERIODS_SQL).fetchall()
    if unpriced:
        periods = settlement_period_starts(day, tz)
        examples = "; ".join(
            f"plan {plan}, settlement period {periods.index(start) + 1} of {day} ({start:%H:%M} UTC)"
            for plan, start in unpriced
        )
        raise MissingPrice(
            f"{day}: customers on a day-ahead price are supplied in settlement periods with no "
            f"published price in day_ahead_prices: {examples}"
        )
    # each register apart: the consumption's aggregate is the day's large one, the export's small
    con.execute(DAY_USAGE_SQL.format(readings=day_readings(readings, False)), params)
    if exports is not None:
        con.execute(DAY_USAGE_SQL.format(readings=day_readings(exports, True)), params)


def raise_if_unpriced(con: duckdb.DuckDBPyConnection, what: str) -> None:
    unpriced = con.execute(UNPRICED_SQL).fetchall()
    if unpriced:
        examples = ", ".join(f"customer {c} from {d} ({kwh} kWh)" for c, d, kwh in unpriced[:5])
        raise UnpricedUsage(
            f"{what}: {len(unpriced)} supplied customer(s) have readings that no tariff row prices "
            f"(off the quarter-hour grid, or outside every time-of-use band of their plan): {examples}"
        )


def supply_days(con: duckdb.DuckDBPyConnection, first_day: dt.date, end_day: dt.date, what: str) -> None:
    """`supply_days`: each customer's supplied days from `first_day` to before `end_day`, once a
    day however many meters, with the standing charge in force; an error if a day has none or two."""
    con.execute(SUPPLY_DAYS_SQL, {"month_start": first_day, "month_end": end_day})
    unclear = con.execute(UNCLEAR_STANDING_SQL).fetchall()
    if unclear:
        examples = "; ".join(
            f"plan {plan} on {day} ({customers} customer(s)): {charges}" for plan, day, customers, charges in unclear
        )
        raise AmbiguousTariff(
            f"{what}: supplied days need exactly one standing charge in the tariffs export: {examples}"
        )


@dataclass
class PricedMonth:
    """A month's usage priced in DuckDB, in the tables the bills are read from."""

    month: str
    tax_rate: Decimal
    vacant_kwh: Decimal
    # export of customers whose plan credits none, and of premises nobody held
    uncredited_export_kwh: Decimal = Decimal("0.000")
    vacant_export_kwh: Decimal = Decimal("0.000")


def price_month(
    con: duckdb.DuckDBPyConnection,
    month: str,
    tz: str,
    tax_rate: Decimal,
    readings_of: Callable[[dt.date], str] = lambda day: "reads",
    exports_of: Callable[[dt.date], str | None] = lambda day: None,
) -> PricedMonth:
    """Every supplied customer's kWh by price and days by standing charge, for the month.

    The connection must have views `assignments`, `customers` and `tariffs`;
    `readings_of(day)` names the relation holding a local day's readings (by default a
    view `reads`, filtered to the day), `exports_of(day)` the day's export readings (None:
    none). Bills are then read by `month_bills`.
    """
    start, end = month_bounds(month)
    raise_if_shared(con, start, end)
    start_usage(con)
    day = start
    while day < end:
        price_day(con, day, tz, readings_of(day), exports_of(day))
        day += dt.timedelta(days=1)
    raise_if_unpriced(con, month)
    supply_days(con, start, end, month)
    con.execute(ENERGY_LINES_TABLE_SQL)
    con.execute(STANDING_LINES_TABLE_SQL)
    days = ", ".join(f"coalesce(sum(wh) FILTER (WHERE day_of_month = {d}), 0)" for d in range((end - start).days))
    con.execute(DAILY_WH_TABLE_SQL.format(days=days), {"month_start": start})
    vacant, vacant_export = con.execute(VACANT_KWH_SQL).fetchone()
    (uncredited,) = con.execute(UNCREDITED_EXPORT_SQL).fetchone()
    return PricedMonth(month, tax_rate, Decimal(vacant), Decimal(uncredited), Decimal(vacant_export))


def day_readings(readings: str, is_export: bool) -> str:
    """A day's readings of one register (import or export) as a relation with `is_export`."""
    return (
        f"(SELECT meter_id, read_at, kwh, quality_flag, interval_minutes, {str(is_export).lower()} AS is_export "
        f"FROM {readings})"
    )


def month_bills(con: duckdb.DuckDBPyConnection, priced: PricedMonth, customers_per_range: int) -> Iterator[list[Bill]]:
    """The month's bills, one range of customers at a time, in customer order: a range's bills
    are a few tens of MB in Python, whatever the number of customers."""
    start, end = month_bounds(priced.month)
    for first, last in con.execute(CUSTOMER_RANGES_SQL, {"batch": customers_per_range}).fetchall():
        yield bills_between(con, priced, first, last, (end - start).days)


def bills_between(con: duckdb.DuckDBPyConnection, priced: PricedMonth, first: int, last: int, days: int) -> list[Bill]:
    """The bills of customers `first` to `last`: money per line, each line rounded once."""
    bills: dict[int, Bill] = {}
    between = {"first": first, "last": last}

    def bill_for(customer_id: int) -> Bill:
        if customer_id not in bills:
            bills[customer_id] = Bill(
                customer_id=customer_id, month=priced.month, tax_rate=priced.tax_rate, daily_wh=[0] * days
            )
        return bills[customer_id]

    for customer_id, rate, days_supplied in con.execute(STANDING_LINES_SQL, between).fetchall():
        bill_for(customer_id).standing.append(StandingLine(daily_rate=Decimal(rate), days=days_supplied))
    for customer_id, is_export, band, rate, measured, estimated, derived, rule, cost in con.execute(
        ENERGY_LINES_SQL, between
    ).fetchall():
        bill = bill_for(customer_id)
        (bill.export if is_export else bill.energy).append(
            EnergyLine(
                band=band,
                unit_rate=None if rate is None else Decimal(rate),
                measured_kwh=Decimal(measured),
                estimated_kwh=Decimal(estimated),
                derived_kwh=Decimal(derived),
                price_rule=rule,
                cost=None if cost is None else Decimal(cost),
                is_export=is_export,
            )
        )
    for customer_id, daily, daily_export in con.execute(DAILY_WH_SQL, between).fetchall():
        # (a customer whose meters sent but used nothing measurable has export days only)
        bill_for(customer_id).daily_wh = json.loads(daily) if daily is not None else [0] * days
        bill_for(customer_id).daily_export_wh = None if daily_export is None else json.loads(daily_export)
    return sorted(bills.values(), key=lambda bill: bill.customer_id)


@dataclass
class MonthUsage:
    bills: dict[int, Bill]
    vacant_kwh: Decimal


def compute_bills(
    con: duckdb.DuckDBPyConnection,
    month: str,
    tz: str,
    tax_rate: Decimal,
    readings_of: Callable[[dt.date], str] = lambda day: "reads",
    customers_per_range: int | None = None,
    exports_of: Callable[[dt.date], str | None] = lambda day: None,
) -> MonthUsage:
    """Bills for every customer supplied in the month, all in memory (for a few customers)."""
    priced = price_month(con, month, tz, tax_rate, readings_of, exports_of)
    per_range = customers_per_range or settings().bill_range_customers
    bills = {bill.customer_id: bill for batch in month_bills(con, priced, per_range) for bill in batch}
    return MonthUsage(bills=bills, vacant_kwh=priced.vacant_kwh)
