"""A day that has not been built by the freshness deadline shows: the daily assets' freshness
checks fail until the day before (as the market's clock tells) is materialized, then pass."""

import datetime as dt

import dagster as dg

from meter_assets.config import settings
from meter_assets.definitions import build
from meter_assets.freshness import DAILY


def test_a_day_not_built_by_the_deadline_fails_its_freshness_checks():
    defs = build()
    checks = {dg.AssetCheckKey(dg.AssetKey(key), "freshness_check") for key in DAILY}
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(), asset_check_selection=checks)
    with dg.instance_for_test() as instance:

        def evaluate() -> dict[str, bool]:
            result = job.execute_in_process(instance=instance, raise_on_error=False)
            return {e.asset_key.to_user_string(): e.passed for e in result.get_asset_check_evaluations()}

        assert evaluate() == dict.fromkeys(DAILY, False), "nothing built: every daily asset is overdue"
        # the day before yesterday is the newest that must be there before today's deadline, yesterday after it
        today = dt.datetime.now(settings().tz).date()
        for key in DAILY:
            day_before = today - dt.timedelta(days=2)
            instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=day_before.isoformat()))
        deadline_passed = dt.datetime.now(settings().tz).time() >= settings().freshness_deadline
        assert evaluate() == dict.fromkeys(DAILY, not deadline_passed)
        for key in DAILY[:-1]:
            yesterday = today - dt.timedelta(days=1)
            instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=yesterday.isoformat()))
        assert evaluate() == {**dict.fromkeys(DAILY, True), DAILY[-1]: not deadline_passed}
