"""The usage API tried as an attacker would: hostile tokens and parameters, other customers'
requests, oversized and half-sent requests, headers; against uvicorn and PostgreSQL."""

import asyncio
import concurrent.futures
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse

import jwt
import psycopg

from meter_assets import postgres
from meter_assets.serving.auth import keys, mint

from .api_support import api_with, call, raw_request


def forged_claims(**claims) -> str:
    """Claims no genuine token carries, signed with the server's own key: only the claim checks stand."""
    ring = keys()
    base = {"iss": "meter-assets", "aud": "usage-api", "iat": int(time.time()), "exp": int(time.time()) + 600}
    return jwt.encode({**base, **claims}, ring.signing, algorithm="HS256", headers={"kid": ring.signing_id})


def test_hostile_authorization_headers_get_401_with_a_reason(api):
    for value, reason in (
        ("Bearer v1.a.\u00e9".encode("utf-8"), "malformed token"),
        ("Bearer \u00e9\u00e9\u00e9".encode("latin-1"), "malformed token"),
        (b"Bearer " + b"A" * 8000, "malformed token"),
        (b"Basic dXNlcjpwYXNz", "missing bearer token"),
        (b"Bearer", "missing bearer token"),
        (b"Bearer " + forged_claims(sub="1e30").encode(), "sub must be a customer id"),
        (b"Bearer " + forged_claims(sub=str(2**31)).encode(), "sub must be a customer id"),
        (b"Bearer " + forged_claims(sub="1", exp=float("inf")).encode(), "whole seconds"),
    ):
        status, headers, body = raw_request(
            api,
            b"GET /api/v1/me/usage?days=7 HTTP/1.1\r\nHost: x\r\n"
            b"Connection: close\r\nAuthorization: " + value + b"\r\n\r\n",
        )
        assert status == 401 and reason in body.decode(), (value[:40], status, body)
        assert headers["www-authenticate"].startswith("Bearer")


def test_days_takes_ascii_digits_in_range_only(api):
    token = mint(1)
    for days in ("\u00b2", "\u00b3", "\u0663", "\uff11\uff10", "9" * 5000, "1e1", " 7", "7 ", "+7", "0x7", "07a"):
        status, body = call(f"{api}/api/v1/me/usage?days={urllib.parse.quote(days)}", token)
        assert status == 422 and "days must be" in body["detail"], days
    assert call(f"{api}/api/v1/me/usage?days=007", token)[0] == 200


def test_a_bad_request_never_fails_another_customers_request(api):
    """Good and hostile requests at once: every good one is answered, for its own customer."""
    good = [(c, d) for c in (1, 2, 3) for d in range(1, 41)] * 3
    bad = [forged_claims(sub=str(2**31 + i)) for i in range(20)] + [forged_claims(sub="-1"), "v1.a.\u00e9"]
    asked = [("good", g) for g in good] + [("bad", b) for b in bad] * 2
    asked.sort(key=lambda a: hash(str(a)))

    def one(item):
        kind, what = item
        if kind == "good":
            return kind, what, call(f"{api}/api/v1/me/usage?days={what[1]}", mint(what[0]))
        return kind, what, call(f"{api}/api/v1/me/usage?days=7", what)

    with concurrent.futures.ThreadPoolExecutor(max_workers=48) as pool:
        answers = list(pool.map(one, asked))
    for kind, what, (status, body) in answers:
        if kind == "good":
            assert (status, body["customer_id"]) == (200, what[0])
        else:
            assert status == 401


def test_a_statement_that_fails_for_one_request_fails_only_that_request(pg_dsn):
    from psycopg_pool import AsyncConnectionPool

    from meter_assets.serving.coalesce import Coalescer

    # fails for customer 13 only (division by zero), like a value only one request carries
    sql = (
        "SELECT n, customer, (100 / (customer - 13))::text FROM unnest(%(customers)s::integer[]) "
        "WITH ORDINALITY AS asked(customer, n) ORDER BY n"
    )

    async def scenario():
        async with AsyncConnectionPool(pg_dsn, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
            reads = Coalescer(pool, sql, lambda keys: {"customers": [c for c, _ in keys]}, drainers=1)
            outcomes = await asyncio.gather(*[reads.fetch((c, None)) for c in range(1, 41)], return_exceptions=True)
            assert reads.statements > 1
            for customer, outcome in zip(range(1, 41), outcomes, strict=True):
                if customer == 13:
                    assert isinstance(outcome, psycopg.errors.DivisionByZero)
                else:
                    assert outcome == str(100 // (customer - 13) if customer > 13 else int(100 / (customer - 13)))

    asyncio.run(scenario())


def test_oversized_heads_are_refused_and_the_server_carries_on(api):
    for head in (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"GET /healthz?" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Many: a\r\n" * 2000 + b"\r\n",
    ):
        status, _, body = raw_request(api, head)
        assert status == 431 and b"16 KiB" in body
    # the second request on a kept-alive connection is held to the same limit
    host, port = api.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 431")
    assert call(f"{api}/healthz")[0] == 200


def test_half_sent_requests_are_closed_and_do_not_starve_others(pg, tmp_path):
    with api_with(pg, tmp_path, METER_API_REQUEST_TIMEOUT_SECONDS="1") as url:
        host, port = url.removeprefix("http://").split(":")
        idle = []
        for i in range(120):
            sock = socket.create_connection((host, int(port)), timeout=10)
            if i % 3:  # a part of the head, or nothing at all
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            idle.append(sock)
        assert call(f"{url}/healthz")[0] == 200, "answered while they hang"
        started = time.monotonic()
        for sock in idle:
            assert sock.recv(1024) == b"", "the server closes a request that does not arrive"
            sock.close()
        assert time.monotonic() - started < 5

        # a client dripping its request a byte at a time is closed just the same
        with socket.create_connection((host, int(port)), timeout=10) as drip:
            started = time.monotonic()
            closed = False
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                try:
                    drip.sendall(bytes([byte]))
                    closed = drip.recv(1, socket.MSG_DONTWAIT) == b""
                except BlockingIOError:  # still open, nothing to read
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                if closed:
                    break
                time.sleep(0.05)
            assert closed and time.monotonic() - started < 5, "closed about a second after it connected"


def test_sockets_held_open_never_lock_real_clients_out(pg, tmp_path):
    """A slowloris client holds far more half-sent and idle sockets than the bound: every real
    request is still answered, and the sockets that waited longest are the ones closed."""
    with api_with(pg, tmp_path, METER_API_MAX_CONNECTIONS="40", METER_API_REQUEST_TIMEOUT_SECONDS="30") as url:
        host, port = url.removeprefix("http://").split(":")
        held = []
        for i in range(200):
            sock = socket.create_connection((host, int(port)), timeout=10)
            if i % 2:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(sock)
        time.sleep(0.3)
        statuses = [
            raw_request(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] for _ in range(30)
        ]
        assert statuses == [200] * 30, "no real request waits on, or is refused for, a held socket"
        # the first sockets, the longest waiting, were closed to make room
        held[0].settimeout(2)
        assert held[0].recv(1024) == b""
        for sock in held:
            sock.close()


def test_the_limit_answer_and_a_database_outage_are_json_with_the_security_headers(pg, tmp_path):
    """503 with a reason and Retry-After, never a plain-text 500 without the headers."""
    from meter_assets.serving.server import over_limit

    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(over_limit({"type": "http"}, None, send))
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 503 and headers[b"x-content-type-options"] == b"nosniff"
    assert b"frame-ancestors 'none'" in headers[b"content-security-policy"] and headers[b"retry-after"] == b"1"
    assert json.loads(sent[1]["body"])["detail"]

    with api_with(pg, tmp_path, METER_API_POOL_TIMEOUT_SECONDS="2") as url:
        postgres.stop_embedded(str(tmp_path / "pg"))  # the database goes away under the running API
        status, headers, body = raw_request(
            url,
            b"GET /api/v1/me/usage?days=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: Bearer " + mint(1).encode() + b"\r\n\r\n",
            timeout=30,
        )
        assert status == 503, body
        assert headers["content-type"] == "application/json" and headers["retry-after"] == "5"
        assert (
            headers["x-content-type-options"] == "nosniff"
            and "frame-ancestors 'none'" in headers["content-security-policy"]
        )
        assert json.loads(body) == {"detail": "the usage store is unavailable; try again shortly"}


def test_every_response_carries_the_security_headers_and_redirects_never_echo_the_host(api):
    token = mint(1).encode()
    for target, auth in (
        (b"/", b""),
        (b"/healthz", b""),
        (b"/api/v1/me/usage?days=3", token),
        (b"/api/v1/me/usage", b"nonsense"),
        (b"/api/v1/me/usage/", token),
        (b"/nowhere", b""),
        (b"/openapi.json", b""),
    ):
        head = (
            b"GET "
            + target
            + b" HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n"
            + (b"Authorization: Bearer " + auth + b"\r\n" if auth else b"")
            + b"\r\n"
        )
        status, headers, _ = raw_request(api, head)
        assert headers["x-content-type-options"] == "nosniff", target
        assert headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "location" not in headers and "evil.example" not in str(headers), target
        assert "server" not in headers
        if target == b"/api/v1/me/usage/":
            assert status == 404, "no trailing-slash redirect"

    status, headers, page = raw_request(api, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "unsafe-inline" not in policy
    assert len(re.findall(r"'sha256-[A-Za-z0-9+/=]{44}'", policy)) == 2, "the page's one script and one style"
    assert b'style="' not in page, "no inline style attributes: the policy would block them"


def test_the_api_refuses_to_start_with_a_weak_secret(pg):
    meter_api = os.path.join(os.path.dirname(sys.executable), "meter-api")
    env = {**os.environ, "METER_API_SECRET": "short", "METER_PG_API_DSN": pg.api}
    run = subprocess.run(
        [meter_api, "serve", "--port", "0", "--workers", "1"], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode != 0 and "at least 32 bytes" in run.stderr, run.stderr[-2000:]


def test_session_defaults_the_api_role_gives_itself_change_nothing(api, pg):
    """The role may set its own session defaults (PostgreSQL lets any role): a timeout of a
    millisecond or a search path of nothing. The API sets its own on every connection."""
    with psycopg.connect(pg.api, autocommit=True) as conn:
        conn.execute("ALTER ROLE meter_api SET statement_timeout = '1ms'")
        conn.execute("ALTER ROLE meter_api SET search_path = nowhere")
        conn.execute("ALTER ROLE meter_api SET datestyle = 'SQL, DMY'")
        # every connection the API holds starts again, under those defaults
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE usename = 'meter_api' AND pid <> pg_backend_pid()"
        )
    token = mint(1)
    deadline = time.monotonic() + 10
    while (answer := call(f"{api}/api/v1/me/usage?days=3", token))[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)  # the pool replaces the connections it lost
    status, body = answer
    assert status == 200 and len(body["days"]["date"]) == 3
    assert all(re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", day) for day in body["days"]["date"])
