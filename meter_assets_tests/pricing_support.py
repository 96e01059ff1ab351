"""Shared by the pricing and billing tests: the market, a month's quarter hours, two plans
with a price change, and an in-memory DuckDB holding a month's inputs for `compute_bills`."""

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa

from meter_assets.market_calendar import month_bounds

TZ = "Europe/London"
TAX = Decimal("0.05")


# what a tariff row of contract version 1 (import at a fixed rate) says about the columns version 2 added
FIXED_IMPORT = dict(direction="import", pricing="fixed", price_multiplier=None, price_adder=None, price_cap=None)


READINGS_SCHEMA = pa.schema(
    [
        ("meter_id", pa.int32()),
        ("read_at", pa.timestamp("us")),
        ("kwh", pa.decimal128(12, 3)),
        ("quality_flag", pa.string()),
        # 30 for a quarter hour halved from a half-hour reading; 15 when a test leaves it out
        ("interval_minutes", pa.int16()),
    ]
)


def connection(reads, assignments, customers, tariffs, prices=(), exports=(), plans=()) -> duckdb.DuckDBPyConnection:
    """`prices`: day-ahead prices as dicts with `period_start` (naive UTC) and `price_per_mwh`;
    `exports`: export readings like `reads` (the view `exports`); `plans`: customer_plans rows."""
    con = duckdb.connect()
    con.register(
        "customer_plans",
        pa.Table.from_pylist(
            list(plans),
            schema=pa.schema(
                [
                    ("customer_id", pa.int32()),
                    ("plan_id", pa.string()),
                    ("valid_from", pa.date32()),
                    ("valid_to", pa.date32()),
                ]
            ),
        ),
    )
    for view, rows in (("reads", reads), ("exports", exports)):
        con.register(view, pa.Table.from_pylist([{"interval_minutes": 15, **r} for r in rows], schema=READINGS_SCHEMA))
    con.register(
        "assignments",
        pa.Table.from_pylist(
            assignments,
            schema=pa.schema(
                [
                    ("meter_id", pa.int32()),
                    ("customer_id", pa.int32()),
                    ("valid_from", pa.date32()),
                    ("valid_to", pa.date32()),
                ]
            ),
        ),
    )
    con.register(
        "customers",
        pa.Table.from_pylist(customers, schema=pa.schema([("customer_id", pa.int32()), ("plan_id", pa.string())])),
    )
    con.register(
        "tariffs",
        pa.Table.from_pylist(
            [{**FIXED_IMPORT, **t} for t in tariffs],
            schema=pa.schema(
                [
                    ("tariff_id", pa.int32()),
                    ("plan_id", pa.string()),
                    ("direction", pa.string()),
                    ("band", pa.string()),
                    ("band_start", pa.string()),
                    ("band_end", pa.string()),
                    ("pricing", pa.string()),
                    ("unit_rate", pa.decimal128(10, 4)),
                    ("price_multiplier", pa.decimal128(6, 4)),
                    ("price_adder", pa.decimal128(10, 4)),
                    ("price_cap", pa.decimal128(10, 4)),
                    ("standing_charge", pa.decimal128(10, 4)),
                    ("valid_from", pa.date32()),
                    ("valid_to", pa.date32()),
                ]
            ),
        ),
    )
    con.register(
        "day_ahead_prices",
        pa.Table.from_pylist(
            list(prices),
            schema=pa.schema([("period_start", pa.timestamp("us")), ("price_per_mwh", pa.decimal128(10, 2))]),
        ),
    )
    return con


def utc_intervals(month: str, zone: str = TZ) -> list[dt.datetime]:
    start, end = month_bounds(month)
    tz = ZoneInfo(zone)
    first = dt.datetime.combine(start, dt.time(), tz).astimezone(dt.UTC).replace(tzinfo=None)
    last = dt.datetime.combine(end, dt.time(), tz).astimezone(dt.UTC).replace(tzinfo=None)
    return [first + dt.timedelta(minutes=15 * i) for i in range(int((last - first) / dt.timedelta(minutes=15)))]


def clock(quarter_hour: int) -> str:
    return f"{quarter_hour // 4:02d}:{15 * (quarter_hour % 4):02d}"


def two_plans(change_day: dt.date, cuts: tuple[int, int], rates: list[Decimal]) -> list[dict]:
    """A single-rate plan and a time-of-use plan whose "standard" band is two rows at one rate
    (off-peak, standard, a three-hour peak, standard again), with a price change on `change_day`."""
    early, late = sorted(cuts)
    peak_end = min(late + 12, 96)
    bands = [
        ("FLEX", "all_day", 0, 96, 3),
        ("TOU", "off_peak", 0, early, 0),
        ("TOU", "standard", early, late, 1),
        ("TOU", "peak", late, peak_end, 2),
        ("TOU", "standard", peak_end, 96, 1),
    ]
    rows, tariff_id = [], 1
    for version, (valid_from, valid_to) in enumerate(((dt.date(2023, 1, 1), change_day), (change_day, None))):
        for plan, band, start, end, rate in bands:
            if start == end:
                continue
            rows.append(
                dict(
                    tariff_id=tariff_id,
                    plan_id=plan,
                    band=band,
                    band_start=clock(start),
                    band_end="24:00" if end == 96 else clock(end),
                    unit_rate=rates[(version * 4 + rate) % len(rates)],
                    standing_charge=Decimal("0.6050") + version,
                    valid_from=valid_from,
                    valid_to=valid_to,
                )
            )
            tariff_id += 1
    return rows


# Few rates, so that bands repeat a rate, rates survive a price change and two bands share one.
RATES = [Decimal("0.0750"), Decimal("0.2650"), Decimal("0.2750"), Decimal("0.3850")]
