"""The usage serving table: each customer's days, replaced a day at a time, pruned to the window."""

import datetime as dt
import tempfile
import threading
from decimal import ROUND_HALF_UP, Decimal

import dagster as dg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meter_assets import postgres
from meter_assets.definitions import assets
from meter_assets.market_calendar import month_days
from meter_assets.resources import PostgresResource
from meter_assets.serving.store import refresh_day
from meter_assets.sql import parquet
from meter_assets.tables import READS_15MIN

from .billing_reference import reference_day_usage
from .billing_support import MONTH, month_assignments, month_customers, month_in_lake, month_readings
from .conftest import query, resources_for
from .pricing_support import RATES, TAX, TZ, two_plans

OFFSET = 4_000_000
RATE = Decimal("0.2450")
OFFSET_BANDS = 5_000_000


def _rows(dsn: str, sql: str, params=()) -> list[tuple]:
    with postgres.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


def test_each_customer_sees_the_days_the_meter_was_theirs_at_their_tariff(tmp_path, pg_dsn):
    root = str(tmp_path / "lake")
    lake = month_in_lake(root, OFFSET, two_plans(dt.date(2025, 2, 15), (28, 76), [RATE]))
    resources = {**resources_for(root), "postgres": PostgresResource(dsn=pg_dsn)}
    for day in month_days(MONTH):
        dg.materialize(assets("usage_serving"), partition_key=day, resources=resources)

    days = {
        c: [
            d.day
            for (d,) in _rows(
                pg_dsn, "SELECT local_date FROM serving.daily_usage WHERE customer_id = %s ORDER BY local_date", [c]
            )
        ]
        for c in range(OFFSET, OFFSET + 4)
    }
    # meter 1 changes hands: the outgoing tenant until the 9th, nobody on the 10th, the incoming one from the 11th
    assert days == {
        OFFSET: list(range(1, 10)),
        OFFSET + 1: list(range(11, 29)),
        OFFSET + 2: list(range(1, 29)),
        OFFSET + 3: list(range(1, 29)),
    }

    # the incoming tenant's use is exactly meter 1's readings from the 11th
    readings = parquet([f for day in month_days(MONTH)[10:] for f in lake.files(READS_15MIN, day)])
    ((meter_kwh,),) = query(f"SELECT sum(kwh) FROM {readings} WHERE meter_id = 1")
    assert _rows(pg_dsn, "SELECT sum(kwh) FROM serving.daily_usage WHERE customer_id = %s", [OFFSET + 1]) == [
        (meter_kwh,)
    ]

    # a flat-rate customer's 2 February by hand: 0.2450 a kWh, 0.6050 a day, 5 % tax, rounded once
    day_files = parquet(lake.files(READS_15MIN, "2025-02-02"))
    ((kwh,),) = query(f"SELECT sum(kwh) FROM {day_files} WHERE meter_id = 3")
    expected = ((kwh * RATE + Decimal("0.6050")) * Decimal("1.05")).quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert _rows(
        pg_dsn,
        "SELECT kwh, cost FROM serving.daily_usage WHERE customer_id = %s AND local_date = %s",
        [OFFSET + 3, dt.date(2025, 2, 2)],
    ) == [(kwh, expected)]

    # the month-to-date estimate is the month's days so far
    estimate = _rows(
        pg_dsn,
        "SELECT period_start, through_date, days, kwh, cost FROM serving.bill_estimates WHERE customer_id = %s",
        [OFFSET + 2],
    )
    totals = _rows(
        pg_dsn, "SELECT count(*), sum(kwh), sum(cost) FROM serving.daily_usage WHERE customer_id = %s", [OFFSET + 2]
    )
    assert estimate == [(dt.date(2025, 2, 1), dt.date(2025, 2, 28), *totals[0])]
    assert _rows(pg_dsn, "SELECT count(*) FROM serving.refreshes") == [(28,)]


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    cuts=st.tuples(st.integers(1, 95), st.integers(1, 95)).filter(lambda c: c[0] != c[1]),
    change=st.integers(2, 27),
    rates=st.lists(st.sampled_from(RATES), min_size=2, max_size=8),
)
def test_every_row_equals_the_rules_on_multi_band_plans(tmp_path, pg_dsn, cuts, change, rates):
    """Time-of-use plans whose bands have their own rates (two rows of one band at one rate, a price
    change that may keep some rates): each customer's kWh and cost on the days around the change
    and on the void day, against the reference priced one reading at a time."""
    root = tempfile.mkdtemp(dir=tmp_path)
    change_day = dt.date(2025, 2, change)
    tariffs = two_plans(change_day, cuts, rates)
    month_in_lake(root, OFFSET_BANDS, tariffs)
    resources = {**resources_for(root), "postgres": PostgresResource(dsn=pg_dsn)}
    days = sorted({change_day - dt.timedelta(days=1), change_day, dt.date(2025, 2, 10)})
    for day in days:
        assert dg.materialize(assets("usage_serving"), partition_key=day.isoformat(), resources=resources).success

    readings = month_readings().to_pylist()
    customers, assignments = month_customers(OFFSET_BANDS), month_assignments(OFFSET_BANDS)
    for day in days:
        rows = _rows(
            pg_dsn,
            "SELECT customer_id, kwh, cost, average_rate FROM serving.daily_usage "
            "WHERE local_date = %s AND customer_id >= %s",
            [day, OFFSET_BANDS],
        )
        expected = reference_day_usage(day, TZ, TAX, readings, assignments, customers, tariffs)
        assert {c: (kwh, cost, rate) for c, kwh, cost, rate in rows} == expected, day


def _csv(path, day: dt.date, kwh: str, customers=(1, 2, 3)) -> str:
    path.write_text("".join(f"{c},{day},{kwh},0.000,0,1.00,,,\n" for c in customers))
    return str(path)


def test_a_refresh_replaces_its_day_in_one_transaction_and_prunes_the_window(tmp_path, pg_dsn):
    start = dt.date(2025, 2, 26)
    now = dt.datetime.now(dt.UTC)
    with postgres.connect(pg_dsn) as conn:
        conn.autocommit = True
        for d in range(7):
            day = start + dt.timedelta(days=d)
            refresh_day(conn, day, _csv(tmp_path / f"{d}.csv", day, "1.000"), 3, now)
        assert _rows(pg_dsn, "SELECT min(local_date), max(local_date), count(*) FROM serving.daily_usage") == [
            (dt.date(2025, 3, 1), dt.date(2025, 3, 4), 12)
        ], "the window (2-4 March) and the month so far are kept"
        assert _rows(pg_dsn, "SELECT min(local_date), count(*) FROM serving.refreshes") == [(dt.date(2025, 3, 1), 4)]

        # a day older than the window and the month is not loaded back; a day of the month is
        late = refresh_day(conn, start, _csv(tmp_path / "old.csv", start, "9.000"), 3, now)
        assert (late.loaded, late.kept_from) == (False, "2025-03-01")
        march_1 = dt.date(2025, 3, 1)
        assert refresh_day(conn, march_1, _csv(tmp_path / "first.csv", march_1, "1.000"), 3, now).loaded
        assert _rows(pg_dsn, "SELECT count(*) FROM serving.daily_usage WHERE kwh = 9") == [(0,)]

        # while a reload of the 3rd is in flight, a reader sees the old day whole; after it, the new one whole
        third = dt.date(2025, 3, 3)
        seen = []
        with conn.transaction():
            refresh_day(conn, third, _csv(tmp_path / "new.csv", third, "2.500", customers=(1, 2)), 3, now)
            reader = threading.Thread(
                target=lambda: seen.append(
                    _rows(pg_dsn, "SELECT count(*), sum(kwh) FROM serving.daily_usage WHERE local_date = %s", [third])
                )
            )
            reader.start()
            reader.join()
        assert seen == [[(3, Decimal("3.000"))]]
        assert _rows(pg_dsn, "SELECT count(*), sum(kwh) FROM serving.daily_usage WHERE local_date = %s", [third]) == [
            (2, Decimal("5.000"))
        ]

    # the month-to-date estimates count every day of the month loaded (1 March too, though it
    # is outside the 3-day window), with the 3rd as reloaded: customer 3 is no longer in it that day
    march_4 = dt.date(2025, 3, 4)
    assert _rows(
        pg_dsn, "SELECT customer_id, through_date, days, kwh, cost FROM serving.bill_estimates ORDER BY customer_id"
    ) == [
        (1, march_4, 4, Decimal("5.500"), Decimal("4.00")),
        (2, march_4, 4, Decimal("5.500"), Decimal("4.00")),
        (3, march_4, 3, Decimal("3.000"), Decimal("3.00")),
    ]
