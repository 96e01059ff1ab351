"""Least privilege in PostgreSQL: the API reads the serving tables and nothing else, the
pipeline writes rows but cannot unseal a bill, nobody runs as a superuser, every login proves
a password."""

import datetime as dt
import json
import os
import pwd
import subprocess
import sys
from decimal import Decimal

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from meter_assets import postgres

from .api_support import load_days


def refused(
    dsn: str, statement: str, error=psycopg.errors.InsufficientPrivilege, match: str = "permission denied|must be owner"
):
    """`statement` fails with `error` as the role of `dsn`, and changes nothing."""
    with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(error, match=match):
        conn.execute(statement)


def test_the_api_role_reads_the_serving_tables_and_nothing_else(pg, tmp_path):
    load_days(pg.pipeline, tmp_path, days=3)
    with psycopg.connect(pg.api) as conn:
        assert conn.execute("SELECT count(*) FROM serving.daily_usage").fetchone()[0] == 9
        assert conn.execute("SELECT count(*) FROM serving.bill_estimates").fetchone()[0] == 3
        assert conn.execute("SELECT count(*) FROM serving.refreshes").fetchone()[0] == 3
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
    for statement in (
        "SELECT * FROM billing.bills",
        "SELECT * FROM billing.bill_adjustments",
        "INSERT INTO serving.daily_usage VALUES (9, '2025-03-01', 1, 0, 0, 1)",
        "UPDATE serving.daily_usage SET cost = 0",
        "DELETE FROM serving.daily_usage",
        "TRUNCATE serving.daily_usage",
        "INSERT INTO serving.refreshes VALUES ('2030-01-01', now(), 1)",
        "CREATE TABLE serving.mine (x int)",
        "CREATE TABLE public.mine (x int)",
        "CREATE TEMP TABLE mine (x int)",
        "CREATE SCHEMA mine",
        "ALTER TABLE serving.daily_usage ADD COLUMN x int",
        "DROP VIEW serving.bill_estimates",
        "COPY (SELECT 1) TO PROGRAM 'touch /tmp/meter-api-was-here'",
        "COPY serving.daily_usage TO '/tmp/meter-api-was-here'",
        "SELECT pg_read_file('PG_VERSION')",
        # large objects could fill the disk; the serving table's advisory lock would hold its refresh
        "SELECT lo_from_bytea(0, 'x')",
        "SELECT lo_create(0)",
        "SELECT pg_advisory_lock(7400000001)",
        "SELECT pg_try_advisory_lock(7400000001)",
        "SELECT pg_advisory_xact_lock_shared(1, 2)",
    ):
        refused(pg.api, statement)
    refused(pg.api, "SET session_replication_role = replica", match="permission denied to set parameter")
    with psycopg.connect(pg.api) as conn:
        # every session of the role starts with a statement timeout, and the role has a connection limit
        assert conn.execute("SHOW statement_timeout").fetchone() == ("5s",)
        assert conn.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user").fetchone() == (64,)
    with psycopg.connect(pg.pipeline, autocommit=True) as conn:
        # the pipeline still takes the serving table's lock
        assert conn.execute("SELECT pg_try_advisory_lock(7400000001)").fetchone() == (True,)
    with psycopg.connect(pg.pipeline) as conn:
        assert conn.execute("SELECT count(*) FROM serving.daily_usage").fetchone()[0] == 9, "nothing changed"


def test_the_pipeline_role_cannot_unseal_an_issued_bill(pg):
    with psycopg.connect(pg.pipeline, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO billing.bills (bill_id, customer_id, period_start, period_end, measured_kwh, estimated_kwh,
                                       energy_charge, supply_days, standing_charge, tax, total_due, is_estimated,
                                       inputs_fingerprint, pricing_rules, tax_rate, energy_lines, standing_lines)
            VALUES ('B-1-2024-05', 1, '2024-05-01', '2024-06-01', 250.125, 0, 61.28, 31, 18.76, 4.00, 84.04, false,
                    'fp', 2, 0.05, %s, %s)
            """,
            [
                json.dumps(
                    [
                        {
                            "band": "all_day",
                            "unit_rate": 0.2450,
                            "measured_kwh": 250.125,
                            "estimated_kwh": 0,
                            "kwh": 250.125,
                            "amount": 61.28,
                        }
                    ]
                ),
                json.dumps([{"daily_rate": 0.6050, "days": 31, "amount": 18.76}]),
            ],
        )
        conn.execute("UPDATE billing.bills SET status = 'issued', issued_at = now() WHERE bill_id = 'B-1-2024-05'")
    sealed = psycopg.errors.IntegrityConstraintViolation
    refused(pg.pipeline, "UPDATE billing.bills SET total_due = 0 WHERE bill_id = 'B-1-2024-05'", sealed, "sealed")
    refused(pg.pipeline, "DELETE FROM billing.bills WHERE bill_id = 'B-1-2024-05'", sealed, "sealed")
    for statement in (
        "SET session_replication_role = replica",
        "ALTER TABLE billing.bills DISABLE TRIGGER issued_bills_are_sealed",
        "ALTER TABLE billing.bills DISABLE TRIGGER ALL",
        "DROP TRIGGER issued_bills_are_sealed ON billing.bills",
        "CREATE OR REPLACE FUNCTION billing.refuse_sealed_change() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RETURN NEW; END $$",
        "TRUNCATE billing.bills CASCADE",
        "ALTER TABLE billing.bills DROP CONSTRAINT total_adds_up",
        "COPY (SELECT 1) TO PROGRAM 'touch /tmp/meter-pipeline-was-here'",
        "CREATE TABLE billing.mine (x int)",
    ):
        refused(pg.pipeline, statement, match="permission denied|must be owner")
    with psycopg.connect(pg.pipeline) as conn:
        assert conn.execute("SELECT total_due, status FROM billing.bills").fetchall() == [(Decimal("84.04"), "issued")]
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)


def test_every_login_proves_a_password_and_none_is_a_superuser(pg, tmp_path):
    with open(tmp_path / "pg" / "meter_roles.json") as f:
        passwords = json.load(f)
    assert set(passwords) == {"postgres", *postgres.ROLES, postgres.DAGSTER_ROLE}
    base = pg.owner
    for user in ("postgres", "meter_owner", "meter_pipeline", postgres.DAGSTER_ROLE):
        for password in (None, "wrong password"):
            with pytest.raises(psycopg.OperationalError, match="password authentication failed|no password"):
                psycopg.connect(make_conninfo(base, user=user, password=password or "")).close()
    superuser = make_conninfo(base, user="postgres", password=passwords["postgres"])
    with psycopg.connect(superuser) as conn:
        roles = dict(
            conn.execute(
                "SELECT rolname, (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls) "
                "FROM pg_roles WHERE rolname LIKE 'meter%'"
            ).fetchall()
        )
        hashes = conn.execute("SELECT rolname FROM pg_authid WHERE rolpassword LIKE 'SCRAM-SHA-256$%'").fetchall()
        owners = set(
            conn.execute("SELECT tableowner FROM pg_tables WHERE schemaname IN ('billing', 'serving')").fetchall()
        )
    assert roles == {"meter_owner": False, "meter_pipeline": False, "meter_api": False, "meter_dagster": False}
    assert {name for (name,) in hashes} == {"postgres", *postgres.ROLES, postgres.DAGSTER_ROLE}
    assert owners == {("meter_owner",)}
    assert {conninfo_to_dict(getattr(pg, r.removeprefix("meter_")))["user"] for r in postgres.ROLES} == set(
        postgres.ROLES
    )


def test_against_another_server_setup_makes_the_roles_the_dsns_name(tmp_path):
    """`meter-db setup`'s path: an administrator's DSN and the three roles' DSNs, as a DBA gives
    them (the embedded server only hosts it here)."""
    from .db_support import older_installation

    admin = older_installation(str(tmp_path / "pg"), until=0)
    chosen = postgres.Dsns(
        *(make_conninfo(admin, user=role, password=f"{role}-secret-{dt.date.today()}") for role in postgres.ROLES)
    )
    env = {
        **os.environ,
        "METER_PG_ADMIN_DSN": admin,
        "METER_PG_OWNER_DSN": chosen.owner,
        "METER_PG_PIPELINE_DSN": chosen.pipeline,
        "METER_PG_API_DSN": chosen.api,
    }
    meter_db = os.path.join(os.path.dirname(sys.executable), "meter-db")
    run = subprocess.run([meter_db, "setup"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"migrations applied: {[v for v, _, _ in postgres.migrations()]}" in run.stdout
    again = subprocess.run([meter_db, "setup"], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "none (up to date)" in again.stdout, again.stderr[-2000:]
    with psycopg.connect(chosen.api) as conn:
        assert conn.execute("SELECT count(*) FROM serving.daily_usage").fetchone() == (0,)
    refused(chosen.api, "SELECT * FROM billing.bills")
    with pytest.raises(ValueError, match="must connect as meter_pipeline"):
        postgres._checked(postgres.Dsns(None, chosen.owner, None))


def test_the_api_role_cannot_lock_the_api_out(pg, tmp_path):
    """PostgreSQL lets any role change its own password; the API's role proves the OS user the
    platform runs as instead (peer), so a changed password locks nobody out, and the role
    cannot be taken by another OS user."""
    with psycopg.connect(pg.api, autocommit=True) as conn:
        conn.execute("ALTER ROLE meter_api PASSWORD 'locked out'")
    with psycopg.connect(pg.api) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("meter_api",)
    ident = (tmp_path / "pg" / "pg_ident.conf").read_text()
    assert ident == f"meter_api {pwd.getpwuid(os.getuid()).pw_name} meter_api\n", "only the platform's OS user"
    hba = (tmp_path / "pg" / "pg_hba.conf").read_text().splitlines()
    assert hba[1:] == ["local all meter_api peer map=meter_api", "local all all scram-sha-256"]
