"""Lake upkeep from the command line (`meter-lake`) and a daily schedule: vacuum every Delta
table; and, once, migrate a lake written by the earlier manifest format to Delta."""

import argparse
import json
import posixpath
import uuid

import dagster as dg

from meter_assets import tables
from meter_assets.config import settings
from meter_assets.jobs import pod, retries
from meter_assets.resources import LakeResource
from meter_assets.storage import Lake


def vacuum_lake(lake: Lake, retention_hours: int) -> dict[str, int]:
    """Files deleted per table: replaced longer ago than the retention, or never published
    (after finishing any publication a dead step left half done)."""
    lake.finish_publishing()
    return {table.path: len(lake.vacuum(table, retention_hours)) for table in tables.ALL}


MANIFEST = "_manifest.json"
# the earlier format kept the operations report's tables, the forecast's models and the
# report page together in one version folder per day
OLD_REPORT = "reports/ops"


def migrate_manifests(lake: Lake, log=print) -> dict[str, int]:
    """Turn every table published through `_manifest.json` files into a Delta table.

    The current version's Parquet files become the table's first commit where they lie (no
    data is copied); the report's tables and page and the forecast's models are copied to
    their new places. The manifests and the versions they superseded are then deleted. A
    table that is already Delta is left alone, so running it again does nothing.
    """
    adopted = {}
    manifests = [o.key for o in lake.list("") if posixpath.basename(o.key) == MANIFEST]
    for table in tables.ALL:
        if table in tables.REPORT_TABLES.values() or lake.delta(table) is not None:
            continue
        mine = [
            m
            for m in manifests
            if posixpath.dirname(m) == table.path or posixpath.dirname(posixpath.dirname(m)) == table.path
        ]
        files = {}
        for key in mine:
            manifest = json.loads(lake.read_bytes(key))
            if manifest["files"]:
                files[manifest["partition"] if table.partition else None] = manifest["files"]
            if table == tables.FORECAST and manifest["files"]:
                _copy_models(lake, manifest)
        if files:
            adopted[table.path] = lake.adopt(table, files, {"migrated_from": "manifest"})
            log(f"{table.path}: {len(files)} partitions, {adopted[table.path]:,} rows adopted")
        _forget(lake, table.path, mine)
    if lake.delta(tables.REPORT_TABLES["summary"]) is None:
        reports = [m for m in manifests if m.startswith(OLD_REPORT + "/date=")]
        for key in reports:
            manifest = json.loads(lake.read_bytes(key))
            for name, table in tables.REPORT_TABLES.items():
                source = [f for f in manifest["files"] if posixpath.basename(f) == f"{name}.parquet"]
                if source:
                    target = f"{table.folder(manifest['partition'])}/migrated-{uuid.uuid4().hex[:8]}-part-0000.parquet"
                    lake.write_bytes(target, lake.read_bytes(source[0]))
            if manifest.get("page"):
                lake.write_bytes(
                    f"reports/ops_pages/date={manifest['partition']}/report.html", lake.read_bytes(manifest["page"])
                )
        for table in tables.REPORT_TABLES.values():
            found = {
                posixpath.basename(posixpath.dirname(o.key)).split("=", 1)[1]: [o.key]
                for o in lake.list(table.path)
                if o.key.endswith(".parquet")
            }
            if found:
                adopted[table.path] = lake.adopt(table, found, {"migrated_from": "manifest"})
        _forget(lake, OLD_REPORT, reports, keep=[t.path for t in tables.REPORT_TABLES.values()])
        log(f"{OLD_REPORT}: {len(reports)} days of reports moved to one Delta table each")
    return adopted


def _copy_models(lake: Lake, manifest: dict) -> None:
    folder = posixpath.dirname(manifest["files"][0])
    for o in lake.list(folder):
        if not o.key.endswith(".parquet"):
            lake.write_bytes(
                f"forecasts/load_models/date={manifest['partition']}/{posixpath.basename(o.key)}",
                lake.read_bytes(o.key),
            )


def _forget(lake: Lake, path: str, manifests: list[str], keep: list[str] = ()) -> None:
    """Delete the manifests and every version folder (`v=...`) they no longer publish."""
    current = set()
    for key in manifests:
        current.update(posixpath.dirname(f) for f in json.loads(lake.read_bytes(key))["files"])
    if path == OLD_REPORT:
        current = set()  # copied: none of the old folders is read any more
    for o in lake.list(path):
        folder = posixpath.dirname(o.key)
        if any(o.key.startswith(k + "/") for k in keep):
            continue
        if posixpath.basename(folder).startswith("v=") and folder not in current:
            lake.delete(o.key)
    for key in manifests:
        lake.delete(key)


@dg.op
def vacuum_tables(context: dg.OpExecutionContext, lake: LakeResource) -> None:
    """Delete what no version younger than `METER_LAKE_RETENTION_HOURS` reads."""
    deleted = vacuum_lake(lake.lake(), settings().lake_retention_hours)
    context.log.info(f"vacuum deleted {sum(deleted.values())} files: {deleted}")


# safe: a vacuum deletes only what no version within the retention reads, whether or not an
# earlier attempt got to it
@dg.job(
    description="Vacuum every lake table: free the space of replaced versions past the retention.",
    tags={**retries(2), **pod("500m", "512Mi", "1Gi")},
)
def lake_vacuum_job():
    vacuum_tables()


def defs() -> dg.Definitions:
    """The lake's upkeep: the vacuum job, daily at 03:30 market time."""
    schedule = dg.ScheduleDefinition(
        name="lake_vacuum_schedule",
        job=lake_vacuum_job,
        cron_schedule="30 3 * * *",
        execution_timezone=settings().market_tz,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return dg.Definitions(jobs=[lake_vacuum_job], schedules=[schedule])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="meter-lake", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    vacuum = commands.add_parser("vacuum", help="vacuum every Delta table of METER_LAKE")
    vacuum.add_argument(
        "--retention-hours",
        type=int,
        default=None,
        help="keep replaced files this long (default METER_LAKE_RETENTION_HOURS)",
    )
    commands.add_parser("migrate", help="turn a lake written with _manifest.json files into Delta tables, in place")
    args = parser.parse_args(argv)
    from meter_assets.resources import resources

    lake = resources()["lake"].lake()
    if args.command == "migrate":
        adopted = migrate_manifests(lake)
        print(f"{len(adopted)} tables migrated" if adopted else "nothing to migrate: every table is Delta already")
    if args.command == "vacuum":
        hours = settings().lake_retention_hours if args.retention_hours is None else args.retention_hours
        for path, count in vacuum_lake(lake, hours).items():
            print(f"{path}: {count} files deleted")


if __name__ == "__main__":
    main()
