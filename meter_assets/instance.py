"""Dagster's own storage (runs, the event log, schedules and sensor state) in PostgreSQL, with
dagster-postgres, in a database of its own on the platform's server.

`dagster.yaml` names these classes. Each takes dagster-postgres's own settings (`postgres_url`
or `postgres_db`, with `{env: ...}` values); with neither, the URL is `METER_DAGSTER_PG_URL`,
and with that unset, the embedded server's database named by `embedded_database` (created on
first use, owned by `meter_dagster`). So `dagster dev`, the daemon, the code server and every
run worker find the same database with nothing to set, and a deployment sets one variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dagster import Field, StringSource
from dagster._core.storage.config import pg_config
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from dagster_postgres.utils import pg_url_from_config

from meter_assets.config import settings

EMBEDDED_DATABASE = "dagster"


def config_type() -> dict:
    return {
        **pg_config(),
        "embedded_database": Field(
            StringSource,
            is_required=False,
            default_value=EMBEDDED_DATABASE,
            description="Dagster's database on the embedded server, when no URL is given",
        ),
    }


def storage_url(config: Mapping[str, Any]) -> str:
    """The URL the storage connects with: the config's, else `METER_DAGSTER_PG_URL`, else the embedded server's."""
    if config.get("postgres_url") or config.get("postgres_db"):
        return with_psycopg2(pg_url_from_config(config))
    s = settings()
    if s.dagster_pg_url:
        return with_psycopg2(s.dagster_pg_url)
    from meter_assets import postgres

    folder = os.path.abspath(os.path.join(s.data_dir, "postgres"))
    return postgres.embedded_dagster_url(folder, config.get("embedded_database", EMBEDDED_DATABASE))


def with_psycopg2(url: str) -> str:
    """`url` through psycopg2, the driver dagster-postgres is written for: SQLAlchemy 2.1 takes a
    bare `postgresql://` to mean psycopg 3, which cannot bind the event log's NOTIFY payload."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg2://{rest}" if sep and scheme in ("postgresql", "postgres") else url


class AtStorageUrl:
    """dagster-postgres's storage, configured as above."""

    @classmethod
    def config_type(cls):
        return config_type()

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(
            postgres_url=storage_url(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            inst_data=inst_data,
        )


class RunStorage(AtStorageUrl, PostgresRunStorage):
    """Runs, their tags, backfills and daemon heartbeats."""


class EventLogStorage(AtStorageUrl, PostgresEventLogStorage):
    """Every run's events, asset materializations and checks, and the pools' slots."""


class ScheduleStorage(AtStorageUrl, PostgresScheduleStorage):
    """Schedule and sensor state, cursors and ticks."""
