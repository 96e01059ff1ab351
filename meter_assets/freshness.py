"""Freshness: whether yesterday's readings reached the business by the morning.

A check per daily asset, Dagster's own (`build_time_partition_freshness_checks`): once the
market's clock passes `METER_FRESHNESS_DEADLINE` (06:00 by default), the asset's partition of
the day before must be materialized, or the check fails, and the asset is shown overdue in the
UI. A sensor evaluates the checks; `docs/deployment.md` says how a failure reaches a person.
"""

import warnings

import dagster as dg

from meter_assets.config import settings

# what the morning needs: the curated day, its rollups, the usage page's data and the report
DAILY = ("reads_15min", "reads_hourly", "reads_daily", "usage_serving", "ops_daily_report")
# seconds between two evaluations once a check has a result
EVALUATE_EVERY_S = 600


def defs() -> dg.Definitions:
    """The freshness checks of the daily assets and the sensor that evaluates them."""
    s = settings()
    # Dagster would have FreshnessPolicy objects instead: they judge an asset's last update,
    # not whether the day before's partition is there, which is what the morning needs. The
    # supersession warning, printed at every load of the code location, is not an operator's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        checks = dg.build_time_partition_freshness_checks(
            assets=list(DAILY),
            deadline_cron=f"{s.freshness_deadline.minute} {s.freshness_deadline.hour} * * *",
            timezone=s.market_tz,
            severity=dg.AssetCheckSeverity.ERROR,
        )
        sensor = dg.build_sensor_for_freshness_checks(
            freshness_checks=checks,
            minimum_interval_seconds=EVALUATE_EVERY_S,
            name="daily_freshness_sensor",
            default_status=dg.DefaultSensorStatus.RUNNING,
        )
    return dg.Definitions(asset_checks=checks, sensors=[sensor])
