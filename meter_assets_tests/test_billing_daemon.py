"""Late files reach the bills without a human: drafts change before issuing, adjustments after.

Dagster's real daemon runs both sensors against a local lake and a real PostgreSQL: the
raw arrivals sensor rebuilds the late file's date, the rebuilt-day sensor recomputes its
month's bills. The month is October 2025, whatever today is: its 26th has 25 hours, and
that day's late file is the one that changes the drafts. The expected bills are recomputed
from the published readings and the retailer's exports by the slow reference
(`billing_reference.py`), not by the code under test.
"""

import datetime as dt
from decimal import Decimal

import dagster as dg
import duckdb
import psycopg

from meter_assets.config import settings
from meter_assets.definitions import assets
from meter_assets.market_calendar import month_days
from meter_assets.resources import PostgresResource
from meter_assets.simulator.cli import generate, release_late
from meter_assets.simulator.headend import FaultRates
from meter_assets.sql import parquet
from meter_assets.storage import Lake
from meter_assets.tables import BILLS_EXPORT, READS_15MIN

from .billing_reference import reference_bills
from .billing_support import (
    published_exports,
    published_readings,
    reference_exports,
    reference_plans,
    reference_prices,
)
from .conftest import materialize_days, resources_for
from .daemon_support import daemon_env, dagster_home, sensor_stopped, start_daemon, stop, wait_for

MONTH = "2025-10"
# the daily assets a month's bills are made from
BILLS_READ = ("raw_meter_files", "reads_15min", "reads_hourly", "reads_daily")


def _runs(instance: dg.DagsterInstance, job: str) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs() if r.job_name == job]


def _all_finished(instance: dg.DagsterInstance, job: str, count: int):
    runs = _runs(instance, job)
    return runs if len(runs) >= count and all(r.is_finished for r in runs) else None


def _final_bills(lake: Lake, month: str) -> dict[int, tuple[Decimal, Decimal]]:
    """Each customer's charges and kWh for the month, recomputed from the lake as it is now."""
    s = settings()
    assignments, customers, tariffs = reference_exports(lake)
    readings = published_readings(lake, month)
    prices = reference_prices(lake)
    exports = published_exports(lake, month)
    plans = reference_plans(lake)
    bills = reference_bills(
        month, s.market_tz, s.tax_rate, readings, assignments, customers, tariffs, prices, exports, plans
    ).bills
    return {c: (b.charges, b.measured_kwh + b.estimated_kwh) for c, b in bills.items()}


def _drafts(dsn: str) -> dict[int, tuple[Decimal, Decimal]]:
    rows = _ledger(
        dsn,
        "SELECT customer_id, energy_charge + standing_charge + tax + export_credit, measured_kwh + estimated_kwh "
        "FROM billing.bills WHERE status = 'draft'",
    )
    return {c: (charges, kwh) for c, charges, kwh in rows}


def _platform_estimates(lake: Lake, day: dt.date) -> set[tuple]:
    """The (meter, quarter hour) pairs of a day the platform estimated, as published now."""
    files = lake.files(READS_15MIN, day.isoformat())
    rows = duckdb.sql(f"SELECT meter_id, read_at FROM {parquet(files)} WHERE estimated_by = 'platform'").fetchall()
    return set(rows)


def _delivered_by(lake: Lake, day: dt.date, keys: list[str]) -> set[tuple]:
    """The (meter, quarter hour) pairs of a day whose published reading came from one of these files."""
    files = lake.files(READS_15MIN, day.isoformat())
    found = duckdb.sql(f"SELECT meter_id, read_at, source_file FROM {parquet(files)}").fetchall()
    return {(m, t) for m, t, source in found if source in keys}


def _ledger(dsn: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def test_late_file_ends_in_drafts_then_exactly_one_adjustment_per_customer(tmp_path, pg_dsn):
    dsn = pg_dsn
    home, workspace = dagster_home(tmp_path)
    root = str(tmp_path / "lake")
    lake = Lake(root)
    month = MONTH
    days = [dt.date.fromisoformat(d) for d in month_days(month)]
    draft_date, issued_date = dt.date(2025, 10, 26), days[-1]
    # late readings only: the bills are recomputed against the prices as first published
    rates = FaultRates(
        late_file=0.04, correction=0.04, corrected_meters=0.3, truncated_files=0, malformed=0, price_correction=0
    )
    generate(lake, meters=40, start=days[0], days=len(days), seed=5, rates=rates, log=lambda *_: None)

    resources = {**resources_for(root), "postgres": PostgresResource(dsn=dsn)}
    # the back-billing limit (test_billing_ledger's) does not apply, however long ago the month ended
    env = daemon_env(home, root, days[0], METER_PG_PIPELINE_DSN=dsn, METER_BACKBILLING_MONTHS="1200")
    daemon_log = open(tmp_path / "daemon.log", "w")
    # the month's readings as its daily runs left them: what the bills read, no run's events
    materialize_days(root, days, only=BILLS_READ)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        first = dg.materialize(
            assets("bills", "issued_bills"),
            partition_key=month,
            resources=resources,
            instance=instance,
            selection=["bills"],
        )
        assert first.get_asset_check_evaluations()[0].passed
        drafts_before = dict(_ledger(dsn, "SELECT bill_id, inputs_fingerprint FROM billing.bills"))
        assert len(drafts_before) >= 40
        assert _drafts(dsn) == _final_bills(lake, month)

        daemon = start_daemon(workspace, env, daemon_log)

        def delivered_whole(deliver):
            """The late files delivered while the raw sensor is stopped: a tick that saw half of
            them would rightly rebuild the day twice (and bill it twice), which this test does not
            count."""
            with sensor_stopped(instance, "raw_arrivals_sensor"):
                deliver()

        try:
            wait_for(
                lambda: any(
                    s.name == "raw_arrivals_sensor" and getattr(s.instigator_data, "cursor", None)
                    for s in instance.all_instigator_state()
                ),
                120,
                "the raw sensor's first tick",
            )

            # before issuing: a late file for the month only changes its drafts
            delivered_whole(lambda: release_late(lake, dt.date(2099, 1, 1), dates={draft_date}))
            wait_for(lambda: _all_finished(instance, "bills_job", 1), 300, "the month's bills to be recomputed")
            (rebuilt,) = _runs(instance, "daily_readings_job")
            assert rebuilt.tags["dagster/partition"] == draft_date.isoformat()
            (recomputed,) = _runs(instance, "bills_job")
            assert recomputed.status == dg.DagsterRunStatus.SUCCESS
            assert (recomputed.tags["dagster/partition"], recomputed.tags["meter/rebuilt_day"]) == (
                month,
                draft_date.isoformat(),
            )
            assert _drafts(dsn) == _final_bills(lake, month), "the drafts hold the late day's readings"
            drafts_after = dict(
                _ledger(dsn, "SELECT bill_id, inputs_fingerprint FROM billing.bills WHERE status = 'draft'")
            )
            assert sum(drafts_after[b] != drafts_before[b] for b in drafts_before) > 0
            assert _ledger(dsn, "SELECT count(*) FROM billing.bill_adjustments") == [(0,)]

            # the operator issues the month
            dg.materialize(
                assets("bills", "issued_bills"),
                partition_key=month,
                resources=resources,
                instance=instance,
                selection=["issued_bills", "bill_lines", "bill_adjustments"],
            )
            issued = _ledger(dsn, "SELECT * FROM billing.bills ORDER BY bill_id")
            assert {row[-1] for row in _ledger(dsn, "SELECT status FROM billing.bills")} == {"issued"}

            # the held files' quarter hours were billed as the platform's estimates
            estimated_before = _platform_estimates(lake, issued_date)
            assert estimated_before
            assert sum(b[0] for b in _ledger(dsn, "SELECT estimated_kwh FROM billing.bills")) > 0

            # after issuing: a late and corrected file for the month ends in adjustment rows
            released = []
            delivered_whole(lambda: released.extend(release_late(lake, dt.date(2099, 1, 1), dates={issued_date})))
            wait_for(lambda: _all_finished(instance, "bills_job", 2), 300, "the issued month's recomputation")
            # ... and the late actuals replaced those estimates
            late_originals = [k for k in released if "-b1" in k]
            assert late_originals
            replaced = _delivered_by(lake, issued_date, late_originals)
            assert replaced and replaced <= estimated_before
            assert not replaced & _platform_estimates(lake, issued_date)
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in _runs(instance, "bills_job"))
            assert _ledger(dsn, "SELECT * FROM billing.bills ORDER BY bill_id") == issued, "issued bills untouched"

            # a second tick of either sensor adds nothing
            sensors = [
                s
                for s in instance.all_instigator_state()
                if s.name in ("raw_arrivals_sensor", "rebuilt_day_bills_sensor")
            ]
            assert len(sensors) == 2
            ticks = {s.name: len(instance.get_ticks(s.instigator_origin_id, s.selector_id)) for s in sensors}
            wait_for(
                lambda: all(
                    len(instance.get_ticks(s.instigator_origin_id, s.selector_id)) >= ticks[s.name] + 2 for s in sensors
                ),
                120,
                "two more ticks of each sensor",
            )
            assert len(_runs(instance, "bills_job")) == 2 and len(_runs(instance, "daily_readings_job")) == 2
        finally:
            stop(daemon)
            daemon_log.close()

        adjustments = _ledger(
            dsn,
            "SELECT customer_id, sequence, delta_kwh, delta_amount, charged_amount, reason, "
            "changed_partitions FROM billing.bill_adjustments "
            "WHERE NOT starts_with(reason, 'credit carried forward') ORDER BY customer_id",
        )
        final = _final_bills(lake, month)
        billed = {
            c: (charges, kwh)
            for c, charges, kwh in _ledger(
                dsn,
                "SELECT customer_id, energy_charge + standing_charge + tax + export_credit, "
                "measured_kwh + estimated_kwh FROM billing.bills",
            )
        }
        affected = sorted(c for c, bill in final.items() if bill != billed[c])
        assert affected, "the late file changed some customer's bill"
        assert [a[0] for a in adjustments] == affected, "exactly one adjustment per affected customer"
        for customer, sequence, delta_kwh, delta, charged, reason, partitions in adjustments:
            assert billed[customer][0] + delta == final[customer][0]
            assert billed[customer][1] + delta_kwh == final[customer][1]
            assert (sequence, charged, partitions) == (1, delta, [issued_date.isoformat()])
            assert reason == "late or corrected readings"

        # and the same month once more, by hand, writes nothing
        again = dg.materialize(
            assets("bills", "issued_bills"),
            partition_key=month,
            resources=resources,
            instance=instance,
            selection=["bills"],
        )
        metadata = again.asset_materializations_for_node("bills")[0].metadata
        assert (metadata["adjustments_written"].value, metadata["drafts_new"].value) == (0, 0)

    exported = duckdb.sql(f"SELECT count(*), sum(total_due) FROM {parquet(lake.files(BILLS_EXPORT, month))}").fetchone()
    assert exported == tuple(_ledger(dsn, "SELECT count(*), sum(total_due) FROM billing.bills")[0])
    assert exported[1] > Decimal("0")
