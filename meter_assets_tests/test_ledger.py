"""The billing ledger in a real PostgreSQL: migrations, and sealing enforced by the database."""

import datetime as dt
import json

import psycopg
import pytest

from meter_assets import postgres
from meter_assets.billing.assets import EXPORT_BILL_LINES_SQL

from .db_support import older_installation


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> postgres.Dsns:
    return postgres.embedded(str(tmp_path_factory.mktemp("pg")))


@pytest.fixture
def conninfo(db) -> str:
    """The owner's role: sealing holds even for the role that owns the tables (the pipeline's
    cannot even try some of these: `test_db_roles.py`)."""
    return db.owner


# A May bill as pricing rules 2 writes it: one line of 250.125 kWh at 0.2450 = 61.280625 -> 61.28,
# 31 days at 0.6050 = 18.755 -> 18.76, 5 % tax of 80.04 = 4.002 -> 4.00, total 84.04.
VALID_BILL = dict(
    measured_kwh="250.125",
    estimated_kwh="0",
    energy_charge="61.28",
    supply_days=31,
    standing_charge="18.76",
    tax_rate="0.05",
    tax="4.00",
    total_due="84.04",
    is_estimated=False,
    pricing_rules=2,
    energy_lines=[
        {
            "band": "all_day",
            "unit_rate": 0.2450,
            "measured_kwh": 250.125,
            "estimated_kwh": 0,
            "kwh": 250.125,
            "amount": 61.28,
        }
    ],
    standing_lines=[{"daily_rate": 0.6050, "days": 31, "amount": 18.76}],
)


def _insert(conn, bill_id: str, customer_id: int, month: int = 5, **columns) -> None:
    values = {**VALID_BILL, **columns}
    for name in ("energy_lines", "standing_lines", "energy_by_band", "export_lines"):
        if name in values and values[name] is not None:
            values[name] = json.dumps(values[name])
    names = ["bill_id", "customer_id", "period_start", "period_end", "inputs_fingerprint", *values]
    conn.execute(
        f"INSERT INTO billing.bills ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
        [bill_id, customer_id, dt.date(2024, month, 1), dt.date(2024, month + 1, 1), "fp-1", *values.values()],
    )


def _draft(conn, bill_id: str, customer_id: int, month: int = 5) -> None:
    _insert(conn, bill_id, customer_id, month)


def test_migrations_apply_once_and_are_recorded(conninfo):
    first = postgres.migrate(conninfo)  # the fixture's start applied them all
    again = postgres.migrate(conninfo)
    assert again == []
    with psycopg.connect(conninfo) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM public.schema_migrations ORDER BY version")]
    assert versions == [v for v, _, _ in postgres.migrations()]
    assert first == []


def test_issued_bill_cannot_be_updated_or_deleted(conninfo):
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _draft(conn, "B-5000001-2024-05", 5000001)
        conn.execute("UPDATE billing.bills SET inputs_fingerprint = 'fp-2' WHERE bill_id = 'B-5000001-2024-05'")
        conn.execute(
            "UPDATE billing.bills SET status = 'issued', issued_at = now() WHERE bill_id = 'B-5000001-2024-05'"
        )
        for statement in (
            "UPDATE billing.bills SET total_due = 1.00 WHERE bill_id = 'B-5000001-2024-05'",
            "UPDATE billing.bills SET status = 'draft', issued_at = NULL WHERE bill_id = 'B-5000001-2024-05'",
            "DELETE FROM billing.bills WHERE bill_id = 'B-5000001-2024-05'",
            "TRUNCATE billing.bills CASCADE",
        ):
            with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="sealed|ledger"):
                conn.execute(statement)
        (fingerprint, total, status) = conn.execute(
            "SELECT inputs_fingerprint, total_due, status FROM billing.bills WHERE bill_id = 'B-5000001-2024-05'"
        ).fetchone()
        assert (fingerprint, str(total), status) == ("fp-2", "84.04", "issued")


def test_adjustment_is_sealed_once_a_bill_carries_it(conninfo):
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _draft(conn, "B-5000002-2024-05", 5000002)
        conn.execute(
            "UPDATE billing.bills SET status = 'issued', issued_at = now() WHERE bill_id = 'B-5000002-2024-05'"
        )
        _draft(conn, "B-5000002-2024-06", 5000002, month=6)
        (adjustment,) = conn.execute(
            """
            INSERT INTO billing.bill_adjustments (bill_id, customer_id, sequence, delta_kwh, delta_amount,
                                                  charged_amount, reason, changed_partitions, inputs_fingerprint,
                                                  pricing_rules)
            VALUES ('B-5000002-2024-05', 5000002, 1, 1.500, 0.39, 0.39, 'late readings', ARRAY['2024-05-10'], 'fp-2', 2)
            RETURNING adjustment_id
            """
        ).fetchone()
        conn.execute(
            "UPDATE billing.bill_adjustments SET carried_on_bill_id = 'B-5000002-2024-06' WHERE adjustment_id = %s",
            [adjustment],
        )
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="sealed"):
            conn.execute(
                "UPDATE billing.bill_adjustments SET charged_amount = 0 WHERE adjustment_id = %s", [adjustment]
            )
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="sealed"):
            conn.execute("DELETE FROM billing.bill_adjustments WHERE adjustment_id = %s", [adjustment])
        # a second correction computed from the same state (a racing run) collides on the sequence
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                """
                INSERT INTO billing.bill_adjustments (bill_id, customer_id, sequence, delta_kwh, delta_amount,
                                                      charged_amount, reason, changed_partitions, inputs_fingerprint,
                                                      pricing_rules)
                VALUES ('B-5000002-2024-05', 5000002, 1, 2.000, 0.52, 0.52, 'late readings', ARRAY['2024-05-11'],
                        'fp-3', 2)
                """
            )


def _line(**changes) -> list[dict]:
    return [{**VALID_BILL["energy_lines"][0], **changes}]


@pytest.mark.parametrize(
    "columns, refusal",
    [
        # the breakdown loses a line: the lines no longer add up to the energy charge
        (
            dict(energy_lines=_line(kwh=150.125, measured_kwh=150.125, amount=36.78)),
            "the energy lines add up to 36.78, not to the energy charge 61.28",
        ),
        # a line rounded another way than once, half up
        (
            dict(energy_lines=_line(amount=61.29), energy_charge="61.29", tax="4.00", total_due="84.05"),
            r"an energy line's amount is not round\(kWh x unit rate, 2\)",
        ),
        # one band and rate split over two lines (the rounding per tariff row)
        (
            dict(
                energy_lines=_line(kwh=100, measured_kwh=100, amount=24.50)
                + _line(kwh=150.125, measured_kwh=150.125, amount=36.78)
            ),
            "two energy lines have the same band and price",
        ),
        # measured and estimated kWh that do not make the line's kWh
        (dict(energy_lines=_line(kwh=251.125)), "an energy line's kWh is not its measured plus its estimated kWh"),
        (
            dict(measured_kwh="250.000", estimated_kwh="0.125", is_estimated=True),
            "the energy lines hold 250.125 measured and 0 estimated kWh, not 250.000 and 0.125",
        ),
        # days of supply counted twice for a second meter
        (
            dict(supply_days=62, standing_lines=[{"daily_rate": 0.6050, "days": 62, "amount": 37.51}]),
            "the standing lines add up to 37.51 for 62 days, not to the standing charge 18.76 for 62 days",
        ),
        (
            dict(standing_lines=[{"daily_rate": 0.6050, "days": 31, "amount": 18.75}]),
            r"a standing line's amount is not round\(daily rate x days, 2\)",
        ),
        (dict(tax="4.01", total_due="84.05"), "tax_is_one_rounding"),
        (dict(total_due="84.14"), "total_adds_up"),
        (dict(is_estimated=True), "estimated_when_any_kwh_is"),
        (dict(pricing_rules=1), "bills_use_current_pricing_rules"),
        (dict(energy_lines=None), "bills_use_current_pricing_rules"),
    ],
)
def test_database_refuses_a_bill_whose_lines_do_not_add_up(conninfo, columns, refusal):
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _insert(conn, "B-5000009-2024-05", 5000009)  # the valid bill is accepted
        conn.execute("DELETE FROM billing.bills WHERE bill_id = 'B-5000009-2024-05'")
        with pytest.raises(psycopg.errors.CheckViolation, match=refusal):
            _insert(conn, "B-5000009-2024-05", 5000009, **columns)
        conn.execute("DELETE FROM billing.bills WHERE bill_id = 'B-5000009-2024-05'")


def test_a_day_ahead_line_is_its_exact_cost_rounded_once(conninfo):
    # each quarter hour had its settlement period's rate: no unit rate, the exact cost instead
    day_ahead = _line(
        price_rule="day-ahead x 2.2000 + 0.0000, cap 1.0000", unit_rate=None, average_rate=0.2450, cost=61.2849999
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _insert(conn, "B-5000031-2024-05", 5000031, energy_lines=day_ahead)
        with pytest.raises(psycopg.errors.CheckViolation, match=r"a day-ahead line's round\(cost, 2\)"):
            _insert(
                conn,
                "B-5000032-2024-05",
                5000032,
                energy_lines=[{**day_ahead[0], "amount": 61.29}],
                energy_charge="61.29",
                tax="4.00",
                total_due="84.05",
            )
        # a band with a line at a unit rate and a line at a rule (a change of plan's pricing mid-month)
        _insert(
            conn,
            "B-5000033-2024-05",
            5000033,
            energy_lines=_line(kwh=100, measured_kwh=100, amount=24.50)
            + [{**day_ahead[0], "kwh": 150.125, "measured_kwh": 150.125, "cost": 36.7799, "amount": 36.78}],
        )


# 31.462 kWh sent to the grid at 0.1500: 4.7193, credited -4.72, untaxed
EXPORT_LINE = {
    "direction": "export",
    "band": "export",
    "unit_rate": 0.1500,
    "measured_kwh": 31.462,
    "estimated_kwh": 0,
    "kwh": 31.462,
    "amount": -4.72,
}
WITH_EXPORT = dict(export_lines=[EXPORT_LINE], export_kwh="31.462", export_credit="-4.72", total_due="79.32")


@pytest.mark.parametrize(
    "columns, refusal",
    [
        # a credit written as a charge
        (dict(export_lines=[{**EXPORT_LINE, "amount": 4.72}], export_credit="4.72", total_due="88.76"), "export line"),
        # the credit taxed: 5 % of 61.28 + 18.76 - 4.72
        (dict(tax="3.77", total_due="79.09"), "tax_is_one_rounding"),
        # the credit left out of the total
        (dict(total_due="84.04"), "total_adds_up"),
        # an export line not marked as one
        (dict(export_lines=[{k: v for k, v in EXPORT_LINE.items() if k != "direction"}]), "not marked export"),
        (dict(export_kwh="30.000"), "not to the export credit -4.72 for 30.000 kWh"),
    ],
)
def test_an_export_line_is_a_credit_rounded_once_and_untaxed(conninfo, columns, refusal):
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _insert(conn, "B-5000041-2024-05", 5000041, **WITH_EXPORT)  # the valid bill is accepted
        conn.execute("DELETE FROM billing.bills WHERE bill_id = 'B-5000041-2024-05'")
        with pytest.raises(psycopg.errors.CheckViolation, match=refusal):
            _insert(conn, "B-5000041-2024-05", 5000041, **{**WITH_EXPORT, **columns})


@pytest.mark.parametrize(
    "change",
    [
        "energy_lines = '[]'",
        "standing_lines = '[]'",
        "export_credit = -1.00, total_due = 83.04",
        "energy_charge = 0, tax = 0.94, total_due = 18.76 + 0.94",
        "measured_kwh = 0",
        "supply_days = 30",
    ],
)
def test_a_bills_lines_and_charges_are_never_changed_in_place(conninfo, change):
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _insert(conn, "B-5000011-2024-05", 5000011)
        with pytest.raises(psycopg.errors.CheckViolation, match="written once; replace the draft"):
            conn.execute(f"UPDATE billing.bills SET {change} WHERE bill_id = 'B-5000011-2024-05'")
        # what issuing and carrying change is allowed
        conn.execute(
            "UPDATE billing.bills SET adjustments_carried = 1.00, total_due = 85.04 WHERE bill_id = 'B-5000011-2024-05'"
        )
        conn.execute("DELETE FROM billing.bills WHERE bill_id = 'B-5000011-2024-05'")


def test_migration_keeps_bills_issued_under_the_old_rules_as_issued(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("pg-upgrade"))
    superuser = older_installation(folder, until=4)
    with psycopg.connect(superuser, autocommit=True) as conn:
        # an EV bill issued under rules 1: its breakdown lost one of the two "standard" rows
        conn.execute(
            """
            INSERT INTO billing.bills (bill_id, customer_id, period_start, period_end, measured_kwh, estimated_kwh,
                                       energy_by_band, energy_charge, supply_days, standing_charge, tax, total_due,
                                       is_estimated, inputs_fingerprint, status, issued_at)
            VALUES ('B-5000010-2024-06', 5000010, '2024-06-01', '2024-07-01', 164.373, 0,
                    '{"standard@0.2750": {"kwh": "91.663", "rate": "0.2750", "amount": "25.21"}}',
                    45.21, 30, 17.40, 3.13, 65.74, false, 'fp-old', 'issued', '2024-07-04')
            """
        )
        before = conn.execute("SELECT * FROM billing.bills").fetchall()

    # this version's start: the roles, the objects handed to the owner, the new migrations by the owner
    db = postgres.embedded(folder)
    conninfo = db.pipeline
    with psycopg.connect(conninfo, autocommit=True) as conn:
        after = conn.execute("SELECT * FROM billing.bills").fetchall()
        (rules,) = conn.execute("SELECT pricing_rules FROM billing.bills").fetchone()
        assert [v for (v,) in conn.execute("SELECT version FROM public.schema_migrations ORDER BY 1")] == [
            v for v, _, _ in postgres.migrations()
        ]
    with psycopg.connect(db.owner) as conn:
        owners = conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname IN ('billing', 'serving') "
            "OR tablename = 'schema_migrations'"
        ).fetchall()
    assert owners == [("meter_owner",)]
    width = len(before[0])
    assert [row[:width] for row in after] == before and rules == 1, "the issued bill stays as issued"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed|no password"):
        psycopg.connect(superuser).close()

    # re-exported, its lines are what was issued: the map's one line, the days, the tax
    with (
        psycopg.connect(conninfo) as conn,
        conn.cursor().copy(EXPORT_BILL_LINES_SQL, {"period_start": "2024-06-01"}) as copy,
    ):
        exported = b"".join(bytes(chunk) for chunk in copy).decode().splitlines()
    assert exported == [
        "bill_id,customer_id,line_no,kind,band,rate,price_rule,cost,measured_kwh,estimated_kwh,derived_kwh,kwh,days,amount",
        "B-5000010-2024-06,5000010,1,energy,standard,0.2750,,,,,,91.663,,25.21",
        "B-5000010-2024-06,5000010,2,standing,,,,,,,,,30,17.40",
        "B-5000010-2024-06,5000010,3,tax,,,,,,,,,,3.13",
    ]


def test_embedded_server_starts_when_no_dsn_is_configured():
    with postgres.connect() as conn:
        (schemas,) = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'billing'").fetchone()
    assert schemas == 1
