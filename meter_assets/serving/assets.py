"""The customer app's serving table: each customer's day of use and cost, kept in PostgreSQL."""

import datetime as dt
import os
import time

import dagster as dg
from dagster_duckdb import DuckDBResource

from meter_assets.billing.assets import PRICED_FROM, pricing_views
from meter_assets.billing.pricing import price_day, raise_if_shared, raise_if_unpriced, start_usage, supply_days
from meter_assets.config import settings
from meter_assets.partitions import daily_partitions
from meter_assets.resources import LakeResource, PostgresResource, lake_duckdb, scratch_dir
from meter_assets.serving.store import refresh_day
from meter_assets.sql import parquet
from meter_assets.tables import READS_15MIN, READS_15MIN_EXPORT, READS_DAILY

# Per customer supplied that day: use, estimated use, quarter hours with no reading (from
# the daily rollup), and the day's cost: energy priced per interval at the customer's
# tariff plus the day's standing charge (from the bill's own `supply_days`: once per account,
# however many meters), with tax, rounded once to the penny. On a day-ahead price, the day's
# average rate: that energy's exact cost over its kWh, before tax, rounded half up to 4
# places in integers (cost in 1e-7 over kWh in 1e-3 is the rate in 1e-4), never in floats.
# For a home with an export register, the day's export and its credit (see `exported`).
SERVING_DAY_SQL = """
COPY (
    WITH supplied AS (
        SELECT DISTINCT customer_id FROM day_holders
    ),
    priced AS (
        SELECT
            usage.customer_id,
            sum(usage.measured_kwh + usage.estimated_kwh)                        AS kwh,
            sum(usage.estimated_kwh)                                             AS estimated_kwh,
            sum(coalesce(usage.cost, (usage.measured_kwh + usage.estimated_kwh) * prices.unit_rate))
                                                                                 AS energy_cost,
            CAST(sum(usage.cost) * 10000000 AS HUGEINT)                          AS day_ahead_cost_e7,
            CAST(sum(usage.measured_kwh + usage.estimated_kwh) FILTER (WHERE usage.cost IS NOT NULL) * 1000
                 AS HUGEINT)                                                     AS day_ahead_wh
        FROM usage_by_day AS usage
        JOIN price_lines AS prices USING (price_no)
        WHERE usage.customer_id IS NOT NULL AND NOT usage.is_export
        GROUP BY usage.customer_id
    ),
    exported AS (
        -- what the customer's meters sent to the grid, at the export tariff's rates (none
        -- without one), unrounded
        SELECT
            usage.customer_id,
            sum(usage.measured_kwh + usage.estimated_kwh)                        AS export_kwh,
            coalesce(sum(coalesce(usage.cost, (usage.measured_kwh + usage.estimated_kwh) * prices.unit_rate)), 0)
                                                                                 AS export_value
        FROM usage_by_day AS usage
        LEFT JOIN price_lines AS prices USING (price_no)
        WHERE usage.customer_id IS NOT NULL AND usage.is_export
        GROUP BY usage.customer_id
    ),
    gaps AS (
        SELECT day_holders.customer_id, sum(daily.missing_intervals) AS missing_intervals
        FROM day_holders
        JOIN {daily} AS daily USING (meter_id)
        GROUP BY day_holders.customer_id
    )
    SELECT
        supplied.customer_id,
        CAST($day AS DATE)                                                     AS local_date,
        CAST(coalesce(priced.kwh, 0) AS DECIMAL(12, 3))                        AS kwh,
        CAST(coalesce(priced.estimated_kwh, 0) AS DECIMAL(12, 3))              AS estimated_kwh,
        CAST(coalesce(gaps.missing_intervals, 0) AS SMALLINT)                  AS missing_intervals,
        CAST(round((coalesce(priced.energy_cost, 0) + coalesce(supply_days.standing_charge, 0))
                   * (1 + CAST($tax_rate AS DECIMAL(6, 4))), 2) AS DECIMAL(10, 2)) AS cost,
        CAST(CAST(CASE
            WHEN priced.day_ahead_wh > 0 AND priced.day_ahead_cost_e7 >= 0
                THEN (2 * priced.day_ahead_cost_e7 + priced.day_ahead_wh) // (2 * priced.day_ahead_wh)
            WHEN priced.day_ahead_wh > 0
                THEN -((priced.day_ahead_wh - 2 * priced.day_ahead_cost_e7) // (2 * priced.day_ahead_wh))
        END AS DECIMAL(18, 0)) * CAST(0.0001 AS DECIMAL(5, 4)) AS DECIMAL(10, 4))      AS average_rate,
        CAST(exported.export_kwh AS DECIMAL(12, 3))                            AS export_kwh,
        -- a credit like the bill's export lines: the day's value rounded once, negative, untaxed
        CAST(-round(exported.export_value, 2) AS DECIMAL(10, 2))               AS export_credit
    FROM supplied
    LEFT JOIN priced USING (customer_id)
    LEFT JOIN exported USING (customer_id)
    LEFT JOIN gaps USING (customer_id)
    LEFT JOIN supply_days USING (customer_id)
    ORDER BY supplied.customer_id
) TO '{target}' (FORMAT csv, HEADER false)
"""


def usage_serving(
    context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Each customer's use and cost for the day, in the table the usage page reads in milliseconds."""
    s = settings()
    day = dt.date.fromisoformat(context.partition_key)
    store = lake.lake()
    readings = store.required_files(READS_15MIN, context.partition_key)
    exports = store.files(READS_15MIN_EXPORT, context.partition_key)
    daily = store.required_files(READS_DAILY, context.partition_key)
    began = time.perf_counter()
    with scratch_dir() as scratch, lake_duckdb(duckdb, store) as con:
        pricing_views(con, store)
        # no customer is shown a meter-day the assignments give to another as well
        raise_if_shared(con, day, day + dt.timedelta(days=1))
        start_usage(con)
        price_day(con, day, s.market_tz, parquet(readings), parquet(exports, union_by_name=True) if exports else None)
        raise_if_unpriced(con, context.partition_key)
        supply_days(con, day, day + dt.timedelta(days=1), context.partition_key)
        target = os.path.join(scratch, "usage.csv")
        con.execute(
            SERVING_DAY_SQL.format(daily=parquet(daily), target=target), {"day": day, "tax_rate": str(s.tax_rate)}
        )
        compute_seconds = time.perf_counter() - began
        began = time.perf_counter()
        with postgres.connect() as conn:
            refresh = refresh_day(conn, day, target, s.serving_window_days, refreshed_at=dt.datetime.now(dt.UTC))
    if not refresh.loaded:
        context.log.info(
            f"{day} is older than the {s.serving_window_days}-day window and the month "
            f"being estimated (kept from {refresh.kept_from}): not loaded"
        )
    return dg.MaterializeResult(
        metadata={
            **vars(refresh),
            "compute_seconds": round(compute_seconds, 2),
            "load_seconds": round(time.perf_counter() - began, 2),
        }
    )


def build() -> list[dg.AssetsDefinition]:
    """The serving domain's assets over the market's days, made when the code location loads."""
    return [
        dg.asset(
            partitions_def=daily_partitions(),
            deps=PRICED_FROM,
            group_name="serving",
            kinds={"duckdb", "postgres"},
            pool="lake_compute",
        )(usage_serving),
    ]
