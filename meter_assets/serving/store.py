"""The serving tables in PostgreSQL: one local day replaced at a time, readers never see half a day."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import psycopg

# any constant: serialises refreshes, so two days loading at once never interleave
SERVING_LOCK = 7_400_000_001
COPY_CHUNK = 1 << 20

COLUMNS = ("customer_id", "local_date", "kwh", "estimated_kwh", "missing_intervals", "cost")

# The month-to-date estimate: the newest month with data, through each customer's newest
# day in it. Rebuilt from the month's days when the month moves on (on its first day, so
# over one day), otherwise kept incrementally: the replaced day's rows are taken out and
# the new ones added, never re-aggregating the month.
ESTIMATES_SQL = """
INSERT INTO serving.bill_estimates (customer_id, period_start, through_date, days, kwh, estimated_kwh, cost, currency)
SELECT customer_id, %(period_start)s, max(local_date), count(*), sum(kwh), sum(estimated_kwh), sum(cost), %(currency)s
FROM serving.daily_usage
WHERE local_date >= %(period_start)s
GROUP BY customer_id
"""

TAKE_OUT_DAY_SQL = """
UPDATE serving.bill_estimates AS estimates
SET days          = estimates.days - 1,
    kwh           = estimates.kwh - usage.kwh,
    estimated_kwh = estimates.estimated_kwh - usage.estimated_kwh,
    cost          = estimates.cost - usage.cost
FROM serving.daily_usage AS usage
WHERE usage.local_date = %(day)s AND usage.customer_id = estimates.customer_id
"""

ADD_DAY_SQL = """
INSERT INTO serving.bill_estimates AS estimates
    (customer_id, period_start, through_date, days, kwh, estimated_kwh, cost, currency)
SELECT customer_id, %(period_start)s, local_date, 1, kwh, estimated_kwh, cost, %(currency)s
FROM serving.daily_usage
WHERE local_date = %(day)s
ON CONFLICT (customer_id) DO UPDATE SET
    through_date  = greatest(estimates.through_date, EXCLUDED.through_date),
    days          = estimates.days + 1,
    kwh           = estimates.kwh + EXCLUDED.kwh,
    estimated_kwh = estimates.estimated_kwh + EXCLUDED.estimated_kwh,
    cost          = estimates.cost + EXCLUDED.cost
"""

# A customer who lost the replaced day: no days left, or an earlier last day.
TIDY_ESTIMATES_SQL = """
WITH emptied AS (
    DELETE FROM serving.bill_estimates WHERE days = 0 RETURNING customer_id
)
UPDATE serving.bill_estimates AS estimates
SET through_date = (SELECT max(local_date) FROM serving.daily_usage AS usage
                    WHERE usage.customer_id = estimates.customer_id AND usage.local_date >= estimates.period_start)
WHERE estimates.through_date = %(day)s
  AND NOT EXISTS (SELECT 1 FROM serving.daily_usage AS usage
                  WHERE usage.customer_id = estimates.customer_id AND usage.local_date = %(day)s)
  AND estimates.customer_id NOT IN (SELECT customer_id FROM emptied)
"""


@dataclass
class Refresh:
    day: str
    loaded: bool
    rows: int = 0
    pruned_rows: int = 0
    newest_day: str = ""
    window_starts: str = ""
    estimates: int = 0


def refresh_day(conn: psycopg.Connection, day: dt.date, csv_path: str, window_days: int, currency: str,
                refreshed_at: dt.datetime) -> Refresh:
    """Replace one day of `serving.daily_usage` from a CSV file, prune, re-estimate; one transaction.

    The window is counted back from the newest day loaded, so it follows the data: a day
    already older than the window is not loaded at all.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [SERVING_LOCK])
        (newest,) = conn.execute("SELECT max(local_date) FROM serving.daily_usage").fetchone()
        newest = max(newest or day, day)
        oldest_kept = newest - dt.timedelta(days=window_days - 1)
        if day < oldest_kept:
            return Refresh(day=day.isoformat(), loaded=False, newest_day=newest.isoformat(),
                           window_starts=oldest_kept.isoformat())
        period_start = newest.replace(day=1)
        (estimated_period,) = conn.execute("SELECT min(period_start) FROM serving.bill_estimates").fetchone()
        in_estimate = day >= period_start
        incremental = in_estimate and estimated_period == period_start
        params = {"day": day, "period_start": period_start, "currency": currency}
        if incremental:
            conn.execute(TAKE_OUT_DAY_SQL, params)
        conn.execute("DELETE FROM serving.daily_usage WHERE local_date = %s", [day])
        with open(csv_path, "rb") as source, conn.cursor().copy(
            f"COPY serving.daily_usage ({', '.join(COLUMNS)}) FROM STDIN (FORMAT csv)"
        ) as copy:
            while chunk := source.read(COPY_CHUNK):
                copy.write(chunk)
        (rows,) = conn.execute("SELECT count(*) FROM serving.daily_usage WHERE local_date = %s", [day]).fetchone()
        pruned = conn.execute("DELETE FROM serving.daily_usage WHERE local_date < %s", [oldest_kept]).rowcount
        conn.execute("DELETE FROM serving.refreshes WHERE local_date < %s", [oldest_kept])
        conn.execute(
            """
            INSERT INTO serving.refreshes (local_date, refreshed_at, customers) VALUES (%s, %s, %s)
            ON CONFLICT (local_date) DO UPDATE SET refreshed_at = EXCLUDED.refreshed_at, customers = EXCLUDED.customers
            """,
            [day, refreshed_at, rows],
        )
        if incremental:
            conn.execute(ADD_DAY_SQL, params)
            conn.execute(TIDY_ESTIMATES_SQL, params)
        elif in_estimate:
            conn.execute("DELETE FROM serving.bill_estimates")
            conn.execute(ESTIMATES_SQL, params)
        (estimates,) = conn.execute("SELECT count(*) FROM serving.bill_estimates").fetchone()
    return Refresh(day=day.isoformat(), loaded=True, rows=rows, pruned_rows=pruned, newest_day=newest.isoformat(),
                   window_starts=oldest_kept.isoformat(), estimates=estimates)
