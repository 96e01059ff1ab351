"""`reads_15min`: the curated quarter-hour readings every later product is built on."""


import dagster as dg
from dagster_duckdb import DuckDBResource

from meter_assets.curated.checks import CHECK_SPECS, curated_checks
from meter_assets.curated.readings import QUARANTINE, READS_15MIN, curate_day
from meter_assets.ingest.assets import raw_meter_files, read_inventory
from meter_assets.partitions import daily_partitions, intervals_in_day, local_day_bounds
from meter_assets.reference.assets import dimension_table, meters
from meter_assets.resources import LakeResource, lake_duckdb, scratch_dir


@dg.asset(
    partitions_def=daily_partitions,
    deps=[raw_meter_files, meters],
    group_name="curated",
    kinds={"duckdb", "parquet"},
    pool="lake_compute",
    check_specs=CHECK_SPECS,
)
def reads_15min(context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
    """One trusted reading per meter and quarter hour, in UTC kWh, late fixes applied and gaps flagged."""
    store = lake.lake()
    partition = context.partition_key
    day = daily_partitions.time_window_for_partition_key(partition).start.date()
    inventory = read_inventory(store, partition)
    meter_files = store.required_files(dimension_table("meters"), None, "meters")

    curated_version = store.new_version(READS_15MIN, partition)
    quarantine_version = store.new_version(QUARANTINE, partition)
    with scratch_dir() as scratch, lake_duckdb(duckdb, store) as con:
        result = curate_day(
            con, day, inventory, store.uri, meter_files,
            curated_target=store.uri(curated_version),
            quarantine_target=store.uri(f"{quarantine_version}/part-0000.parquet"),
            scratch=scratch,
        )
        day_start, day_end = local_day_bounds(day)
        checks = curated_checks(con, result.files, result, intervals_in_day(day), day_start, day_end)
    store.publish(QUARANTINE, partition, quarantine_version, {"rows": result.quarantined_rows})
    manifest = store.publish(READS_15MIN, partition, curated_version, {"rows": result.rows})

    return dg.MaterializeResult(
        metadata={
            "rows": result.rows,
            "intervals_in_day": intervals_in_day(day),
            "actual": result.by_flag.get("actual", 0),
            "estimated": result.by_flag.get("estimated", 0),
            "missing": result.by_flag.get("missing", 0),
            "rows_read": result.staged_rows,
            "duplicates_collapsed": result.duplicate_rows,
            "corrections_applied": result.corrected_rows,
            "clock_corrected_rows": result.clock_corrected_rows,
            "quarantined_rows": result.quarantined_rows,
            "quarantined_files": result.quarantined_files,
            "version": manifest["version"],
            "path": dg.MetadataValue.path(store.uri(f"{READS_15MIN}/date={partition}")),
        },
        check_results=checks,
    )
