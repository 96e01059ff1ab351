"""A day that has not been built by the freshness deadline shows: the daily assets' freshness
checks fail until the day before (as the market's clock tells) is materialized, then pass.

The checks read Dagster's clock, so each side of the deadline is tried at a fixed moment of the
market's day, whatever the time the test runs."""

import datetime as dt

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time

from meter_assets.config import settings
from meter_assets.definitions import build
from meter_assets.freshness import DAILY

# a Tuesday in British Summer Time: the deadline is local, not UTC
TODAY = dt.date(2025, 6, 10)


@pytest.mark.parametrize("before_deadline", [True, False], ids=["before the deadline", "after the deadline"])
def test_a_day_not_built_by_the_deadline_fails_its_freshness_checks(before_deadline):
    deadline = dt.datetime.combine(TODAY, settings().freshness_deadline, tzinfo=settings().tz)
    now = deadline + dt.timedelta(minutes=-1 if before_deadline else 1)
    defs = build()
    checks = {dg.AssetCheckKey(dg.AssetKey(key), "freshness_check") for key in DAILY}
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(), asset_check_selection=checks)
    with dg.instance_for_test() as instance, freeze_time(now.astimezone(dt.UTC)):

        def evaluate() -> dict[str, bool]:
            result = job.execute_in_process(instance=instance, raise_on_error=False)
            return {e.asset_key.to_user_string(): e.passed for e in result.get_asset_check_evaluations()}

        def materialize(keys, day: dt.date) -> None:
            for key in keys:
                instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=day.isoformat()))

        assert evaluate() == dict.fromkeys(DAILY, False), "nothing built: every daily asset is overdue"
        # before the deadline the day before yesterday must be there; after it, yesterday too
        materialize(DAILY, TODAY - dt.timedelta(days=2))
        assert evaluate() == dict.fromkeys(DAILY, before_deadline)
        # yesterday built for all but the last asset: only that one is overdue, and only after the deadline
        materialize(DAILY[:-1], TODAY - dt.timedelta(days=1))
        assert evaluate() == {**dict.fromkeys(DAILY, True), DAILY[-1]: before_deadline}
