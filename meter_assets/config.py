"""Settings from environment variables, read once and typed.

Every variable has a working default so that `dagster dev` and the tests run on a fresh
clone; README.md lists them all.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Settings:
    lake: str
    lake_retention_hours: int
    market_tz: str
    start_date: dt.date
    data_dir: str
    duckdb_threads: int
    duckdb_memory_limit: str
    quarantine_max_rate: float
    max_interval_kwh: Decimal
    max_raw_file_mb: int
    missing_warn_share: float
    pg_admin_dsn: str | None
    pg_owner_dsn: str | None
    pg_pipeline_dsn: str | None
    pg_api_dsn: str | None
    recent_window_days: int
    sweep_interval_hours: float
    sensor_interval_seconds: int
    aws_endpoint_url: str | None
    aws_region: str | None
    tax_rate: Decimal
    currency: str
    backbilling_months: int
    billing_grace_days: int
    serving_window_days: int
    api_secret: str | None
    api_previous_secrets: tuple[str, ...]
    api_token_ttl_seconds: int
    api_token_max_ttl_seconds: int
    api_max_connections: int
    api_request_timeout_seconds: float
    api_pool_size: int
    api_workers: int
    late_file_minutes: int
    silent_meters_warn: int
    silent_lookback_days: int
    settlement_minutes: int
    gate_closure: dt.time
    market_country: str
    forecast_history_days: int
    backtest_days: int

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.market_tz)


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


@lru_cache(maxsize=1)
def settings() -> Settings:
    data_dir = _env("METER_DATA_DIR", "./data")
    return Settings(
        lake=_env("METER_LAKE", os.path.join(data_dir, "lake")),
        # replaced files stay readable (time travel) this long before a vacuum deletes them
        lake_retention_hours=int(_env("METER_LAKE_RETENTION_HOURS", "168")),
        market_tz=_env("METER_MARKET_TZ", "Europe/London"),
        start_date=dt.date.fromisoformat(_env("METER_START_DATE", "2024-01-01")),
        data_dir=data_dir,
        duckdb_threads=int(_env("METER_DUCKDB_THREADS", "2")),
        duckdb_memory_limit=_env("METER_DUCKDB_MEMORY_LIMIT", "3GB"),
        quarantine_max_rate=float(_env("METER_QUARANTINE_MAX_RATE", "0.01")),
        # 100 A at 240 V for a quarter of an hour is 6 kWh: more is not physically possible
        # on a residential single-phase supply.
        max_interval_kwh=Decimal(_env("METER_MAX_INTERVAL_KWH", "6.000")),
        missing_warn_share=float(_env("METER_MISSING_WARN_SHARE", "0.05")),
        # a raw file larger than this once decompressed is refused whole (a real hour's is tens of MB)
        max_raw_file_mb=int(_env("METER_MAX_RAW_FILE_MB", "256")),
        # only `meter-db setup` uses it, once, to create the roles below
        pg_admin_dsn=os.environ.get("METER_PG_ADMIN_DSN") or None,
        pg_owner_dsn=os.environ.get("METER_PG_OWNER_DSN") or None,
        pg_pipeline_dsn=os.environ.get("METER_PG_PIPELINE_DSN") or None,
        pg_api_dsn=os.environ.get("METER_PG_API_DSN") or None,
        recent_window_days=int(_env("METER_RECENT_WINDOW_DAYS", "35")),
        sweep_interval_hours=float(_env("METER_SWEEP_INTERVAL_HOURS", "24")),
        sensor_interval_seconds=int(_env("METER_SENSOR_INTERVAL_SECONDS", "30")),
        aws_endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        aws_region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
        # VAT on domestic energy in Great Britain
        tax_rate=Decimal(_env("METER_TAX_RATE", "0.05")),
        currency=_env("METER_CURRENCY", "GBP"),
        backbilling_months=int(_env("METER_BACKBILLING_MONTHS", "12")),
        billing_grace_days=_grace_days(_env("METER_BILLING_GRACE_DAYS", "3")),
        serving_window_days=int(_env("METER_SERVING_WINDOW_DAYS", "90")),
        api_secret=os.environ.get("METER_API_SECRET") or None,
        # rotation: the new key signs, the old ones verify until their tokens have expired
        api_previous_secrets=tuple(os.environ.get("METER_API_PREVIOUS_SECRETS", "").split()),
        api_token_ttl_seconds=int(_env("METER_API_TOKEN_TTL_SECONDS", "86400")),
        api_token_max_ttl_seconds=int(_env("METER_API_TOKEN_MAX_TTL_SECONDS", str(7 * 86400))),
        # per API process: beyond it a request gets 503 at once rather than a queue
        api_max_connections=int(_env("METER_API_MAX_CONNECTIONS", "1000")),
        # a client gets this long to send a whole request, and to start the next on a kept-alive connection
        api_request_timeout_seconds=float(_env("METER_API_REQUEST_TIMEOUT_SECONDS", "10")),
        # a few per process: the queries take a fraction of a millisecond, and more backends
        # than cores only adds context switches (measured: 4 beats 2, 3, 6 and 10 on 2 cores)
        api_pool_size=int(_env("METER_API_POOL_SIZE", "4")),
        # half the cores: the other half is PostgreSQL's (embedded on the same machine by
        # default); on 2 cores one process gave p99 41-49 ms where two gave 56-60 ms
        api_workers=int(_env("METER_API_WORKERS", str(max(1, (os.cpu_count() or 2) // 2)))),
        # head-ends deliver an hour's file within minutes of the hour's end
        late_file_minutes=int(_env("METER_LATE_FILE_MINUTES", "60")),
        silent_meters_warn=int(_env("METER_SILENT_METERS_WARN", "250")),
        silent_lookback_days=int(_env("METER_SILENT_LOOKBACK_DAYS", "35")),
        settlement_minutes=_settlement_minutes(_env("METER_SETTLEMENT_MINUTES", "30")),
        # day-ahead bids close at this local time on the day before delivery
        gate_closure=dt.time.fromisoformat(_env("METER_GATE_CLOSURE", "11:00")),
        market_country=_env("METER_MARKET_COUNTRY", "GB"),
        forecast_history_days=int(_env("METER_FORECAST_HISTORY_DAYS", "730")),
        backtest_days=int(_env("METER_BACKTEST_DAYS", "28")),
    )


def _settlement_minutes(value: str) -> int:
    minutes = int(value)
    # a whole number of quarter hours that divides the hour (or a whole number of hours)
    if minutes not in (15, 30, 60, 120, 180, 240, 360, 720, 1440):
        raise ValueError(f"METER_SETTLEMENT_MINUTES must be 15, 30, 60 or a divisor of a day in hours, not {minutes}")
    return minutes


def _grace_days(value: str) -> int:
    days = int(value)
    # the issuing schedule runs on day 1 + grace of the next month, which every month has
    if not 0 <= days <= 27:
        raise ValueError(f"METER_BILLING_GRACE_DAYS must be between 0 and 27, not {days}")
    return days
