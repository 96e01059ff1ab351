"""Bills priced per interval: against a slow reference written from the rules in docs/billing.md, and by hand."""

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meter_assets.billing.pricing import AmbiguousHolder, AmbiguousTariff, MissingPrice, compute_bills
from meter_assets.market_calendar import month_bounds

from .billing_reference import ordered, reference_bills
from .pricing_support import RATES, TAX, TZ, clock, connection, utc_intervals


def _dicts(bills) -> dict:
    """Everything a customer reads on a bill, from the platform's bills."""
    return {
        c: dict(
            energy=ordered(
                (line.band, _price(line), line.measured_kwh, line.estimated_kwh, line.amount) for line in b.energy
            ),
            standing=sorted((line.daily_rate, line.days, line.amount) for line in b.standing),
            supply_days=b.supply_days,
            energy_charge=b.energy_charge,
            standing_charge=b.standing_charge,
            tax=b.tax,
            charges=b.charges,
            measured=b.measured_kwh,
            estimated=b.estimated_kwh,
            derived=ordered((line.band, _price(line), line.derived_kwh) for line in b.energy),
            export=ordered(
                (line.band, _price(line), line.measured_kwh, line.estimated_kwh, line.amount) for line in b.export
            ),
            export_credit=b.export_credit,
        )
        for c, b in bills.items()
    }


def _price(line) -> Decimal | str:
    return line.unit_rate if line.price_rule is None else line.price_rule


def _reference_dicts(bills) -> dict:
    """The same, from the slow reference."""
    return {
        c: dict(
            energy=ordered(b.energy_lines()),
            standing=sorted(b.standing_lines()),
            supply_days=b.supply_days,
            energy_charge=b.energy_charge,
            standing_charge=b.standing_charge,
            tax=b.tax,
            charges=b.charges,
            measured=b.measured_kwh,
            estimated=b.estimated_kwh,
            derived=ordered(b.derived_lines()),
            export=ordered(b.export_lines()),
            export_credit=b.export_credit,
        )
        for c, b in bills.items()
    }


BANDS = ["off_peak", "standard", "peak"]
# a day-ahead plan's terms: multipliers, adders (a discount too) and caps, from short lists so
# that a price change may keep them
MULTIPLIERS = [Decimal("1.0000"), Decimal("2.2000")]
ADDERS = [None, Decimal("0.1200"), Decimal("-0.0500")]
CAPS = [None, Decimal("0.3500"), Decimal("1.0000")]
# what a kWh sent to the grid earns, a zero too
EXPORT_RATES = [Decimal("0.0000"), Decimal("0.0410"), Decimal("0.1500"), Decimal("0.2455")]


@st.composite
def tariff_histories(draw, month: str) -> list[dict]:
    """A single-rate plan, a time-of-use plan of two to five segments and a day-ahead plan of
    one to three, whose band names, rates and terms are drawn from short lists (a band may come
    back later in the day at the same or another price), a price change on any day of the month
    (clock-change days included) that may keep some prices and the standing charge, an export
    row that must price nothing, and sometimes a row the export repeats word for word. Each plan
    may credit export: the single-rate plan at a flat rate, the time-of-use plan by its own one
    or two bands, the day-ahead plan at the day-ahead price (its own multiplier, adder and cap);
    a plan without export rows credits nothing."""
    start, end = month_bounds(month)
    cuts = sorted(draw(st.sets(st.integers(1, 95), min_size=1, max_size=4), label="cuts"))
    bounds = list(zip([0, *cuts], [*cuts, 96], strict=True))
    change = start + dt.timedelta(days=draw(st.integers(-1, (end - start).days), label="change day"))
    rows = []
    standing = [draw(st.sampled_from([Decimal("0.5500"), Decimal("0.6050")]), label=f"standing v{v}") for v in (0, 1)]
    dynamic_cuts = sorted(draw(st.sets(st.integers(1, 95), max_size=2), label="day-ahead cuts"))
    dynamic_bounds = list(zip([0, *dynamic_cuts], [*dynamic_cuts, 96], strict=True))
    for version, (valid_from, valid_to) in enumerate(((dt.date(2000, 1, 1), change), (change, None))):
        segments = [("FLEX", "all_day", 0, 96)] + [("TOU", draw(st.sampled_from(BANDS)), a, b) for a, b in bounds]
        for plan, band, a, b in segments:
            rows.append(
                dict(
                    tariff_id=len(rows) + 1,
                    plan_id=plan,
                    band=band,
                    band_start=clock(a),
                    band_end="24:00" if b == 96 else clock(b),
                    unit_rate=draw(st.sampled_from(RATES)),
                    standing_charge=standing[version],
                    valid_from=valid_from,
                    valid_to=valid_to,
                )
            )
        for a, b in dynamic_bounds:
            rows.append(
                dict(
                    tariff_id=len(rows) + 1,
                    plan_id="DYN",
                    band=draw(st.sampled_from(["day", "peak"])),
                    band_start=clock(a),
                    band_end="24:00" if b == 96 else clock(b),
                    pricing="day_ahead",
                    unit_rate=None,
                    price_multiplier=draw(st.sampled_from(MULTIPLIERS)),
                    price_adder=draw(st.sampled_from(ADDERS)),
                    price_cap=draw(st.sampled_from(CAPS)),
                    standing_charge=standing[version],
                    valid_from=valid_from,
                    valid_to=valid_to,
                )
            )
        # what a home sends to the grid is credited by its own rows, never priced as use
        export_cut = draw(st.integers(1, 95), label="export cut")
        for plan in draw(st.sets(st.sampled_from(["FLEX", "TOU", "DYN"])), label="plans that credit export"):
            segments = [(0, export_cut), (export_cut, 96)] if plan == "TOU" else [(0, 96)]
            for a, b in segments:
                terms = (
                    dict(
                        pricing="day_ahead",
                        unit_rate=None,
                        price_multiplier=draw(st.sampled_from(MULTIPLIERS)),
                        price_adder=draw(st.sampled_from(ADDERS)),
                        price_cap=draw(st.sampled_from(CAPS)),
                    )
                    if plan == "DYN"
                    else dict(unit_rate=draw(st.sampled_from(EXPORT_RATES)))
                )
                rows.append(
                    dict(
                        tariff_id=len(rows) + 1,
                        plan_id=plan,
                        direction="export",
                        band=f"export_{a}",
                        band_start=clock(a),
                        band_end="24:00" if b == 96 else clock(b),
                        standing_charge=None,
                        valid_from=valid_from,
                        valid_to=valid_to,
                        **terms,
                    )
                )
    if draw(st.booleans(), label="a row repeated"):
        repeated = draw(st.sampled_from(rows))
        rows.append({**repeated, "tariff_id": len(rows) + 1})
    return rows


def day_ahead_prices(month: str, zone: str, rng: np.random.Generator) -> list[dict]:
    """A price for every settlement period of the month's local days: mostly -80 to 400 per
    MWh, with negative prices, prices that put a plan's rate exactly at a cap (350 and 1000 at a
    multiplier of 1), and prices whose rate ends in a half (12.35 -> 0.01235 per kWh)."""
    specials = [Decimal("350.00"), Decimal("1000.00"), Decimal("12.35"), Decimal("-12.35"), Decimal("-250.00")]
    starts = [at for at in utc_intervals(month, zone) if at.minute % 30 == 0]
    return [
        dict(
            period_start=at,
            price_per_mwh=specials[int(rng.integers(len(specials)))]
            if rng.random() < 0.15
            else Decimal(int(rng.integers(-8000, 40000))) / 100,
        )
        for at in starts
    ]


# London's spring and autumn months and a month without a change; and a month with both changes:
# Hebron's clocks went back on 1 August 2011 and forward again on the 30th
MONTHS = [(TZ, "2024-03"), (TZ, "2024-06"), (TZ, "2024-10"), ("Asia/Hebron", "2011-08")]


# as many examples as the Hypothesis profile says: 30 in `make test`, 10 in `make test-fast` (conftest.py)
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone_month=st.sampled_from(MONTHS),
    seed=st.integers(0, 2**32 - 1),
    move=st.integers(1, 30),
    void=st.integers(0, 3),
    second_meter=st.tuples(st.integers(-3, 30), st.one_of(st.none(), st.integers(1, 33))),
    # the month's bills are made a range of customers at a time: one range, or a range per customer
    customers_per_range=st.integers(1, 3),
    data=st.data(),
)
def test_bills_equal_a_per_interval_reference_written_from_the_rules(
    zone_month, seed, move, void, second_meter, customers_per_range, data
):
    zone, month = zone_month
    start, end = month_bounds(month)
    tariffs = data.draw(tariff_histories(month), label="tariffs")
    rng = np.random.default_rng(seed)
    reads = []
    for meter in (1, 2, 3):
        for at in utc_intervals(month, zone):
            if rng.random() < 0.03:
                reads.append(dict(meter_id=meter, read_at=at, kwh=None, quality_flag="missing"))
                continue
            kwh = Decimal(int(rng.integers(0, 2500))) / 1000
            reads.append(
                dict(
                    meter_id=meter,
                    read_at=at,
                    kwh=kwh,
                    quality_flag="estimated" if rng.random() < 0.05 else "actual",
                    # meter 2 is a half-hour NEM12 register: its quarter hours are derived
                    interval_minutes=30 if meter == 2 else 15,
                )
            )
    # meters 1 and 3 have panels: export by day, none at night, some gaps and estimates
    exports = []
    for meter in (1, 3):
        for at in utc_intervals(month, zone):
            if rng.random() < 0.03:
                exports.append(dict(meter_id=meter, read_at=at, kwh=None, quality_flag="missing"))
                continue
            kwh = Decimal(int(rng.integers(0, 1500))) / 1000 if 6 <= at.hour < 18 else Decimal("0.000")
            flag = "estimated" if rng.random() < 0.05 else "actual"
            exports.append(dict(meter_id=meter, read_at=at, kwh=kwh, quality_flag=flag))
    moved_out = min(start + dt.timedelta(days=move), end - dt.timedelta(days=1))
    second_from = start + dt.timedelta(days=second_meter[0])
    second_to = (
        None
        if second_meter[1] is None
        else max(second_from + dt.timedelta(days=1), start + dt.timedelta(days=second_meter[1]))
    )
    assignments = [
        # a move-out (possibly on a clock-change day), a void, a move-in
        dict(meter_id=1, customer_id=10, valid_from=dt.date(2000, 1, 1), valid_to=moved_out),
        dict(meter_id=1, customer_id=11, valid_from=moved_out + dt.timedelta(days=void), valid_to=None),
        # customer 10 holds a second meter for part of the month, at the same time as the first or after it
        dict(meter_id=2, customer_id=10, valid_from=second_from, valid_to=second_to),
        dict(meter_id=3, customer_id=20, valid_from=dt.date(2000, 1, 1), valid_to=None),
    ]
    plans = data.draw(st.tuples(*(st.sampled_from(["FLEX", "TOU", "DYN"]),) * 3), label="plans")
    # customer 10 may change plan on any day of the month (a clock-change day too): the customers
    # export then shows the new plan, and the plan history says since when
    switch = data.draw(
        st.one_of(
            st.none(), st.tuples(st.integers(0, (end - start).days - 1), st.sampled_from(["FLEX", "TOU", "DYN"]))
        ),
        label="customer 10 changes plan",
    )
    history = []
    if switch is not None:
        on = start + dt.timedelta(days=switch[0])
        history = [
            dict(customer_id=10, plan_id=plans[0], valid_from=dt.date(2000, 1, 1), valid_to=on),
            dict(customer_id=10, plan_id=switch[1], valid_from=on, valid_to=None),
        ]
        plans = (switch[1], *plans[1:])
    customers = [dict(customer_id=c, plan_id=plan) for c, plan in zip((10, 11, 20), plans, strict=True)]
    prices = day_ahead_prices(month, zone, rng)

    usage = compute_bills(
        connection(reads, assignments, customers, tariffs, prices, exports, history),
        month,
        zone,
        TAX,
        customers_per_range=customers_per_range,
        exports_of=lambda day: "exports",
    )
    expected = reference_bills(month, zone, TAX, reads, assignments, customers, tariffs, prices, exports, history)
    assert _dicts(usage.bills) == _reference_dicts(expected.bills)
    assert usage.vacant_kwh == expected.vacant_kwh


def _flat_month(
    month: str, tariffs: list[dict] | None = None, meters: tuple[int, ...] = (1,)
) -> duckdb.DuckDBPyConnection:
    """0.250 kWh every quarter hour (24 kWh a day of 24 hours) on each meter, all on customer 7."""
    reads = [
        dict(meter_id=m, read_at=at, kwh=Decimal("0.250"), quality_flag="actual")
        for m in meters
        for at in utc_intervals(month)
    ]
    tariffs = tariffs or [
        dict(
            tariff_id=1,
            plan_id="FLEX",
            band="all_day",
            band_start="00:00",
            band_end="24:00",
            unit_rate=Decimal("0.2450"),
            standing_charge=Decimal("0.6050"),
            valid_from=dt.date(2023, 1, 1),
            valid_to=None,
        )
    ]
    assignments = [dict(meter_id=m, customer_id=7, valid_from=dt.date(2020, 1, 1), valid_to=None) for m in meters]
    return connection(reads, assignments, [dict(customer_id=7, plan_id="FLEX")], tariffs)


def test_spring_forward_month_is_right_to_the_penny():
    # March 2024 in London: 31 days, one of 23 hours, so 2,972 quarter hours of 0.250 kWh
    bill = compute_bills(_flat_month("2024-03"), "2024-03", TZ, TAX).bills[7]
    assert bill.measured_kwh == Decimal("743.000")
    assert bill.energy_charge == Decimal("182.04")  # 743 x 0.2450 = 182.035, half up
    assert bill.standing_charge == Decimal("18.76")  # 31 x 0.6050 = 18.755
    assert bill.tax == Decimal("10.04")  # 5 % of 200.80
    assert bill.total_due == Decimal("210.84")


def test_fall_back_month_is_right_to_the_penny():
    # October 2024 in London: one day of 25 hours, so 2,980 quarter hours
    bill = compute_bills(_flat_month("2024-10"), "2024-10", TZ, TAX).bills[7]
    assert bill.measured_kwh == Decimal("745.000")
    assert bill.energy_charge == Decimal("182.53")  # 182.525, half up
    assert bill.standing_charge == Decimal("18.76")
    assert bill.tax == Decimal("10.06")  # 5 % of 201.29 = 10.0645
    assert bill.total_due == Decimal("211.35")
    assert not bill.is_estimated


def _ev_plan(unit_rate: str) -> list[dict]:
    """The EV plan's shape: off-peak, standard, peak, and standard again at the same rate."""
    rows = [
        ("off_peak", "00:00", "05:00", "0.0750"),
        ("standard", "05:00", "16:00", unit_rate),
        ("peak", "16:00", "19:00", "0.3850"),
        ("standard", "19:00", "24:00", unit_rate),
    ]
    return [
        dict(
            tariff_id=n + 1,
            plan_id="FLEX",
            band=band,
            band_start=a,
            band_end=b,
            unit_rate=Decimal(rate),
            standing_charge=Decimal("0.5800"),
            valid_from=dt.date(2023, 1, 1),
            valid_to=None,
        )
        for n, (band, a, b, rate) in enumerate(rows)
    ]


def test_two_rows_of_one_band_and_rate_are_one_line_rounded_once():
    # The case found on the EV plan: 72.710 kWh in 05:00-16:00 and 91.663 kWh in 19:00-24:00 at
    # 0.2750. Rounded per row, 20.00 + 25.21 = 45.21; as one line, 164.373 x 0.2750 = 45.20.
    # June 2024 has 30 days of 44 quarter hours in 05:00-16:00 and 20 in 19:00-24:00.
    day_qh, evening_qh = 30 * 44, 30 * 20
    reads = []
    for at in utc_intervals("2024-06"):
        local = at.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(TZ))
        clock = f"{local.hour:02d}:{local.minute:02d}"
        if "05:00" <= clock < "16:00":
            kwh = Decimal("72.710") / day_qh
        elif clock >= "19:00":
            kwh = Decimal("91.663") / evening_qh
        else:
            continue
        reads.append(dict(meter_id=1, read_at=at, kwh=kwh.quantize(Decimal("0.001")), quality_flag="actual"))
    # make each band's month total exact after the per-reading rounding to watt-hours
    for band_total, band_reads in (
        (Decimal("72.710"), [r for r in reads if r["read_at"].hour < 15]),
        (Decimal("91.663"), [r for r in reads if r["read_at"].hour >= 18]),
    ):
        band_reads[0]["kwh"] += band_total - sum(r["kwh"] for r in band_reads)
    con = connection(
        reads,
        [dict(meter_id=1, customer_id=7, valid_from=dt.date(2020, 1, 1), valid_to=None)],
        [dict(customer_id=7, plan_id="FLEX")],
        _ev_plan("0.2750"),
    )
    bill = compute_bills(con, "2024-06", TZ, TAX).bills[7]
    (standard,) = [line for line in bill.energy if line.band == "standard"]
    assert (standard.kwh, standard.unit_rate, standard.amount) == (
        Decimal("164.373"),
        Decimal("0.2750"),
        Decimal("45.20"),
    )
    assert [line.band for line in bill.energy] == ["standard"], "no reading fell in the other bands"
    assert bill.energy_charge == Decimal("45.20")
    assert bill.standing_charge == Decimal("17.40")  # 30 x 0.5800
    assert bill.tax == Decimal("3.13")  # 5 % of 62.60
    assert bill.charges == Decimal("65.73")


def test_a_mid_month_price_change_gives_the_band_two_lines_and_a_kept_rate_one():
    # From 16 June the standard rate goes up and the off-peak rate stays: standard gets a line
    # per rate, off-peak keeps one line over both tariff versions.
    change = dt.date(2024, 6, 16)
    tariffs = []
    for version, (valid_from, valid_to, rate) in enumerate(
        ((dt.date(2023, 1, 1), change, "0.2650"), (change, None, "0.2750"))
    ):
        for row in _ev_plan(rate):
            tariffs.append(
                {**row, "tariff_id": version * 10 + row["tariff_id"], "valid_from": valid_from, "valid_to": valid_to}
            )
    bill = compute_bills(_flat_month("2024-06", tariffs), "2024-06", TZ, TAX).bills[7]
    lines = [(line.band, line.unit_rate, line.kwh, line.amount) for line in bill.energy]
    # per day 0.25 kWh x 20 off-peak, 64 standard and 12 peak quarter hours
    assert lines == [
        ("off_peak", Decimal("0.0750"), Decimal("150.000"), Decimal("11.25")),  # 30 days x 5 kWh
        ("standard", Decimal("0.2650"), Decimal("240.000"), Decimal("63.60")),  # 15 days x 16 kWh
        ("standard", Decimal("0.2750"), Decimal("240.000"), Decimal("66.00")),
        ("peak", Decimal("0.3850"), Decimal("90.000"), Decimal("34.65")),  # 30 days x 3 kWh
    ]


@pytest.mark.parametrize(
    "month, change, before_kwh, after_kwh",
    [
        # the price changes at local midnight starting the 23-hour day: 30 days x 24 kWh before,
        # 23 kWh on the 31st
        ("2024-03", dt.date(2024, 3, 31), Decimal("720.000"), Decimal("23.000")),
        # starting the 25-hour day: 26 days x 24 kWh before, 25 + 4 x 24 from the 27th
        ("2024-10", dt.date(2024, 10, 27), Decimal("624.000"), Decimal("121.000")),
        # the day after it: the 25-hour day is still at the old price
        ("2024-10", dt.date(2024, 10, 28), Decimal("649.000"), Decimal("96.000")),
    ],
)
def test_a_price_change_at_local_midnight_of_a_clock_change_month(month, change, before_kwh, after_kwh):
    tariffs = [
        dict(
            tariff_id=n + 1,
            plan_id="FLEX",
            band="all_day",
            band_start="00:00",
            band_end="24:00",
            unit_rate=Decimal(rate),
            standing_charge=Decimal(standing),
            valid_from=a,
            valid_to=b,
        )
        for n, (rate, standing, a, b) in enumerate(
            (("0.2450", "0.6050", dt.date(2023, 1, 1), change), ("0.3000", "0.5000", change, None))
        )
    ]
    bill = compute_bills(_flat_month(month, tariffs), month, TZ, TAX).bills[7]
    assert [(line.unit_rate, line.kwh) for line in bill.energy] == [
        (Decimal("0.2450"), before_kwh),
        (Decimal("0.3000"), after_kwh),
    ]
    days_before = (change - month_bounds(month)[0]).days
    assert [(line.daily_rate, line.days) for line in bill.standing] == [
        (Decimal("0.6050"), days_before),
        (Decimal("0.5000"), 31 - days_before),
    ]


# the fall-back day's repeated hour: 01:00 local is 00:00 UTC (summer time), then 01:00 UTC again
FIRST_ONE_AM, SECOND_ONE_AM = dt.datetime(2024, 10, 27, 0, 0), dt.datetime(2024, 10, 27, 1, 0)


def _day_ahead_october(prices: list[dict]) -> duckdb.DuckDBPyConnection:
    """October 2024 on a day-ahead plan (2.2 x the price per kWh + 0.05, at most 0.90): 0.125 kWh a
    quarter hour, but 1 kWh in each of the second 01:00's."""
    reads = [
        dict(
            meter_id=1,
            read_at=at,
            kwh=Decimal("1.000")
            if SECOND_ONE_AM <= at < SECOND_ONE_AM + dt.timedelta(minutes=30)
            else Decimal("0.125"),
            quality_flag="actual",
        )
        for at in utc_intervals("2024-10")
    ]
    tariffs = [
        dict(
            tariff_id=1,
            plan_id="DYN",
            band="all_day",
            band_start="00:00",
            band_end="24:00",
            pricing="day_ahead",
            unit_rate=None,
            price_multiplier=Decimal("2.2000"),
            price_adder=Decimal("0.0500"),
            price_cap=Decimal("0.9000"),
            standing_charge=Decimal("0.6050"),
            valid_from=dt.date(2023, 1, 1),
            valid_to=None,
        )
    ]
    assignments = [dict(meter_id=1, customer_id=7, valid_from=dt.date(2020, 1, 1), valid_to=None)]
    return connection(reads, assignments, [dict(customer_id=7, plan_id="DYN")], tariffs, prices)


def _october_prices(**special: Decimal) -> list[dict]:
    """100 per MWh in every settlement period of October 2024, but at the UTC starts given."""
    return [
        dict(period_start=at, price_per_mwh=special.get(at.isoformat(), Decimal("100.00")))
        for at in utc_intervals("2024-10")
        if at.minute % 30 == 0
    ]


def test_a_day_ahead_plan_prices_each_quarter_hour_at_its_own_settlement_period_across_the_fall_back():
    prices = _october_prices(
        **{FIRST_ONE_AM.isoformat(): Decimal("2000.00"), SECOND_ONE_AM.isoformat(): Decimal("-40.00")}
    )
    (line,) = compute_bills(_day_ahead_october(prices), "2024-10", TZ, TAX).bills[7].energy
    # 1,490 settlement periods (one day of 50): 1,488 at 0.25 kWh x 0.2700 (100 x 2.2 / 1000 + 0.05);
    # the first 01:00 at 0.25 kWh x the cap 0.9000 (2000 would be 4.45); the second 01:00 at
    # 2 kWh x -0.0380 (-40: the customer is paid to use)
    assert line.kwh == Decimal("374.250")
    assert line.cost == Decimal("100.589")  # 100.44 + 0.225 - 0.076
    assert line.amount == Decimal("100.59")
    assert line.unit_rate is None and line.price_rule == "day-ahead x 2.2000 + 0.0500, cap 0.9000"
    assert line.average_rate == Decimal("0.2688")  # 100.589 / 374.25


def test_a_supplied_settlement_period_with_no_price_stops_the_run_naming_plan_and_period():
    prices = [p for p in _october_prices() if p["period_start"] != SECOND_ONE_AM]
    with pytest.raises(MissingPrice, match=r"plan DYN, settlement period 5 of 2024-10-27 \(01:00 UTC\)"):
        compute_bills(_day_ahead_october(prices), "2024-10", TZ, TAX)


def test_a_customer_with_two_meters_pays_one_standing_charge_a_day():
    # two meters all June on one account: 30 days of supply, not 60; energy from both
    bill = compute_bills(_flat_month("2024-06", meters=(1, 2)), "2024-06", TZ, TAX).bills[7]
    assert bill.supply_days == 30
    assert bill.standing_charge == Decimal("18.15")  # 30 x 0.6050
    assert bill.measured_kwh == Decimal("1440.000")  # 2 meters x 30 days x 24 kWh
    assert bill.energy_charge == Decimal("352.80")  # 1440 x 0.2450
    assert bill.tax == Decimal("18.55")  # 5 % of 370.95 = 18.5475
    assert bill.charges == Decimal("389.50")


def test_overlapping_tariff_rows_are_a_clear_error():
    tariffs = _ev_plan("0.2750")
    tariffs.append({**tariffs[2], "tariff_id": 9, "band": "evening", "band_start": "18:00", "band_end": "20:00"})
    with pytest.raises(
        AmbiguousTariff, match=r"2024-06-01: .*plan FLEX at 18:00: peak at 0.3850 and evening at 0.3850"
    ):
        compute_bills(_flat_month("2024-06", tariffs), "2024-06", TZ, TAX)


def test_a_day_with_two_standing_charges_is_a_clear_error():
    tariffs = _ev_plan("0.2750")
    tariffs[1]["standing_charge"] = Decimal("0.6000")
    with pytest.raises(
        AmbiguousTariff,
        match=r"2024-06: .*plan FLEX on 2024-06-01 \(1 customer\(s\)\): "
        r"0.5800 and 0.6000",
    ):
        compute_bills(_flat_month("2024-06", tariffs), "2024-06", TZ, TAX)


def test_a_meter_day_held_by_two_customers_is_shown_and_billed_to_neither():
    """Assignments that reached the lake past the reference check stop pricing (the bills and
    the usage page's table alike) with the meter, its customers and the day."""
    reads = [
        dict(meter_id=1, read_at=at, kwh=Decimal("0.250"), quality_flag="actual") for at in utc_intervals("2024-06")
    ]
    assignments = [
        dict(meter_id=1, customer_id=7, valid_from=dt.date(2020, 1, 1), valid_to=None),
        dict(meter_id=1, customer_id=8, valid_from=dt.date(2024, 6, 10), valid_to=dt.date(2024, 6, 12)),
    ]
    customers = [dict(customer_id=7, plan_id="FLEX"), dict(customer_id=8, plan_id="FLEX")]
    con = connection(reads, assignments, customers, _ev_plan("0.2750"))
    with pytest.raises(AmbiguousHolder, match=r"^2024-06-10: .*meter 1: customers \[7, 8\]$"):
        compute_bills(con, "2024-06", TZ, TAX)
