"""The usage API and page: reads only the serving tables, one customer per token.

    GET /api/v1/me/usage?days=N     the customer's last N days (1 to the serving window)
    GET /api/v1/me/bill-estimate    the month-to-date bill estimate
    GET /healthz                    the database answers, and how fresh the data is
    GET /                           the "your usage" page (the token in the URL fragment)
"""

from __future__ import annotations

import asyncio
import contextlib
from importlib import resources as package_files

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from meter_assets import postgres
from meter_assets.config import settings
from meter_assets.serving.auth import InvalidToken, verify

PRIVATE = {"Cache-Control": "private, no-store"}

# "The last N days" counts back from the newest day loaded; the primary key (customer_id,
# local_date) makes it one index range read. PostgreSQL writes the JSON itself: exact
# decimals as strings, and no Python work per row.
USAGE_SQL = """
WITH newest AS (
    SELECT max(local_date) AS day, max(refreshed_at) AS refreshed_at FROM serving.refreshes
),
days AS (
    SELECT usage.*
    FROM newest
    JOIN serving.daily_usage AS usage
      ON usage.customer_id = %(customer_id)s
     AND usage.local_date > newest.day - %(days)s
     AND usage.local_date <= newest.day
)
SELECT json_build_object(
    'customer_id', %(customer_id)s::integer,
    'days', coalesce(json_agg(json_build_object(
        'date', days.local_date,
        'kwh', days.kwh::text,
        'estimated_kwh', days.estimated_kwh::text,
        'estimated', days.estimated_kwh > 0,
        'missing_intervals', days.missing_intervals,
        'cost', days.cost::text) ORDER BY days.local_date), '[]'),
    'total_kwh', coalesce(sum(days.kwh), 0)::text,
    'total_cost', coalesce(sum(days.cost), 0)::text,
    'currency', %(currency)s::text,
    'timezone', %(timezone)s::text,
    'updated_at', (SELECT refreshed_at FROM newest)
)::text
FROM days
"""

ESTIMATE_SQL = """
SELECT json_build_object(
    'customer_id', customer_id,
    'period_start', period_start,
    'through_date', through_date,
    'days', days,
    'kwh', kwh::text,
    'estimated_kwh', estimated_kwh::text,
    'cost', cost::text,
    'currency', currency,
    'timezone', %(timezone)s::text,
    'updated_at', (SELECT max(refreshed_at) FROM serving.refreshes)
)::text
FROM serving.bill_estimates
WHERE customer_id = %(customer_id)s
"""


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


async def usage(request: Request) -> Response:
    customer = customer_of(request)
    s = settings()
    raw = request.query_params.get("days", "30")
    if not raw.isdigit() or not 1 <= int(raw) <= s.serving_window_days:
        return problem(422, f"days must be a whole number from 1 to {s.serving_window_days}")
    params = {"customer_id": customer, "days": int(raw), "currency": s.currency, "timezone": s.market_tz}
    return json_text(await one_value(request, USAGE_SQL, params))


async def bill_estimate(request: Request) -> Response:
    customer = customer_of(request)
    body = await one_value(request, ESTIMATE_SQL, {"customer_id": customer, "timezone": settings().market_tz})
    if body is None:
        return problem(404, "no bill estimate for this customer this month")
    return json_text(body)


async def healthz(request: Request) -> JSONResponse:
    async with request.app.state.pool.connection() as conn:
        cursor = await conn.execute("SELECT max(local_date) AS newest_day FROM serving.refreshes")
        row = await cursor.fetchone()
    return JSONResponse({"status": "ok", "newest_day": _iso(row["newest_day"])})


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(request.app.state.page, headers={"Cache-Control": "no-cache"})


async def unauthorized(request: Request, error: InvalidToken) -> JSONResponse:
    return problem(401, str(error), **{"WWW-Authenticate": 'Bearer realm="usage"'})


def create_app(dsn: str | None = None) -> Starlette:
    """The ASGI application; `dsn` overrides `METER_PG_DSN` (else the embedded server)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        conninfo = dsn or await asyncio.to_thread(postgres.dsn)
        await asyncio.to_thread(postgres.migrate, conninfo)
        app.state.page = package_files.files("meter_assets.serving").joinpath("static/usage.html").read_text()
        pool = AsyncConnectionPool(conninfo, min_size=2, max_size=settings().api_pool_size, open=False,
                                   kwargs={"row_factory": dict_row, "autocommit": True})
        await pool.open(wait=True)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    return Starlette(
        routes=[
            Route("/", page),
            Route("/healthz", healthz),
            Route("/api/v1/me/usage", usage),
            Route("/api/v1/me/bill-estimate", bill_estimate),
        ],
        exception_handlers={InvalidToken: unauthorized},
        lifespan=lifespan,
    )
