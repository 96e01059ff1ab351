"""The bill assets through Dagster, on a local and an S3 lake: ledger, gate, export, errors."""

import datetime as dt
from decimal import Decimal

import dagster as dg
import pyarrow as pa
import pytest

from meter_assets import postgres
from meter_assets.billing.pricing import UnpricedUsage
from meter_assets.config import settings
from meter_assets.definitions import assets
from meter_assets.resources import PostgresResource
from meter_assets.sql import parquet
from meter_assets.tables import (
    ADJUSTMENTS_EXPORT,
    BILL_LINES_EXPORT,
    BILLS_EXPORT,
    READS_15MIN,
    READS_15MIN_EXPORT,
    READS_DAILY,
)

from .billing_reference import EXPORTED_LINE_COLUMNS, assert_exported_lines_match, reference_bills
from .billing_support import MONTH, month_assignments, month_customers, month_in_lake, month_readings, publish
from .conftest import query, resources_for
from .pricing_support import TAX, TZ, two_plans


@pytest.fixture
def dsn(pg_dsn) -> str:
    """A ledger of the test's own: an export holds every bill of its month."""
    return pg_dsn


def _resources(root: str, dsn: str) -> dict:
    return {**resources_for(root), "postgres": PostgresResource(dsn=dsn)}


def _bills(dsn: str, customers: range) -> list[tuple]:
    with postgres.connect(dsn) as conn:
        return conn.execute(
            "SELECT bill_id, customer_id, supply_days, total_due, status FROM billing.bills "
            "WHERE customer_id = ANY(%s) ORDER BY bill_id",
            [list(customers)],
        ).fetchall()


@pytest.fixture
def ranges_of_three(monkeypatch):
    """The month's bills made and staged three customers at a time."""
    monkeypatch.setenv("METER_BILL_RANGE_CUSTOMERS", "3")
    settings.cache_clear()
    yield
    monkeypatch.undo()
    settings.cache_clear()


def test_month_is_billed_issued_and_exported(lake_root, dsn, ranges_of_three):
    offset = 7_000_000 if lake_root.startswith("s3://") else 6_000_000
    tariffs = two_plans(dt.date(2025, 2, 15), (28, 76), [Decimal("0.2450"), Decimal("0.1200"), Decimal("0.3100")])
    lake = month_in_lake(lake_root, offset, tariffs)
    result = dg.materialize(assets("bills", "issued_bills"), partition_key=MONTH, resources=_resources(lake_root, dsn))
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    (materialization,) = result.asset_materializations_for_node("bills")
    assert materialization.metadata["customers_per_range"].value == 3
    assert materialization.metadata["customers"].value == 4
    bills = _bills(dsn, range(offset, offset + 4))
    # 28 days: 9 for the outgoing tenant, a void day on the 10th, 18 for the incoming one
    assert [(b[1], b[2], b[4]) for b in bills] == [
        (offset, 9, "issued"),
        (offset + 1, 18, "issued"),
        (offset + 2, 28, "issued"),
        (offset + 3, 28, "issued"),
    ]

    exported = query(
        f"SELECT bill_id, customer_id, supply_days, total_due FROM {parquet(lake.files(BILLS_EXPORT, MONTH))} "
        "ORDER BY bill_id",
        lake=lake,
    )
    assert exported == [b[:4] for b in bills]
    assert lake.keys(ADJUSTMENTS_EXPORT, MONTH), "the (empty) adjustments table is published too"
    assert "month=2025-02" in lake.keys(BILLS_EXPORT, MONTH)[0]

    # every exported line, against the slow reference computed from the same rows
    lines = query(
        f"SELECT {EXPORTED_LINE_COLUMNS} FROM {parquet(lake.files(BILL_LINES_EXPORT, MONTH))} "
        "ORDER BY customer_id, line_no",
        lake=lake,
    )
    expected = reference_bills(
        MONTH, TZ, TAX, month_readings().to_pylist(), month_assignments(offset), month_customers(offset), tariffs
    ).bills
    assert_exported_lines_match(lines, expected)
    assert {b[1]: b[3] for b in bills} == {c: bill.charges for c, bill in expected.items()}


def test_unreconciled_month_writes_nothing_and_blocks_issuing(tmp_path, dsn):
    root = str(tmp_path / "lake")
    offset = 8_000_000
    lake = month_in_lake(root, offset, two_plans(dt.date(2025, 2, 15), (28, 76), [Decimal("0.2450")]))
    # reads_daily for the 5th loses a meter: the rollups no longer agree with the readings
    day = "2025-02-05"
    (rows,) = query(f"SELECT count(*) FROM {parquet(lake.files(READS_DAILY, day))}")[0]
    publish(lake, READS_DAILY, day, lake.read_parquet(lake.keys(READS_DAILY, day)).slice(0, rows - 1))

    result = dg.materialize(
        assets("bills", "issued_bills"), partition_key=MONTH, resources=_resources(root, dsn), raise_on_error=False
    )
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.metadata["billed_kwh"] != check.metadata["reads_daily_kwh"]
    # the gate held: no materialization, the step failed, and nothing downstream ran
    assert not result.success
    assert result.asset_materializations_for_node("bills") == []
    assert result.asset_materializations_for_node("issued_bills") == []
    assert _bills(dsn, range(offset, offset + 4)) == []


def test_export_the_rollups_do_not_hold_fails_the_gate(tmp_path, dsn):
    """A held meter's export register sent 1.250 kWh on the 5th that reads_daily never rolled up:
    the export kWh no longer reconcile, and nothing is written."""
    root = str(tmp_path / "lake")
    offset = 8_100_000
    lake = month_in_lake(root, offset, two_plans(dt.date(2025, 2, 15), (28, 76), [Decimal("0.2450")]))
    day = "2025-02-05"
    (meter, read_at), *_ = query(
        f"SELECT meter_id, read_at FROM {parquet(lake.files(READS_15MIN, day))} WHERE kwh IS NOT NULL ORDER BY ALL"
    )
    export = pa.table(
        {
            "meter_id": [meter],
            "read_at": pa.array([read_at], pa.timestamp("us")),
            "kwh": pa.array([Decimal("1.250")], pa.decimal128(12, 3)),
            "quality_flag": ["actual"],
            "interval_minutes": pa.array([15], pa.int16()),
        }
    )
    publish(lake, READS_15MIN_EXPORT, day, export)

    result = dg.materialize(
        assets("bills", "issued_bills"), partition_key=MONTH, resources=_resources(root, dsn), raise_on_error=False
    )
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    # the import still agrees; the export is uncredited (the plans have no export rows) and not rolled up
    figure = {name: Decimal(value.value) for name, value in check.metadata.items()}
    assert figure["billed_kwh"] + figure["vacant_kwh"] == figure["reads_daily_kwh"]
    assert (figure["uncredited_export_kwh"], figure["reads_daily_export_kwh"]) == (Decimal("1.250"), 0)
    assert not result.success and _bills(dsn, range(offset, offset + 4)) == []


def test_usage_no_tariff_prices_is_a_clear_error(tmp_path, dsn):
    root = str(tmp_path / "lake")
    tariffs = two_plans(dt.date(2025, 2, 15), (28, 76), [Decimal("0.2450")])
    # the time-of-use plan loses its peak band from the 15th
    tariffs = [t for t in tariffs if not (t["plan_id"] == "TOU" and t["band"] == "peak" and t["valid_to"] is None)]
    month_in_lake(root, 9_000_000, tariffs)
    with pytest.raises(
        UnpricedUsage,
        match=r"2025-02: 1 supplied customer\(s\) have readings that no tariff row "
        r"prices.*customer 9000002 from 2025-02-15",
    ):
        dg.materialize(
            assets("bills", "issued_bills"), partition_key=MONTH, resources=_resources(root, dsn), selection=["bills"]
        )
    assert _bills(dsn, range(9_000_000, 9_000_004)) == []


def test_a_bill_cites_the_readings_version_it_was_computed_from(tmp_path, dsn):
    root = str(tmp_path / "lake")
    offset = 8_500_000
    lake = month_in_lake(root, offset, two_plans(dt.date(2025, 2, 15), (28, 76), [Decimal("0.2450")]))
    customer = offset + 2  # meter 2, the whole month

    def billed() -> tuple[int, Decimal]:
        with postgres.connect(dsn) as conn:
            return conn.execute(
                "SELECT reads_version, measured_kwh + estimated_kwh FROM billing.bills WHERE customer_id = %s",
                [customer],
            ).fetchone()

    def meter_kwh(version: int) -> Decimal:
        # read back with deltalake itself, as of the version the bill names
        from deltalake import DeltaTable

        table = DeltaTable(lake.table_uri(READS_15MIN), version=version).to_pyarrow_table(
            filters=[("meter_id", "=", "2")]
        )
        return sum((v for v in table.column("kwh").to_pylist() if v is not None), Decimal("0.000"))

    dg.materialize(
        assets("bills", "issued_bills"), partition_key=MONTH, resources=_resources(root, dsn), selection=["bills"]
    )
    first_version, first_kwh = billed()
    assert first_version == lake.delta(READS_15MIN).version()

    # a corrected day: meter 2 used 1 kWh more in one quarter hour of the 20th
    day = "2025-02-20"
    corrected = lake.read_parquet(lake.keys(READS_15MIN, day))
    kwh = corrected.column("kwh").to_pylist()
    row = corrected.column("meter_id").to_pylist().index("2")
    kwh[row] += Decimal("1.000")
    publish(lake, READS_15MIN, day, corrected.set_column(2, "kwh", pa.array(kwh, pa.decimal128(12, 3))))
    daily = lake.read_parquet(lake.keys(READS_DAILY, day)).to_pylist()
    for r in daily:
        r["kwh"] += Decimal("1.000") if r["meter_id"] == "2" else 0
    publish(lake, READS_DAILY, day, pa.Table.from_pylist(daily, lake.read_parquet(lake.keys(READS_DAILY, day)).schema))

    dg.materialize(
        assets("bills", "issued_bills"), partition_key=MONTH, resources=_resources(root, dsn), selection=["bills"]
    )
    second_version, second_kwh = billed()
    assert second_version > first_version and second_kwh == first_kwh + 1
    # each version the ledger names still reads back to exactly what was billed from it
    assert meter_kwh(first_version) == first_kwh
    assert meter_kwh(second_version) == second_kwh
