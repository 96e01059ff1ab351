"""Materialize reference data, every daily partition of a simulated range, the bills of its
complete months and today's load forecast into the Dagster instance at $DAGSTER_HOME, so
`dagster dev` opens on a populated platform. Months whose grace period is over are issued,
as the schedule would have done; a month still in its grace period keeps draft bills.

    python -m meter_assets.demo --instance-from dagster.yaml
    python -m meter_assets.demo --start 2024-05-01 --days 60

`--instance-from` writes $DAGSTER_HOME/dagster.yaml: that file's settings without its JSON run
logs on stderr (a deployment's, for its log collector). A person at a terminal reads one line
a step here, and the runs in the UI, which `make demo` starts first.
"""

import argparse
import datetime as dt
import os
import sys
import time

import dagster as dg

from meter_assets.billing.assets import month_is_complete
from meter_assets.config import settings
from meter_assets.definitions import assets, build, daily_assets
from meter_assets.jobs import REFERENCE
from meter_assets.market_calendar import month_bounds
from meter_assets.resources import resources
from meter_assets.tables import BIDS, FORECAST

# one line a partition on the terminal; every event is still in the instance for the UI
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def materialize_days(
    instance: dg.DagsterInstance, start: dt.date, days: int, log=print
) -> list[dg.ExecuteInProcessResult]:
    reference = assets(*REFERENCE)
    results = [dg.materialize(reference, instance=instance, resources=resources(), run_config=QUIET)]
    for d in range(days):
        partition = (start + dt.timedelta(days=d)).isoformat()
        began = time.perf_counter()
        result = dg.materialize(
            daily_assets(),
            partition_key=partition,
            instance=instance,
            resources=resources(),
            run_config=QUIET,
            raise_on_error=True,
        )
        failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
        log(
            f"{partition}: materialized in {time.perf_counter() - began:.1f} s"
            + (f", checks not passing: {sorted(c.check_name for c in failed)}" if failed else "")
        )
        results.append(result)
    return results


def bill_months(instance: dg.DagsterInstance, start: dt.date, days: int, log=print) -> None:
    s = settings()
    today = dt.datetime.now(s.tz).date()
    lake = resources()["lake"].lake()
    last = start + dt.timedelta(days=days - 1)
    months = sorted({(start + dt.timedelta(days=d)).strftime("%Y-%m") for d in range(days)})
    for month in months:
        _, month_end = month_bounds(month)
        if month_end - dt.timedelta(days=1) > last or not month_is_complete(lake, month):
            continue
        issue = today >= month_end + dt.timedelta(days=s.billing_grace_days)
        selection = ["bills", "issued_bills", "bill_lines", "bill_adjustments"] if issue else ["bills"]
        began = time.perf_counter()
        dg.materialize(
            assets("bills", "issued_bills"),
            partition_key=month,
            instance=instance,
            resources=resources(),
            run_config=QUIET,
            selection=selection,
            raise_on_error=True,
        )
        log(f"bills {month}: {'issued' if issue else 'drafts'} in {time.perf_counter() - began:.1f} s")


def forecast_today(
    instance: dg.DagsterInstance, log=print, today: dt.date | None = None, lake: str | None = None
) -> None:
    """Today's forecast and bid for tomorrow, as the morning schedule makes them."""
    today = today or dt.datetime.now(settings().tz).date()
    began = time.perf_counter()
    result = dg.materialize(
        assets("load_forecast"),
        partition_key=today.isoformat(),
        instance=instance,
        resources=resources(lake),
        run_config=QUIET,
        raise_on_error=False,
    )
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    if not result.success:
        bid = checks.get("bid_covers_every_period")
        why = bid.metadata["problems"].value if bid else "see the run in the UI"
        log(f"load forecast {today}: failed, no bid published ({why})")
        return
    published = {
        m.asset_key.to_user_string(): m.metadata for m in result.asset_materializations_for_node("load_forecast")
    }
    forecast, bids = published[FORECAST.asset], published[BIDS.asset]
    log(
        f"load forecast {today} for {forecast['delivery_date'].value}: P50 {forecast['p50_mwh'].value} MWh "
        f"in {time.perf_counter() - began:.1f} s; bid {bids['mwh'].value} MWh from {bids['source'].value} "
        f"({bids['reason'].value})"
    )


def page_url(base_url: str = "http://127.0.0.1:8000") -> str | None:
    """The usage page of the demo customer with the most days in the serving table."""
    from meter_assets import postgres
    from meter_assets.serving.auth import mint

    with postgres.connect() as conn:
        row = conn.execute(
            "SELECT customer_id FROM serving.daily_usage GROUP BY customer_id "
            "ORDER BY count(*) DESC, customer_id LIMIT 1"
        ).fetchone()
    return f"{base_url}/#token={mint(row[0])}" if row else None


def write_instance(source: str, home: str) -> None:
    """`home`/dagster.yaml: the instance settings of `source`, its JSON log handler left out."""
    import yaml

    with open(source) as f:
        config = yaml.safe_load(f)
    config.get("python_logs", {}).pop("dagster_handler_config", None)
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, "dagster.yaml"), "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=dt.date.fromisoformat)
    parser.add_argument("--days", type=int)
    parser.add_argument("--instance-from", help="write $DAGSTER_HOME/dagster.yaml from this file, without JSON logs")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="the usage API's, for the page link")
    parser.add_argument("--ui-url", default="http://127.0.0.1:3000", help="Dagster's UI, for the last line")
    args = parser.parse_args(argv)
    if args.instance_from:
        write_instance(args.instance_from, os.environ["DAGSTER_HOME"])
        if args.start is None:
            return 0
    if args.start is None or args.days is None:
        parser.error("--start and --days are needed to materialize")
    build()  # the settings are valid and the definitions load, before any work
    with dg.DagsterInstance.get() as instance:
        materialize_days(instance, args.start, args.days)
        bill_months(instance, args.start, args.days)
        forecast_today(instance)
    url = page_url(args.base_url)
    if url:
        print(f"Your usage page, as a demo customer: {url}")
    print(f"Demo ready. Lineage: {args.ui_url}/asset-groups, partitions and checks: {args.ui_url}/assets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
