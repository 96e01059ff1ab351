"""Bills priced per interval: against a slow, obviously-correct computation, and by hand for DST months."""

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings, strategies as st

from meter_assets.billing.pricing import compute_bills, month_bounds

TZ = "Europe/London"
PENNY = Decimal("0.01")


def _connection(reads, assignments, customers, tariffs) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register("reads", pa.Table.from_pylist(reads, schema=pa.schema(
        [("meter_id", pa.int32()), ("read_at", pa.timestamp("us")), ("kwh", pa.decimal128(12, 3)),
         ("quality_flag", pa.string())])))
    con.register("assignments", pa.Table.from_pylist(assignments, schema=pa.schema(
        [("meter_id", pa.int32()), ("customer_id", pa.int32()), ("valid_from", pa.date32()), ("valid_to", pa.date32())])))
    con.register("customers", pa.Table.from_pylist(customers, schema=pa.schema(
        [("customer_id", pa.int32()), ("plan_id", pa.string())])))
    con.register("tariffs", pa.Table.from_pylist(tariffs, schema=pa.schema(
        [("tariff_id", pa.int32()), ("plan_id", pa.string()), ("band", pa.string()), ("band_start", pa.string()),
         ("band_end", pa.string()), ("unit_rate", pa.decimal128(10, 4)), ("standing_charge", pa.decimal128(10, 4)),
         ("valid_from", pa.date32()), ("valid_to", pa.date32())])))
    return con


def _utc_intervals(month: str) -> list[dt.datetime]:
    start, end = month_bounds(month)
    tz = ZoneInfo(TZ)
    first = dt.datetime.combine(start, dt.time(), tz).astimezone(dt.UTC).replace(tzinfo=None)
    last = dt.datetime.combine(end, dt.time(), tz).astimezone(dt.UTC).replace(tzinfo=None)
    return [first + dt.timedelta(minutes=15 * i) for i in range(int((last - first) / dt.timedelta(minutes=15)))]


def _in_force(rows: list[dict], day: dt.date) -> list[dict]:
    return [r for r in rows if r["valid_from"] <= day and (r["valid_to"] is None or day < r["valid_to"])]


def slow_energy_charges(month, reads, assignments, customers, tariffs) -> dict[int, tuple[Decimal, Decimal, Decimal]]:
    """Per customer: energy charge, measured kWh, estimated kWh, one interval at a time."""
    start, end = month_bounds(month)
    plan_of = {c["customer_id"]: c["plan_id"] for c in customers}
    kwh_by_line: dict[tuple[int, int], Decimal] = {}
    measured: dict[int, Decimal] = {}
    estimated: dict[int, Decimal] = {}
    rate_of = {t["tariff_id"]: t["unit_rate"] for t in tariffs}
    for r in reads:
        if r["kwh"] is None:
            continue
        local = r["read_at"].replace(tzinfo=dt.UTC).astimezone(ZoneInfo(TZ))
        day = local.date()
        if not start <= day < end:
            continue
        holders = [a for a in _in_force(assignments, day) if a["meter_id"] == r["meter_id"]]
        if not holders:
            continue
        customer = holders[0]["customer_id"]
        clock = f"{local.hour:02d}:{local.minute:02d}"
        (tariff,) = [t for t in _in_force(tariffs, day)
                     if t["plan_id"] == plan_of[customer] and t["band_start"] <= clock < t["band_end"]]
        key = (customer, tariff["tariff_id"])
        kwh_by_line[key] = kwh_by_line.get(key, Decimal("0")) + r["kwh"]
        split = measured if r["quality_flag"] == "actual" else estimated
        split[customer] = split.get(customer, Decimal("0")) + r["kwh"]
    charges: dict[int, Decimal] = {}
    for (customer, tariff_id), kwh in kwh_by_line.items():
        charges[customer] = charges.get(customer, Decimal("0")) + (kwh * rate_of[tariff_id]).quantize(PENNY, ROUND_HALF_UP)
    return {c: (charges[c], measured.get(c, Decimal("0")), estimated.get(c, Decimal("0"))) for c in charges}


def _tariffs(change_day: dt.date, cuts: tuple[int, int], rates: list[Decimal]) -> list[dict]:
    early, late = sorted(cuts)
    clock = [f"{q // 4:02d}:{15 * (q % 4):02d}" for q in (early, late)]
    rows, tariff_id = [], 1
    for version, (valid_from, valid_to) in enumerate(((dt.date(2023, 1, 1), change_day), (change_day, None))):
        bands = [("FLEX", "all_day", "00:00", "24:00"),
                 ("TOU", "off_peak", "00:00", clock[0]), ("TOU", "day", clock[0], clock[1]),
                 ("TOU", "evening", clock[1], "24:00")]
        for i, (plan, band, start, end) in enumerate(bands):
            if start == end:
                continue
            rows.append(dict(tariff_id=tariff_id, plan_id=plan, band=band, band_start=start, band_end=end,
                             unit_rate=rates[(version * 4 + i) % len(rates)],
                             standing_charge=Decimal("0.6050") + version, valid_from=valid_from, valid_to=valid_to))
            tariff_id += 1
    return rows


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    month=st.sampled_from(["2024-03", "2024-06", "2024-10"]),
    seed=st.integers(0, 2**32 - 1),
    change=st.integers(2, 27),
    cuts=st.tuples(st.integers(1, 94), st.integers(1, 94)),
    rates=st.lists(st.decimals("0.0500", "0.9999", places=4), min_size=8, max_size=8),
    move=st.integers(1, 27),
    void=st.integers(0, 3),
)
def test_energy_charge_equals_a_per_interval_decimal_computation(month, seed, change, cuts, rates, move, void):
    start, _ = month_bounds(month)
    rng = np.random.default_rng(seed)
    reads = []
    for meter in (1, 2):
        for at in _utc_intervals(month):
            if rng.random() < 0.03:
                reads.append(dict(meter_id=meter, read_at=at, kwh=None, quality_flag="missing"))
                continue
            kwh = Decimal(int(rng.integers(0, 2500))) / 1000
            reads.append(dict(meter_id=meter, read_at=at, kwh=kwh,
                              quality_flag="estimated" if rng.random() < 0.05 else "actual"))
    moved_out = start + dt.timedelta(days=move)
    assignments = [
        dict(meter_id=1, customer_id=10, valid_from=dt.date(2020, 1, 1), valid_to=moved_out),
        dict(meter_id=1, customer_id=11, valid_from=moved_out + dt.timedelta(days=void), valid_to=None),
        dict(meter_id=2, customer_id=20, valid_from=dt.date(2020, 1, 1), valid_to=None),
    ]
    customers = [dict(customer_id=10, plan_id="TOU"), dict(customer_id=11, plan_id="FLEX"),
                 dict(customer_id=20, plan_id="TOU")]
    tariffs = _tariffs(start + dt.timedelta(days=change), cuts, rates)

    bills = compute_bills(_connection(reads, assignments, customers, tariffs), month, TZ, Decimal("0.05")).bills
    expected = slow_energy_charges(month, reads, assignments, customers, tariffs)
    assert {c: (b.energy_charge, b.measured_kwh, b.estimated_kwh) for c, b in bills.items() if b.energy} == expected
    # days of supply: the outgoing customer until the move, the incoming one from move-in
    month_end = month_bounds(month)[1]
    assert bills[10].supply_days == move
    incoming_days = max(0, (month_end - moved_out).days - void)
    assert (bills[11].supply_days if 11 in bills else 0) == incoming_days
    assert bills[20].supply_days == (month_end - start).days


def _flat_month(month: str) -> duckdb.DuckDBPyConnection:
    reads = [dict(meter_id=1, read_at=at, kwh=Decimal("0.250"), quality_flag="actual") for at in _utc_intervals(month)]
    tariffs = [dict(tariff_id=1, plan_id="FLEX", band="all_day", band_start="00:00", band_end="24:00",
                    unit_rate=Decimal("0.2450"), standing_charge=Decimal("0.6050"), valid_from=dt.date(2023, 1, 1),
                    valid_to=None)]
    return _connection(reads, [dict(meter_id=1, customer_id=7, valid_from=dt.date(2020, 1, 1), valid_to=None)],
                       [dict(customer_id=7, plan_id="FLEX")], tariffs)


def test_spring_forward_month_is_right_to_the_penny():
    # March 2024 in London: 31 days, one of 23 hours, so 2,972 quarter hours of 0.250 kWh
    bill = compute_bills(_flat_month("2024-03"), "2024-03", TZ, Decimal("0.05")).bills[7]
    assert bill.measured_kwh == Decimal("743.000")
    assert bill.energy_charge == Decimal("182.04")  # 743 x 0.2450 = 182.035, half up
    assert bill.standing_charge == Decimal("18.76")  # 31 x 0.6050 = 18.755
    assert bill.tax == Decimal("10.04")  # 5 % of 200.80
    assert bill.total_due == Decimal("210.84")


def test_fall_back_month_is_right_to_the_penny():
    # October 2024 in London: one day of 25 hours, so 2,980 quarter hours
    bill = compute_bills(_flat_month("2024-10"), "2024-10", TZ, Decimal("0.05")).bills[7]
    assert bill.measured_kwh == Decimal("745.000")
    assert bill.energy_charge == Decimal("182.53")  # 182.525, half up
    assert bill.standing_charge == Decimal("18.76")
    assert bill.tax == Decimal("10.06")  # 5 % of 201.29 = 10.0645
    assert bill.total_due == Decimal("211.35")
    assert not bill.is_estimated
