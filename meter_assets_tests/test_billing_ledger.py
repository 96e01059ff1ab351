"""Drafts, sealed bills and adjustments in the real PostgreSQL ledger."""

import csv
import datetime as dt
import io
from decimal import Decimal

import psycopg
import pytest

from meter_assets import postgres
from meter_assets.billing.assets import EXPORT_BILL_LINES_SQL
from meter_assets.billing.ledger import issue_month, record_month
from meter_assets.billing.pricing import Bill, EnergyLine, StandingLine
from meter_assets.market_calendar import month_bounds

from .db_support import older_installation

RATE = Decimal("0.2450")
NOW = dt.datetime(2024, 7, 2, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def conn(pg_dsn):
    with postgres.connect(pg_dsn) as conn:
        conn.autocommit = True
        yield conn


def bill(customer_id: int, month: str, daily_kwh: list[str], estimated: str = "0", rate: Decimal = RATE) -> Bill:
    """A one-band bill whose energy is the sum of its days."""
    days = [Decimal(kwh) for kwh in daily_kwh]
    start, end = month_bounds(month)
    days += [Decimal("0.000")] * ((end - start).days - len(days))
    total = sum(days, Decimal("0.000"))
    return Bill(
        customer_id=customer_id,
        month=month,
        energy=[
            EnergyLine(
                band="all_day",
                unit_rate=rate,
                measured_kwh=total - Decimal(estimated),
                estimated_kwh=Decimal(estimated),
            )
        ],
        standing=[StandingLine(daily_rate=Decimal("0.6050"), days=(end - start).days)],
        tax_rate=Decimal("0.05"),
        daily_wh=[int(kwh * 1000) for kwh in days],
    )


def record(conn, month, bills, found_at=NOW, backbilling_months=12):
    return record_month(conn, month, bills, "GBP", backbilling_months, found_at=found_at)


def rows(conn, sql, params=()):
    return conn.execute(sql, params).fetchall()


def test_drafts_are_written_replaced_and_left_alone_when_unchanged(conn):
    june = [bill(1, "2024-06", ["10.000", "12.500"]), bill(2, "2024-06", ["3.000"])]
    first = record(conn, "2024-06", june)
    assert (first.drafts_new, first.drafts_replaced, first.adjustments_written) == (2, 0, 0)
    computed_at = rows(conn, "SELECT bill_id, computed_at FROM billing.bills ORDER BY bill_id")

    again = record(conn, "2024-06", june)
    assert (again.drafts_new, again.drafts_replaced, again.drafts_unchanged, again.drafts_removed) == (0, 0, 2, 0)
    assert rows(conn, "SELECT bill_id, computed_at FROM billing.bills ORDER BY bill_id") == computed_at

    changed = record(conn, "2024-06", [bill(1, "2024-06", ["10.000", "13.500"])])
    assert (changed.drafts_replaced, changed.drafts_removed) == (1, 1)
    ((bill_id, kwh, energy, total, status),) = rows(
        conn, "SELECT bill_id, measured_kwh, energy_charge, total_due, status FROM billing.bills"
    )
    # 23.5 kWh x 0.2450 = 5.7575 -> 5.76; 30 days x 0.6050 = 18.15; 5 % tax of 23.91 = 1.1955 -> 1.20
    assert (bill_id, kwh, energy, total, status) == (
        "B-1-2024-06",
        Decimal("23.500"),
        Decimal("5.76"),
        Decimal("25.11"),
        "draft",
    )


def test_issued_month_gets_one_adjustment_per_changed_bill_and_nothing_else(conn):
    june = [bill(1, "2024-06", ["10.000", "12.500"]), bill(2, "2024-06", ["3.000"]), bill(3, "2024-06", ["1.000"])]
    record(conn, "2024-06", june)
    issued = issue_month(conn, "2024-06", NOW)
    assert issued.bills_issued == 3
    sealed = rows(conn, "SELECT * FROM billing.bills ORDER BY bill_id")

    # a late file adds 4 kWh on 2 June for customer 1; customer 2's bill is corrected down on the 1st
    corrected = [bill(1, "2024-06", ["10.000", "16.500"]), bill(2, "2024-06", ["2.000"]), june[2]]
    first = record(conn, "2024-06", corrected, found_at=NOW + dt.timedelta(days=3))
    assert (first.adjustments_written, first.drafts_new, first.drafts_replaced) == (2, 0, 0)
    assert rows(conn, "SELECT * FROM billing.bills ORDER BY bill_id") == sealed, "issued bills are untouched"
    adjustments = rows(
        conn,
        "SELECT bill_id, sequence, delta_kwh, delta_amount, charged_amount, reason, "
        "changed_partitions FROM billing.bill_adjustments ORDER BY bill_id",
    )
    assert adjustments == [
        # 4 kWh x 0.2450 = 0.98 more energy, tax 5 % of it on the line-rounded totals: 1.03
        (
            "B-1-2024-06",
            1,
            Decimal("4.000"),
            Decimal("1.03"),
            Decimal("1.03"),
            "late or corrected readings",
            ["2024-06-02"],
        ),
        (
            "B-2-2024-06",
            1,
            Decimal("-1.000"),
            Decimal("-0.26"),
            Decimal("-0.26"),
            "late or corrected readings",
            ["2024-06-01"],
        ),
    ]
    for customer, final in ((1, corrected[0]), (2, corrected[1])):
        (issued_charges, deltas) = rows(
            conn,
            "SELECT b.energy_charge + b.standing_charge + b.tax, sum(a.delta_amount) FROM billing.bills b "
            "JOIN billing.bill_adjustments a USING (bill_id) WHERE b.customer_id = %s GROUP BY 1",
            [customer],
        )[0]
        assert issued_charges + deltas == final.charges

    assert record(conn, "2024-06", corrected).adjustments_written == 0, "the same data twice adds nothing"

    # the data goes back to what was billed: a second adjustment reverses the first
    back = record(conn, "2024-06", june)
    assert back.adjustments_written == 2
    assert rows(
        conn,
        "SELECT sum(delta_amount), sum(delta_kwh), max(sequence) FROM billing.bill_adjustments "
        "WHERE bill_id = 'B-1-2024-06'",
    ) == [(Decimal("0.00"), Decimal("0.000"), 2)]


def test_undercharges_past_the_backbilling_limit_are_recorded_not_charged(conn):
    record(conn, "2024-06", [bill(1, "2024-06", ["10.000"]), bill(2, "2024-06", ["10.000"])])
    issue_month(conn, "2024-06", NOW)
    thirteen_months_later = dt.datetime(2025, 8, 2, tzinfo=dt.UTC)
    record(
        conn, "2024-06", [bill(1, "2024-06", ["20.000"]), bill(2, "2024-06", ["5.000"])], found_at=thirteen_months_later
    )
    adjustments = rows(
        conn,
        "SELECT customer_id, delta_amount, charged_amount, reason FROM billing.bill_adjustments ORDER BY customer_id",
    )
    under, over = adjustments
    assert under[1] > 0 and under[2] == 0 and "back-billing limit" in under[3]
    assert over[1] < 0 and over[2] == over[1], "an overcharge is always credited"


def test_issuing_carries_open_adjustments_on_the_next_bill(conn):
    record(conn, "2024-06", [bill(1, "2024-06", ["10.000"]), bill(2, "2024-06", ["10.000"])])
    issue_month(conn, "2024-06", NOW)
    record(conn, "2024-06", [bill(1, "2024-06", ["14.000"]), bill(2, "2024-06", ["10.000"])])
    (june_delta,) = rows(conn, "SELECT delta_amount FROM billing.bill_adjustments")[0]

    july = [bill(1, "2024-07", ["7.000"]), bill(2, "2024-07", ["7.000"])]
    record(conn, "2024-07", july)
    issued = issue_month(conn, "2024-07", NOW + dt.timedelta(days=31))
    assert (issued.bills_issued, issued.adjustments_carried) == (2, 1)
    carried = rows(
        conn,
        "SELECT customer_id, adjustments_carried, total_due, status FROM billing.bills "
        "WHERE period_start = '2024-07-01' ORDER BY customer_id",
    )
    assert carried == [
        (1, june_delta, july[0].charges + june_delta, "issued"),
        (2, Decimal("0.00"), july[1].charges, "issued"),
    ]
    assert rows(conn, "SELECT carried_on_bill_id FROM billing.bill_adjustments") == [("B-1-2024-07",)]
    # the exported lines carry it too, and add up to what is due
    with conn.cursor().copy(EXPORT_BILL_LINES_SQL, {"period_start": dt.date(2024, 7, 1)}) as copy:
        exported = list(csv.DictReader(io.StringIO(b"".join(bytes(chunk) for chunk in copy).decode())))
    first = [line for line in exported if line["customer_id"] == "1"]
    assert [line["kind"] for line in first] == ["energy", "standing", "tax", "adjustments_carried"]
    assert Decimal(first[-1]["amount"]) == june_delta
    assert sum(Decimal(line["amount"]) for line in first) == july[0].charges + june_delta
    with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="sealed"):
        conn.execute("UPDATE billing.bill_adjustments SET charged_amount = 0")

    # issuing again finds nothing more to seal or carry
    again = issue_month(conn, "2024-07", NOW + dt.timedelta(days=32))
    assert (again.bills_issued, again.adjustments_carried, again.already_issued) == (0, 0, 2)


def test_a_negative_total_is_carried_to_the_next_bill_and_never_lost(conn):
    """A sunny month: the export credit outweighs the charges. The bill is issued with its
    negative total; the credit rides on the customer's next bill (and only there), and a
    customer with no next bill keeps it open."""

    def sunny(customer_id: int) -> Bill:
        sunny = bill(customer_id, "2024-06", ["10.000"])
        # 600 kWh sent to the grid at 0.1500: 90.00 credited, untaxed
        sunny.export = [
            EnergyLine(
                band="export",
                unit_rate=Decimal("0.1500"),
                measured_kwh=Decimal("600.000"),
                estimated_kwh=Decimal("0.000"),
                is_export=True,
            )
        ]
        sunny.daily_export_wh = [600_000] + [0] * 29
        return sunny

    june = [sunny(1), sunny(2)]
    record(conn, "2024-06", june)
    issued = issue_month(conn, "2024-06", issued_at=NOW)
    # 10 kWh x 0.2450 = 2.45; 30 x 0.6050 = 18.15; tax 5 % of 20.60 = 1.03; less 90.00 credit
    expected = Decimal("2.45") + Decimal("18.15") + Decimal("1.03") - Decimal("90.00")
    assert (issued.credits_carried_forward, issued.credit_carried_forward) == (2, str(2 * expected))
    assert rows(conn, "SELECT customer_id, total_due, export_credit FROM billing.bills ORDER BY 1") == [
        (1, expected, Decimal("-90.00")),
        (2, expected, Decimal("-90.00")),
    ]
    # the same month recomputed on the same data: the credit corrects nothing, so nothing is written
    assert record(conn, "2024-06", june).adjustments_written == 0

    # July: customer 1 has a bill, which carries the credit; customer 2 has left
    july = bill(1, "2024-07", ["100.000"])
    record(conn, "2024-07", [july])
    issue_month(conn, "2024-07", issued_at=NOW + dt.timedelta(days=31))
    ((carried, total),) = rows(
        conn, "SELECT adjustments_carried, total_due FROM billing.bills WHERE bill_id = 'B-1-2024-07'"
    )
    assert (carried, total) == (expected, july.charges + expected)
    # July's total, still negative with June's credit in it, is carried forward in turn
    assert total < 0
    reason = "credit carried forward: the bill's total was negative"
    assert rows(
        conn,
        "SELECT bill_id, charged_amount, carried_on_bill_id, reason FROM billing.bill_adjustments ORDER BY 1",
    ) == [
        ("B-1-2024-06", expected, "B-1-2024-07", reason),
        ("B-1-2024-07", total, None, reason),
        ("B-2-2024-06", expected, None, reason),
    ]


def test_customer_no_longer_supplied_in_an_issued_month_is_credited_in_full(conn):
    record(conn, "2024-06", [bill(1, "2024-06", ["10.000"]), bill(2, "2024-06", ["10.000"])])
    issue_month(conn, "2024-06", NOW)
    record(conn, "2024-06", [bill(1, "2024-06", ["10.000"])])
    ((customer, delta_kwh, delta, reason),) = rows(
        conn, "SELECT customer_id, delta_kwh, delta_amount, reason FROM billing.bill_adjustments"
    )
    (charged,) = rows(conn, "SELECT energy_charge + standing_charge + tax FROM billing.bills WHERE customer_id = 2")[0]
    assert (customer, delta_kwh, delta, reason) == (2, Decimal("-10.000"), -charged, "no longer supplied in the period")


def test_bills_issued_under_the_old_rules_are_corrected_by_adjustments_that_say_so(tmp_path):
    """An EV bill issued under pricing rules 1 (energy rounded per tariff row) stays sealed;
    recomputing its month under rules 2 writes one adjustment for the penny, naming the rules."""
    folder = str(tmp_path / "pg")
    june = dict(period_start=dt.date(2024, 6, 1), period_end=dt.date(2024, 7, 1), daily_wh=[5479] * 30)
    with psycopg.connect(older_installation(folder, until=4), autocommit=True) as legacy:
        # 72.710 kWh + 91.663 kWh at 0.2750 rounded per row: 20.00 + 25.21 = 45.21; 30 days at
        # 0.5800 = 17.40; 5 % of 62.61 = 3.13; 65.74. Customer 2's bill came out the same either way.
        for customer, energy, tax, total in ((1, "45.21", "3.13", "65.74"), (2, "45.20", "3.13", "65.73")):
            legacy.execute(
                """
                INSERT INTO billing.bills (bill_id, customer_id, period_start, period_end, measured_kwh,
                                           estimated_kwh, energy_by_band, energy_charge, supply_days, standing_charge,
                                           tax, total_due, is_estimated, inputs_fingerprint, daily_wh, status,
                                           issued_at)
                VALUES (%(bill_id)s, %(customer)s, %(period_start)s, %(period_end)s, 164.373, 0, '{}', %(energy)s, 30,
                        17.40, %(tax)s, %(total)s, false, 'rules-1', %(daily_wh)s, 'issued', %(issued_at)s)
                """,
                {
                    **june,
                    "bill_id": f"B-{customer}-2024-06",
                    "customer": customer,
                    "energy": energy,
                    "tax": tax,
                    "total": total,
                    "issued_at": NOW,
                },
            )
    with postgres.connect(postgres.embedded(folder).pipeline) as conn:
        conn.autocommit = True
        sealed = rows(conn, "SELECT bill_id, energy_charge, total_due, status FROM billing.bills ORDER BY bill_id")
        recomputed = [
            Bill(
                customer_id=customer,
                month="2024-06",
                tax_rate=Decimal("0.05"),
                daily_wh=june["daily_wh"],
                energy=[
                    EnergyLine(
                        band="standard",
                        unit_rate=Decimal("0.2750"),
                        measured_kwh=Decimal("164.373"),
                        estimated_kwh=Decimal("0.000"),
                    )
                ],
                standing=[StandingLine(daily_rate=Decimal("0.5800"), days=30)],
            )
            for customer in (1, 2)
        ]
        assert recomputed[0].charges == Decimal("65.73")
        written = record(conn, "2024-06", recomputed, found_at=NOW + dt.timedelta(days=40))
        assert written.adjustments_written == 1
        assert (
            rows(conn, "SELECT bill_id, energy_charge, total_due, status FROM billing.bills ORDER BY bill_id") == sealed
        ), "the issued bills stay as issued"
        ((bill_id, delta_kwh, delta, charged, reason, changed, rules),) = rows(
            conn,
            "SELECT bill_id, delta_kwh, delta_amount, charged_amount, reason, changed_partitions, "
            "pricing_rules FROM billing.bill_adjustments",
        )
        assert (bill_id, delta_kwh, delta, charged, changed, rules) == (
            "B-1-2024-06",
            Decimal("0.000"),
            Decimal("-0.01"),
            Decimal("-0.01"),
            [],
            2,
        )
        assert reason.startswith("billing rules revised: one energy line per band and unit rate, each rounded once")
        # the correction is accounted: the same computation again writes nothing
        assert record(conn, "2024-06", recomputed, found_at=NOW + dt.timedelta(days=41)).adjustments_written == 0
