"""A month of readings, reference data and tariffs published to a lake, for the bill and
serving assets' tests: three meters over February 2025, one changing hands on the 10th. And what
the independent bill reference reads from any lake: the retailer's exports and the published readings."""

import csv
import datetime as dt
import io
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from meter_assets.market_calendar import month_days
from meter_assets.storage import Lake
from meter_assets.tables import DIMENSIONS, READS_15MIN, READS_15MIN_EXPORT, READS_DAILY, LakeTable

from .pricing_support import FIXED_IMPORT, utc_intervals

MONTH = "2025-02"


def publish(lake: Lake, table: LakeTable, partition: str | None, rows: pa.Table) -> None:
    build = lake.build(table, partition)
    build.write_parquet("part-0000.parquet", rows)
    lake.publish(build)


def month_customers(first: int) -> list[dict]:
    return [dict(customer_id=first + n, plan_id=plan) for n, plan in enumerate(("TOU", "FLEX", "TOU", "FLEX"))]


def month_assignments(first: int) -> list[dict]:
    return [
        dict(meter_id="1", customer_id=first, valid_from=dt.date(2020, 1, 1), valid_to=dt.date(2025, 2, 10)),
        dict(meter_id="1", customer_id=first + 1, valid_from=dt.date(2025, 2, 11), valid_to=None),
        dict(meter_id="2", customer_id=first + 2, valid_from=dt.date(2020, 1, 1), valid_to=None),
        dict(meter_id="3", customer_id=first + 3, valid_from=dt.date(2020, 1, 1), valid_to=None),
    ]


def month_readings() -> pa.Table:
    return pa.Table.from_pylist(
        [
            dict(
                meter_id=str(m),
                read_at=at,
                kwh=Decimal(100 + (i * 37 + m * 11) % 900) / 1000,
                quality_flag="estimated" if (i + m) % 97 == 0 else "actual",
                interval_minutes=15,
            )
            for m in (1, 2, 3)
            for i, at in enumerate(utc_intervals(MONTH))
        ],
        schema=pa.schema(
            [
                ("meter_id", pa.string()),
                ("read_at", pa.timestamp("us")),
                ("kwh", pa.decimal128(12, 3)),
                ("quality_flag", pa.string()),
                ("interval_minutes", pa.int16()),
            ]
        ),
    )


def month_in_lake(root: str, customer_offset: int, tariffs: list[dict]) -> Lake:
    """Three meters over February 2025: one changes hands on the 10th, with a void day."""
    lake = Lake(root)
    first = customer_offset
    publish(lake, DIMENSIONS["customers"], None, pa.Table.from_pylist(month_customers(first)))
    publish(lake, DIMENSIONS["meter_assignments"], None, pa.Table.from_pylist(month_assignments(first)))
    publish(lake, DIMENSIONS["tariffs"], None, pa.Table.from_pylist([{**FIXED_IMPORT, **t} for t in tariffs]))
    reads = month_readings()
    # in February London keeps UTC, so the local day is the UTC date
    local_date = pc.cast(reads.column("read_at"), pa.date32())
    for day in month_days(MONTH):
        mask = pc.equal(local_date, pa.scalar(dt.date.fromisoformat(day)))
        day_reads = reads.filter(mask)
        publish(lake, READS_15MIN, day, day_reads)
        daily = day_reads.group_by("meter_id").aggregate([("kwh", "sum")]).rename_columns(["meter_id", "kwh"])
        daily = daily.append_column("missing_intervals", pa.array([0] * daily.num_rows, pa.int16()))
        publish(lake, READS_DAILY, day, daily)
    return lake


def reference_exports(lake: Lake) -> tuple[list[dict], list[dict], list[dict]]:
    """Assignments, customers and tariffs straight from the retailer's CSV exports."""

    def rows(name: str) -> list[dict]:
        return list(csv.DictReader(io.StringIO(lake.read_bytes(f"reference/{name}.csv").decode())))

    def date(value: str) -> dt.date | None:
        return dt.date.fromisoformat(value) if value else None

    assignments = [
        dict(
            meter_id=r["meter_id"],
            customer_id=int(r["customer_id"]),
            valid_from=date(r["valid_from"]),
            valid_to=date(r["valid_to"]),
        )
        for r in rows("meter_assignments")
    ]
    customers = [dict(customer_id=int(r["customer_id"]), plan_id=r["plan_id"]) for r in rows("customers")]

    def number(value: str | None) -> Decimal | None:
        return Decimal(value) if value else None

    # version 1 of the contract (no direction or pricing) is import at fixed rates
    tariffs = [
        dict(
            plan_id=r["plan_id"],
            direction=r.get("direction", "import"),
            band=r["band"],
            band_start=r["band_start"],
            band_end=r["band_end"],
            pricing=r.get("pricing", "fixed"),
            unit_rate=number(r["unit_rate"]),
            price_multiplier=number(r.get("price_multiplier")),
            price_adder=number(r.get("price_adder")),
            price_cap=number(r.get("price_cap")),
            standing_charge=number(r["standing_charge"]),
            valid_from=date(r["valid_from"]),
            valid_to=date(r["valid_to"]),
        )
        for r in rows("tariffs")
    ]
    return assignments, customers, tariffs


def reference_plans(lake: Lake) -> list[dict]:
    """The customers' plan history straight from the retailer's export."""
    rows = csv.DictReader(io.StringIO(lake.read_bytes("reference/customer_plans.csv").decode()))
    return [
        dict(
            customer_id=int(r["customer_id"]),
            plan_id=r["plan_id"],
            valid_from=dt.date.fromisoformat(r["valid_from"]),
            valid_to=dt.date.fromisoformat(r["valid_to"]) if r["valid_to"] else None,
        )
        for r in rows
    ]


def reference_prices(lake: Lake) -> list[dict]:
    """The day-ahead prices straight from the market's export: UTC period start and price per MWh."""
    rows = csv.DictReader(io.StringIO(lake.read_bytes("reference/day_ahead_prices.csv").decode()))
    return [
        dict(period_start=dt.datetime.fromisoformat(r["period_start"]), price_per_mwh=Decimal(r["price_per_mwh"]))
        for r in rows
    ]


def published_exports(lake: Lake, month: str) -> list[dict]:
    """Every curated export reading of the month, as published."""
    readings = []
    for day in month_days(month):
        for uri in lake.files(READS_15MIN_EXPORT, day):
            table = pq.read_table(uri, columns=["meter_id", "read_at", "kwh", "quality_flag"])
            readings.extend(table.to_pylist())
    return readings


def published_readings(lake: Lake, month: str) -> list[dict]:
    """Every curated reading of the month, as published."""
    readings = []
    for day in month_days(month):
        for uri in lake.files(READS_15MIN, day):
            table = pq.read_table(uri, columns=["meter_id", "read_at", "kwh", "quality_flag", "interval_minutes"])
            readings.extend(table.to_pylist())
    return readings
