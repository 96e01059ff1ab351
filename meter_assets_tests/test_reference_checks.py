"""The reference exports' gates: an assignments export that gives one meter-day to two customers
(or a row that ends before it starts) is refused by a blocking check that names the meter, the
customers and the days, and the version published before stays; so is a price export that
misses a settlement period of a day, or has one the day has not, naming the day and period."""

import csv
import datetime as dt
import io
import shutil
from collections import defaultdict
from decimal import Decimal
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest

from meter_assets.reference.assets import build_reference, reference_assets
from meter_assets.reference.assets import day_ahead_prices as day_ahead_prices_asset
from meter_assets.simulator.cli import generate, release_late
from meter_assets.simulator.headend import FaultRates
from meter_assets.simulator.prices import day_ahead_prices
from meter_assets.simulator.retailer import hourly_temperature
from meter_assets.storage import Lake
from meter_assets.tables import CUSTOMER_PLANS, DAY_AHEAD_PRICES, METER_ASSIGNMENTS

from .conftest import query, resources_for


@pytest.fixture(scope="module")
def lake(generated, tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("reference") / "lake")
    shutil.copytree(f"{generated}/reference", f"{root}/reference")
    assert dg.materialize(reference_assets, resources=resources_for(root)).success
    return root


def refused(root: str, name: str, export: str, check_name: str) -> dg.AssetCheckEvaluation:
    """The reference assets run on this export of `name` (the original put back after): the run
    fails, and the named check's evaluation is returned."""
    key = f"reference/{name}.csv"
    original = Lake(root).read_bytes(key)
    Lake(root).write_bytes(key, export.encode())
    try:
        result = dg.materialize(reference_assets, resources=resources_for(root), raise_on_error=False)
    finally:
        Lake(root).write_bytes(key, original)
    assert not result.success
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == check_name]
    return check


def published(root: str) -> list[tuple]:
    files = Lake(root).files(METER_ASSIGNMENTS)
    return query(f"SELECT * FROM read_parquet({files!r}) ORDER BY ALL")


def test_an_overlapping_assignment_is_refused_by_name_and_the_old_version_stays(lake):
    before = published(lake)
    original = Lake(lake).read_bytes("reference/meter_assignments.csv").decode()
    first_meter, first_customer = original.splitlines()[1].split(",")[:2]
    # another customer holds the first meter for two days while its own holder still does; and
    # a row that ends before it starts
    bad = f"{first_meter},999999,2024-03-30,2024-04-01\n{first_meter},999998,2024-05-01,2024-04-01\n"
    check = refused(lake, "meter_assignments", original + bad, "no_meter_day_held_twice")
    assert not check.passed and check.metadata["conflicts"].value == 2
    conflicts = check.metadata["first_conflicts"].value
    assert {
        "meter_id": first_meter,
        "customers": [int(first_customer), 999999],
        "first_day": "2024-03-30",
        "last_day": "2024-03-31",
    } in conflicts
    assert {"meter_id": first_meter, "customers": [999998], "first_day": "2024-05-01", "last_day": "2024-03-31"} in (
        conflicts
    )
    assert published(lake) == before, "the version published before stays"
    assert dt.date(2024, 3, 30) not in {row[2] for row in before if row[1] == 999999}


def test_a_customer_on_two_plans_on_a_day_is_refused_by_name_and_the_old_version_stays(lake):
    files = Lake(lake).files(CUSTOMER_PLANS)
    before = query(f"SELECT * FROM read_parquet({files!r}) ORDER BY ALL")
    original = Lake(lake).read_bytes("reference/customer_plans.csv").decode()
    # a second plan for two days of another's, and a row that ends before it starts
    bad = "999991,FLEX,2024-03-01,2024-04-01\n999991,DYNAMIC,2024-03-30,2024-04-01\n999992,FLEX,2024-05-01,2024-04-01\n"
    check = refused(lake, "customer_plans", original + bad, "one_plan_a_day")
    assert not check.passed and check.metadata["problems"].value == 2
    listed = check.metadata["first_problems"].value
    assert {
        "customer_id": 999991,
        "plans": ["FLEX", "DYNAMIC"],
        "first_day": "2024-03-30",
        "last_day": "2024-03-31",
    } in listed
    assert "customer 999991 plans ['FLEX', 'DYNAMIC'] 2024-03-30 to 2024-03-31" in check.description
    assert query(f"SELECT * FROM read_parquet({files!r}) ORDER BY ALL") == before, "the version published before stays"


# --- the day-ahead market's prices ----------------------------------------------------------

LONDON = ZoneInfo("Europe/London")


def local_midnight_utc(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=LONDON).astimezone(dt.UTC).replace(tzinfo=None)


def price_rows(root: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(Lake(root).read_bytes("reference/day_ahead_prices.csv").decode())))


def published_prices(root: str) -> list[tuple]:
    files = Lake(root).files(DAY_AHEAD_PRICES)
    columns = "settlement_date, settlement_period, period_start, price_per_mwh"
    return query(f"SELECT {columns} FROM read_parquet({files!r}) ORDER BY ALL")


def test_the_simulated_prices_have_every_settlement_period_of_each_local_day_and_a_market_s_shape():
    """Half an hour at a time from local midnight to local midnight (46 periods on the day the
    clocks go forward, 50 on the day they go back), published the afternoon before; dearer in
    winter and in a working day's evening than at night, and below zero only now and then,
    mostly in the middle of summer days."""
    start, days = dt.date(2024, 3, 1), 245
    prices = day_ahead_prices(start, days, hourly_temperature(start, days, 7), 7).to_pylist()
    by_day = defaultdict(list)
    for row in prices:
        by_day[row["settlement_date"]].append(row)
    assert sorted(by_day) == [start + dt.timedelta(days=d) for d in range(days)]
    for day, rows in by_day.items():
        span = local_midnight_utc(day + dt.timedelta(days=1)) - local_midnight_utc(day)
        assert len(rows) == span / dt.timedelta(minutes=30)
        assert [r["settlement_period"] for r in rows] == list(range(1, len(rows) + 1))
        assert [r["period_start"] for r in rows] == [
            local_midnight_utc(day) + i * dt.timedelta(minutes=30) for i in range(len(rows))
        ]
        published = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(16), tzinfo=LONDON)
        assert {r["published_at"] for r in rows} == {published.astimezone(dt.UTC).replace(tzinfo=None)}
        assert {r["currency"] for r in rows} == {"GBP"}
    assert len(by_day[dt.date(2024, 3, 31)]) == 46 and len(by_day[dt.date(2024, 10, 27)]) == 50

    def local_hour(row):
        return row["period_start"].replace(tzinfo=dt.UTC).astimezone(LONDON).hour

    def mean(rows):
        return sum(r["price_per_mwh"] for r in rows) / len(rows)

    working = [r for r in prices if r["settlement_date"].weekday() < 5]
    assert mean([r for r in working if 17 <= local_hour(r) < 19]) > Decimal("1.5") * mean(
        [r for r in working if 3 <= local_hour(r) < 5]
    )
    march = [r for r in prices if r["settlement_date"].month == 3]
    july = [r for r in prices if r["settlement_date"].month == 7]
    assert mean(march) > mean(july)
    negative = [r for r in prices if r["price_per_mwh"] < 0]
    assert 0 < len(negative) < 0.05 * len(prices)
    # mostly sunny middays from spring to autumn (a windy night may dip below zero too)
    assert all(4 <= r["settlement_date"].month <= 10 for r in negative)
    assert sum(9 <= local_hour(r) < 18 for r in negative) > 0.9 * len(negative)


def test_the_published_prices_are_the_export_s(lake):
    exported = {
        (dt.date.fromisoformat(r["settlement_date"]), int(r["settlement_period"])): Decimal(r["price_per_mwh"])
        for r in price_rows(lake)
    }
    published = published_prices(lake)
    assert {(d, p): price for d, p, _, price in published} == exported
    assert sum(1 for d, *_ in published if d == dt.date(2024, 3, 31)) == 46


def test_a_price_export_missing_a_period_or_with_one_the_day_has_not_is_refused_by_name(lake):
    before = published_prices(lake)
    original = Lake(lake).read_bytes("reference/day_ahead_prices.csv").decode()
    lines = original.splitlines(keepends=True)
    header, rows = lines[0], lines[1:]

    def key(line):
        date, period = line.split(",")[:2]
        return date, int(period)

    # the clock-change day loses its period 3; a period 49 on a 48-period day; period 5 of the
    # first day moved half an hour
    kept = [line for line in rows if key(line) != ("2024-03-31", 3)]
    fields = next(line for line in rows if key(line) == ("2024-03-30", 48)).split(",")
    extra = ",".join(["2024-03-30", "49", "2024-03-31T00:00:00", *fields[3:]])
    moved = []
    for line in kept:
        if key(line) == ("2024-03-30", 5):
            f = line.split(",")
            line = ",".join([f[0], f[1], "2024-03-30T02:30:00", *f[3:]])
        moved.append(line)
    check = refused(lake, "day_ahead_prices", header + "".join(moved) + extra, "one_price_per_settlement_period")
    assert not check.passed and check.metadata["problems"].value == 3
    assert check.metadata["first_problems"].value == [
        {
            "settlement_date": "2024-03-30",
            "settlement_period": 5,
            "problem": "starts at 2024-03-30 02:30 UTC, not 2024-03-30 02:00",
        },
        {"settlement_date": "2024-03-30", "settlement_period": 49, "problem": "not a settlement period of the day"},
        {"settlement_date": "2024-03-31", "settlement_period": 3, "problem": "no price"},
    ]
    assert published_prices(lake) == before, "the version published before stays"


def test_a_price_export_with_a_period_twice_is_refused_naming_it(lake, tmp_path):
    original = Lake(lake).read_bytes("reference/day_ahead_prices.csv").decode()
    twice = next(line for line in original.splitlines() if line.startswith("2024-03-31,5,"))
    copy = Lake(str(tmp_path / "lake"))
    copy.write_bytes("reference/day_ahead_prices.csv", (original + twice + "\n").encode())
    with duckdb.connect() as con, pytest.raises(ValueError, match=r"1 keys .* more than once, the first: 2024-03-31 5"):
        build_reference(copy, con, "day_ahead_prices")


def test_a_corrected_price_export_lands_late_and_replaces_the_series_as_published(tmp_path):
    """Corrected days' prices come in a later export of the whole series, held with the late
    files; once it has landed, the published series is the first one with each correction of
    the manifest in place, and nothing else changed."""
    root = str(tmp_path / "lake")
    lake = Lake(root)
    start, days = dt.date(2024, 10, 20), 10
    rates = FaultRates(price_correction=0.4)
    generate(lake, meters=12, start=start, days=days, seed=3, rates=rates, log=lambda *_: None)
    first = {(r["settlement_date"], int(r["settlement_period"])): Decimal(r["price_per_mwh"]) for r in price_rows(root)}
    corrections = query(f"SELECT * FROM read_parquet({lake.uri('simulator/faults/day_ahead_prices.parquet')!r})")
    assert corrections, "a share of 0.4 corrects some of 10 days"
    for day, period, was, corrected, arrival in corrections:
        assert first[(day.isoformat(), period)] == was != corrected
        assert 2 <= (arrival - day).days <= 5
    held = [o.key for o in lake.list("simulator/held/") if o.key.endswith("reference/day_ahead_prices.csv")]
    assert len(held) == len({c[4] for c in corrections})

    release_late(lake, until=start + dt.timedelta(days=days + 6), dates={start})
    final = {(r["settlement_date"], int(r["settlement_period"])): Decimal(r["price_per_mwh"]) for r in price_rows(root)}
    expected = dict(first) | {(day.isoformat(), period): corrected for day, period, _, corrected, _ in corrections}
    assert final == expected
    assert dg.materialize([day_ahead_prices_asset], resources=resources_for(root)).success
    assert {(d.isoformat(), p): price for d, p, _, price in published_prices(root)} == expected
