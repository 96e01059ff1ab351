"""The usage API's contract (OpenAPI 3.1), served at /openapi.json and fuzzed by the tests."""

from __future__ import annotations

from meter_assets.serving.auth import MAX_CUSTOMER_ID

PROBLEM = {"$ref": "#/components/schemas/Problem"}
MONEY = {"type": "number", "description": "exact decimal, in `currency`"}
KWH = {"type": "number", "minimum": 0, "description": "exact decimal, kWh to three places"}
DATE = {"type": "string", "format": "date"}


def _problem(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": PROBLEM}}}


def _json(description: str, schema: dict) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _columns(**columns: dict) -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(columns),
        "properties": {name: {"type": "array", "items": item} for name, item in columns.items()},
    }


def contract(window_days: int) -> dict:
    """The document, for a serving window of `window_days` days."""
    unauthorized = _problem("no valid bearer token: missing, malformed, expired, forged or for an unknown key")
    context = {
        "customer_id": {"type": "integer", "minimum": 1, "maximum": MAX_CUSTOMER_ID},
        "currency": {"type": "string"},
        "timezone": {"type": "string", "description": "IANA zone of the dates"},
        "updated_at": {"type": ["string", "null"], "format": "date-time"},
    }
    usage = {
        "type": "object",
        "additionalProperties": False,
        "required": ["customer_id", "days", "total_kwh", "total_cost", "currency", "timezone", "updated_at"],
        "properties": {
            **context,
            "days": _columns(
                date=DATE,
                kwh=KWH,
                estimated_kwh=KWH,
                missing_intervals={"type": "integer", "minimum": 0},
                cost=MONEY,
                average_rate={
                    "type": ["number", "null"],
                    "description": "on a day-ahead (dynamic) tariff, the day's energy cost per kWh before tax, "
                    "to four places; null on other tariffs",
                },
                export_kwh={
                    "type": ["number", "null"],
                    "description": "what the home sent to the grid that day (solar panels); null without an export "
                    "register",
                },
                export_credit={
                    "type": ["number", "null"],
                    "description": "what that export earned: the day's export at the export tariff's rates, rounded "
                    "once, negative (a credit), untaxed; null without an export register",
                },
            ),
            "total_kwh": KWH,
            "total_cost": MONEY,
        },
    }
    estimate = {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "customer_id",
            "period_start",
            "through_date",
            "days",
            "kwh",
            "estimated_kwh",
            "cost",
            "currency",
            "timezone",
            "updated_at",
        ],
        "properties": {
            **context,
            "period_start": DATE,
            "through_date": DATE,
            "days": {"type": "integer", "minimum": 0},
            "kwh": KWH,
            "estimated_kwh": KWH,
            "cost": MONEY,
        },
    }
    bearer = [{"customerToken": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Usage API",
            "version": "1",
            "description": "A customer's own electricity use and month-to-date bill estimate. Each "
            "token names one customer; no request can name another.",
        },
        "paths": {
            "/api/v1/me/usage": {
                "get": {
                    "operationId": "usage",
                    "summary": "The customer's last `days` local days, oldest first, as columns",
                    "security": bearer,
                    "parameters": [
                        {
                            "name": "days",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": window_days, "default": 30},
                        }
                    ],
                    "responses": {
                        "200": _json("the days", usage),
                        "401": unauthorized,
                        "422": _problem(
                            f"days is not a whole number from 1 to {window_days}, or a parameter is unknown or repeated"
                        ),
                    },
                }
            },
            "/api/v1/me/bill-estimate": {
                "get": {
                    "operationId": "billEstimate",
                    "summary": "The month-to-date bill estimate",
                    "security": bearer,
                    "responses": {
                        "200": _json("the estimate", estimate),
                        "401": unauthorized,
                        "404": _problem("no estimate for this customer this month"),
                        "422": _problem("a query parameter was given: this endpoint takes none"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "The database answers, and the newest day loaded",
                    "responses": {
                        "200": _json(
                            "healthy",
                            {
                                "type": "object",
                                "required": ["status", "newest_day"],
                                "properties": {
                                    "status": {"const": "ok"},
                                    "newest_day": {"type": ["string", "null"], "format": "date"},
                                },
                            },
                        ),
                        "503": _json("the database does not answer", {"type": "object"}),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"customerToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["detail"],
                    "additionalProperties": False,
                    "properties": {"detail": {"type": "string"}},
                }
            },
        },
    }
