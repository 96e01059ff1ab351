"""The usage API under uvicorn against the real PostgreSQL: answers, privacy, validation."""

import datetime as dt
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal

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
            refresh_day(conn, day, str(path), 90, "GBP", dt.datetime(2025, 4, 10, 6, 0, tzinfo=dt.UTC))


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
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_usage_is_the_customers_own_last_days(api, pg_dsn):
    status, body = call(f"{api}/api/v1/me/usage?days=7", mint(2))
    assert status == 200
    assert body["customer_id"] == 2
    last = FIRST_DAY + dt.timedelta(days=DAYS - 1)
    assert [d["date"] for d in body["days"]] == [(last - dt.timedelta(days=6 - i)).isoformat() for i in range(7)]
    with postgres.connect(pg_dsn) as conn:
        expected = conn.execute(
            "SELECT local_date, kwh, estimated_kwh, cost FROM serving.daily_usage "
            "WHERE customer_id = 2 AND local_date > %s ORDER BY local_date", [last - dt.timedelta(days=7)]).fetchall()
    assert [(d["date"], d["kwh"], d["estimated_kwh"], d["cost"]) for d in body["days"]] == [
        (day.isoformat(), str(kwh), str(est), str(cost)) for day, kwh, est, cost in expected]
    assert [d["estimated"] for d in body["days"]] == [est > 0 for _, _, est, _ in expected]
    assert body["total_kwh"] == str(sum(kwh for _, kwh, _, _ in expected))
    assert body["updated_at"].startswith("2025-04-10T06:00")

    # a customer who moved out sees only the days that were theirs
    status, body = call(f"{api}/api/v1/me/usage?days=90", mint(3))
    assert status == 200 and len(body["days"]) == 10 and body["days"][-1]["date"] == "2025-03-10"


def test_bill_estimate_and_health(api):
    status, body = call(f"{api}/api/v1/me/bill-estimate", mint(1))
    # the newest day is 9 April: the estimate covers 1 to 9 April
    assert status == 200
    assert (body["period_start"], body["through_date"], body["days"]) == ("2025-04-01", "2025-04-09", 9)
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
