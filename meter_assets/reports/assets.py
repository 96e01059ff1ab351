"""The operations team's daily report: in the lake as Parquet and a page, and in Dagster's UI."""

import datetime as dt
import time
from decimal import Decimal

import dagster as dg
from dagster_duckdb import DuckDBResource

from meter_assets.config import settings
from meter_assets.gates import audit_and_publish
from meter_assets.partitions import daily_partitions
from meter_assets.reference.assets import customers, meter_assignments, meters
from meter_assets.reports.ops import build_report, reconcile_regions
from meter_assets.reports.page import render
from meter_assets.resources import CheckThresholds, LakeResource, lake_duckdb
from meter_assets.tables import QUARANTINE, REPORT_TABLES

# the page beside the report's tables: a plain object per day, replaced when the report is
PAGES = "reports/ops_pages"


def page_key(day: str) -> str:
    return f"{PAGES}/date={day}/report.html"


def _plain(value):
    """A metadata-table cell: numbers as numbers, times as ISO text."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def _metadata_table(rows: list[dict], limit: int | None = None) -> dg.MetadataValue:
    rows = rows[:limit] if limit else rows
    columns = list(rows[0]) if rows else []
    return dg.MetadataValue.table(
        records=[dg.TableRecord({k: _plain(v) for k, v in row.items()}) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(name=c) for c in columns]),
    )


def _markdown(summary: dict, regions: list[dict], page: str) -> str:
    before = summary["silent_meters_day_before"]
    lines = [
        f"**{summary['local_date']}**: {float(summary['kwh']):,.0f} kWh from {summary['meters']:,} meters.",
        "",
        f"- silent meters: **{summary['silent_meters']}**" + ("" if before is None else f" (day before: {before})"),
        f"- intervals: actual {summary['actual_share']:.3%}, estimated {summary['estimated_share']:.3%}, "
        f"missing {summary['missing_share']:.3%}; the platform estimated {summary['platform_estimated_share']:.3%}, "
        f"{summary['flagged_readings'] or 0} readings flagged by validation and kept, "
        f"{summary['replaced_readings'] or 0} replaced by estimates, "
        f"{summary['derived_intervals'] or 0} quarter hours halved from half-hour readings",
        f"- arrival delay: p50 {summary['delay_p50_minutes'] or 0:.1f} min, "
        f"p95 {summary['delay_p95_minutes'] or 0:.1f} min",
        f"- late files: {summary['late_files']}; quarantined: {summary['quarantined_rows']} rows, "
        f"{summary['quarantined_files']} files",
        "",
        "| region | kWh | change vs a week earlier |",
        "| --- | ---: | ---: |",
        *[
            f"| {r['region']} | {float(r['kwh']):,.1f} | "
            f"{'–' if r['change_pct'] is None else format(float(r['change_pct']), '+.1f') + ' %'} |"
            for r in regions
        ],
        "",
        f"Page: `{page}`",
    ]
    return "\n".join(lines)


def ops_daily_report(
    context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource, thresholds: CheckThresholds
):
    """What happened yesterday and what is broken: energy by region, top customers, silent meters, data quality."""
    s = settings()
    limits = thresholds.limits()
    store = lake.lake()
    key = context.partition_key
    began = time.perf_counter()
    with lake_duckdb(duckdb, store) as con:
        report = build_report(
            con, store, dt.date.fromisoformat(key), s.market_tz, s.late_file_minutes, s.silent_lookback_days
        )
        regions_total, daily_total = reconcile_regions(con)
    summary = report.summary
    reconciled = regions_total == daily_total
    silent_check = dg.AssetCheckResult(
        check_name="silent_meters_below_alert_threshold",
        passed=summary["silent_meters"] <= limits.silent_meters_warn,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "silent_meters": summary["silent_meters"],
            "threshold": limits.silent_meters_warn,
            "silent_meters_day_before": summary["silent_meters_day_before"],
            "first_meters": [m["meter_id"] for m in report.tables["silent_meters"].to_pylist()[:20]],
        },
    )
    reconcile_check = dg.AssetCheckResult(
        check_name="region_totals_reconcile_with_reads_daily",
        passed=bool(reconciled),
        metadata={"regions_kwh": str(regions_total), "reads_daily_kwh": str(daily_total)},
    )
    builds = []
    for name, table in report.tables.items():
        builds.append(store.build(REPORT_TABLES[name], key, same_as=builds[0] if builds else None))
        builds[-1].write_parquet("part-0000.parquet", table)
    page = page_key(key)

    def write_page():
        store.write_bytes(
            page, render(report, s.market_tz, dt.datetime.now(dt.UTC), limits.silent_meters_warn).encode()
        )

    # a report whose totals do not add up is not published: the previous version stays
    gate = audit_and_publish(context, store, builds, [reconcile_check, silent_check], publish=write_page)
    tables = {name: table.to_pylist() for name, table in report.tables.items()}
    yield from gate.results(
        {
            "ops_daily_report": {
                "summary": dg.MetadataValue.md(_markdown(summary, tables["region_energy"], store.uri(page))),
                "page": dg.MetadataValue.path(store.uri(page)),
                "kwh": float(summary["kwh"]),
                "silent_meters": summary["silent_meters"],
                "late_files": summary["late_files"],
                "quarantined_rows": summary["quarantined_rows"],
                "missing_share": summary["missing_share"],
                "delay_p50_minutes": summary["delay_p50_minutes"],
                "delay_p95_minutes": summary["delay_p95_minutes"],
                "region_energy": _metadata_table(tables["region_energy"]),
                "top_customers": _metadata_table(tables["top_customers"], limit=20),
                "silent_meters_list": _metadata_table(tables["silent_meters"], limit=50),
                "late_files_list": _metadata_table(tables["late_files"], limit=50),
                "quarantine_reasons": _metadata_table(tables["quarantine_reasons"]),
                "platform_estimated_share": summary["platform_estimated_share"],
                "estimation": _metadata_table(tables["estimation"]),
                "most_estimated_meters": _metadata_table(tables["most_estimated_meters"]),
                "seconds": round(time.perf_counter() - began, 2),
            },
        }
    )


def build() -> list[dg.AssetsDefinition]:
    """The reports domain's assets over the market's days, made when the code location loads."""
    return [
        dg.asset(
            partitions_def=daily_partitions(),
            deps=[
                "reads_daily",
                "reads_15min",
                QUARANTINE.asset,
                "raw_meter_files",
                meters,
                customers,
                meter_assignments,
            ],
            group_name="reports",
            kinds={"duckdb", "delta", "html"},
            pool="lake_compute",
            output_required=False,
            check_specs=[
                dg.AssetCheckSpec("region_totals_reconcile_with_reads_daily", asset="ops_daily_report", blocking=True),
                dg.AssetCheckSpec("silent_meters_below_alert_threshold", asset="ops_daily_report"),
            ],
        )(ops_daily_report),
    ]
