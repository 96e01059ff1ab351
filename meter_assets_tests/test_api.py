"""The usage API under uvicorn against the real PostgreSQL: answers, privacy, validation."""

import asyncio
import concurrent.futures
import datetime as dt
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal

import psycopg
import pytest

from meter_assets import postgres
from meter_assets.serving.auth import InvalidToken, _b64, mint, verify
from meter_assets.serving.store import refresh_day

FIRST_DAY = dt.date(2025, 3, 1)
DAYS = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_days(dsn: str, folder, days: int = DAYS, customers=(1, 2, 3)) -> None:
    """Customers 1 to 3 over `days` days; customer 2's use is estimated on even days; customer 3 moves out."""
    with postgres.connect(dsn) as conn:
        conn.autocommit = True
        for d in range(days):
            day = FIRST_DAY + dt.timedelta(days=d)
            lines = []
            for c in customers:
                if c == 3 and d >= 10:
                    continue
                kwh = Decimal(c * 1000 + d) / 100
                estimated = kwh if c == 2 and d % 2 == 0 else Decimal("0.000")
                lines.append(f"{c},{day},{kwh:.3f},{estimated:.3f},{d % 3},{kwh * Decimal('0.3'):.2f}\n")
            path = folder / f"{day}.csv"
            path.write_text("".join(lines))
            refresh_day(conn, day, str(path), 90, dt.datetime(2025, 4, 10, 6, 0, tzinfo=dt.UTC))


@pytest.fixture
def api(pg_dsn, tmp_path):
    """The application under a real uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    from meter_assets.serving.api import create_app

    load_days(pg_dsn, tmp_path)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(pg_dsn), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def call(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            # decimals are exact JSON numbers: read them as decimals
            return response.status, json.loads(response.read(), parse_float=Decimal)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read(), parse_float=Decimal)


def test_usage_is_the_customers_own_last_days(api, pg_dsn):
    status, body = call(f"{api}/api/v1/me/usage?days=7", mint(2))
    assert status == 200
    assert body["customer_id"] == 2
    last = FIRST_DAY + dt.timedelta(days=DAYS - 1)
    assert body["days"]["date"] == [(last - dt.timedelta(days=6 - i)).isoformat() for i in range(7)]
    with postgres.connect(pg_dsn) as conn:
        expected = conn.execute(
            "SELECT local_date, kwh, estimated_kwh, cost FROM serving.daily_usage "
            "WHERE customer_id = 2 AND local_date > %s ORDER BY local_date", [last - dt.timedelta(days=7)]).fetchall()
    days = body["days"]
    assert list(zip(days["date"], days["kwh"], days["estimated_kwh"], days["cost"], strict=True)) == [
        (day.isoformat(), kwh, est, cost) for day, kwh, est, cost in expected]
    assert any(est > 0 for est in days["estimated_kwh"]) and any(est == 0 for est in days["estimated_kwh"])
    assert days["missing_intervals"] == [d % 3 for d in range(DAYS - 7, DAYS)]
    assert body["total_kwh"] == sum(kwh for _, kwh, _, _ in expected)
    assert body["updated_at"].startswith("2025-04-10T06:00")

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
            expected = [d.isoformat() for (d,) in conn.execute(
                "SELECT local_date FROM serving.daily_usage WHERE customer_id = %s AND local_date > %s "
                "ORDER BY local_date", [customer, last - dt.timedelta(days=days)])]
            assert (status, body["customer_id"], body["days"]["date"]) == (200, customer, expected)


def test_the_coalescer_batches_concurrent_reads_and_fails_only_the_batch_at_fault(pg_dsn):
    from psycopg_pool import AsyncConnectionPool

    from meter_assets.serving.coalesce import Coalescer

    echo = ("SELECT n, customer, customer || ':' || tag FROM unnest(%(customers)s::integer[], %(tags)s::text[]) "
            "WITH ORDINALITY AS asked(customer, tag, n) ORDER BY n")

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


def test_requests_without_a_valid_token_get_401(api):
    url = f"{api}/api/v1/me/usage?days=7"
    genuine = mint(1)
    version, payload, signature = genuine.split(".")
    other_customer = _b64(json.dumps({"sub": 2, "exp": int(time.time()) + 3600}, separators=(",", ":")).encode())
    for token, reason in (
        (None, "missing bearer token"),
        (mint(1, ttl_seconds=-1), "token expired"),
        (mint(1, key=b"not the secret"), "bad signature"),
        (f"{version}.{other_customer}.{signature}", "bad signature"),
        (genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB"), "bad signature"),
        ("garbage", "malformed token"),
    ):
        status, body = call(url, token)
        assert (status, body["detail"]) == (401, reason), token
        assert call(f"{api}/api/v1/me/bill-estimate", token)[0] == 401


def test_bad_days_get_422_not_500(api):
    token = mint(1)
    for days in ("abc", "0", "91", "-1", "1.5", "", "9" * 30):
        status, body = call(f"{api}/api/v1/me/usage?days={days}", token)
        assert status == 422 and "days must be" in body["detail"], days


def test_tokens_name_one_customer_and_expire():
    token = mint(42, ttl_seconds=60, now=1_000_000)
    assert verify(token, now=1_000_059) == 42
    with pytest.raises(InvalidToken, match="expired"):
        verify(token, now=1_000_060)
