"""Settings from environment variables (`METER_*`), read once, typed and validated by
pydantic-settings.

Every variable has a working default so that `dagster dev` and the tests run on a fresh
clone; docs/configuration.md lists them all. An empty variable counts as unset; a value that does not
parse or is out of range stops the process at its first use of the settings, naming the
setting (the variable without `METER_`) and the reason.
"""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# a whole number of quarter hours that divides the hour, or a whole number of hours that divides a day
SETTLEMENT_MINUTES = (15, 30, 60, 120, 180, 240, 360, 720, 1440)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="METER_", env_ignore_empty=True, str_strip_whitespace=True, frozen=True, extra="ignore"
    )

    data_dir: str = "./data"
    # default: `lake` under the data folder
    lake: str = ""
    # replaced files stay readable (time travel) this long before a vacuum deletes them
    lake_retention_hours: int = Field(168, ge=0)
    market_tz: str = "Europe/London"
    # the time of NEM12 files' interval dates: AEMO's market time, AEST without clock changes
    nem12_tz: str = "Australia/Brisbane"
    start_date: dt.date = dt.date(2024, 1, 1)
    duckdb_threads: int = Field(2, ge=1)
    duckdb_memory_limit: str = "3GB"
    quarantine_max_rate: float = Field(0.01, ge=0, le=1)
    # 100 A at 240 V for a quarter of an hour is 6 kWh: more is not physically possible
    # on a residential single-phase supply.
    max_interval_kwh: Decimal = Field(Decimal("6.000"), gt=0)
    # validation flags for review (and bills as delivered): a reading above this many times the
    # meter's largest on its earlier days (and above 2.5 kWh), this many hours of exact zeros on a
    # meter that consumes, a correction this many times larger or smaller than the reading it
    # replaces (and 1 kWh from it)
    spike_factor: Decimal = Field(Decimal("5"), gt=1)
    zero_run_hours: int = Field(6, ge=1, le=24)
    correction_jump_factor: Decimal = Field(Decimal("10"), gt=1)
    # estimation reads the same weekday of this many weeks before (its `like_day` weighting's days)
    like_day_weeks: int = Field(4, ge=1, le=8)
    # a raw file larger than this once decompressed is refused whole (a real hour's is tens of MB)
    max_raw_file_mb: int = Field(256, ge=1)
    missing_warn_share: float = Field(0.05, ge=0, le=1)
    # only `meter-db setup` uses it, once, to create the roles below
    pg_admin_dsn: str | None = None
    pg_owner_dsn: str | None = None
    pg_pipeline_dsn: str | None = None
    pg_api_dsn: str | None = None
    # connections the API's role may hold at once, all its processes together
    pg_api_connection_limit: int = Field(64, ge=1)
    # Dagster's own runs, event log and schedules: a database of their own (SQLAlchemy URL)
    dagster_pg_url: str | None = None
    recent_window_days: int = Field(35, ge=1)
    sweep_interval_hours: float = Field(24, gt=0)
    sensor_interval_seconds: int = Field(30, ge=1)
    # the AWS SDKs' own variables, shared with boto3
    aws_endpoint_url: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL")
    aws_region: str | None = Field(None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"))
    # VAT on domestic energy in Great Britain
    tax_rate: Decimal = Field(Decimal("0.05"), ge=0)
    currency: str = "GBP"
    backbilling_months: int = Field(12, ge=0)
    # a month's bills are made and written this many customers at a time: Python holds one range
    bill_range_customers: int = Field(20_000, ge=1)
    # the issuing schedule runs on day 1 + grace of the next month, which every month has
    billing_grace_days: int = Field(3, ge=0, le=27)
    serving_window_days: int = Field(90, ge=1)
    api_secret: str | None = None
    # rotation: the new key signs, the old ones (separated by spaces) verify until their tokens have expired
    api_previous_secrets: Annotated[tuple[str, ...], NoDecode] = ()
    api_token_ttl_seconds: int = Field(86400, ge=1)
    api_token_max_ttl_seconds: int = Field(7 * 86400, ge=1)
    # per API process: beyond it a request gets 503 at once rather than a queue
    api_max_connections: int = Field(1000, ge=1)
    # a client gets this long to send a whole request, and to start the next on a kept-alive connection
    api_request_timeout_seconds: float = Field(10, gt=0)
    # a few per process: the queries take a fraction of a millisecond, and more backends
    # than cores only adds context switches (measured: 4 beats 2, 3, 6 and 10 on 2 cores)
    api_pool_size: int = Field(4, ge=1)
    # a request waits this long for a database connection (an outage, a failover) before it
    # is answered 503 with Retry-After
    api_pool_timeout_seconds: float = Field(5, gt=0)
    # half the cores: the other half is PostgreSQL's (embedded on the same machine by
    # default); on 2 cores one process gave p99 41-49 ms where two gave 56-60 ms
    api_workers: int = Field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2), ge=1)
    # the local time by which yesterday's readings, rollups, usage page data and report are due
    freshness_deadline: dt.time = dt.time(6, 0)
    # head-ends deliver an hour's file within minutes of the hour's end
    late_file_minutes: int = Field(60, ge=0)
    silent_meters_warn: int = Field(250, ge=0)
    silent_lookback_days: int = Field(35, ge=1)
    settlement_minutes: int = 30
    # day-ahead bids close at this local time on the day before delivery
    gate_closure: dt.time = dt.time(11, 0)
    market_country: str = "GB"
    forecast_history_days: int = Field(730, ge=1)
    # the newest complete day a bid knows is this many days before the day it buys for: meter
    # data is 2 (at gate closure on T-1, day T-1 is still being metered)
    forecast_lag_days: int = Field(2, ge=1, le=7)
    backtest_days: int = Field(28, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        values = {k: v for k, v in values.items() if not (isinstance(v, str) and not v.strip())}
        if not values.get("lake"):
            values["lake"] = os.path.join(str(values.get("data_dir", "./data")).strip(), "lake")
        return values

    @field_validator("api_previous_secrets", mode="before")
    @classmethod
    def _split_on_spaces(cls, value: Any) -> Any:
        return tuple(value.split()) if isinstance(value, str) else value

    @field_validator("settlement_minutes")
    @classmethod
    def _divides_the_day(cls, minutes: int) -> int:
        if minutes not in SETTLEMENT_MINUTES:
            raise ValueError(f"must be 15, 30, 60 or a divisor of a day in hours, not {minutes}")
        return minutes

    @field_validator("market_tz", "nem12_tz")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)  # at start, not at the first partition
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"not a time zone of the IANA database: {name}") from exc
        return name

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.market_tz)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
