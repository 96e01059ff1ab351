"""Issuing is deliberate: after the month closes and its grace period for late data ends."""

import dagster as dg

from meter_assets.billing.jobs import issue_bills_job
from meter_assets.config import settings


def build() -> list[dg.ScheduleDefinition]:
    """On day 1 + grace of each month, at 06:00 market time, the month just ended is issued."""
    grace = settings().billing_grace_days
    return [
        dg.build_schedule_from_partitioned_job(
            issue_bills_job,
            name="issue_bills_schedule",
            description=f"Issues last month's bills {grace} days after it closes (METER_BILLING_GRACE_DAYS), "
            "so late files for the month land in the bills, not in adjustments.",
            day_of_month=1 + grace,
            hour_of_day=6,
            default_status=dg.DefaultScheduleStatus.RUNNING,
        )
    ]
