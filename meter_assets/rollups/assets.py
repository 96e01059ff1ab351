"""Hourly and daily rollups of the curated readings, for every report, bill and page."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from meter_assets.gates import audit_and_publish
from meter_assets.partitions import daily_partitions
from meter_assets.resources import LakeResource, lake_duckdb
from meter_assets.sql import parquet
from meter_assets.tables import READS_15MIN, READS_15MIN_EXPORT, READS_DAILY, READS_HOURLY

TOTALS_SQL = "SELECT count(*), sum(kwh) FROM {files}"

# the day's kWh three ways, and its quarter hours two ways, for the reconciliation check;
# the same for export
RECONCILE_SQL = """
SELECT
    (SELECT sum(kwh) FROM {daily})                AS daily,
    (SELECT sum(kwh) FROM {hourly})               AS hourly,
    (SELECT sum(kwh) FROM {quarter_hours})        AS quarter_hourly,
    (SELECT sum(intervals) FROM {daily})          AS daily_intervals,
    (SELECT count(*) FROM {quarter_hours})        AS quarter_hour_rows,
    (SELECT count(*) FROM {daily})                AS meters,
    (SELECT sum(export_kwh) FROM {daily})         AS daily_export,
    (SELECT sum(export_kwh) FROM {hourly})        AS hourly_export,
    (SELECT sum(kwh) FROM {export})               AS quarter_hourly_export,
    (SELECT sum(export_intervals) FROM {daily})   AS daily_export_intervals,
    (SELECT count(*) FROM {export})               AS export_rows
"""

EXPORTED_SQL = """
        SELECT
            meter_id,
            date_trunc('hour', read_at)                                        AS hour_start,
            CAST(coalesce(sum(kwh), 0) AS DECIMAL(18, 3))                      AS export_kwh,
            CAST(count(*) AS SMALLINT)                                         AS export_intervals,
            CAST(count(*) FILTER (WHERE quality_flag = 'missing') AS SMALLINT) AS export_missing_intervals
        FROM {export}
        GROUP BY meter_id, hour_start
"""
# a day curated before export registers were kept exported nothing (its meter ids typed as the
# day's own: a lake from before ids were text has whole numbers)
NOTHING_EXPORTED_SQL = """
        SELECT meter_id, hour_start, NULL::DECIMAL(18, 3) AS export_kwh, NULL::SMALLINT AS export_intervals,
               NULL::SMALLINT AS export_missing_intervals
        FROM consumption
        WHERE false
"""

# the export of a day curated before export registers were kept: none
NO_EXPORT = (
    "(SELECT NULL::VARCHAR AS meter_id, NULL::TIMESTAMP AS read_at, NULL::DECIMAL(12, 3) AS kwh, "
    "NULL::VARCHAR AS quality_flag WHERE false)"
)

# A meter's export beside its consumption (NULL for a meter with no export register that hour).
HOURLY_SQL = """
COPY (
    WITH consumption AS (
    SELECT
        meter_id,
        date_trunc('hour', read_at)                                            AS hour_start,
        CAST(coalesce(sum(kwh), 0) AS DECIMAL(18, 3))                          AS kwh,
        CAST(coalesce(sum(kwh) FILTER (WHERE quality_flag = 'estimated'), 0) AS DECIMAL(18, 3)) AS estimated_kwh,
        CAST(count(*) AS SMALLINT)                                             AS intervals,
        CAST(count(*) FILTER (WHERE quality_flag = 'actual') AS SMALLINT)      AS actual_intervals,
        CAST(count(*) FILTER (WHERE quality_flag = 'estimated') AS SMALLINT)   AS estimated_intervals,
        CAST(count(*) FILTER (WHERE quality_flag = 'missing') AS SMALLINT)     AS missing_intervals,
        CAST(count(*) FILTER (WHERE estimated_by = 'platform') AS SMALLINT)    AS platform_estimated_intervals
    -- a day curated before estimation existed has no `estimated_by`: none of it is the platform's
    FROM (SELECT * FROM {sources} UNION ALL BY NAME SELECT NULL::VARCHAR AS estimated_by WHERE false)
    GROUP BY meter_id, hour_start
    ),
    exported AS (
        {exported}
    )
    SELECT *
    FROM consumption
    FULL OUTER JOIN exported USING (meter_id, hour_start)
    ORDER BY meter_id, hour_start
) TO '{target}' (FORMAT parquet, COMPRESSION zstd)
"""

# The local day is exactly the UTC hours it covers, so the daily total is the sum of hours.
DAILY_SQL = """
COPY (
    SELECT
        meter_id,
        CAST($day AS DATE)                                    AS local_date,
        CAST(sum(kwh) AS DECIMAL(18, 3))                      AS kwh,
        CAST(sum(estimated_kwh) AS DECIMAL(18, 3))            AS estimated_kwh,
        CAST(sum(intervals) AS SMALLINT)                      AS intervals,
        CAST(sum(actual_intervals) AS SMALLINT)               AS actual_intervals,
        CAST(sum(estimated_intervals) AS SMALLINT)            AS estimated_intervals,
        CAST(sum(missing_intervals) AS SMALLINT)              AS missing_intervals,
        CAST(sum(platform_estimated_intervals) AS SMALLINT)   AS platform_estimated_intervals,
        CAST(sum(export_kwh) AS DECIMAL(18, 3))               AS export_kwh,
        CAST(sum(export_intervals) AS SMALLINT)               AS export_intervals,
        CAST(sum(export_missing_intervals) AS SMALLINT)       AS export_missing_intervals
    FROM {sources}
    GROUP BY meter_id
    ORDER BY meter_id
) TO '{target}' (FORMAT parquet, COMPRESSION zstd)
"""


def export_of(store, partition: str) -> str | None:
    """The day's export readings as a relation (None for a day curated before they were kept)."""
    files = store.files(READS_15MIN_EXPORT, partition)
    return parquet(files, union_by_name=True) if files else None


def reads_hourly(context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource):
    """Each meter's kWh per UTC hour, estimated kWh apart, and what it exported, for load curves and forecasts."""
    store = lake.lake()
    sources = store.required_files(READS_15MIN, context.partition_key)
    build = store.build(READS_HOURLY, context.partition_key)
    target = build.uri("part-0000.parquet")
    with lake_duckdb(duckdb, store) as con:
        export = export_of(store, context.partition_key)
        exported = EXPORTED_SQL.format(export=export) if export else NOTHING_EXPORTED_SQL
        con.execute(HOURLY_SQL.format(sources=parquet(sources, union_by_name=True), exported=exported, target=target))
        rows, kwh = con.execute(TOTALS_SQL.format(files=parquet(target))).fetchone()
    gate = audit_and_publish(context, store, [build], [])
    yield from gate.results({"reads_hourly": {"rows": rows, "kwh": float(kwh or 0)}})


def reads_daily(context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource):
    """Each meter's kWh for the local calendar day, with its estimated (by whom) and missing intervals,
    and what it exported."""
    store = lake.lake()
    partition = context.partition_key
    hourly = store.required_files(READS_HOURLY, partition)
    quarter_hours = store.required_files(READS_15MIN, partition)
    build = store.build(READS_DAILY, partition)
    target = build.uri("part-0000.parquet")
    with lake_duckdb(duckdb, store) as con:
        con.execute(DAILY_SQL.format(sources=parquet(hourly), target=target), {"day": partition})
        totals = con.execute(
            RECONCILE_SQL.format(
                daily=parquet(target),
                hourly=parquet(hourly, union_by_name=True),
                quarter_hours=parquet(quarter_hours),
                export=export_of(store, partition) or NO_EXPORT,
            )
        ).fetchone()
    daily, hourly_kwh, quarter_kwh, daily_intervals, quarter_rows, meter_count, *export = totals
    daily_export, hourly_export, quarter_export, daily_export_intervals, export_rows = export
    reconciled = (
        daily == hourly_kwh == quarter_kwh
        and daily_intervals == quarter_rows
        and daily_export == hourly_export == quarter_export
        and (daily_export_intervals or 0) == export_rows
    )
    check = dg.AssetCheckResult(
        check_name="daily_equals_hourly_equals_15min",
        passed=bool(reconciled),
        metadata={
            "daily_kwh": str(daily),
            "hourly_kwh": str(hourly_kwh),
            "quarter_hour_kwh": str(quarter_kwh),
            "daily_intervals": int(daily_intervals or 0),
            "quarter_hour_rows": int(quarter_rows or 0),
            "daily_export_kwh": str(daily_export),
            "hourly_export_kwh": str(hourly_export),
            "quarter_hour_export_kwh": str(quarter_export),
            "daily_export_intervals": int(daily_export_intervals or 0),
            "export_rows": int(export_rows or 0),
        },
    )
    gate = audit_and_publish(context, store, [build], [check])
    yield from gate.results({"reads_daily": {"meters": meter_count, "kwh": float(daily or 0)}})


def build() -> list[dg.AssetsDefinition]:
    """The rollups over the market's days, made when the code location loads."""
    return [
        dg.asset(
            partitions_def=daily_partitions(),
            deps=["reads_15min", "reads_15min_export"],
            group_name="rollups",
            kinds={"duckdb", "delta"},
            pool="lake_compute",
            output_required=False,
        )(reads_hourly),
        dg.asset(
            partitions_def=daily_partitions(),
            deps=["reads_hourly"],
            group_name="rollups",
            kinds={"duckdb", "delta"},
            pool="lake_compute",
            output_required=False,
            check_specs=[
                dg.AssetCheckSpec(
                    "daily_equals_hourly_equals_15min",
                    asset="reads_daily",
                    blocking=True,
                    additional_deps=["reads_hourly", "reads_15min", "reads_15min_export"],
                )
            ],
        )(reads_daily),
    ]
