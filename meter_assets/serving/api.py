"""The usage API and page: reads only the serving tables, one customer per token.

    GET /api/v1/me/usage?days=N     the customer's last N days (1 to the serving window)
    GET /api/v1/me/bill-estimate    the month-to-date bill estimate
    GET /healthz                    the database answers, and how fresh the data is
    GET /openapi.json               this contract, as OpenAPI 3.1
    GET /                           the "your usage" page (the token in the URL fragment)

Every response carries a Content-Security-Policy (the page may run only its own script and
style, and talk only to this origin), `nosniff`, no referrer and no framing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
from importlib import resources as package_files

import psycopg
import psycopg.sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout, TooManyRequests
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from meter_assets import postgres
from meter_assets.config import settings
from meter_assets.serving.auth import InvalidToken, keys, verify
from meter_assets.serving.coalesce import Coalescer
from meter_assets.serving.openapi import contract

PRIVATE = {"Cache-Control": "private, no-store"}
# ASCII digits only: str.isdigit() also takes "²" and "٣"
DAYS = re.compile(r"[0-9]{1,4}")
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}

# "The last N days" counts back from the newest day loaded; the primary key (customer_id,
# local_date) carries the served columns, so each customer's days are one index-only range
# read, already in date order. One statement answers a batch of requests (see coalesce.py):
# one row per (customer, days) asked, in the order asked. PostgreSQL writes the JSON itself,
# by columns (one array per field rather than an object per day: a quarter of the bytes and
# of the work), decimals as exact JSON numbers, and no Python work per row.
USAGE_SQL = """
WITH newest AS (
    SELECT max(local_date) AS day, max(refreshed_at) AS refreshed_at FROM serving.refreshes
),
asked AS (
    SELECT *
    FROM unnest(%(customer_ids)s::integer[], %(days)s::integer[]) WITH ORDINALITY AS asked(customer_id, days, n)
)
SELECT asked.n, asked.customer_id, answer.body
FROM asked
CROSS JOIN newest
CROSS JOIN LATERAL (
    SELECT concat(
        '{"customer_id":', asked.customer_id,
        ',"days":{"date":[', string_agg('"' || usage.local_date || '"', ',' ORDER BY usage.local_date),
        '],"kwh":[', string_agg(usage.kwh::text, ',' ORDER BY usage.local_date),
        '],"estimated_kwh":[', string_agg(usage.estimated_kwh::text, ',' ORDER BY usage.local_date),
        '],"missing_intervals":[', string_agg(usage.missing_intervals::text, ',' ORDER BY usage.local_date),
        '],"cost":[', string_agg(usage.cost::text, ',' ORDER BY usage.local_date),
        '],"average_rate":[', string_agg(coalesce(usage.average_rate::text, 'null'), ',' ORDER BY usage.local_date),
        '],"export_kwh":[', string_agg(coalesce(usage.export_kwh::text, 'null'), ',' ORDER BY usage.local_date),
        '],"export_credit":[', string_agg(coalesce(usage.export_credit::text, 'null'), ',' ORDER BY usage.local_date),
        ']},"total_kwh":', coalesce(sum(usage.kwh), 0),
        ',"total_cost":', coalesce(sum(usage.cost), 0),
        ',"currency":', to_json(%(currency)s::text),
        ',"timezone":', to_json(%(timezone)s::text),
        ',"updated_at":', coalesce(to_json(newest.refreshed_at)::text, 'null'),
        '}') AS body
    FROM serving.daily_usage AS usage
    WHERE usage.customer_id = asked.customer_id
      AND usage.local_date > newest.day - asked.days
      AND usage.local_date <= newest.day
) AS answer
ORDER BY asked.n
"""

ESTIMATE_SQL = """
SELECT json_build_object(
    'customer_id', customer_id,
    'period_start', period_start,
    'through_date', through_date,
    'days', days,
    'kwh', kwh,
    'estimated_kwh', estimated_kwh,
    'cost', cost,
    'currency', %(currency)s::text,
    'timezone', %(timezone)s::text,
    'updated_at', (SELECT max(refreshed_at) FROM serving.refreshes)
)::text
FROM serving.bill_estimates
WHERE customer_id = %(customer_id)s
"""


async def configure(conn) -> None:
    """Each connection's session, whatever defaults the role was given (or gave itself): the
    usage JSON writes dates as text, ISO whatever the server's default style; and the
    timeouts and search path of `postgres.API_SESSION`."""
    for name, value in postgres.API_SESSION.items():
        await conn.execute(
            psycopg.sql.SQL("SET {} = {}").format(psycopg.sql.Identifier(name), psycopg.sql.Literal(value))
        )
    await conn.execute("SET datestyle = 'ISO, YMD'")


def problem(status: int, detail: str, **headers) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers={**PRIVATE, **headers})


def customer_of(request: Request) -> int:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken("missing bearer token")
    return verify(token.strip())


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def json_text(body: str) -> Response:
    return Response(body, media_type="application/json", headers=PRIVATE)


async def one_value(request: Request, sql: str, params: dict):
    async with request.app.state.pool.connection() as conn:
        cursor = await conn.execute(sql, params)
        row = await cursor.fetchone()
    return next(iter(row.values())) if row else None


def unexpected_params(request: Request, allowed: tuple[str, ...]) -> JSONResponse | None:
    """422 for a parameter the contract does not name, or one given twice: a client that sends
    them has misread the contract, and guessing which value it meant would hide that."""
    names = [name for name, _ in request.query_params.multi_items()]
    unknown = sorted({name for name in names if name not in allowed})
    repeated = sorted({name for name in names if names.count(name) > 1})
    if unknown or repeated:
        return problem(
            422,
            f"unexpected query parameters: {', '.join(map(repr, unknown + repeated))[:200]}; "
            f"this endpoint takes {', '.join(allowed) or 'none'}, each at most once",
        )
    return None


async def usage(request: Request) -> Response:
    customer = customer_of(request)
    s = settings()
    if refused := unexpected_params(request, ("days",)):
        return refused
    raw = request.query_params.get("days", "30")
    if not DAYS.fullmatch(raw) or not 1 <= int(raw) <= s.serving_window_days:
        return problem(422, f"days must be a whole number from 1 to {s.serving_window_days}")
    return json_text(await request.app.state.usage.fetch((customer, int(raw))))


async def bill_estimate(request: Request) -> Response:
    customer = customer_of(request)
    s = settings()
    if refused := unexpected_params(request, ()):
        return refused
    body = await one_value(
        request, ESTIMATE_SQL, {"customer_id": customer, "currency": s.currency, "timezone": s.market_tz}
    )
    if body is None:
        return problem(404, "no bill estimate for this customer this month")
    return json_text(body)


async def healthz(request: Request) -> JSONResponse:
    try:
        async with request.app.state.pool.connection() as conn:
            cursor = await conn.execute("SELECT max(local_date) AS newest_day FROM serving.refreshes")
            row = await cursor.fetchone()
    except Exception:  # any failure to answer is "unavailable", for the load balancer to act on
        return JSONResponse({"status": "unavailable", "newest_day": None}, status_code=503)
    return JSONResponse({"status": "ok", "newest_day": _iso(row["newest_day"])})


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(
        request.app.state.page,
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": request.app.state.page_policy},
    )


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.contract)


def page_policy(html: str) -> str:
    """The page's CSP: its one inline script and one inline style by their SHA-256, fetches to
    this origin only."""

    def digests(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)

    return (
        f"default-src 'none'; script-src {digests('script')}; style-src {digests('style')}; "
        "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


class SecurityHeaders:
    """Adds the headers above to every response (the page's own CSP replaces the API's)."""

    HEADERS = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
    POLICY = (b"content-security-policy", API_POLICY.encode())

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {name for name, _ in headers}
                headers.extend(h for h in [*self.HEADERS, self.POLICY] if h[0] not in present)
            await send(message)

        await self.app(scope, receive, with_headers)


async def unauthorized(request: Request, error: InvalidToken) -> JSONResponse:
    return problem(401, str(error), **{"WWW-Authenticate": 'Bearer realm="usage"'})


def unavailable() -> JSONResponse:
    """The answer when the usage store cannot answer (an outage, a failover, every connection
    busy): a client may try again shortly; no detail of the database is given away."""
    return problem(503, "the usage store is unavailable; try again shortly", **{"Retry-After": "5"})


async def store_unavailable(request: Request, error: Exception) -> JSONResponse:
    return unavailable()


async def server_error(request: Request, error: Exception) -> JSONResponse:
    # answered outside the middleware, so it carries the security headers itself
    return problem(500, "internal error", **SECURITY_HEADERS, **{"Content-Security-Policy": API_POLICY})


def create_app(dsn: str | None = None) -> Starlette:
    """The ASGI application; `dsn` (a role that reads the serving tables) overrides
    `METER_PG_API_DSN` (else the embedded server's `meter_api`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        keys()  # a missing or weak secret stops the start, not the first request
        conninfo = dsn or (await asyncio.to_thread(postgres.dsns)).of("meter_api")
        app.state.page = package_files.files("meter_assets.serving").joinpath("static/usage.html").read_text()
        app.state.page_policy = page_policy(app.state.page)
        app.state.contract = contract(settings().serving_window_days)
        pool = AsyncConnectionPool(
            conninfo,
            min_size=2,
            max_size=settings().api_pool_size,
            open=False,
            timeout=settings().api_pool_timeout_seconds,
            kwargs={"row_factory": dict_row, "autocommit": True},
            configure=configure,
        )
        await pool.open(wait=True)
        app.state.pool = pool
        s = settings()
        app.state.usage = Coalescer(
            pool,
            USAGE_SQL,
            drainers=s.api_pool_size,
            params=lambda keys: {
                "customer_ids": [customer for customer, _ in keys],
                "days": [days for _, days in keys],
                "currency": s.currency,
                "timezone": s.market_tz,
            },
        )
        try:
            yield
        finally:
            await pool.close()

    app = Starlette(
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/api/v1/me/usage", usage, methods=["GET"]),
            Route("/api/v1/me/bill-estimate", bill_estimate, methods=["GET"]),
        ],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            InvalidToken: unauthorized,
            psycopg.Error: store_unavailable,
            PoolTimeout: store_unavailable,
            TooManyRequests: store_unavailable,
            Exception: server_error,
        },
        lifespan=lifespan,
    )
    # no trailing-slash redirects: they would build a Location from the request's Host header
    app.router.redirect_slashes = False
    return app
