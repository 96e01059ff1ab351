"""The daily operations report: what happened on a day, and what is broken.

Everything comes from the daily rollup, the day's inventory and quarantine, and two narrow
reads of the curated readings (the day's arrival times, and the last day a silent meter
spoke); nothing else is scanned. Each step is one DuckDB statement into a small table.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from meter_assets.curated.estimation import METHODS, REPLACING_RULES, RULES
from meter_assets.market_calendar import local_day_bounds
from meter_assets.sql import VIEW_SQL, parquet, sql_list
from meter_assets.storage import Lake
from meter_assets.tables import (
    CUSTOMERS,
    METER_ASSIGNMENTS,
    METERS,
    QUARANTINE,
    RAW_METER_FILES,
    READS_15MIN,
    READS_DAILY,
    REPORT_TABLES,
)

TOP_CUSTOMERS = 100
MOST_ESTIMATED_METERS = 20

# who held each meter on the day (a meter between tenants has nobody)
HOLDERS_SQL = """
CREATE OR REPLACE TEMP TABLE holders AS
SELECT assignments.meter_id, assignments.customer_id, customers.account_name, customers.region AS customer_region
FROM assignments
JOIN customers USING (customer_id)
WHERE $day >= assignments.valid_from AND (assignments.valid_to IS NULL OR $day < assignments.valid_to)
"""

# A meter missing from the meters export still counts, under 'unknown', so the regions add
# up to the day's total exactly.
REGION_ENERGY_SQL = """
CREATE OR REPLACE TEMP TABLE region_energy AS
WITH today AS (
    SELECT coalesce(meters.region, 'unknown') AS region, count(*) AS meters,
           sum(daily.kwh) AS kwh, sum(daily.estimated_kwh) AS estimated_kwh
    FROM daily
    LEFT JOIN meters USING (meter_id)
    GROUP BY 1
),
week_before AS (
    SELECT coalesce(meters.region, 'unknown') AS region, sum(daily.kwh) AS kwh
    FROM daily_week_before AS daily
    LEFT JOIN meters USING (meter_id)
    GROUP BY 1
)
SELECT
    today.region,
    today.meters,
    CAST(today.kwh AS DECIMAL(18, 3))                 AS kwh,
    CAST(today.estimated_kwh AS DECIMAL(18, 3))       AS estimated_kwh,
    CAST(week_before.kwh AS DECIMAL(18, 3))           AS kwh_week_before,
    CAST(CASE WHEN week_before.kwh > 0
              THEN 100 * (today.kwh - week_before.kwh) / week_before.kwh END AS DECIMAL(9, 1)) AS change_pct
FROM today
LEFT JOIN week_before USING (region)
ORDER BY today.kwh DESC, today.region
"""

TOP_CUSTOMERS_SQL = """
CREATE OR REPLACE TEMP TABLE top_customers AS
SELECT
    CAST(row_number() OVER (ORDER BY sum(daily.kwh) DESC, holders.customer_id) AS INTEGER) AS rank,
    holders.customer_id,
    holders.account_name,
    holders.customer_region                           AS region,
    CAST(count(*) AS INTEGER)                         AS meters,
    CAST(sum(daily.kwh) AS DECIMAL(18, 3))            AS kwh,
    CAST(sum(daily.estimated_kwh) AS DECIMAL(18, 3))  AS estimated_kwh
FROM daily
JOIN holders USING (meter_id)
GROUP BY holders.customer_id, holders.account_name, holders.customer_region
ORDER BY rank
LIMIT $limit
"""

# Silent: the head-end delivered not one reading (actual or its own estimate) in the whole
# local day; the platform's estimates do not count.
SILENT_SQL = """
CREATE OR REPLACE TEMP TABLE silent AS
SELECT meter_id FROM daily WHERE actual_intervals + estimated_intervals - coalesce(platform_estimated_intervals, 0) = 0
"""

# the newest earlier day on which each silent meter still spoke, within the look-back
LAST_DAYS_SQL = """
CREATE OR REPLACE TEMP TABLE last_days AS
SELECT history.meter_id, max(history.local_date) AS last_day
FROM history
JOIN silent USING (meter_id)
WHERE history.actual_intervals + history.estimated_intervals - coalesce(history.platform_estimated_intervals, 0) > 0
GROUP BY history.meter_id
"""

# ... and the end of its last reading that day (only those days' files, only those meters)
LAST_READINGS_SQL = """
CREATE OR REPLACE TEMP TABLE last_readings AS
SELECT readings.meter_id, max(readings.read_at) + INTERVAL 15 MINUTE AS last_reading_at
FROM last_day_readings AS readings
JOIN last_days USING (meter_id)
WHERE readings.source_file IS NOT NULL
GROUP BY readings.meter_id
"""

SILENT_METERS_SQL = """
CREATE OR REPLACE TEMP TABLE silent_meters AS
SELECT
    silent.meter_id,
    coalesce(meters.region, 'unknown')                                   AS region,
    holders.customer_id,
    holders.account_name,
    last_readings.last_reading_at,
    CAST(epoch($day_end - last_readings.last_reading_at) / 3600 AS DECIMAL(9, 1)) AS silent_hours
FROM silent
LEFT JOIN meters USING (meter_id)
LEFT JOIN holders USING (meter_id)
LEFT JOIN last_readings USING (meter_id)
ORDER BY silent_hours DESC NULLS FIRST, silent.meter_id
"""

# Late: landed more than the allowance after the end of the hour it carries. Listed: the
# late files carrying this day, and the late files that landed during this day for earlier days.
LATE_FILES_SQL = """
CREATE OR REPLACE TEMP TABLE late_files AS
SELECT
    file_key,
    CAST(regexp_extract(filename, 'date=(\\d{4}-\\d{2}-\\d{2})', 1) AS DATE)      AS carries_date,
    hour,
    arrived_at,
    CAST(epoch(arrived_at - (hour + INTERVAL 1 HOUR)) / 3600 AS DECIMAL(12, 2)) AS hours_late,
    status
FROM inventories
WHERE arrived_at > hour + INTERVAL 1 HOUR + to_minutes(CAST($late_minutes AS BIGINT))
  AND (filename LIKE ('%/date=' || $day_text || '/%') OR (arrived_at >= $day_start AND arrived_at < $day_end))
ORDER BY carries_date, hour, file_key
"""

# Reasons grouped with the offending value taken out ("energy: not a number: N/A" and
# "...: -1" are one reason), and one full example of each.
QUARANTINE_SQL = """
CREATE OR REPLACE TEMP TABLE quarantine_reasons AS
SELECT
    scope,
    regexp_extract(regexp_replace(reason, '[-+]?[0-9][0-9.:T Z+-]*[0-9]|[0-9]', '…', 'g'), '^[^:]*(:[^:]*)?') AS reason,
    CAST(count(*) AS INTEGER) AS rows,
    min(reason)               AS example
FROM quarantine
GROUP BY ALL
ORDER BY rows DESC, reason
"""

# who estimated what, and what validation flagged: kept as delivered (flagged for review) or
# replaced by an estimate, apart; every method and rule listed (zero or not)
ESTIMATION_SQL = """
CREATE OR REPLACE TEMP TABLE estimation AS
WITH counted AS (
    SELECT estimation_method, validation_rule, measured_kwh IS NOT NULL AS replaced, count(*) AS intervals,
           sum(kwh) AS kwh, sum(measured_kwh) AS measured_kwh
    FROM readings
    WHERE estimation_method IS NOT NULL OR validation_rule IS NOT NULL
    GROUP BY ALL
),
names AS (
    SELECT 'method' AS kind, unnest($methods) AS name, generate_subscripts($methods, 1) AS position
    UNION ALL
    SELECT 'flagged', unnest($rules), generate_subscripts($rules, 1)
    UNION ALL
    SELECT 'replaced', unnest($replacing_rules), generate_subscripts($replacing_rules, 1)
)
SELECT
    names.kind,
    names.name,
    CAST(coalesce(sum(counted.intervals), 0) AS BIGINT)                                           AS intervals,
    CAST(coalesce(sum(CASE names.kind WHEN 'replaced' THEN counted.measured_kwh ELSE counted.kwh END), 0)
         AS DECIMAL(18, 3))                                                                       AS kwh
FROM names
LEFT JOIN counted
       ON (names.kind = 'method' AND counted.estimation_method = names.name)
       OR (names.kind = 'flagged' AND counted.validation_rule = names.name AND NOT counted.replaced)
       OR (names.kind = 'replaced' AND counted.validation_rule = names.name AND counted.replaced)
GROUP BY names.kind, names.name, names.position
ORDER BY CASE names.kind WHEN 'method' THEN 0 WHEN 'flagged' THEN 1 ELSE 2 END, names.position
"""

# the meters the platform estimated most for: whose head-end or meter to look at first
MOST_ESTIMATED_SQL = """
CREATE OR REPLACE TEMP TABLE most_estimated_meters AS
SELECT
    daily.meter_id,
    coalesce(meters.region, 'unknown')                   AS region,
    holders.customer_id,
    holders.account_name,
    CAST(daily.platform_estimated_intervals AS INTEGER)  AS estimated_intervals,
    CAST(daily.intervals AS INTEGER)                     AS intervals,
    CAST(daily.estimated_kwh AS DECIMAL(18, 3))          AS estimated_kwh
FROM daily
LEFT JOIN meters USING (meter_id)
LEFT JOIN holders USING (meter_id)
WHERE daily.platform_estimated_intervals > 0
ORDER BY daily.platform_estimated_intervals DESC, daily.meter_id
LIMIT $limit
"""

SUMMARY_SQL = """
CREATE OR REPLACE TEMP TABLE summary AS
WITH intervals AS (
    SELECT count(*) AS meters, sum(kwh) AS kwh, sum(estimated_kwh) AS estimated_kwh, sum(intervals) AS intervals,
           sum(actual_intervals) AS actual, sum(estimated_intervals) AS estimated, sum(missing_intervals) AS missing,
           coalesce(sum(platform_estimated_intervals), 0) AS platform_estimated
    FROM daily
),
delays AS (
    SELECT quantile_cont(epoch(ingested_at - read_at) / 60 - 15, [0.5, 0.95]) AS minutes
    FROM readings
    WHERE quality_flag <> 'missing'
)
SELECT
    CAST($day AS DATE)                                                  AS local_date,
    CAST(intervals.meters AS INTEGER)                                   AS meters,
    CAST(intervals.kwh AS DECIMAL(18, 3))                               AS kwh,
    CAST(intervals.estimated_kwh AS DECIMAL(18, 3))                     AS estimated_kwh,
    CAST(intervals.intervals AS BIGINT)                                 AS intervals,
    CAST(intervals.actual AS BIGINT)                                    AS actual_intervals,
    CAST(intervals.estimated AS BIGINT)                                 AS estimated_intervals,
    CAST(intervals.missing AS BIGINT)                                   AS missing_intervals,
    CAST(intervals.platform_estimated AS BIGINT)                        AS platform_estimated_intervals,
    CAST((SELECT sum(intervals) FROM estimation WHERE kind = 'flagged') AS BIGINT) AS flagged_readings,
    CAST((SELECT sum(intervals) FROM estimation WHERE kind = 'replaced') AS BIGINT) AS replaced_readings,
    -- quarter hours made by halving a half-hour NEM12 reading: billed, but not measured as such
    CAST((SELECT count(*) FROM readings WHERE interval_minutes = 30) AS BIGINT) AS derived_intervals,
    intervals.actual / intervals.intervals                              AS actual_share,
    intervals.estimated / intervals.intervals                           AS estimated_share,
    intervals.missing / intervals.intervals                             AS missing_share,
    intervals.platform_estimated / intervals.intervals                  AS platform_estimated_share,
    delays.minutes[1]                                                   AS delay_p50_minutes,
    delays.minutes[2]                                                   AS delay_p95_minutes,
    CAST((SELECT count(*) FROM silent) AS INTEGER)                      AS silent_meters,
    CAST($silent_day_before AS INTEGER)                                 AS silent_meters_day_before,
    CAST((SELECT count(*) FROM late_files) AS INTEGER)                  AS late_files,
    CAST((SELECT coalesce(sum(rows), 0) FROM quarantine_reasons WHERE scope = 'row') AS INTEGER)  AS quarantined_rows,
    CAST((SELECT coalesce(sum(rows), 0) FROM quarantine_reasons WHERE scope = 'file') AS INTEGER) AS quarantined_files
FROM intervals, delays
"""


@dataclass
class Report:
    day: dt.date
    tables: dict[str, pa.Table]

    @property
    def summary(self) -> dict:
        return self.tables["summary"].to_pylist()[0]


EMPTY_VIEW_SQL = "CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {like} WHERE false"
EVOLVED_VIEW_SQL = "CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {files} UNION ALL BY NAME {since}"
DAILY_SINCE_ESTIMATION = "SELECT NULL::SMALLINT AS platform_estimated_intervals WHERE false"
READINGS_SINCE_ESTIMATION = (
    "SELECT NULL::VARCHAR AS estimation_method, NULL::VARCHAR AS validation_rule, "
    "NULL::DECIMAL(12, 3) AS measured_kwh, NULL::SMALLINT AS interval_minutes WHERE false"
)
# the inventories of the report's day and of the days before it
INVENTORIES_SQL = (
    "CREATE OR REPLACE TEMP VIEW inventories AS "
    "SELECT * FROM read_parquet({files}, filename = true, hive_partitioning = false)"
)
SILENT_DAY_BEFORE_SQL = (
    "SELECT count(*) FROM daily_day_before "
    "WHERE actual_intervals + estimated_intervals - coalesce(platform_estimated_intervals, 0) = 0"
)
TABLE_SQL = "SELECT * FROM {table}"


def _view(
    con: duckdb.DuckDBPyConnection, name: str, files: list[str], like: str | None = None, since: str | None = None
) -> None:
    """A view over published files; with no files, an empty view shaped like `like`.

    `since`: the columns (an empty SELECT) the table gained when validation and estimation
    came; days written before have them as NULL.
    """
    if files and since:
        con.execute(EVOLVED_VIEW_SQL.format(view=name, files=parquet(files, union_by_name=True), since=since))
    elif files:
        con.execute(VIEW_SQL.format(view=name, files=parquet(files)))
    else:
        con.execute(EMPTY_VIEW_SQL.format(view=name, like=like))


def build_report(
    con: duckdb.DuckDBPyConnection, lake: Lake, day: dt.date, tz: str, late_minutes: int, lookback_days: int
) -> Report:
    """Compute every table of the day's report into `con` and return them."""
    key = day.isoformat()
    earlier = [day - dt.timedelta(days=d) for d in range(1, lookback_days + 1)]
    day_start, day_end = local_day_bounds(day, tz)

    for view, table in (("meters", METERS), ("customers", CUSTOMERS), ("assignments", METER_ASSIGNMENTS)):
        _view(con, view, lake.required_files(table))
    # one version of each table for every day the report reads
    daily, readings, inventory = (lake.required_snapshot(t, key) for t in (READS_DAILY, READS_15MIN, RAW_METER_FILES))
    _view(con, "daily", daily.required_files(key), since=DAILY_SINCE_ESTIMATION)
    _view(con, "readings", readings.required_files(key), since=READINGS_SINCE_ESTIMATION)
    _view(con, "quarantine", lake.required_files(QUARANTINE, key))
    _view(con, "daily_week_before", daily.files((day - dt.timedelta(days=7)).isoformat()), like="daily")
    _view(
        con,
        "history",
        [f for d in earlier for f in daily.files(d.isoformat())],
        like="daily",
        since=DAILY_SINCE_ESTIMATION,
    )
    inventories = inventory.required_files(key) + [f for d in earlier for f in inventory.files(d.isoformat())]
    con.execute(INVENTORIES_SQL.format(files=sql_list(inventories)))

    day_before = daily.files((day - dt.timedelta(days=1)).isoformat())
    silent_day_before = None
    if day_before:
        _view(con, "daily_day_before", day_before, since=DAILY_SINCE_ESTIMATION)
        silent_day_before = con.execute(SILENT_DAY_BEFORE_SQL).fetchone()[0]

    con.execute(HOLDERS_SQL, {"day": day})
    con.execute(REGION_ENERGY_SQL)
    con.execute(TOP_CUSTOMERS_SQL, {"limit": TOP_CUSTOMERS})
    con.execute(SILENT_SQL)
    con.execute(LAST_DAYS_SQL)
    last_days = [d for (d,) in con.execute("SELECT DISTINCT last_day FROM last_days ORDER BY 1").fetchall()]
    last_files = [f for d in last_days for f in readings.files(d.isoformat())]
    _view(con, "last_day_readings", last_files, like="readings")
    con.execute(LAST_READINGS_SQL)
    con.execute(SILENT_METERS_SQL, {"day_end": day_end})
    con.execute(
        LATE_FILES_SQL, {"late_minutes": late_minutes, "day_text": key, "day_start": day_start, "day_end": day_end}
    )
    con.execute(QUARANTINE_SQL)
    con.execute(
        ESTIMATION_SQL,
        {"methods": ["head-end", *METHODS], "rules": list(RULES), "replacing_rules": list(REPLACING_RULES)},
    )
    con.execute(MOST_ESTIMATED_SQL, {"limit": MOST_ESTIMATED_METERS})
    con.execute(SUMMARY_SQL, {"day": day, "silent_day_before": silent_day_before})
    return Report(
        day=day, tables={name: con.execute(TABLE_SQL.format(table=name)).to_arrow_table() for name in REPORT_TABLES}
    )


def reconcile_regions(con: duckdb.DuckDBPyConnection) -> tuple[object, object]:
    """(sum of the report's region totals, the day's reads_daily total): equal, to the Wh."""
    return con.execute("SELECT (SELECT sum(kwh) FROM region_energy), (SELECT sum(kwh) FROM daily)").fetchone()
