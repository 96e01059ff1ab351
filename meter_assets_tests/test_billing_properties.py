"""Whatever order late files arrive in, an issued bill plus its adjustments is the final bill."""

import datetime as dt
import itertools
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meter_assets import postgres
from meter_assets.billing.ledger import issue_month, record_month
from meter_assets.billing.pricing import compute_bills
from meter_assets.market_calendar import month_bounds

from .billing_reference import reference_bills
from .pricing_support import RATES, TZ, connection, two_plans, utc_intervals

MONTH = "2025-02"
FOUND_AT = dt.datetime(2025, 3, 10, tzinfo=dt.UTC)
TAX = Decimal("0.05")
# every example bills customers of its own, so one ledger serves them all
EXAMPLES = itertools.count(1)


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    with postgres.connect(postgres.embedded(str(tmp_path_factory.mktemp("pg"))).pipeline) as conn:
        conn.autocommit = True
        yield conn


def _month(seed: int, example: int, files: int):
    """A month of readings for three meters, and late files each holding one meter-day.

    One customer moves out of meter 1 and another moves in; the third holds meter 2 all month
    and meter 3 from a day in it; the time-of-use plan has a band in two rows at one rate, and
    the rates come from a short list, so a price change may keep some of them."""
    rng = np.random.default_rng(seed)
    start, _ = month_bounds(MONTH)
    first, second, third = (example * 10 + n for n in range(3))
    move = start + dt.timedelta(days=int(rng.integers(3, 25)))
    assignments = [
        dict(meter_id=1, customer_id=first, valid_from=dt.date(2020, 1, 1), valid_to=move),
        dict(meter_id=1, customer_id=second, valid_from=move, valid_to=None),
        dict(meter_id=2, customer_id=third, valid_from=dt.date(2020, 1, 1), valid_to=None),
        dict(
            meter_id=3, customer_id=third, valid_from=start + dt.timedelta(days=int(rng.integers(0, 27))), valid_to=None
        ),
    ]
    customers = [
        dict(customer_id=first, plan_id="TOU"),
        dict(customer_id=second, plan_id="FLEX"),
        dict(customer_id=third, plan_id="TOU"),
    ]
    tariffs = two_plans(
        start + dt.timedelta(days=int(rng.integers(2, 26))),
        (28, 76),
        [RATES[i] for i in rng.integers(0, len(RATES), 8)],
    )

    final = {}
    for meter in (1, 2, 3):
        for at in utc_intervals(MONTH):
            final[(meter, at)] = (
                Decimal(int(rng.integers(0, 2200))) / 1000,
                "estimated" if rng.random() < 0.03 else "actual",
            )
    # a late file delivers readings the head-end held back; a corrected file replaces values
    meter_days = rng.choice(3 * 28, size=files, replace=False)
    base = dict(final)
    late_files = []
    for meter_day in meter_days:
        meter, day = 1 + meter_day // 28, start + dt.timedelta(days=int(meter_day % 28))
        keys = [k for k in final if k[0] == meter and _local_day(k[1]) == day]
        if rng.random() < 0.5:
            for key in keys:
                base[key] = (None, "missing")
        else:
            for key in keys:
                base[key] = ((base[key][0] * Decimal("0.8")).quantize(Decimal("0.001")), "estimated")
        late_files.append(keys)
    return base, final, late_files, assignments, customers, tariffs


def _local_day(utc: dt.datetime) -> dt.date:
    from zoneinfo import ZoneInfo

    return utc.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(TZ)).date()


def _bills(readings: dict, assignments, customers, tariffs):
    reads = [dict(meter_id=m, read_at=at, kwh=kwh, quality_flag=flag) for (m, at), (kwh, flag) in readings.items()]
    return list(compute_bills(connection(reads, assignments, customers, tariffs), MONTH, TZ, TAX).bills.values())


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), files=st.integers(1, 4), data=st.data())
def test_issued_bill_plus_adjustments_equals_the_bill_from_final_data(conn, seed, files, data):
    example = next(EXAMPLES)
    base, final, late_files, assignments, customers, tariffs = _month(seed, example, files)
    order = data.draw(st.permutations(range(files)), label="arrival order")
    issue_after = data.draw(st.integers(0, files), label="files that arrive before issuing")

    def recompute(readings):
        bills = _bills(readings, assignments, customers, tariffs)
        written = record_month(conn, MONTH, bills, "GBP", 12, found_at=FOUND_AT)
        again = record_month(conn, MONTH, bills, "GBP", 12, found_at=FOUND_AT)
        assert (again.drafts_new, again.drafts_replaced, again.drafts_removed, again.adjustments_written) == (
            0,
            0,
            0,
            0,
        )
        return written

    # every customer of the example, whichever side of the issuing they were billed on
    ids = [c["customer_id"] for c in customers]
    readings = dict(base)
    recompute(readings)
    adjustments_expected_at_most = 0
    for position, file in enumerate(order):
        if position == issue_after:
            issue_month(conn, MONTH, FOUND_AT)
        for key in late_files[file]:
            readings[key] = final[key]
        written = recompute(readings)
        if position >= issue_after:
            assert written.drafts_replaced == 0, "an issued month's bills are never redrafted"
            adjustments_expected_at_most += 1
    if issue_after == files:
        issue_month(conn, MONTH, FOUND_AT)
    assert readings == final

    # the bill computed once from the final data, by the slow reference written from the rules
    reads = [dict(meter_id=m, read_at=at, kwh=kwh, quality_flag=flag) for (m, at), (kwh, flag) in final.items()]
    once = reference_bills(MONTH, TZ, TAX, reads, assignments, customers, tariffs).bills
    ledger = conn.execute(
        """
        SELECT bills.customer_id,
               bills.energy_charge + bills.standing_charge + bills.tax + coalesce(sum(a.delta_amount), 0),
               bills.measured_kwh + bills.estimated_kwh + coalesce(sum(a.delta_kwh), 0),
               count(a.adjustment_id)
        FROM billing.bills AS bills
        LEFT JOIN billing.bill_adjustments AS a USING (bill_id)
        WHERE bills.customer_id = ANY(%s) AND bills.status = 'issued'
        GROUP BY bills.bill_id
        """,
        [ids],
    ).fetchall()
    assert {c: (charges, kwh) for c, charges, kwh, _ in ledger} == {
        c: (b.charges, b.measured_kwh + b.estimated_kwh) for c, b in once.items()
    }
    assert all(count <= adjustments_expected_at_most for *_, count in ledger)
