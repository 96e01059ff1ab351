"""A month of a simulated retailer billed by the platform, and recomputed independently.

October 2024 in London: a 25-hour day (the 27th), a price change on the 15th, customers
moving out and in, the EV time-of-use plan whose "standard" band is two tariff rows at one
rate, the day-ahead plan priced per settlement period, customers holding two meters at once,
estimated and missing readings. The platform curates and bills it through Dagster into a real
PostgreSQL ledger, issues it, then late and corrected files and corrected day-ahead prices
arrive and it corrects the issued bills with adjustments.

The expected numbers come from the published curated readings and the retailer's reference
exports (the CSV files, parsed here), priced one reading at a time by the slow reference
written from the rules in docs/billing.md (`billing_reference.py`), not by the code under test.
"""

import datetime as dt
import json
from decimal import ROUND_HALF_UP, Decimal

import dagster as dg
import psycopg
import pytest

from meter_assets import postgres
from meter_assets.definitions import assets
from meter_assets.market_calendar import local_day_of, month_days
from meter_assets.reference.assets import day_ahead_prices, reference_assets
from meter_assets.resources import PostgresResource
from meter_assets.serving.sensors import repriced_days_sensor
from meter_assets.simulator.cli import days_carried, generate, release_late
from meter_assets.simulator.headend import FaultRates
from meter_assets.simulator.prices import CORRECTIONS_KEY
from meter_assets.sql import parquet, sql_list
from meter_assets.storage import Lake
from meter_assets.tables import BILL_LINES_EXPORT, BILLS_EXPORT, READS_15MIN

from .billing_reference import (
    EXPORTED_LINE_COLUMNS,
    ReferenceMonth,
    assert_exported_lines_match,
    ordered,
    reference_bills,
    reference_day_export,
    reference_day_usage,
)
from .billing_support import (
    published_exports,
    published_readings,
    reference_exports,
    reference_plans,
    reference_prices,
)
from .conftest import query, resources_for

MONTH = "2024-10"
TZ = "Europe/London"
TAX = Decimal("0.05")
# the days whose late and corrected files arrive after the month is issued: the price
# change, the 25-hour day, and the last day
LATE_DAYS = {dt.date(2024, 10, 15), dt.date(2024, 10, 27), dt.date(2024, 10, 31)}
# the days whose usage page rows are checked: the 25-hour day and the month's last
USAGE_DAYS = (dt.date(2024, 10, 27), dt.date(2024, 10, 31))
FAULTS = FaultRates(
    late_file=0.05,
    correction=0.05,
    corrected_meters=0.3,
    estimated=0.01,
    offline=0.01,
    price_correction=0.15,
    malformed=0.0001,
    truncated_files=1,
    nem12_late_file=0.1,
    nem12_correction=0.15,
)


def _recompute(lake: Lake) -> ReferenceMonth:
    assignments, customers, tariffs = reference_exports(lake)
    readings = published_readings(lake, MONTH)
    prices = reference_prices(lake)
    return reference_bills(
        MONTH,
        TZ,
        TAX,
        readings,
        assignments,
        customers,
        tariffs,
        prices,
        published_exports(lake, MONTH),
        reference_plans(lake),
    )


def _curate(root: str, days: list[dt.date]) -> None:
    chain = assets("raw_meter_files", "reads_15min", "reads_hourly", "reads_daily")
    with dg.DagsterInstance.ephemeral() as instance:
        for day in days:
            result = dg.materialize(
                chain, partition_key=day.isoformat(), resources=resources_for(root), instance=instance
            )
            assert result.success


def _ledger_bills(dsn: str) -> dict[int, dict]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """
            SELECT customer_id, measured_kwh, estimated_kwh, energy_lines::text, energy_charge, supply_days,
                   standing_lines::text, standing_charge, tax_rate, tax, total_due, is_estimated, status, derived_kwh,
                   export_lines::text, export_credit, export_kwh
            FROM billing.bills WHERE period_start = '2024-10-01'
            """
        ).fetchall()
    bills = {}
    for (
        customer,
        measured,
        estimated,
        energy,
        energy_charge,
        days,
        standing,
        standing_charge,
        tax_rate,
        tax,
        total,
        is_estimated,
        status,
        derived_kwh,
        export,
        export_credit,
        export_kwh,
    ) in rows:
        energy = json.loads(energy, parse_float=Decimal)
        standing = json.loads(standing, parse_float=Decimal)
        export = json.loads(export, parse_float=Decimal)
        bills[customer] = dict(
            energy=ordered(
                (line["band"], _price(line), line["measured_kwh"], line["estimated_kwh"], line["amount"])
                for line in energy
            ),
            standing=sorted((line["daily_rate"], line["days"], line["amount"]) for line in standing),
            measured=measured,
            estimated=estimated,
            energy_charge=energy_charge,
            supply_days=days,
            standing_charge=standing_charge,
            tax_rate=tax_rate,
            tax=tax,
            total=total,
            is_estimated=is_estimated,
            status=status,
            derived=ordered((line["band"], _price(line), line["derived_kwh"]) for line in energy),
            derived_kwh=derived_kwh,
            export=ordered(
                (line["band"], _price(line), line["measured_kwh"], line["estimated_kwh"], line["amount"])
                for line in export
            ),
            export_credit=export_credit,
            export_kwh=export_kwh,
        )
    return bills


def _price(line: dict) -> Decimal | str:
    """A stored line's unit rate, or its day-ahead rule."""
    return line.get("price_rule", line["unit_rate"])


def _expected(month: ReferenceMonth, status: str) -> dict[int, dict]:
    return {
        c: dict(
            energy=ordered(b.energy_lines()),
            standing=sorted(b.standing_lines()),
            measured=b.measured_kwh,
            estimated=b.estimated_kwh,
            energy_charge=b.energy_charge,
            supply_days=b.supply_days,
            standing_charge=b.standing_charge,
            tax_rate=TAX,
            tax=b.tax,
            total=b.charges,
            is_estimated=b.estimated_kwh > 0,
            status=status,
            derived=ordered(b.derived_lines()),
            derived_kwh=b.derived_kwh,
            export=ordered(b.export_lines()),
            export_credit=b.export_credit,
            export_kwh=b.export_kwh,
        )
        for c, b in month.bills.items()
    }


@pytest.fixture(scope="module")
def october(tmp_path_factory):
    """The month billed, issued and corrected; what the ledger and the reference said at each step."""
    folder = tmp_path_factory.mktemp("october")
    dsn = postgres.embedded(str(folder / "pg")).pipeline
    root = str(folder / "lake")
    lake = Lake(root)
    generate(
        lake,
        meters=300,
        start=dt.date(2024, 10, 1),
        days=31,
        seed=12,
        rates=FAULTS,
        truth=True,
        nem12=True,
        log=lambda *_: None,
    )
    days = [dt.date.fromisoformat(d) for d in month_days(MONTH)]
    # the prices' publications are kept, for the sensor that prices corrected days again
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize(reference_assets, resources=resources_for(root), instance=instance).success
    (first_prices,) = instance.fetch_materializations(dg.AssetKey("day_ahead_prices"), limit=1).records
    _curate(root, days)
    resources = {**resources_for(root), "postgres": PostgresResource(dsn=dsn)}

    state = {"lake": lake, "dsn": dsn}
    drafted = dg.materialize(
        assets("bills", "issued_bills"), partition_key=MONTH, resources=resources, selection=["bills"]
    )
    state["check_passed"] = drafted.get_asset_check_evaluations()[0].passed
    state["drafts"] = _ledger_bills(dsn)
    state["before"] = _recompute(lake)

    dg.materialize(
        assets("bills", "issued_bills"),
        partition_key=MONTH,
        resources=resources,
        selection=["issued_bills", "bill_lines", "bill_adjustments"],
    )
    state["issued"] = _ledger_bills(dsn)
    state["exported_lines"] = query(
        f"SELECT {EXPORTED_LINE_COLUMNS} FROM {parquet(lake.files(BILL_LINES_EXPORT, MONTH))} "
        "ORDER BY customer_id, line_no"
    )

    state["exported_shares"] = dict(
        query(f"SELECT customer_id, estimated_share FROM {parquet(lake.files(BILLS_EXPORT, MONTH))}")
    )

    released = release_late(lake, dt.date(2099, 1, 1), dates=LATE_DAYS)
    # a NEM12 file of an AEST day also carries the London day before
    state["released_days"] = {day for key in released for day in days_carried(key)}
    _curate(root, sorted(d for d in state["released_days"] if d.strftime("%Y-%m") == MONTH))
    # the market's corrected prices land with them; the sensor asks to price their days again
    assert dg.materialize([day_ahead_prices], resources=resources_for(root), instance=instance).success
    state["repriced"] = repriced_days_sensor(
        dg.build_sensor_context(instance=instance, cursor=str(first_prices.storage_id)),
        lake=resources_for(root)["lake"],
    )
    corrected = dg.materialize(
        assets("bills", "issued_bills"), partition_key=MONTH, resources=resources, selection=["bills"]
    )
    state["corrected_check_passed"] = corrected.get_asset_check_evaluations()[0].passed
    state["after"] = _recompute(lake)
    state["after_issue"] = _ledger_bills(dsn)
    with psycopg.connect(dsn) as conn:
        state["adjustments"] = conn.execute(
            "SELECT customer_id, delta_kwh, delta_amount, charged_amount, reason, changed_partitions, found_at "
            "FROM billing.bill_adjustments WHERE NOT starts_with(reason, 'credit carried forward') ORDER BY customer_id"
        ).fetchall()
    again = dg.materialize(
        assets("bills", "issued_bills"), partition_key=MONTH, resources=resources, selection=["bills"]
    )
    state["rerun"] = again.asset_materializations_for_node("bills")[0].metadata
    # the usage page's days: the 25-hour day and the last, as finally curated
    for day in USAGE_DAYS:
        assert dg.materialize(assets("usage_serving"), partition_key=day.isoformat(), resources=resources).success
    with psycopg.connect(dsn) as conn:
        served = conn.execute(
            "SELECT customer_id, local_date, kwh, cost, average_rate, export_kwh, export_credit "
            "FROM serving.daily_usage"
        ).fetchall()
        state["daily_usage"] = {(customer, day): (kwh, cost, rate) for customer, day, kwh, cost, rate, *_ in served}
        state["daily_export"] = {
            (customer, day): (sent, credit) for customer, day, *_, sent, credit in served if sent is not None
        }
    return state


def test_the_month_holds_the_cases_an_auditor_checks(october):
    lake = october["lake"]
    assignments, customers, tariffs = reference_exports(lake)
    readings = published_readings(lake, MONTH)
    # the 25-hour day: 100 quarter hours of 27 October in the curated readings
    assert len({r["read_at"] for r in readings if local_day_of(r["read_at"]) == dt.date(2024, 10, 27)}) == 100
    # a price change inside the month, and a band in two rows at one rate
    assert {t["valid_from"] for t in tariffs} & set(dt.date(2024, 10, d) for d in range(2, 32))
    ev = [(t["band"], t["unit_rate"], t["valid_from"]) for t in tariffs if t["plan_id"] == "EV-TOU"]
    assert len(ev) > len(set(ev))
    plans = {c["customer_id"]: c["plan_id"] for c in customers}
    assert any(plans[c] == "EV-TOU" for c in october["after"].bills)
    # homes with panels credited from the register change: flat, time-of-use and day-ahead export
    credited = [b for b in october["after"].bills.values() if b.export]
    assert len(credited) > 10 and all(b.export_kwh > 0 for b in credited)
    assert {plans[b.customer_id] for b in credited} == {"FLEX", "EV-TOU", "DYNAMIC"}
    assert any(band == "export_peak" for b in credited for band, _ in b.export)
    # customers who changed plan in the month: each has lines of both plans (a fixed rate and a
    # day-ahead rule), and two standing charges
    changed = {p["customer_id"] for p in reference_plans(lake) if p["valid_from"].strftime("%Y-%m") == MONTH}
    both = [
        c
        for c in changed & october["after"].bills.keys()
        if {isinstance(price, str) for _, price in october["after"].bills[c].energy} == {True, False}
    ]
    assert both, "a customer changed plan mid-month and is billed on both"
    # customers on the day-ahead plan, priced through the 50 settlement periods of the 25-hour day
    assert any(plans[c] == "DYNAMIC" for c in october["after"].bills)
    assert any(isinstance(price, str) for bill in october["after"].bills.values() for _, price in bill.energy)
    # moves: a meter held by two customers in the month; a customer holding two meters on one day
    in_month = [
        a
        for a in assignments
        if a["valid_from"] <= dt.date(2024, 10, 31) and (a["valid_to"] is None or a["valid_to"] > dt.date(2024, 10, 1))
    ]
    by_meter, by_customer_day = {}, {}
    for a in in_month:
        by_meter.setdefault(a["meter_id"], set()).add(a["customer_id"])
        for d in range(1, 32):
            day = dt.date(2024, 10, d)
            if a["valid_from"] <= day and (a["valid_to"] is None or day < a["valid_to"]):
                by_customer_day.setdefault((a["customer_id"], day), set()).add(a["meter_id"])
    assert any(len(held) > 1 for held in by_meter.values())
    assert any(len(meters) > 1 for meters in by_customer_day.values())
    assert any(r["quality_flag"] == "estimated" for r in readings)
    assert october["released_days"] >= LATE_DAYS


def test_drafts_equal_the_independent_recomputation(october):
    assert october["check_passed"]
    assert october["drafts"] == _expected(october["before"], "draft")


def test_issued_bills_and_their_exported_lines_equal_the_recomputation(october):
    assert october["issued"] == _expected(october["before"], "issued")
    assert_exported_lines_match(october["exported_lines"], october["before"].bills)


def test_each_issued_bill_says_what_share_of_its_energy_was_estimated(october):
    expected = {}
    for customer, bill in october["before"].bills.items():
        total = bill.measured_kwh + bill.estimated_kwh
        share = (bill.estimated_kwh / total).quantize(Decimal("0.0001"), ROUND_HALF_UP) if total else None
        expected[customer] = share
    assert october["exported_shares"] == expected
    # the month had gaps the platform estimated (offline meters, late files) and whole measured bills
    assert any(0 < share < 1 for share in expected.values() if share is not None)


def test_corrected_prices_price_exactly_their_days_again_and_the_month_once(october):
    corrected = october["lake"].read_parquet([CORRECTIONS_KEY]).to_pylist()
    days = sorted({c["settlement_date"].isoformat() for c in corrected if c["corrected_per_mwh"] != c["price_per_mwh"]})
    assert days, "the month has corrected prices"
    requests = october["repriced"]
    assert sorted((r.job_name, r.partition_key) for r in requests) == sorted(
        [("usage_serving_job", day) for day in days] + [("bills_job", MONTH)]
    )


def test_adjustments_equal_the_change_in_the_recomputation(october):
    assert october["corrected_check_passed"]
    assert october["after_issue"] == october["issued"], "issued bills stay as issued"
    before, after = october["before"], october["after"]
    expected, export_moved = {}, 0
    for customer in before.bills.keys() | after.bills.keys():
        old, new = before.bills.get(customer), after.bills.get(customer)
        delta_amount = (new.charges if new else 0) - (old.charges if old else 0)
        delta_kwh = ((new.measured_kwh + new.estimated_kwh) if new else 0) - (
            (old.measured_kwh + old.estimated_kwh) if old else 0
        )
        # the days whose use or export moved
        moved = {
            used: {
                day.isoformat()
                for day in {d for c, d in getattr(before, used).keys() | getattr(after, used).keys() if c == customer}
                if getattr(before, used).get((customer, day), 0) != getattr(after, used).get((customer, day), 0)
            }
            for used in ("daily_kwh", "daily_export_kwh")
        }
        export_moved += bool(moved["daily_export_kwh"])
        if delta_amount or delta_kwh or moved["daily_export_kwh"]:
            expected[customer] = (delta_kwh, delta_amount, sorted(moved["daily_kwh"] | moved["daily_export_kwh"]))
    adjustments = october["adjustments"]
    assert len(expected) > 5, "the late and corrected files moved several bills"
    assert export_moved > 0, "late export readings moved a credit"
    assert {c: (kwh, amount, changed) for c, kwh, amount, _, _, changed, _ in adjustments} == expected
    assert len(adjustments) == len(expected), "one adjustment per customer whose bill moved"
    # a corrected day-ahead price moved a dynamic plan's bill without moving its kWh
    assert any(kwh == 0 and amount and not changed for _, kwh, amount, _, _, changed, _ in adjustments)
    for customer, _, amount, charged, reason, changed, found_at in adjustments:
        assert set(changed) <= {d.isoformat() for d in october["released_days"]}
        assert reason.startswith(
            "late or corrected readings" if changed else "supply period, tariff or day-ahead prices changed"
        )
        # undercharges of a month ended more than 12 months before they were found are not recovered
        found_on = found_at.date()
        twelve_months_before = found_on.replace(year=found_on.year - 1, day=min(found_on.day, 28))
        recoverable = amount < 0 or dt.date(2024, 11, 1) > twelve_months_before
        assert charged == (amount if recoverable else 0), (customer, reason)
    assert october["rerun"]["adjustments_written"].value == 0, "the same data again writes nothing"


def test_usage_page_days_equal_the_rules_for_every_customer_nem12_ones_too(october):
    lake = october["lake"]
    assignments, customers, tariffs = reference_exports(lake)
    readings = published_readings(lake, MONTH)
    exports = published_exports(lake, MONTH)
    prices = reference_prices(lake)
    plans = reference_plans(lake)
    nem12_customers = {a["customer_id"] for a in assignments if a["meter_id"].endswith("-E1")}
    for day in USAGE_DAYS:
        expected = reference_day_usage(day, TZ, TAX, readings, assignments, customers, tariffs, prices, plans)
        shown = {c: usage for (c, d), usage in october["daily_usage"].items() if d == day}
        assert shown == expected and nem12_customers & set(shown)
        # customers on the day-ahead plan see the day's average rate, the others none
        assert any(rate is not None for _, _, rate in shown.values())
        assert any(rate is None for _, _, rate in shown.values())
        # homes with panels see what they sent to the grid and its credit; the others nothing
        exported = reference_day_export(day, TZ, exports, assignments, customers, tariffs, prices, plans)
        assert {c: sent for (c, d), sent in october["daily_export"].items() if d == day} == exported
        assert len(exported) > 10 and any(credit < 0 for _, credit in exported.values())


def test_nem12_registers_are_billed_as_their_ground_truth(october):
    """The simulator's NEM12 agent read one group in four at 15, 30 and 5 minutes: its registers'
    published readings are the simulator's ground truth wherever no file of theirs is still held
    back, so the bills (checked above against the published readings) bill the truth."""
    lake = october["lake"]
    held = [o.key.split("/", 3)[3] for o in lake.list("simulator/held/") if "/raw/nem12/" in o.key]
    still_out = {day for key in held for day in days_carried(key)}
    truth = f"read_parquet('{lake.root}/simulator/truth/*/reads.parquet')"
    readings = parquet([uri for day in month_days(MONTH) for uri in lake.files(READS_15MIN, day)])
    days_out = sql_list(sorted(d.isoformat() for d in still_out)) if still_out else "['']"
    compared, mismatches = query(
        f"""
        WITH nem12 AS (
            SELECT * FROM {truth} AS t
            WHERE t.meter_id LIKE '%-E1' AND strftime(timezone('{TZ}', timezone('UTC', t.read_at)), '%Y-%m-%d')
                  NOT IN (SELECT unnest({days_out}))
              AND t.read_at >= TIMESTAMP '2024-09-30 23:00' AND t.read_at < TIMESTAMP '2024-11-01 00:00'
        )
        SELECT count(*),
               count(*) FILTER (WHERE CASE WHEN t.quality_flag = 'missing'
                                           THEN c.estimated_by IS DISTINCT FROM 'platform'
                                           ELSE c.kwh IS DISTINCT FROM t.kwh OR c.quality_flag <> t.quality_flag END)
        FROM nem12 AS t LEFT JOIN {readings} AS c USING (meter_id, read_at)
        """
    )[0]
    assert compared > 75 * 96 * 20 and mismatches == 0
    # every interval length reached the bills, and the half hours are said to be derived
    lengths = dict(
        query(
            f"SELECT interval_minutes, count(*) FROM {readings} WHERE meter_id LIKE '%-E1' AND source_file IS NOT NULL "
            "GROUP BY ALL"
        )
    )
    assert set(lengths) == {5, 15, 30}
    derived = [c for c, bill in october["issued"].items() if bill["derived_kwh"] > 0]
    assert len(derived) > 10, "the bills of customers on half-hour registers say how much was halved"
