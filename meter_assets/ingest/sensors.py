"""The raw arrivals sensor: late and corrected files rebuild exactly the dates they touch."""

import datetime as dt

import dagster as dg

from meter_assets.config import settings
from meter_assets.ingest.arrivals import Cursor, find_arrivals
from meter_assets.jobs import daily_readings_job
from meter_assets.partitions import daily_partitions
from meter_assets.resources import LakeResource


def raw_arrivals_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
    s = settings()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    today = dt.datetime.now(s.tz).date()
    arrivals, cursor = find_arrivals(
        lake.lake(),
        Cursor.parse(context.cursor),
        now=now,
        today=today,
        window_days=s.recent_window_days,
        sweep_every=dt.timedelta(hours=s.sweep_interval_hours),
        first_partition=s.start_date,
    )
    requests = [
        dg.RunRequest(run_key=a.run_key, partition_key=a.partition.isoformat(), tags=a.tags())
        for a in arrivals
        if daily_partitions().has_partition_key(a.partition.isoformat())
    ]
    for a in arrivals:
        context.log.info(f"{a.partition}: {len(a.files)} new or replaced files ({a.path}), {a.hours_late():.1f} h late")
    if not requests:
        return dg.SensorResult(skip_reason="no new raw files", cursor=cursor.dump())
    return dg.SensorResult(run_requests=requests, cursor=cursor.dump())


def build() -> list[dg.SensorDefinition]:
    """The sensor, its interval from the settings, made when the code location loads."""
    return [
        dg.sensor(
            job=daily_readings_job,
            minimum_interval_seconds=settings().sensor_interval_seconds,
            default_status=dg.DefaultSensorStatus.RUNNING,
            description="Requests one run per date partition whose raw files changed since the last tick.",
        )(raw_arrivals_sensor),
    ]
