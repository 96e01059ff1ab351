"""The serving tables in PostgreSQL: one local day replaced at a time, readers never see half a day."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg
from psycopg import sql

# any constant: serialises refreshes, so two days loading at once never interleave
SERVING_LOCK = 7_400_000_001
COPY_CHUNK = 1 << 20

COLUMNS = (
    "customer_id",
    "local_date",
    "kwh",
    "estimated_kwh",
    "missing_intervals",
    "cost",
    "average_rate",
    "export_kwh",
    "export_credit",
)
COPY_USAGE_SQL = sql.SQL("COPY serving.daily_usage ({columns}) FROM STDIN (FORMAT csv)").format(
    columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
)


@dataclass
class Refresh:
    day: str
    loaded: bool
    rows: int = 0
    pruned_rows: int = 0
    newest_day: str = ""
    kept_from: str = ""


def refresh_day(
    conn: psycopg.Connection, day: dt.date, csv_path: str, window_days: int, refreshed_at: dt.datetime
) -> Refresh:
    """Replace one day of `serving.daily_usage` from a CSV file and prune; one transaction.

    The window is counted back from the newest day loaded, so it follows the data; every day
    of the newest day's month is kept too, for the month-to-date estimate. A day older than
    both is not loaded at all.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%(lock)s)", {"lock": SERVING_LOCK})
        (newest,) = conn.execute("SELECT max(local_date) FROM serving.refreshes").fetchone()
        newest = max(newest or day, day)
        kept_from = min(newest - dt.timedelta(days=window_days - 1), newest.replace(day=1))
        if day < kept_from:
            return Refresh(
                day=day.isoformat(), loaded=False, newest_day=newest.isoformat(), kept_from=kept_from.isoformat()
            )
        conn.execute("DELETE FROM serving.daily_usage WHERE local_date = %(day)s", {"day": day})
        with (
            open(csv_path, "rb") as source,
            conn.cursor().copy(COPY_USAGE_SQL) as copy,
        ):
            while chunk := source.read(COPY_CHUNK):
                copy.write(chunk)
        (rows,) = conn.execute(
            "SELECT count(*) FROM serving.daily_usage WHERE local_date = %(day)s", {"day": day}
        ).fetchone()
        pruned = conn.execute(
            "DELETE FROM serving.daily_usage WHERE local_date < %(kept_from)s", {"kept_from": kept_from}
        ).rowcount
        conn.execute("DELETE FROM serving.refreshes WHERE local_date < %(kept_from)s", {"kept_from": kept_from})
        conn.execute(
            """
            INSERT INTO serving.refreshes (local_date, refreshed_at, customers)
            VALUES (%(day)s, %(refreshed_at)s, %(rows)s)
            ON CONFLICT (local_date) DO UPDATE SET refreshed_at = EXCLUDED.refreshed_at, customers = EXCLUDED.customers
            """,
            {"day": day, "refreshed_at": refreshed_at, "rows": rows},
        )
    return Refresh(
        day=day.isoformat(),
        loaded=True,
        rows=rows,
        pruned_rows=pruned,
        newest_day=newest.isoformat(),
        kept_from=kept_from.isoformat(),
    )
