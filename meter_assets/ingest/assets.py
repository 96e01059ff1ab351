"""Raw head-end files: the day's inventory, and the contract check that guards it."""

import collections
import io

import dagster as dg

from meter_assets.ingest.inventory import inventory, inventory_table
from meter_assets.partitions import daily_partitions
from meter_assets.resources import LakeResource
from meter_assets.storage import Lake
from meter_assets.tables import RAW_METER_FILES


def read_inventory(lake: Lake, partition: str):
    return lake.read_parquet(lake.required_keys(RAW_METER_FILES, partition))


def raw_meter_files(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The day's head-end files as they arrived: keys, sizes, formats, row counts, damage."""
    store = lake.lake()
    day = daily_partitions().time_window_for_partition_key(context.partition_key).start.date()
    files = inventory(store, day)
    table = inventory_table(files)
    build = store.build(RAW_METER_FILES, context.partition_key)
    build.write_parquet("part-0000.parquet", table)
    published = store.publish(build)

    by_status = collections.Counter(f.status for f in files)
    by_contract = collections.Counter(f.contract or "none" for f in files)
    rejected = [f for f in files if f.status != "ok"]
    listing = io.StringIO()
    listing.write("| file | format | contract | bytes | rows | status |\n|---|---|---|---|---|---|\n")
    for f in files[:50]:
        listing.write(
            f"| {f.file_key} | {f.format} | {f.contract or '-'} | {f.size_bytes} "
            f"| {f.rows if f.rows is not None else '-'} | {f.status} |\n"
        )
    if len(files) > 50:
        listing.write(f"\n... and {len(files) - 50} more files\n")
    context.log.info(f"{len(files)} raw files for {context.partition_key}: {dict(by_status)}")
    return dg.MaterializeResult(
        metadata={
            "files": len(files),
            "bytes": sum(f.size_bytes for f in files),
            "rows": sum(f.rows or 0 for f in files),
            "by_status": dict(by_status),
            "by_contract": dict(by_contract),
            "files_listing": dg.MetadataValue.md(listing.getvalue()),
            **published.metadata(),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="every_file_matches_a_contract",
                passed=not rejected,
                # one broken file never stops a day: the operator is warned, the day goes on
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "rejected_files": len(rejected),
                    "first_rejected": dg.MetadataValue.json(
                        [{"file": f.file_key, "status": f.status, "reason": f.reason} for f in rejected[:10]]
                    ),
                },
            )
        ],
    )


def build() -> list[dg.AssetsDefinition]:
    """The ingest domain's assets over the market's days, made when the code location loads."""
    return [
        dg.asset(
            partitions_def=daily_partitions(),
            group_name="ingest",
            kinds={"parquet"},
            check_specs=[dg.AssetCheckSpec("every_file_matches_a_contract", asset="raw_meter_files")],
        )(raw_meter_files),
    ]
