"""The usage API tried as an attacker would: hostile tokens and parameters, other customers'
requests, oversized and half-sent requests, headers; against uvicorn and PostgreSQL."""

import asyncio
import concurrent.futures
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse

import jwt
import psycopg

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


def test_connections_beyond_the_bound_get_503_at_once(pg, tmp_path):
    with api_with(pg, tmp_path, METER_API_MAX_CONNECTIONS="8") as url:
        host, port = url.removeprefix("http://").split(":")
        held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(8)]
        time.sleep(0.2)
        status, _, _ = raw_request(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 503
        for sock in held:
            sock.close()
        time.sleep(0.2)
        assert call(f"{url}/healthz")[0] == 200


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
