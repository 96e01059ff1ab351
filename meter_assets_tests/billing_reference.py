"""Bills recomputed the slow way, from the rules in docs/billing.md alone, to check the platform's bills against.

Nothing here calls the code under test: one reading at a time, its local time from
`zoneinfo`, the tariff rows in force that local day and clock time, Python `Decimal`
throughout. The rules, as docs/billing.md states them for a billing team:

- an energy line is a time-of-use band at one unit rate: every quarter hour priced at that
  band and rate, whichever tariff row it came from, adds to it;
- a line's amount is its kWh times its rate, rounded once to the penny, half up;
- on a day-ahead price a line is a band at one rule (multiplier, adder, cap): each quarter
  hour's rate is the day-ahead price of the settlement period it falls in (per MWh, so / 1000)
  times the multiplier plus the adder, rounded to 4 places half up, at most the cap; the line's
  amount is the exact sum of its quarter hours' kWh x rate, rounded once;
- only import rows price what a customer uses;
- a customer's plan on a day is the plan history's row in force that day (a customer who
  changed plan mid-month has each day priced, and charged its standing charge, on that day's
  plan), else the customers export's plan;
- a day of supply is a local day on which the customer holds at least one meter, charged
  once at the standing charge of their plan in force that day; a standing line is the
  days at one daily rate, rounded once;
- tax is one line: the rate times the sum of the rounded energy and standing lines,
  rounded once; the charges are the sum of the rounded lines and the tax;
- a reading of a meter nobody holds that day is a vacant premises' use, billed to no one;
- a quarter hour halved from a half-hour reading (`interval_minutes` 30) is priced like any
  other, and each line says how much of its energy was derived that way;
- what a home sends to the grid (its export register) is priced by the plan's export rows the
  same way, band by band (or rule by rule), and each export line's amount is the negative of
  its value rounded once: a credit; a plan without export rows credits nothing;
- export credits are not taxed: the tax is on energy and standing lines only, and the charges
  are energy, standing, tax and the (negative) export lines.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

PENNY = Decimal("0.01")


def ordered(lines) -> list[tuple]:
    """Lines in one order whatever they hold: a band may have a line at a unit rate and one at a
    day-ahead rule (a plan changed mid-month), which do not compare."""
    return sorted(lines, key=lambda line: tuple(str(value) for value in line))


def _round(value: Decimal) -> Decimal:
    return value.quantize(PENNY, ROUND_HALF_UP)


def _round4(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.0001"), ROUND_HALF_UP)


def price_of(row: dict) -> Decimal | str:
    """How a bill names a tariff row's price: its unit rate, or its day-ahead rule."""
    if row.get("pricing", "fixed") == "fixed":
        return row["unit_rate"]
    cap = row.get("price_cap")
    adder = row.get("price_adder") or Decimal("0")
    return f"day-ahead x {row['price_multiplier']:.4f} + {adder:.4f}" + ("" if cap is None else f", cap {cap:.4f}")


class DayAheadPrices:
    """The published day-ahead prices: the price of the settlement period a UTC instant falls in."""

    def __init__(self, prices: Iterable[dict]):
        rows = sorted((p["period_start"], p["price_per_mwh"]) for p in prices)
        self.starts = [start for start, _ in rows]
        self.prices = [price for _, price in rows]

    def at(self, instant: dt.datetime) -> Decimal:
        i = bisect.bisect_right(self.starts, instant) - 1
        assert i >= 0 and instant < self.starts[i] + dt.timedelta(minutes=30), f"no price at {instant}"
        return self.prices[i]

    def rate(self, row: dict, instant: dt.datetime) -> Decimal:
        """A tariff row's rate per kWh at a UTC quarter hour."""
        if row.get("pricing", "fixed") == "fixed":
            return row["unit_rate"]
        rate = _round4(self.at(instant) / 1000 * row["price_multiplier"] + (row.get("price_adder") or 0))
        cap = row.get("price_cap")
        return rate if cap is None else min(rate, cap)


@dataclass
class ReferenceBill:
    customer_id: int
    tax_rate: Decimal
    # (band, unit rate or day-ahead rule) -> [measured kWh, estimated kWh]
    energy: dict[tuple[str, Decimal | str], list[Decimal]] = field(default_factory=dict)
    # (band, day-ahead rule) -> the exact sum of kWh x rate
    cost: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    # daily rate -> days
    standing: dict[Decimal, int] = field(default_factory=dict)
    # (band, unit rate) -> kWh halved from half-hour readings
    derived: dict[tuple[str, Decimal], Decimal] = field(default_factory=dict)
    # the same for what the home sent to the grid
    export: dict[tuple[str, Decimal | str], list[Decimal]] = field(default_factory=dict)
    export_cost: dict[tuple[str, str], Decimal] = field(default_factory=dict)

    def derived_lines(self) -> set[tuple[str, Decimal, Decimal]]:
        """(band, rate, derived kWh) of each energy line."""
        return {(band, rate, self.derived.get((band, rate), Decimal("0"))) for band, rate in self.energy}

    @property
    def derived_kwh(self) -> Decimal:
        return sum(self.derived.values(), Decimal("0"))

    def energy_lines(self) -> set[tuple[str, Decimal | str, Decimal, Decimal, Decimal]]:
        """(band, rate or rule, measured kWh, estimated kWh, amount) of each line."""
        return {
            (band, price, m, e, _round(self.cost[(band, price)] if isinstance(price, str) else (m + e) * price))
            for (band, price), (m, e) in self.energy.items()
        }

    def export_lines(self) -> set[tuple[str, Decimal | str, Decimal, Decimal, Decimal]]:
        """(band, rate or rule, measured kWh, estimated kWh, amount) of each export line: a credit."""
        return {
            (band, price, m, e, -_round(self.export_cost[(band, price)] if isinstance(price, str) else (m + e) * price))
            for (band, price), (m, e) in self.export.items()
        }

    @property
    def export_credit(self) -> Decimal:
        return sum((amount for *_, amount in self.export_lines()), Decimal("0.00"))

    @property
    def export_kwh(self) -> Decimal:
        return sum((m + e for m, e in self.export.values()), Decimal("0"))

    def standing_lines(self) -> set[tuple[Decimal, int, Decimal]]:
        return {(rate, days, _round(rate * days)) for rate, days in self.standing.items()}

    @property
    def measured_kwh(self) -> Decimal:
        return sum((m for m, _ in self.energy.values()), Decimal("0"))

    @property
    def estimated_kwh(self) -> Decimal:
        return sum((e for _, e in self.energy.values()), Decimal("0"))

    @property
    def energy_charge(self) -> Decimal:
        return sum((amount for *_, amount in self.energy_lines()), Decimal("0.00"))

    @property
    def supply_days(self) -> int:
        return sum(self.standing.values())

    @property
    def standing_charge(self) -> Decimal:
        return sum((amount for *_, amount in self.standing_lines()), Decimal("0.00"))

    @property
    def tax(self) -> Decimal:
        return _round((self.energy_charge + self.standing_charge) * self.tax_rate)

    @property
    def charges(self) -> Decimal:
        return self.energy_charge + self.standing_charge + self.tax + self.export_credit


@dataclass
class ReferenceMonth:
    bills: dict[int, ReferenceBill]
    vacant_kwh: Decimal
    # (customer, local day) -> kWh billed to the customer that day
    daily_kwh: dict[tuple[int, dt.date], Decimal] = field(default_factory=dict)
    # (customer, local day) -> kWh the customer's meters sent to the grid that day
    daily_export_kwh: dict[tuple[int, dt.date], Decimal] = field(default_factory=dict)


def _in_force(rows: list[dict], day: dt.date) -> list[dict]:
    return [r for r in rows if r["valid_from"] <= day and (r["valid_to"] is None or day < r["valid_to"])]


class PlanOf:
    """A customer's plan on a local day: the customer_plans row in force, else the customers export's."""

    def __init__(self, customers: list[dict], plans: Iterable[dict] = ()):
        self.current = {c["customer_id"]: c["plan_id"] for c in customers}
        self.history: dict[int, list[dict]] = {}
        for row in plans:
            self.history.setdefault(row["customer_id"], []).append(row)

    def __call__(self, customer: int, day: dt.date) -> str:
        rows = _in_force(self.history.get(customer, []), day)
        assert len(rows) <= 1, f"customer {customer} on two plans on {day}"
        return rows[0]["plan_id"] if rows else self.current[customer]


def _month_days(month: str) -> list[dt.date]:
    first = dt.date.fromisoformat(f"{month}-01")
    days, day = [], first
    while day.month == first.month:
        days.append(day)
        day += dt.timedelta(days=1)
    return days


def reference_bills(
    month: str,
    tz: str,
    tax_rate: Decimal,
    readings: Iterable[dict],
    assignments: list[dict],
    customers: list[dict],
    tariffs: list[dict],
    prices: Iterable[dict] = (),
    exports: Iterable[dict] = (),
    plans: Iterable[dict] = (),
) -> ReferenceMonth:
    """Every supplied customer's bill for the month, one reading at a time.

    `readings`: dicts with `meter_id`, `read_at` (naive UTC), `kwh` (Decimal or None),
    `quality_flag` and, optionally, `interval_minutes`; the reference rows as dicts with the export's
    column names (a tariff row without `direction` or `pricing` is import at a fixed rate);
    `prices`: the day-ahead prices, dicts with `period_start` (naive UTC) and `price_per_mwh`;
    `exports`: the export registers' readings, like `readings`, under their meter's id;
    `plans`: the customer_plans rows (a customer's plan by day; without, the customers export's).
    """
    zone = ZoneInfo(tz)
    market = DayAheadPrices(prices)
    export_tariffs = [t for t in tariffs if t.get("direction", "import") == "export"]
    tariffs = [t for t in tariffs if t.get("direction", "import") == "import"]
    days = _month_days(month)
    plan_of = PlanOf(customers, plans)
    bills: dict[int, ReferenceBill] = {}

    def bill(customer: int) -> ReferenceBill:
        return bills.setdefault(customer, ReferenceBill(customer_id=customer, tax_rate=tax_rate))

    holders: dict[tuple[int, dt.date], int | None] = {}
    for day in days:
        for a in _in_force(assignments, day):
            assert (a["meter_id"], day) not in holders, f"meter {a['meter_id']} held twice on {day}"
            holders[(a["meter_id"], day)] = a["customer_id"]

    # days of supply: once a day per customer, however many meters
    for day in days:
        for customer in sorted({c for (_, d), c in holders.items() if d == day}):
            charges = {t["standing_charge"] for t in _in_force(tariffs, day) if t["plan_id"] == plan_of(customer, day)}
            assert len(charges) == 1, f"{customer} on {day}: standing charges {charges}"
            (rate,) = charges
            bill(customer).standing[rate] = bill(customer).standing.get(rate, 0) + 1

    price_cache: dict[tuple[str, dt.date, str], tuple[str, Decimal | str, dict]] = {}
    daily_kwh: dict[tuple[int, dt.date], Decimal] = {}
    vacant = Decimal("0")
    for r in readings:
        if r["kwh"] is None:
            continue
        local = r["read_at"].replace(tzinfo=dt.UTC).astimezone(zone)
        day = local.date()
        if day.strftime("%Y-%m") != month:
            continue
        customer = holders.get((r["meter_id"], day))
        if customer is None:
            vacant += r["kwh"]
            continue
        clock = f"{local.hour:02d}:{local.minute:02d}"
        key = (plan_of(customer, day), day, clock)
        if key not in price_cache:
            rows = [
                t
                for t in _in_force(tariffs, day)
                if t["plan_id"] == plan_of(customer, day) and t["band_start"] <= clock < t["band_end"]
            ]
            assert len({(t["band"], price_of(t)) for t in rows}) == 1, f"{key}: prices {rows}"
            price_cache[key] = (rows[0]["band"], price_of(rows[0]), rows[0])
        band, price, row = price_cache[key]
        line = bill(customer).energy.setdefault((band, price), [Decimal("0"), Decimal("0")])
        line[0 if r["quality_flag"] == "actual" else 1] += r["kwh"]
        if isinstance(price, str):
            cost = bill(customer).cost
            cost[(band, price)] = cost.get((band, price), Decimal("0")) + r["kwh"] * market.rate(row, r["read_at"])
        if r.get("interval_minutes") == 30:
            derived = bill(customer).derived
            derived[(band, price)] = derived.get((band, price), Decimal("0")) + r["kwh"]
        daily_kwh[(customer, day)] = daily_kwh.get((customer, day), Decimal("0")) + r["kwh"]
    daily_export: dict[tuple[int, dt.date], Decimal] = {}
    for r in exports:
        if r["kwh"] is None:
            continue
        local = r["read_at"].replace(tzinfo=dt.UTC).astimezone(zone)
        day = local.date()
        customer = holders.get((r["meter_id"], day))
        if day.strftime("%Y-%m") != month or customer is None:
            continue
        daily_export[(customer, day)] = daily_export.get((customer, day), Decimal("0")) + r["kwh"]
        clock = f"{local.hour:02d}:{local.minute:02d}"
        rows = [
            t
            for t in _in_force(export_tariffs, day)
            if t["plan_id"] == plan_of(customer, day) and t["band_start"] <= clock < t["band_end"]
        ]
        if not rows:
            continue  # a plan without an export tariff credits nothing
        assert len({(t["band"], price_of(t)) for t in rows}) == 1, f"{customer} {day} {clock}: export prices {rows}"
        band, price, row = rows[0]["band"], price_of(rows[0]), rows[0]
        line = bill(customer).export.setdefault((band, price), [Decimal("0"), Decimal("0")])
        line[0 if r["quality_flag"] == "actual" else 1] += r["kwh"]
        if isinstance(price, str):
            cost = bill(customer).export_cost
            cost[(band, price)] = cost.get((band, price), Decimal("0")) + r["kwh"] * market.rate(row, r["read_at"])
    return ReferenceMonth(bills=bills, vacant_kwh=vacant, daily_kwh=daily_kwh, daily_export_kwh=daily_export)


# The columns of the `billing/bill_lines` export that `assert_exported_lines_match` reads, in order.
EXPORTED_LINE_COLUMNS = (
    "customer_id, line_no, kind, band, coalesce(price_rule, CAST(rate AS VARCHAR)) AS price, rate, "
    "measured_kwh, estimated_kwh, days, amount"
)


def assert_exported_lines_match(lines: list[tuple], bills: dict[int, ReferenceBill]) -> None:
    """Exported lines (rows of EXPORTED_LINE_COLUMNS) against the reference: every billed
    customer and no other, lines numbered from 1, the same energy and standing lines, one tax
    line, and together they add up to the charges (no adjustments carried)."""
    assert {line[0] for line in lines} == set(bills)
    for customer, bill in bills.items():
        mine = [line for line in lines if line[0] == customer]
        assert [line[1] for line in mine] == list(range(1, len(mine) + 1))
        assert ordered(
            (band, price if price.startswith("day-ahead") else Decimal(price), m, e, amount)
            for _, _, kind, band, price, _, m, e, _, amount in mine
            if kind == "energy"
        ) == ordered(bill.energy_lines())
        assert sorted(
            (rate, days, amount) for _, _, kind, _, _, rate, _, _, days, amount in mine if kind == "standing"
        ) == sorted(bill.standing_lines())
        assert [(rate, amount) for _, _, kind, _, _, rate, *_, amount in mine if kind == "tax"] == [
            (bill.tax_rate, bill.tax)
        ]
        assert ordered(
            (band, price if price.startswith("day-ahead") else Decimal(price), m, e, amount)
            for _, _, kind, band, price, _, m, e, _, amount in mine
            if kind == "export"
        ) == ordered(bill.export_lines())
        assert sum(line[-1] for line in mine) == bill.charges


def reference_day_usage(
    day: dt.date,
    tz: str,
    tax_rate: Decimal,
    readings: Iterable[dict],
    assignments: list[dict],
    customers: list[dict],
    tariffs: list[dict],
    prices: Iterable[dict] = (),
    plans: Iterable[dict] = (),
) -> dict[int, tuple[Decimal, Decimal, Decimal | None]]:
    """Each customer supplied on the local `day`: (kWh, cost, average rate) as the usage page
    shows them, one reading at a time. The cost is every quarter hour at the rate of its band in
    force (on a day-ahead price, its settlement period's), plus the day's standing charge once
    per account, with tax, rounded once to the penny, half up. The average rate is the day-ahead
    quarter hours' cost over their kWh, before tax, to 4 places half up; None without any."""
    zone = ZoneInfo(tz)
    market = DayAheadPrices(prices)
    plan_of = PlanOf(customers, plans)
    holder = {a["meter_id"]: a["customer_id"] for a in _in_force(assignments, day)}
    in_force = [t for t in _in_force(tariffs, day) if t.get("direction", "import") == "import"]
    kwh: dict[int, Decimal] = {c: Decimal("0") for c in holder.values()}
    energy: dict[int, Decimal] = {c: Decimal("0") for c in holder.values()}
    # (kWh, cost) of the quarter hours priced at the day-ahead market
    day_ahead: dict[int, tuple[Decimal, Decimal]] = {}
    for r in readings:
        local = r["read_at"].replace(tzinfo=dt.UTC).astimezone(zone)
        if r["kwh"] is None or local.date() != day or r["meter_id"] not in holder:
            continue
        customer = holder[r["meter_id"]]
        clock = f"{local.hour:02d}:{local.minute:02d}"
        ((rate, dynamic),) = {
            (market.rate(t, r["read_at"]), t.get("pricing", "fixed") == "day_ahead")
            for t in in_force
            if t["plan_id"] == plan_of(customer, day) and t["band_start"] <= clock < t["band_end"]
        }
        kwh[customer] += r["kwh"]
        energy[customer] += r["kwh"] * rate
        if dynamic:
            used, cost = day_ahead.get(customer, (Decimal("0"), Decimal("0")))
            day_ahead[customer] = (used + r["kwh"], cost + r["kwh"] * rate)
    usage = {}
    for customer in kwh:
        (standing,) = {t["standing_charge"] for t in in_force if t["plan_id"] == plan_of(customer, day)}
        used, cost = day_ahead.get(customer, (Decimal("0"), Decimal("0")))
        average = _round4(cost / used) if used else None
        usage[customer] = (kwh[customer], _round((energy[customer] + standing) * (1 + tax_rate)), average)
    return usage


def reference_day_export(
    day: dt.date,
    tz: str,
    exports: Iterable[dict],
    assignments: list[dict],
    customers: list[dict],
    tariffs: list[dict],
    prices: Iterable[dict] = (),
    plans: Iterable[dict] = (),
) -> dict[int, tuple[Decimal, Decimal]]:
    """Each customer whose meters sent energy to the grid on the local `day` (a reading, however
    small): (kWh sent, credit) as the usage page shows them, one reading at a time. The credit is
    every quarter hour's kWh at the rate of its plan's export band in force (on a day-ahead
    price, its settlement period's), summed, rounded once to the penny half up, negative, and
    untaxed; nothing for a plan without export rows."""
    zone = ZoneInfo(tz)
    market = DayAheadPrices(prices)
    plan_of = PlanOf(customers, plans)
    holder = {a["meter_id"]: a["customer_id"] for a in _in_force(assignments, day)}
    in_force = [t for t in _in_force(tariffs, day) if t.get("direction", "import") == "export"]
    sent: dict[int, Decimal] = {}
    value: dict[int, Decimal] = {}
    for r in exports:
        local = r["read_at"].replace(tzinfo=dt.UTC).astimezone(zone)
        if r["kwh"] is None or local.date() != day or r["meter_id"] not in holder:
            continue
        customer = holder[r["meter_id"]]
        clock = f"{local.hour:02d}:{local.minute:02d}"
        rates = {
            market.rate(t, r["read_at"])
            for t in in_force
            if t["plan_id"] == plan_of(customer, day) and t["band_start"] <= clock < t["band_end"]
        }
        assert len(rates) <= 1, f"{customer} {day} {clock}: export rates {rates}"
        sent[customer] = sent.get(customer, Decimal("0")) + r["kwh"]
        value[customer] = value.get(customer, Decimal("0")) + (r["kwh"] * rates.pop() if rates else Decimal("0"))
    return {c: (sent[c], -_round(value[c])) for c in sent}
