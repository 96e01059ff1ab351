"""Late data reaches the bills: a rebuilt day of a closed month recomputes that month."""

import datetime as dt

import dagster as dg

from meter_assets.billing.assets import month_is_complete
from meter_assets.billing.jobs import bills_job
from meter_assets.config import settings
from meter_assets.jobs import daily_readings_job
from meter_assets.partitions import monthly_partitions
from meter_assets.resources import LakeResource

WAITING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED]


def rebuilt_day_bills_sensor(context: dg.RunStatusSensorContext, lake: LakeResource):
    day = context.dagster_run.tags.get("dagster/partition")
    if not day:
        return dg.SkipReason("the run was not for one day partition")
    month = dt.date.fromisoformat(day).strftime("%Y-%m")
    if not monthly_partitions().has_partition_key(month):
        return dg.SkipReason(f"{month} has not ended: its bills are not computed yet")
    if not month_is_complete(lake.lake(), month):
        return dg.SkipReason(f"{month} is missing days of readings: its bills wait for them")
    waiting = context.instance.get_run_records(
        dg.RunsFilter(job_name=bills_job.name, statuses=WAITING, tags={"dagster/partition": month}), limit=1
    )
    if waiting:
        # a run that has not started yet will read this day's new data anyway
        return dg.SkipReason(f"a bills run for {month} is already waiting: {waiting[0].dagster_run.run_id}")
    return dg.RunRequest(
        run_key=f"{month}:{context.dagster_run.run_id}",
        partition_key=month,
        tags={"meter/trigger": "rebuilt_day", "meter/rebuilt_day": day, "meter/after_run": context.dagster_run.run_id},
    )


def build() -> list[dg.SensorDefinition]:
    """The sensor, its interval from the settings, made when the code location loads."""
    return [
        dg.run_status_sensor(
            run_status=dg.DagsterRunStatus.SUCCESS,
            monitored_jobs=[daily_readings_job],
            request_job=bills_job,
            name="rebuilt_day_bills_sensor",
            minimum_interval_seconds=settings().sensor_interval_seconds,
            default_status=dg.DefaultSensorStatus.RUNNING,
            description="After a day's readings are (re)built, recomputes its month's bills once the month has ended: "
            "the drafts change, or an issued month gets adjustment rows.",
        )(rebuilt_day_bills_sensor),
    ]
