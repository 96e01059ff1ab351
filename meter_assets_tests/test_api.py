"""The usage API under uvicorn against the real PostgreSQL: answers, privacy, validation."""

import asyncio
import concurrent.futures
import datetime as dt
from decimal import Decimal

import psycopg
import pytest

from meter_assets import postgres
from meter_assets.serving.auth import mint

from .api_support import DAYS, FIRST_DAY, call


def test_usage_is_the_customers_own_last_days(api, pg_dsn):
    status, body = call(f"{api}/api/v1/me/usage?days=7", mint(2))
    assert status == 200
    assert body["customer_id"] == 2
    last = FIRST_DAY + dt.timedelta(days=DAYS - 1)
    assert body["days"]["date"] == [(last - dt.timedelta(days=6 - i)).isoformat() for i in range(7)]
    with postgres.connect(pg_dsn) as conn:
        expected = conn.execute(
            "SELECT local_date, kwh, estimated_kwh, cost FROM serving.daily_usage "
            "WHERE customer_id = 2 AND local_date > %s ORDER BY local_date",
            [last - dt.timedelta(days=7)],
        ).fetchall()
    days = body["days"]
    assert list(zip(days["date"], days["kwh"], days["estimated_kwh"], days["cost"], strict=True)) == [
        (day.isoformat(), kwh, est, cost) for day, kwh, est, cost in expected
    ]
    assert any(est > 0 for est in days["estimated_kwh"]) and any(est == 0 for est in days["estimated_kwh"])
    assert days["missing_intervals"] == [d % 3 for d in range(DAYS - 7, DAYS)]
    assert body["total_kwh"] == sum(kwh for _, kwh, _, _ in expected)
    assert body["updated_at"].startswith("2025-04-10T06:00")
    # not on a day-ahead tariff: no average rate
    assert days["average_rate"] == [None] * 7
    # solar panels: each day's export and its credit, as served
    with postgres.connect(pg_dsn) as conn:
        exported = conn.execute(
            "SELECT export_kwh, export_credit FROM serving.daily_usage "
            "WHERE customer_id = 2 AND local_date > %s ORDER BY local_date",
            [last - dt.timedelta(days=7)],
        ).fetchall()
    assert list(zip(days["export_kwh"], days["export_credit"], strict=True)) == exported
    assert all(credit < 0 for _, credit in exported[1:])

    # on a day-ahead tariff: the day's average rate, exact
    status, body = call(f"{api}/api/v1/me/usage?days=3", mint(1))
    assert body["days"]["average_rate"] == [Decimal(f"0.{2000 + d:04d}") for d in range(DAYS - 3, DAYS)]
    # no export register: no export, not a zero
    assert body["days"]["export_kwh"] == body["days"]["export_credit"] == [None] * 3

    # a customer who moved out sees only the days that were theirs
    status, body = call(f"{api}/api/v1/me/usage?days=90", mint(3))
    assert status == 200 and len(body["days"]["date"]) == 10 and body["days"]["date"][-1] == "2025-03-10"


def test_concurrent_requests_each_get_their_own_customer_and_days(api, pg_dsn):
    asked = [(customer, days) for days in range(1, 41, 3) for customer in (1, 2, 3)] * 3
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda a: call(f"{api}/api/v1/me/usage?days={a[1]}", mint(a[0])), asked))
    last = FIRST_DAY + dt.timedelta(days=DAYS - 1)
    with postgres.connect(pg_dsn) as conn:
        for (customer, days), (status, body) in zip(asked, answers, strict=True):
            expected = [
                d.isoformat()
                for (d,) in conn.execute(
                    "SELECT local_date FROM serving.daily_usage WHERE customer_id = %s AND local_date > %s "
                    "ORDER BY local_date",
                    [customer, last - dt.timedelta(days=days)],
                )
            ]
            assert (status, body["customer_id"], body["days"]["date"]) == (200, customer, expected)


def test_the_coalescer_batches_concurrent_reads_and_fails_only_the_batch_at_fault(pg_dsn):
    from psycopg_pool import AsyncConnectionPool

    from meter_assets.serving.coalesce import Coalescer

    echo = (
        "SELECT n, customer, customer || ':' || tag FROM unnest(%(customers)s::integer[], %(tags)s::text[]) "
        "WITH ORDINALITY AS asked(customer, tag, n) ORDER BY n"
    )

    def params(keys):
        return {"customers": [c for c, _ in keys], "tags": [t for _, t in keys]}

    async def scenario():
        async with AsyncConnectionPool(pg_dsn, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
            reads = Coalescer(pool, echo, params, drainers=2)
            answers = await asyncio.gather(*[reads.fetch((i, f"t{i}")) for i in range(100)])
            assert answers == [f"{i}:t{i}" for i in range(100)]
            assert reads.statements <= 4, "a hundred concurrent reads share a few statements"

            # answers that do not name the customers asked are refused, never handed out
            shifted = Coalescer(pool, echo.replace("SELECT n, customer,", "SELECT n, customer + 1,"), params, 1)
            with pytest.raises(RuntimeError, match="do not match"):
                await shifted.fetch((1, "a"))

            # a failing statement fails every read of its batch; the next batch is answered
            failing = Coalescer(pool, echo.replace("customer || ':'", "(customer / 0) || ':'"), params, 1)
            outcomes = await asyncio.gather(*[failing.fetch((i, "x")) for i in range(5)], return_exceptions=True)
            assert all(isinstance(o, psycopg.errors.DivisionByZero) for o in outcomes)
            assert await reads.fetch((7, "again")) == "7:again"

    asyncio.run(scenario())


def test_bill_estimate_and_health(api):
    status, body = call(f"{api}/api/v1/me/bill-estimate", mint(1))
    # the newest day is 9 April: the estimate covers 1 to 9 April
    assert status == 200
    assert (body["period_start"], body["through_date"], body["days"]) == ("2025-04-01", "2025-04-09", 9)
    assert body["kwh"] == sum(Decimal(1000 + d) / 100 for d in range(31, 40))
    assert call(f"{api}/api/v1/me/bill-estimate", mint(3))[0] == 404, "moved out before this month"
    assert call(f"{api}/healthz") == (200, {"status": "ok", "newest_day": "2025-04-09"})
