"""Corrected market prices reach customers: the days they change are priced again, on the usage
page and in their months' bills."""

import datetime as dt

import dagster as dg

from meter_assets.billing.assets import month_is_complete
from meter_assets.billing.jobs import bills_job
from meter_assets.config import settings
from meter_assets.partitions import daily_partitions, monthly_partitions
from meter_assets.resources import LakeResource
from meter_assets.serving.jobs import usage_serving_job

PRICES = dg.AssetKey("day_ahead_prices")
# materializations of the prices read per tick: a correction is a whole export, a few a day at most
PER_TICK = 50


def repriced_days_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """For every publication of `day_ahead_prices` since the last tick, the days whose published
    prices it changed (its `repriced_days`): each day's usage page row again, and each ended
    month's bills once (drafts change, or an issued month gets adjustments)."""
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=PRICES, after_storage_id=after), limit=PER_TICK, ascending=True
    ).records
    if not records:
        return dg.SkipReason("no new publication of day_ahead_prices")
    if after is None:
        # the first tick starts from now: what was published before the sensor ran was priced then
        context.update_cursor(str(records[-1].storage_id))
        return dg.SkipReason("started: watching day_ahead_prices from its latest publication")
    days = sorted(
        {
            day
            for record in records
            if (repriced := record.asset_materialization.metadata.get("repriced_days")) is not None
            for day in repriced.value
        }
    )
    last = records[-1].storage_id
    context.update_cursor(str(last))
    requests = []
    partitions = daily_partitions()
    for day in days:
        if partitions.has_partition_key(day):
            requests.append(
                dg.RunRequest(
                    run_key=f"serving:{day}:{last}",
                    job_name=usage_serving_job.name,
                    partition_key=day,
                    tags={"meter/trigger": "repriced_day"},
                )
            )
    store = lake.lake()
    for month in sorted({dt.date.fromisoformat(day).strftime("%Y-%m") for day in days}):
        if monthly_partitions().has_partition_key(month) and month_is_complete(store, month):
            requests.append(
                dg.RunRequest(
                    run_key=f"bills:{month}:{last}",
                    job_name=bills_job.name,
                    partition_key=month,
                    tags={"meter/trigger": "repriced_day", "meter/repriced_days": ",".join(days)[:200]},
                )
            )
    if not requests:
        return dg.SkipReason("the new prices change no day already published")
    return requests


def build() -> list[dg.SensorDefinition]:
    """The sensor, its interval from the settings, made when the code location loads."""
    return [
        dg.sensor(
            name="repriced_days_sensor",
            jobs=[usage_serving_job, bills_job],
            minimum_interval_seconds=settings().sensor_interval_seconds,
            default_status=dg.DefaultSensorStatus.RUNNING,
            description="When corrected day-ahead prices are published, prices the days they change again: their "
            "usage page rows, and their months' bills once the month has ended.",
        )(repriced_days_sensor),
    ]
