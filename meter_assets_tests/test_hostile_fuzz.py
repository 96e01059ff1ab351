"""Valid files of every contract, damaged in one place by a generated mutation (a byte flipped,
text or a bomb of commas, brackets or digits inserted, a stretch cut out, a line broken or
doubled, bytes that are not UTF-8): the day is always curated, the damaged record is read or
quarantined with a reason, and every other record of the file lands as it was written.

The expected readings are the files' own values, written by hand, never the platform's output.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
from decimal import Decimal

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meter_assets.curated.readings import curate_day
from meter_assets.ingest.inventory import inventory, inventory_table
from meter_assets.storage import Lake

DAY = dt.date(2024, 4, 10)  # BST: the local day is 9 April 23:00 to 10 April 23:00 UTC
HOUR = dt.datetime(2024, 4, 10, 10)
RECEIVED = "2024-04-10T12:00:00Z"
GOOD = [1000001, 1000002, 1000003, 1000004]
VICTIM = 1000009  # the damaged record's meter, at 10:15; the good ones are at 10:00
NEM12_GOOD = ["QF00000001", "QF00000002", "QF00000003"]
NEM12_VICTIM = "QF00000009"
NEM12_UPDATED = "20240410200000"  # AEST: 10:00 UTC, before the file lands at noon


def kwh_of(meter: int) -> str:
    return f"0.{meter % 1000:03d}"


def csv_file() -> tuple[str, list[bytes], int]:
    header = b"meter_id,interval_start,kwh,quality,version,meter_clock,received_at"

    def line(meter: int, minute: int, kwh: str, version: int) -> bytes:
        return f"{meter},2024-04-10T10:{minute:02d}:00Z,{kwh},A,{version},{RECEIVED},{RECEIVED}".encode()

    lines = [header, *(line(m, 0, kwh_of(m), 5) for m in GOOD[:2]), line(VICTIM, 15, "0.250", 1)]
    lines += [line(m, 0, kwh_of(m), 5) for m in GOOD[2:]]
    return "alpha-csv", lines, 3


def jsonl_file(v2: bool) -> tuple[str, list[bytes], int]:
    def line(meter: int, minute: int, kwh: str, version: int) -> bytes:
        start = f"2024-04-10T10:{minute:02d}:00Z"
        if v2:
            return (
                f'{{"device":"{meter}","intervalStart":"{start}","energyWh":{int(Decimal(kwh) * 1000)},'
                f'"qual":"measured","revision":{version},"clock":"{RECEIVED}","receivedAt":"{RECEIVED}"}}'
            ).encode()
        return (
            f'{{"meterId":{meter},"start":"{start}","kwh":{kwh},"status":"OK","rev":{version},'
            f'"deviceClock":"{RECEIVED}","headendTime":"{RECEIVED}"}}'
        ).encode()

    lines = [*(line(m, 0, kwh_of(m), 5) for m in GOOD[:2]), line(VICTIM, 15, "0.250", 1)]
    lines += [line(m, 0, kwh_of(m), 5) for m in GOOD[2:]]
    return ("beta-v2" if v2 else "beta-v1"), lines, 2


def nem12_day(nmi: str, kwh: str) -> list[bytes]:
    return [
        f"200,{nmi},E1,1,E1,N1,SERIAL,kWh,15,".encode(),
        ",".join(["300", "20240410", *[kwh] * 96, "A", "", "", NEM12_UPDATED, ""]).encode(),
    ]


def nem12_file() -> tuple[str, list[bytes], int]:
    lines = [b"100,NEM12,202404102000,MDP1,RETAILER1"]
    for n, nmi in enumerate(NEM12_GOOD):
        lines += nem12_day(nmi, f"0.0{n + 1}0")
    lines += nem12_day(NEM12_VICTIM, "0.090") + [b"900"]
    return "nem12", lines, len(lines) - 2  # the victim's day record


CONTRACTS = {
    "alpha-csv-v1": csv_file(),
    "beta-jsonl-v1": jsonl_file(v2=False),
    "beta-jsonl-v2": jsonl_file(v2=True),
    "nem12": nem12_file(),
}

# what a careless writer or an attacker puts into a line
HOSTILE = [
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b'"',
    b",",
    b"\r",
    b"\n",
    b"\r\n",
    b"e",
    b"E9",
    b"-",
    b"1e-400",
    b"{",
    b"[",
    b"\\",
    b"\x1f",
    b",x" * 5_000,
    b"[" * 3_000,
    b"9" * 70_000,
    b"\n" * 20_000,
]
mutations = st.one_of(
    st.tuples(st.just("replace"), st.integers(0, 10_000), st.binary(min_size=1, max_size=3)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.one_of(st.sampled_from(HOSTILE), st.binary(max_size=8))),
    st.tuples(st.just("cut"), st.integers(0, 10_000), st.integers(1, 40)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("double"), st.just(0), st.just(0)),
)


def mutate(line: bytes, mutation: tuple) -> bytes:
    kind, at, arg = mutation
    at = at % (len(line) + 1)
    if kind == "replace":
        return line[:at] + arg + line[at + len(arg) :]
    if kind == "insert":
        return line[:at] + arg + line[at:]
    if kind == "cut":
        return line[:at] + line[at + arg :]
    if kind == "truncate":
        return line[:at]
    return line + b"\n" + line


@pytest.fixture(scope="module")
def meters(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("fuzz") / "meters.parquet")
    ids = [str(m) for m in [*GOOD, VICTIM]] + [f"{nmi}-E1" for nmi in [*NEM12_GOOD, NEM12_VICTIM]]
    duckdb.sql(
        f"COPY (SELECT unnest(?) AS meter_id, 'North' AS region, DATE '2019-01-01' AS installed_on, "
        f"NULL::DATE AS removed_on, 'ordinary' AS load_class, NULL::DATE AS export_from) TO '{path}' (FORMAT parquet)",
        params=[ids],
    )
    return path


def curate(root: str, meters: str, key: str, data: bytes) -> tuple[dict, list[tuple]]:
    """Curate the day from one file; the curated readings by meter and time, and the quarantine."""
    lake = Lake(os.path.join(root, "lake"))
    lake.write_bytes(key, data, landed_at=dt.datetime(2024, 4, 10, 12))
    files = inventory_table(inventory(lake, DAY, threads=1))
    out = os.path.join(root, "out")
    os.makedirs(out)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        result = curate_day(
            con,
            DAY,
            files,
            lake.uri,
            [meters],
            [],
            curated_uri=lambda name: os.path.join(out, f"curated-{name}"),
            quarantine_uri=os.path.join(out, "quarantine.parquet"),
            scratch=out,
            read_bytes=lake.read_bytes,
            export_uri=os.path.join(out, "export.parquet"),
        )
        readings = con.execute(
            f"SELECT meter_id, read_at, kwh, quality_flag FROM read_parquet({result.files!r})"
        ).fetchall()
        quarantined = con.execute(
            f"SELECT scope, reason, record FROM read_parquet('{out}/quarantine.parquet')"
        ).fetchall()
    return {(m, at): (kwh, flag) for m, at, kwh, flag in readings}, quarantined


def expected(contract: str) -> dict[tuple, Decimal]:
    """The good records' readings, as the file writes them."""
    if contract == "nem12":
        # AEST 10 April is 9 April 14:00 to 10 April 14:00 UTC; the local day starts at 23:00
        start = dt.datetime(2024, 4, 9, 23)
        return {
            (f"{nmi}-E1", start + dt.timedelta(minutes=15 * q)): Decimal(f"0.0{n + 1}0")
            for n, nmi in enumerate(NEM12_GOOD)
            for q in range(60)
        }
    return {(str(m), HOUR): Decimal(kwh_of(m)) for m in GOOD}


@pytest.mark.parametrize("contract", list(CONTRACTS))
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=mutations)
def test_one_damaged_record_never_costs_the_day_or_its_neighbours(contract, mutation, meters, tmp_path_factory):
    name, lines, victim = CONTRACTS[contract]
    damaged = [*lines[:victim], mutate(lines[victim], mutation), *lines[victim + 1 :]]
    extension = {"nem12": ".csv", "alpha-csv": ".csv.gz"}.get(name, ".jsonl.gz")
    key = (
        "raw/nem12/agent/damaged.csv"
        if contract == "nem12"
        else f"raw/2024/04/10/10/{name}-g0-2024041010-b1{extension}"
    )
    text = b"\n".join(damaged) + b"\n"
    readings, quarantined = curate(
        str(tmp_path_factory.mktemp("day")), meters, key, text if contract == "nem12" else gzip.compress(text)
    )
    assert all(reason for _, reason, _ in quarantined), "every quarantined row says why"
    if contract == "nem12" and any(scope == "file" for scope, _, _ in quarantined):
        # a damaged record that became a second header or end joins two files: refused whole, by name
        (reason,) = [r for scope, r, _ in quarantined if scope == "file"]
        assert "more than one 100 or 900 record" in reason or "no end of data" in reason, reason
        return
    for reading, kwh in expected(contract).items():
        assert readings.get(reading) == (kwh, "actual"), (reading, readings.get(reading), quarantined)
    if not damaged[victim].strip(b" \r\n"):
        return  # the record was cut to nothing: a blank line holds nothing to lose
    # the damaged record was read (as some reading) or quarantined: never silently lost
    victim_read = any(
        flag == "actual"
        for (meter, _), (_, flag) in readings.items()
        if meter not in {str(m) for m in GOOD} | {f"{nmi}-E1" for nmi in NEM12_GOOD}
    )
    assert victim_read or quarantined, (mutation, quarantined)
