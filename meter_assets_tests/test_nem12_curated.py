"""NEM12 files delivered under `raw/nem12/` are curated with the day they carry: in UTC, on
the quarter-hour grid, every refused record quarantined with its file and line, the rest of
the day kept."""

from __future__ import annotations

import datetime as dt
import gzip
from decimal import Decimal

import dagster as dg
import pytest

from meter_assets.definitions import daily_assets
from meter_assets.ingest.assets import read_inventory
from meter_assets.jobs import DAILY_CHAIN
from meter_assets.reference.assets import reference_assets
from meter_assets.resources import CheckThresholds
from meter_assets.simulator.cli import generate
from meter_assets.simulator.headend import FaultRates
from meter_assets.storage import Lake
from meter_assets.tables import QUARANTINE, READS_15MIN, READS_15MIN_EXPORT, REPORT_TABLES

from .conftest import query, resources_for, table_files

CLEAN = FaultRates(
    late_file=0, resend=0, correction=0, estimated=0, offline=0, dead=0, drift=0, malformed=0, truncated_files=0
)
# one NEM12 day in AEST: 13 May 14:00 UTC to 14 May 14:00 UTC, so two London days (BST)
NEM12_DATE = dt.date(2024, 5, 14)
DAYS = [dt.date(2024, 5, 13), dt.date(2024, 5, 14)]
KNOWN = "QB01000001"
UNKNOWN = "QB09999999"
INSTALLED = "QB01000002"
REMOVED = "QB01000003"
HALF_HOURS = [Decimal(100 + 7 * i) / 1000 for i in range(48)]  # kWh per half hour
QUARTERS = [Decimal(20 + (i % 9)) / 1000 for i in range(96)]


def record_300(date: dt.date, values: list[Decimal], quality: str = "A") -> str:
    return ",".join(["300", f"{date:%Y%m%d}", *(f"{v}" for v in values), quality, "", "", "20240515020000", ""])


def nem12_text() -> str:
    return "\n".join(
        [
            "100,NEM12,202405150300,MDP1,RETAILER1",
            f"200,{KNOWN},E1,1,E1,N1,SERIAL1,kWh,30,",
            record_300(NEM12_DATE, HALF_HOURS),
            f"200,{KNOWN},E2,2,E2,N2,SERIAL1,Wh,15,",
            record_300(NEM12_DATE, [v * 1000 for v in QUARTERS]),
            f"200,{UNKNOWN},E1,1,E1,N1,SERIAL2,kWh,30,",
            record_300(NEM12_DATE, HALF_HOURS),
            f"200,{KNOWN},B1,3,B1,N1,SERIAL1,kWh,15,",
            record_300(NEM12_DATE, ["x", *QUARTERS[1:]]),
            "900",
        ]
    )


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("nem12") / "lake")
    lake = Lake(root)
    generate(lake, meters=20, start=DAYS[0], days=2, seed=5, rates=CLEAN, log=lambda *_: None)
    meters = lake.read_bytes("reference/meters.csv").decode()
    # (an export register listed as a meter, as exports before the meters contract's version 2 did)
    extra = "".join(f"{KNOWN}-{suffix},North,99,nem12,2019-01-01,,ordinary,\n" for suffix in ("E1", "E2", "B1"))
    # registers that deliver nothing and have no history: one installed on the first day (local
    # midnight is 23:00 UTC the day before in BST), one removed on the second
    extra += f"{INSTALLED}-E1,North,99,nem12,{DAYS[0]},,ordinary,\n"
    extra += f"{REMOVED}-E1,North,99,nem12,2019-01-01,{DAYS[1]},ordinary,\n"
    lake.write_bytes("reference/meters.csv", (meters + extra).encode())
    lake.write_bytes("raw/nem12/agent-one/NEM12#0001#MDP1#RETAILER1.csv.gz", gzip.compress(nem12_text().encode()))
    # a file with no NEM12 day is reported on the day it landed
    lake.write_bytes("raw/nem12/agent-one/not-nem12.csv", b"meter,kwh\n1,2\n", landed_at=dt.datetime(2024, 5, 14, 9))
    dg.materialize(reference_assets, resources=resources_for(root))
    # a small day: the unknown register's 96 quarantined quarter hours are several per cent of it
    resources = {**resources_for(root), "thresholds": CheckThresholds(quarantine_max_rate=0.2)}
    for day in DAYS:
        result = dg.materialize(
            daily_assets(),
            partition_key=day.isoformat(),
            resources=resources,
            # the daily chain but the usage page's table (PostgreSQL) and the forecast's load
            selection=[k for k in DAILY_CHAIN if k not in ("usage_serving", "portfolio_load")],
        )
        assert result.success
    return root


def readings(root: str, meter: str, table=READS_15MIN) -> list[tuple]:
    return [
        row
        for day in DAYS
        for row in query(
            f"SELECT read_at, kwh, quality_flag, interval_minutes, source_file FROM read_parquet("
            f"{table_files(root, table, day)}) WHERE meter_id = ? ORDER BY read_at",
            [meter],
        )
    ]


def test_a_nem12_day_lands_in_utc_on_the_two_london_days_it_covers(curated):
    inventories = {day: read_inventory(Lake(curated), day.isoformat()) for day in DAYS}
    for table in inventories.values():
        nem12_rows = [r for r in table.to_pylist() if r["file_key"].startswith("raw/nem12/agent-one/NEM12")]
        assert [(r["contract"], r["status"]) for r in nem12_rows] == [("nem12", "ok")]
    rows = readings(curated, f"{KNOWN}-E2")
    start = dt.datetime(2024, 5, 13, 14)
    # before 13 May 14:00 UTC no file carries the register (the platform estimates it), then the
    # file's 96 quarter hours
    delivered = [r for r in rows if r[2] == "actual"]
    assert len(delivered) == 96 and delivered[0][0] == start
    assert [(r[0], r[1]) for r in delivered[:96]] == [
        (start + dt.timedelta(minutes=15 * q), kwh) for q, kwh in enumerate(QUARTERS)
    ]
    assert {r[3] for r in delivered[:96]} == {15}
    assert {r[4] for r in delivered[:96]} == {"raw/nem12/agent-one/NEM12#0001#MDP1#RETAILER1.csv.gz"}


def test_half_hours_are_split_into_quarter_hours_that_keep_their_energy(curated):
    rows = [r for r in readings(curated, f"{KNOWN}-E1") if r[0] >= dt.datetime(2024, 5, 13, 14)]
    actual = [r for r in rows if r[2] == "actual"]
    assert len(actual) == 96 and {r[3] for r in actual} == {30}
    for i, kwh in enumerate(HALF_HOURS):
        assert actual[2 * i][1] + actual[2 * i + 1][1] == kwh
    assert sum(r[1] for r in actual) == sum(HALF_HOURS)


def test_refused_records_and_unknown_meters_are_quarantined_with_file_and_line(curated):
    found = set()
    for day in DAYS:
        found |= set(
            query(f"SELECT source_file, scope, line, reason FROM read_parquet({table_files(curated, QUARANTINE, day)})")
        )
    key = "raw/nem12/agent-one/NEM12#0001#MDP1#RETAILER1.csv.gz"
    assert (key, "row", 9, "IntervalValue1: not a number: x") in found
    assert (key, "row", 7, f"meter_id: unknown meter {UNKNOWN}-E1") in found
    assert (
        "raw/nem12/agent-one/not-nem12.csv",
        "file",
        None,
        "no NEM12 header: the first record is not 100,NEM12: b'meter,kwh\\n1,2\\n'",
    ) in found
    # the export register's other quarter hours are kept: one refused value loses nothing else;
    # B1 is the export of the meter whose import register is E1
    export = readings(curated, f"{KNOWN}-E1", READS_15MIN_EXPORT)
    assert len(export) == 95 and {r[2] for r in export} == {"actual"}
    assert [(r[0], r[1]) for r in export] == [
        (dt.datetime(2024, 5, 13, 14) + dt.timedelta(minutes=15 * q), kwh) for q, kwh in enumerate(QUARTERS) if q > 0
    ]


def test_an_export_register_is_never_consumption(curated):
    """Not read into reads_15min, and not expected there: no missing rows, no estimates, no bill."""
    assert readings(curated, f"{KNOWN}-B1") == []


def test_the_report_counts_the_quarter_hours_halved_from_half_hours(curated):
    counted = []
    for day in DAYS:
        (summary,) = query(
            f"SELECT derived_intervals FROM read_parquet({table_files(curated, REPORT_TABLES['summary'], day)})"
        )
        (halved,) = query(
            f"SELECT count(*) FROM read_parquet({table_files(curated, READS_15MIN, day)}) WHERE interval_minutes = 30"
        )
        assert summary == halved
        counted.append(summary[0])
    # London keeps BST: the AEST day is 36 quarter hours of the 13th and 60 of the 14th
    assert counted == [36, 60]


def test_registers_that_deliver_nothing_and_have_no_history_hold_back_no_day(curated):
    """Installed on the first day of the market, or removed the next, with nothing delivered and no
    history of their own: every quarter hour of each local day the register was installed is
    there, the platform's estimate from its class or missing (the fixture's days passed every
    blocking check), and none of the day it was removed."""
    installed = readings(curated, f"{INSTALLED}-E1")
    assert [r[0] for r in installed] == [
        dt.datetime(2024, 5, 12, 23) + dt.timedelta(minutes=15 * q) for q in range(2 * 96)
    ]
    assert {r[2] for r in installed} <= {"estimated", "missing"} and {r[4] for r in installed} == {None}
    removed = readings(curated, f"{REMOVED}-E1")
    assert [r[0] for r in removed] == [dt.datetime(2024, 5, 12, 23) + dt.timedelta(minutes=15 * q) for q in range(96)]
