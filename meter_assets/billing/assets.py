"""Monthly bills: drafts while a month is open to late data, sealed bills and adjustments after."""

import datetime as dt
import os
import time

import dagster as dg
from dagster_duckdb import DuckDBResource

from meter_assets.billing.ledger import issue_month, lock_month, merge_month, stage_month
from meter_assets.billing.pricing import NO_PLAN_CHANGES_SQL, NO_PRICES_SQL, PRICING_RULES, month_bills, price_month
from meter_assets.config import settings
from meter_assets.gates import audit_and_publish
from meter_assets.market_calendar import month_bounds, month_days
from meter_assets.partitions import monthly_partitions
from meter_assets.reference.assets import customer_plans, customers, day_ahead_prices, meter_assignments, tariffs
from meter_assets.resources import LakeResource, PostgresResource, lake_duckdb, scratch_dir
from meter_assets.sql import VIEW_SQL, literal, parquet, typed_csv
from meter_assets.storage import Lake, Publication
from meter_assets.tables import (
    ADJUSTMENTS_EXPORT,
    BILL_LINES_EXPORT,
    BILLS_EXPORT,
    CUSTOMER_PLANS,
    CUSTOMERS,
    DAY_AHEAD_PRICES,
    METER_ASSIGNMENTS,
    READS_15MIN,
    READS_15MIN_EXPORT,
    READS_DAILY,
    TARIFFS,
)

# the month's use and export in the daily rollups (a day rolled up before export was kept has none)
ROLLUP_KWH_SQL = """
SELECT coalesce(sum(kwh), 0), coalesce(sum(export_kwh), 0)
FROM (SELECT * FROM {files} UNION ALL BY NAME SELECT NULL::DECIMAL(18, 3) AS export_kwh WHERE false)
"""
EXPORT_COPY_SQL = "COPY (SELECT * FROM {source}) TO {target} (FORMAT parquet, COMPRESSION zstd)"

# the reference tables the pricing SQL reads, by the view name it uses
PRICING_DIMENSIONS = {"assignments": METER_ASSIGNMENTS, "customers": CUSTOMERS, "tariffs": TARIFFS}


# what a day is priced from, for the bills and the usage page alike
PRICED_FROM = [
    "reads_15min",
    "reads_15min_export",
    "reads_daily",
    meter_assignments,
    customers,
    customer_plans,
    tariffs,
    day_ahead_prices,
]


def pricing_views(con, store: Lake) -> None:
    """The views the pricing SQL reads, over the published reference dimensions. The day-ahead
    prices may be unpublished: then a day-ahead plan's first supplied period stops the run.
    Customers' plan history may be unpublished too (a lake from before it was kept): then
    every customer is on the customers export's plan."""
    for view, table in PRICING_DIMENSIONS.items():
        con.execute(VIEW_SQL.format(view=view, files=parquet(store.required_files(table))))
    plans = store.files(CUSTOMER_PLANS)
    con.execute(VIEW_SQL.format(view="customer_plans", files=parquet(plans)) if plans else NO_PLAN_CHANGES_SQL)
    prices = store.files(DAY_AHEAD_PRICES)
    con.execute(VIEW_SQL.format(view="day_ahead_prices", files=parquet(prices)) if prices else NO_PRICES_SQL)


def month_is_complete(lake: Lake, month: str) -> bool:
    """Whether every local day of the month has published readings and daily rollups."""
    snapshots = [lake.snapshot(table) for table in (READS_15MIN, READS_DAILY)]
    return all(s is not None and s.keys(day) for day in month_days(month) for s in snapshots)


def bills(context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource, postgres: PostgresResource):
    """Each customer's bill for the month, priced per quarter hour: drafts until issued, adjustments after."""
    s = settings()
    month = context.partition_key
    store = lake.lake()
    days = month_days(month)
    # one version of each table for the whole month: the bill cites it, and it can be read again
    curated, daily = store.snapshot(READS_15MIN), store.snapshot(READS_DAILY)
    if curated is None or daily is None:
        raise FileNotFoundError(f"{month}: reads_15min and reads_daily are not published yet")
    readings = {day: curated.required_files(day) for day in days}
    # the export registers' readings of each day (none for a day curated before they were kept)
    exported = store.snapshot(READS_15MIN_EXPORT)
    exports = {day: exported.files(day) if exported else [] for day in days}
    rollups = [f for day in days for f in daily.required_files(day)]

    timings = {}
    began = time.perf_counter()
    # The bills are made one range of customers at a time and staged in PostgreSQL as they are
    # made; the check reconciles what was staged, and only then is it merged into the ledger.
    with lake_duckdb(duckdb, store) as con:
        # each day's files are read once: DuckDB's cache of file data would hold them for nothing
        # (0.56 GB of the step's 1.9 GB at 200,000 customers)
        con.execute("SET enable_external_file_cache = false")
        pricing_views(con, store)
        priced = price_month(
            con,
            month,
            s.market_tz,
            s.tax_rate,
            readings_of=lambda day: parquet(readings[day.isoformat()]),
            exports_of=lambda day: (
                parquet(exports[day.isoformat()], union_by_name=True) if exports[day.isoformat()] else None
            ),
        )
        rollup_kwh, rollup_export_kwh = con.execute(
            ROLLUP_KWH_SQL.format(files=parquet(rollups, union_by_name=True))
        ).fetchone()
        timings["compute_seconds"] = round(time.perf_counter() - began, 2)
        with postgres.connect() as conn, conn.transaction():
            lock_month(conn, month)
            staged = stage_month(
                conn, month, month_bills(con, priced, s.bill_range_customers), s.currency, reads_version=curated.version
            )
            timings["stage_seconds"] = round(time.perf_counter() - began - timings["compute_seconds"], 2)
            # every kWh sent to the grid is credited, sent by a customer whose plan credits none,
            # or sent from a vacant premises
            accounted_export = staged.export_kwh + priced.uncredited_export_kwh + priced.vacant_export_kwh
            reconciled = staged.billed_kwh + priced.vacant_kwh == rollup_kwh and accounted_export == rollup_export_kwh
            if not reconciled:
                context.log.error(
                    f"{month}: billed {staged.billed_kwh} kWh + vacant {priced.vacant_kwh} kWh against "
                    f"{rollup_kwh} kWh in reads_daily, and export credited {staged.export_kwh} + uncredited "
                    f"{priced.uncredited_export_kwh} + vacant {priced.vacant_export_kwh} kWh against "
                    f"{rollup_export_kwh} kWh: they differ; the ledger was not written"
                )
            check = dg.AssetCheckResult(
                check_name="billed_kwh_reconciles_with_reads_daily",
                passed=bool(reconciled),
                metadata={
                    "billed_kwh": str(staged.billed_kwh),
                    "vacant_kwh": str(priced.vacant_kwh),
                    "reads_daily_kwh": str(rollup_kwh),
                    "credited_export_kwh": str(staged.export_kwh),
                    "uncredited_export_kwh": str(priced.uncredited_export_kwh),
                    "vacant_export_kwh": str(priced.vacant_export_kwh),
                    "reads_daily_export_kwh": str(rollup_export_kwh),
                },
            )
            written = {}

            def write_ledger():
                merging = time.perf_counter()
                written["outcome"] = merge_month(
                    conn, month, s.backbilling_months, found_at=dt.datetime.now(dt.UTC), reads_version=curated.version
                )
                timings["ledger_seconds"] = round(time.perf_counter() - merging, 2)
                context.log.info(f"{month}: {written['outcome']}")

            gate = audit_and_publish(context, store, [], [check], publish=write_ledger)
    yield from gate.results(
        {
            "bills": {
                "customers": staged.customers,
                "billed_kwh": str(staged.billed_kwh),
                "vacant_kwh": str(priced.vacant_kwh),
                "estimated_bills": staged.estimated_bills,
                "energy_charge": str(staged.energy_charge),
                "charges_with_tax": str(staged.charges_with_tax),
                "export_kwh": str(staged.export_kwh),
                "export_credit": str(staged.export_credit),
                "uncredited_export_kwh": str(priced.uncredited_export_kwh),
                "tax_rate": str(s.tax_rate),
                "pricing_rules": PRICING_RULES,
                "customers_per_range": s.bill_range_customers,
                **timings,
                "reads_15min_version": curated.version,
                "reads_daily_version": daily.version,
                **(vars(written["outcome"]) if written else {}),
            }
        }
    )


EXPORT_BILLS_SQL = """
COPY (
    SELECT bill_id, customer_id, period_start, period_end, measured_kwh, estimated_kwh,
           -- the share of the bill's energy that was estimated (by the head-end or the platform)
           round(estimated_kwh / nullif(measured_kwh + estimated_kwh, 0), 4) AS estimated_share,
           -- the energy halved from half-hour readings (NEM12), measured or estimated
           derived_kwh,
           energy_charge, supply_days,
           standing_charge, adjustments_carried, tax_rate, tax, total_due, is_estimated, currency, issued_at,
           pricing_rules, energy_lines::text, standing_lines::text, inputs_fingerprint,
           -- what the home sent to the grid, and its credit (negative; untaxed)
           export_kwh, export_credit, export_lines::text,
           -- a negative total is not paid out: it is carried forward to the customer's next bill
           greatest(total_due, 0) AS amount_payable, least(total_due, 0) AS credit_carried_forward
    FROM billing.bills
    WHERE period_start = %(period_start)s AND status = 'issued'
    ORDER BY bill_id
) TO STDOUT (FORMAT csv, HEADER)
"""

# Every line of every issued bill of the month, in print order: energy (a band at a unit
# rate, or at a day-ahead rule with its exact cost), standing charge (days at a daily rate),
# tax, export credits (negative, after tax: they are not taxed), and adjustments carried from
# earlier months. A bill's lines add up to its total due.
# Bills issued under pricing rules 1 kept their energy as a map by band and rate, without the
# measured/estimated split, and no standing lines: their lines are exported as issued.
EXPORT_BILL_LINES_SQL = """
COPY (
    WITH issued AS (
        SELECT * FROM billing.bills WHERE period_start = %(period_start)s AND status = 'issued'
    ),
    lines AS (
        SELECT issued.bill_id, issued.customer_id, 1 AS section, line.position, 'energy' AS kind,
               line.value ->> 'band'                    AS band,
               (line.value ->> 'unit_rate')::numeric    AS rate,
               line.value ->> 'price_rule'              AS price_rule,
               (line.value ->> 'cost')::numeric         AS cost,
               (line.value ->> 'measured_kwh')::numeric AS measured_kwh,
               (line.value ->> 'estimated_kwh')::numeric AS estimated_kwh,
               coalesce((line.value ->> 'derived_kwh')::numeric, 0) AS derived_kwh,
               (line.value ->> 'kwh')::numeric          AS kwh,
               NULL::integer                            AS days,
               (line.value ->> 'amount')::numeric       AS amount
        FROM issued, jsonb_array_elements(issued.energy_lines) WITH ORDINALITY AS line (value, position)
        UNION ALL
        SELECT issued.bill_id, issued.customer_id, 1, row_number() OVER (PARTITION BY issued.bill_id ORDER BY line.key),
               'energy', split_part(line.key, '@', 1), (line.value ->> 'rate')::numeric, NULL, NULL, NULL, NULL, NULL,
               (line.value ->> 'kwh')::numeric, NULL, (line.value ->> 'amount')::numeric
        FROM issued, jsonb_each(issued.energy_by_band) AS line (key, value)
        WHERE issued.energy_lines IS NULL
        UNION ALL
        SELECT issued.bill_id, issued.customer_id, 2, line.position, 'standing', NULL,
               (line.value ->> 'daily_rate')::numeric, NULL, NULL, NULL, NULL, NULL, NULL,
               (line.value ->> 'days')::integer, (line.value ->> 'amount')::numeric
        FROM issued, jsonb_array_elements(issued.standing_lines) WITH ORDINALITY AS line (value, position)
        UNION ALL
        SELECT bill_id, customer_id, 2, 1, 'standing', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, supply_days,
               standing_charge
        FROM issued
        WHERE standing_lines IS NULL
        UNION ALL
        SELECT bill_id, customer_id, 3, 1, 'tax', NULL, tax_rate, NULL, NULL, NULL, NULL, NULL, NULL, NULL, tax
        FROM issued
        UNION ALL
        SELECT issued.bill_id, issued.customer_id, 4, line.position, 'export',
               line.value ->> 'band',
               (line.value ->> 'unit_rate')::numeric,
               line.value ->> 'price_rule',
               (line.value ->> 'cost')::numeric,
               (line.value ->> 'measured_kwh')::numeric,
               (line.value ->> 'estimated_kwh')::numeric,
               coalesce((line.value ->> 'derived_kwh')::numeric, 0),
               (line.value ->> 'kwh')::numeric,
               NULL,
               (line.value ->> 'amount')::numeric
        FROM issued, jsonb_array_elements(issued.export_lines) WITH ORDINALITY AS line (value, position)
        UNION ALL
        SELECT bill_id, customer_id, 5, 1, 'adjustments_carried', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               adjustments_carried
        FROM issued
        WHERE adjustments_carried <> 0
    )
    SELECT bill_id, customer_id, row_number() OVER (PARTITION BY bill_id ORDER BY section, position) AS line_no,
           kind, band, rate, price_rule, cost, measured_kwh, estimated_kwh, derived_kwh, kwh, days, amount
    FROM lines
    ORDER BY bill_id, line_no
) TO STDOUT (FORMAT csv, HEADER)
"""

EXPORT_ADJUSTMENTS_SQL = """
COPY (
    SELECT adjustments.adjustment_id, adjustments.bill_id, adjustments.customer_id, adjustments.sequence,
           adjustments.delta_kwh, adjustments.delta_amount, adjustments.charged_amount, adjustments.reason,
           array_to_string(adjustments.changed_partitions, ',') AS changed_partitions, adjustments.found_at,
           adjustments.carried_on_bill_id
    FROM billing.bill_adjustments AS adjustments
    JOIN billing.bills AS carrier ON carrier.bill_id = adjustments.carried_on_bill_id
    WHERE carrier.period_start = %(period_start)s
    ORDER BY adjustments.adjustment_id
) TO STDOUT (FORMAT csv, HEADER)
"""

EXPORT_TYPES = {
    BILLS_EXPORT: {
        "bill_id": "VARCHAR",
        "customer_id": "INTEGER",
        "period_start": "DATE",
        "period_end": "DATE",
        "measured_kwh": "DECIMAL(14, 3)",
        "estimated_kwh": "DECIMAL(14, 3)",
        "estimated_share": "DECIMAL(5, 4)",
        "derived_kwh": "DECIMAL(14, 3)",
        "energy_charge": "DECIMAL(12, 2)",
        "supply_days": "INTEGER",
        "standing_charge": "DECIMAL(12, 2)",
        "adjustments_carried": "DECIMAL(12, 2)",
        "tax_rate": "DECIMAL(6, 4)",
        "tax": "DECIMAL(12, 2)",
        "total_due": "DECIMAL(12, 2)",
        "is_estimated": "BOOLEAN",
        "currency": "VARCHAR",
        "issued_at": "TIMESTAMPTZ",
        "pricing_rules": "SMALLINT",
        "energy_lines": "VARCHAR",
        "standing_lines": "VARCHAR",
        "inputs_fingerprint": "VARCHAR",
        "export_kwh": "DECIMAL(14, 3)",
        "export_credit": "DECIMAL(12, 2)",
        "export_lines": "VARCHAR",
        "amount_payable": "DECIMAL(12, 2)",
        "credit_carried_forward": "DECIMAL(12, 2)",
    },
    BILL_LINES_EXPORT: {
        "bill_id": "VARCHAR",
        "customer_id": "INTEGER",
        "line_no": "INTEGER",
        "kind": "VARCHAR",
        "band": "VARCHAR",
        "rate": "DECIMAL(10, 4)",
        "price_rule": "VARCHAR",
        "cost": "DECIMAL(24, 7)",
        "measured_kwh": "DECIMAL(14, 3)",
        "estimated_kwh": "DECIMAL(14, 3)",
        "derived_kwh": "DECIMAL(14, 3)",
        "kwh": "DECIMAL(14, 3)",
        "days": "INTEGER",
        "amount": "DECIMAL(12, 2)",
    },
    ADJUSTMENTS_EXPORT: {
        "adjustment_id": "BIGINT",
        "bill_id": "VARCHAR",
        "customer_id": "INTEGER",
        "sequence": "INTEGER",
        "delta_kwh": "DECIMAL(14, 3)",
        "delta_amount": "DECIMAL(12, 2)",
        "charged_amount": "DECIMAL(12, 2)",
        "reason": "VARCHAR",
        "changed_partitions": "VARCHAR",
        "found_at": "TIMESTAMPTZ",
        "carried_on_bill_id": "VARCHAR",
    },
}


def export_month(conn, con, store: Lake, month: str, scratch: str) -> list[Publication]:
    """The month's issued bills, their lines and the adjustments they carry, as Delta tables for invoicing."""
    start, _ = month_bounds(month)
    builds = []
    exports = (
        (BILLS_EXPORT, EXPORT_BILLS_SQL),
        (BILL_LINES_EXPORT, EXPORT_BILL_LINES_SQL),
        (ADJUSTMENTS_EXPORT, EXPORT_ADJUSTMENTS_SQL),
    )
    for table, sql in exports:
        csv_path = os.path.join(scratch, f"{os.path.basename(table.path)}.csv")
        with open(csv_path, "wb") as out, conn.cursor().copy(sql, {"period_start": start}) as copy:
            for chunk in copy:
                out.write(chunk)
        columns = EXPORT_TYPES[table]
        builds.append(store.build(table, month, same_as=builds[0] if builds else None))
        target = literal(builds[-1].uri("part-0000.parquet"))
        con.execute(EXPORT_COPY_SQL.format(source=typed_csv(csv_path, columns), target=target))
    # the ledger is sealed already: its export has nothing left to check
    return [store.publish(build) for build in builds]


def issued_bills(
    context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource, postgres: PostgresResource
):
    """Seal the month's bills and export them, their lines and adjustments."""
    month = context.partition_key
    store = lake.lake()
    began = time.perf_counter()
    with postgres.connect() as conn:
        issued = issue_month(conn, month, issued_at=dt.datetime.now(dt.UTC))
        if issued.bills_issued == 0 and issued.already_issued == 0:
            raise ValueError(f"{month} has no draft bills to issue: materialize bills for {month} first")
        issue_seconds = time.perf_counter() - began
        with scratch_dir() as scratch, lake_duckdb(duckdb, store) as con:
            exported = export_month(conn, con, store, month, scratch)
    context.log.info(f"{month}: {issued}")
    bills_export, lines_export, adjustments_export = exported
    yield dg.MaterializeResult(
        asset_key=BILLS_EXPORT.asset,
        metadata={
            **vars(issued),
            "issue_seconds": round(issue_seconds, 2),
            "export_seconds": round(time.perf_counter() - began - issue_seconds, 2),
            "rows": bills_export.rows,
            "path": dg.MetadataValue.path(store.uri(BILLS_EXPORT.folder(month))),
            **bills_export.metadata(),
        },
    )
    for published in (lines_export, adjustments_export):
        yield dg.MaterializeResult(
            asset_key=published.table.asset,
            metadata={
                "rows": published.rows,
                "path": dg.MetadataValue.path(store.uri(published.table.folder(month))),
                **published.metadata(),
            },
        )


def build() -> list[dg.AssetsDefinition]:
    """The billing domain's assets over the market's months, made when the code location loads."""
    return [
        dg.asset(
            partitions_def=monthly_partitions(),
            deps=PRICED_FROM,
            group_name="billing",
            kinds={"duckdb", "postgres"},
            pool="lake_compute",
            output_required=False,
            check_specs=[
                dg.AssetCheckSpec(
                    "billed_kwh_reconciles_with_reads_daily",
                    asset="bills",
                    blocking=True,
                    description="Billed kWh plus vacant premises' kWh equals the month's total in reads_daily, "
                    "exactly; when it does not, nothing is written to the ledger.",
                )
            ],
        )(bills),
        dg.multi_asset(
            specs=[
                dg.AssetSpec(
                    BILLS_EXPORT.asset,
                    deps=["bills"],
                    kinds={"postgres", "delta"},
                    description="The month's bills sealed for sending, carrying open adjustments, exported for "
                    "the invoicing system.",
                ),
                dg.AssetSpec(
                    BILL_LINES_EXPORT.asset,
                    deps=[BILLS_EXPORT.asset],
                    kinds={"delta"},
                    description="Every line of the month's issued bills: energy per band and rate, standing "
                    "charge per daily rate.",
                ),
                dg.AssetSpec(
                    ADJUSTMENTS_EXPORT.asset,
                    deps=[BILLS_EXPORT.asset],
                    kinds={"delta"},
                    description="Adjustments to issued bills (late or corrected readings, changed supply), "
                    "with the bill that carries each.",
                ),
            ],
            partitions_def=monthly_partitions(),
            group_name="billing",
        )(issued_bills),
    ]
