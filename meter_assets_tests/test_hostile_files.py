"""Raw files as a careless or hostile head-end sends them: each is quarantined with its reason,
loses nothing else, and never fails the day.

Every row file carries one hostile row and one good neighbour: a version-3 correction of a
reading with a value of its own, which the curated day must hold. Expected values are what
the files say and the simulator's ground truth, never the platform's output.
"""

import datetime as dt
import gzip
import io
import shutil
import struct
import zipfile
import zlib
from decimal import Decimal

import pytest

from meter_assets.simulator.cli import release_late
from meter_assets.storage import Lake
from meter_assets.tables import QUARANTINE, RAW_METER_FILES, READS_15MIN, READS_15MIN_EXPORT, REPORT_TABLES

from .conftest import materialize_days, query, table_files

DAY = dt.date(2024, 4, 1)
HOUR = dt.datetime(2024, 4, 1, 10)
HEADER = "meter_id,interval_start,kwh,quality,version,meter_clock,received_at\n"
RECEIVED = "2024-04-01T12:00:00Z"
FIRST_METER = 1000001


def row(
    meter: int | str,
    minute: int,
    kwh: str = "0.500",
    version: str = "1",
    meter_clock: str = RECEIVED,
    received: str = RECEIVED,
) -> str:
    return f"{meter},2024-04-01T10:{minute:02d}:00Z,{kwh},A,{version},{meter_clock},{received}\n"


# case -> (hostile row, reason it is quarantined with); each case's neighbour is meter
# FIRST_METER + 5 * n at 10:00 and the hostile row names FIRST_METER + 5 * n + 1 at 10:15
# unless it carries another meter id (all in the first vendor's groups, below the NEM12 agent's)
NOT_ALPHA_ID = "meter_id: not a meter id of the alpha head-end: "
HOSTILE_ROWS = {
    "negative version": (lambda m: row(m, 15, version="-5"), "version: not a whole number from 0 to 32767: -5"),
    "fractional version": (lambda m: row(m, 15, version="1.6"), "version: not a whole number from 0 to 32767: 1.6"),
    "version with an exponent": (lambda m: row(m, 15, version="1e1"), "not a whole number from 0 to 32767: 1e1"),
    "version beyond SMALLINT": (lambda m: row(m, 15, version="99999"), "not a whole number from 0 to 32767: 99999"),
    "fractional meter id": (
        lambda m: row("1000090.5", 15),
        NOT_ALPHA_ID + "1000090.5",
    ),
    "hexadecimal meter id": (lambda m: row("0x0F42A5", 15), NOT_ALPHA_ID + "0x0F42A5"),
    "meter id with a sign": (lambda m: row(f"+{m}", 15), NOT_ALPHA_ID + "+10000"),
    # ids are text: "01000010" would be another meter than 1000010, so the vendor's form is enforced
    "meter id with a leading zero": (
        lambda m: row(f"0{m}", 15),
        NOT_ALPHA_ID + "01",
    ),
    "meter id with a space": (lambda m: row(f" {m}", 15), NOT_ALPHA_ID + " 1"),
    "meter id in Arabic digits": (
        lambda m: row("\u0661\u0660\u0660\u0660\u0660\u0669\u0660", 15),
        NOT_ALPHA_ID,
    ),
    "energy with an exponent": (lambda m: row(m, 15, kwh="1e-1"), "energy: not a number: 1e-1"),
    # fits the reader's number but not a reading's column: once a failed cast that lost its file
    "energy too large for a reading": (
        lambda m: row(m, 15, kwh="99999999999999"),
        "energy: 99999999999999 is too large for a meter reading",
    ),
    "received in 1960": (
        lambda m: row(m, 15, meter_clock="1960-01-01T00:00:00Z", received="1960-01-01T00:00:00Z"),
        "received_at: 1960-01-01 00:00:00 is before the interval",
    ),
    "meter clock in 1960": (
        lambda m: row(m, 15, meter_clock="1960-01-01T00:00:00Z"),
        "meter_clock: 1960-01-01 00:00:00 is more than 86400 s from the receive time",
    ),
    "meter clock in 9999": (lambda m: row(m, 15, meter_clock="9999-12-31T23:59:59Z"), "is more than 86400 s"),
    "received in 9999": (
        lambda m: row(m, 15, version="1", meter_clock="9999-12-31T23:59:59Z", received="9999-12-31T23:59:59Z"),
        "is after the file landed",
    ),
    "received before the interval ended": (
        lambda m: row(m, 15, meter_clock="2024-04-01T10:20:00Z", received="2024-04-01T10:20:00Z"),
        "received_at: 2024-04-01 10:20:00 is before the interval",
    ),
    "meter below the first known": (lambda m: row(FIRST_METER - 1, 15), f"meter_id: unknown meter {FIRST_METER - 1}"),
    "meter beyond the last known": (lambda m: row(2_000_000_000, 15), "meter_id: unknown meter 2000000000"),
    "meter id that extends a known one": (lambda m: row(f"{m}0", 15), "meter_id: unknown meter 1000"),
}


def hostile_key(n: int) -> str:
    return f"raw/2024/04/01/10/alpha-h{n:03d}-2024040110-b1.csv.gz"


def neighbour(n: int) -> tuple[int, str]:
    # a plausible correction (well within a validation rule), unique to the row
    return FIRST_METER + 5 * n, f"{0.5 + n / 1000:.3f}"


COPIES = 40_000
COPIED_METER = FIRST_METER + 7


@pytest.fixture(scope="module")
def hostile(generated, tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("hostile") / "lake")
    shutil.copytree(generated, root)
    lake = Lake(root)
    release_late(lake, dt.date(2099, 1, 1))
    for n, (make, _) in enumerate(HOSTILE_ROWS.values()):
        meter, kwh = neighbour(n)
        text = HEADER + make(meter + 1) + row(meter, 0, kwh=kwh, version="3")
        lake.write_bytes(hostile_key(n), gzip.compress(text.encode()))
    # one reading forty thousand times (the copies counter is a SMALLINT)
    lake.write_bytes(
        "raw/2024/04/01/10/alpha-h900-2024040110-b1.csv.gz",
        gzip.compress((HEADER + row(COPIED_METER, 30, kwh="0.821", version="3") * COPIES).encode()),
    )
    # an over-long line in the middle, and a 50 MB last line without a newline, each between
    # readings that must be kept
    lake.write_bytes(
        LONG_MIDDLE,
        gzip.compress(
            (
                HEADER
                + row(FIRST_METER + 3, 45, kwh="0.901", version="3")
                + "x" * (3 << 20)
                + "\n"
                + row(FIRST_METER + 4, 45, kwh="0.911", version="3")
            ).encode()
        ),
    )
    lake.write_bytes(
        LONG_LAST,
        gzip.compress(
            (HEADER + row(FIRST_METER + 5, 45, kwh="0.921", version="3") + "9" * (50 << 20)).encode(), compresslevel=1
        ),
    )
    lake.write_bytes(BOMB, gzip_bomb(1 << 30))
    for key in STRAYS:
        lake.write_bytes(key, gzip.compress((HEADER + row(FIRST_METER + 6, 45, kwh="0.931", version="3")).encode()))
    write_vendor_files(lake)
    write_nem12_files(lake)
    results = materialize_days(root, [DAY])
    assert all(r.success for r in results), "no file fails the day"
    return root


LONG_MIDDLE = "raw/2024/04/01/10/alpha-h901-2024040110-b1.csv.gz"
LONG_LAST = "raw/2024/04/01/10/alpha-h902-2024040110-b1.csv.gz"
BOMB = "raw/2024/04/01/10/alpha-h903-2024040110-b1.csv.gz"
# keys outside raw/YYYY/MM/DD/HH/<file>: the hour of their readings is unknown
STRAYS = (
    "raw/2024/04/01/alpha-h904-2024040110-b1.csv.gz",
    "raw/2024/4/1/10/alpha-h905-2024040110-b1.csv.gz",
    "raw/2024/04/01/10/resent/alpha-h906-2024040110-b1.csv.gz",
    "raw/2024/04/01/24/alpha-h907-2024040110-b1.csv.gz",
)


def gzip_bomb(size: int) -> bytes:
    """A valid header line, then `size` bytes of zeros: about a thousandth of that compressed."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(HEADER.encode())]
    zeros = bytes(1 << 20)
    parts += [packer.compress(zeros) for _ in range(size >> 20)]
    return b"".join(parts + [packer.flush()])


def curated_reading(root: str, meter: int, read_at: dt.datetime) -> tuple:
    (found,) = query(
        f"SELECT kwh, version, source_file, copies FROM read_parquet({table_files(root, READS_15MIN, DAY)}) "
        "WHERE meter_id = ? AND read_at = ?",
        [str(meter), read_at],
    )
    return found


def truth(generated: str, meter: int, read_at: dt.datetime):
    (found,) = query(
        f"SELECT kwh FROM read_parquet('{generated}/simulator/truth/*/reads.parquet') "
        "WHERE meter_id = ? AND read_at = ?",
        [str(meter), read_at],
    )
    return found[0]


@pytest.mark.parametrize("case", list(HOSTILE_ROWS))
def test_a_hostile_row_is_quarantined_with_its_reason_and_its_neighbour_kept(hostile, generated, case):
    n = list(HOSTILE_ROWS).index(case)
    reason = HOSTILE_ROWS[case][1]
    quarantined = query(
        f"SELECT scope, reason, record FROM read_parquet({table_files(hostile, QUARANTINE, DAY)}) "
        "WHERE source_file = ?",
        [hostile_key(n)],
    )
    assert len(quarantined) == 1 and quarantined[0][0] == "row" and reason in quarantined[0][1], quarantined
    meter, kwh = neighbour(n)
    kwh_curated, version, source, _ = curated_reading(hostile, meter, HOUR)
    assert (kwh_curated, version, source) == (Decimal(kwh), 3, hostile_key(n)), "the neighbour is kept, and wins"
    # the reading the hostile row named (or would have been read as) is untouched
    for victim in (meter + 1, 1000090, 1000091, 1000101):
        at = HOUR + dt.timedelta(minutes=15)
        kwh_curated, version, source, _ = curated_reading(hostile, victim, at)
        assert source != hostile_key(n) and kwh_curated == truth(generated, victim, at)


def test_forty_thousand_copies_of_a_reading_are_one_reading(hostile):
    kwh, version, source, copies = curated_reading(hostile, COPIED_METER, HOUR + dt.timedelta(minutes=30))
    assert (str(kwh), version, source) == ("0.821", 3, "raw/2024/04/01/10/alpha-h900-2024040110-b1.csv.gz")
    assert copies == 32_767, "counted up to the column's limit"


def quarantine_of(root: str, key: str) -> list[tuple]:
    return query(
        f"SELECT scope, reason FROM read_parquet({table_files(root, QUARANTINE, DAY)}) "
        "WHERE source_file = ? ORDER BY ALL",
        [key],
    )


def test_over_long_lines_are_quarantined_and_their_neighbours_kept(hostile):
    at = HOUR + dt.timedelta(minutes=45)
    middle = quarantine_of(hostile, LONG_MIDDLE)
    assert middle and {scope for scope, _ in middle} == {"row"}
    assert any("Maximum line size of 2000000 bytes exceeded" in reason for _, reason in middle)
    assert [curated_reading(hostile, FIRST_METER + m, at)[:3] for m in (3, 4)] == [
        (Decimal("0.901"), 3, LONG_MIDDLE),
        (Decimal("0.911"), 3, LONG_MIDDLE),
    ]

    assert quarantine_of(hostile, LONG_LAST) == [
        ("row", "a line of 52428800 bytes: more than the 2000000 a line may have")
    ]
    assert curated_reading(hostile, FIRST_METER + 5, at)[:3] == (Decimal("0.921"), 3, LONG_LAST)


def test_a_gzip_bomb_is_refused_whole_without_being_inflated(hostile):
    assert len(gzip_bomb(1 << 30)) < 2 << 20, "about 1 MB that inflates to 1 GiB"
    assert quarantine_of(hostile, BOMB) == [
        (
            "file",
            f"decompresses to more than 256 MiB (METER_MAX_RAW_FILE_MB) from {len(gzip_bomb(1 << 30))} bytes: not read",
        )
    ]
    (status,) = query(
        f"SELECT status FROM read_parquet({table_files(hostile, RAW_METER_FILES, DAY)}) WHERE file_key = ?", [BOMB]
    )[0]
    assert status == "unreadable"


def test_keys_outside_the_raw_layout_are_reported_as_unrecognised_and_not_read(hostile):
    from meter_assets.ingest.arrivals import partition_of

    inventory = query(
        f"SELECT file_key, status, hour FROM read_parquet({table_files(hostile, RAW_METER_FILES, DAY)}) "
        "WHERE status = 'unrecognised_key' ORDER BY 1"
    )
    assert inventory == [(key, "unrecognised_key", None) for key in sorted(STRAYS)]
    for key in STRAYS:
        assert quarantine_of(hostile, key) == [
            ("file", "unrecognised key: not raw/YYYY/MM/DD/HH/<file>, so the hour of its readings is unknown; not read")
        ]
        stray = next(o for o in Lake(hostile).list(key.rsplit("/", 1)[0]) if o.key == key)
        assert partition_of(stray) == DAY, "a stray key's arrival rebuilds the day that reports it"
    assert curated_reading(hostile, FIRST_METER + 6, HOUR + dt.timedelta(minutes=45))[2] not in STRAYS
    report = Lake(hostile).files(REPORT_TABLES["quarantine_reasons"], DAY.isoformat())
    reasons = query(f"SELECT scope, reason, rows FROM read_parquet({report})")
    assert (
        "file",
        "unrecognised key: not raw/YYYY/MM/DD/HH/<file>, so the hour of its readings is unknown; not read",
        len(STRAYS),
    ) in reasons


# Files as careless vendors write them, and as an attacker would: each lands beside good rows
# (meter, kwh) that must be curated from it, version 3 so that they win over the simulator's.
SPARE = range(FIRST_METER + 125, FIRST_METER + 150)  # the first vendor's meters at :30, by no other case
AT = HOUR + dt.timedelta(minutes=30)


def jsonl_row(meter: int, kwh: str, version: str = "3", minute: int = 30) -> str:
    return (
        f'{{"meterId":{meter},"start":"2024-04-01T10:{minute:02d}:00Z","kwh":{kwh},"status":"OK","rev":{version},'
        f'"deviceClock":"{RECEIVED}","headendTime":"{RECEIVED}"}}\n'
    )


def vendor_files() -> dict[str, tuple[bytes, list[tuple[int, str]], list[str]]]:
    """key -> (file bytes, the good rows it holds, the reasons of the rows it must quarantine)."""
    m = iter(SPARE)
    files = {}

    def good(n: int = 2) -> list[tuple[int, str]]:
        return [(meter, f"0.{meter % 1000:03d}") for meter in (next(m) for _ in range(n))]

    def csv_rows(rows):
        return [row(meter, 30, kwh=kwh, version="3") for meter, kwh in rows]

    rows = good()
    files["bom"] = ("\ufeff" + HEADER + "".join(csv_rows(rows)), rows, [])
    rows = good(3)
    mixed = [line.rstrip("\n") for line in [HEADER, *csv_rows(rows)]]
    files["mixed line endings"] = (mixed[0] + "\r\n" + mixed[1] + "\n" + mixed[2] + "\r\n" + mixed[3] + "\n", rows, [])
    rows = good(3)
    quote = f'{FIRST_METER},"2024-04-01T10:30:00Z,0.5,A,3,{RECEIVED},{RECEIVED}\n'
    files["unterminated quote"] = (
        HEADER + csv_rows(rows)[0] + quote + "".join(csv_rows(rows)[1:]),
        rows,
        ['interval_start: not an ISO 8601 UTC time: "2024-04-01T10:30:00Z'],
    )
    rows = good()
    files["5 million blank lines"] = (HEADER + csv_rows(rows)[0] + "\n" * 5_000_000 + csv_rows(rows)[1], rows, [])
    rows = good()
    extra = row(FIRST_METER, 30).rstrip("\n") + ",x" * 400 + "\n"
    files["400 extra fields"] = (HEADER + csv_rows(rows)[0] + extra + csv_rows(rows)[1], rows, ["407 fields"])
    rows = good()
    extra = row(FIRST_METER, 30).rstrip("\n") + ",x" * 100_000 + "\n"
    files["100,000 extra fields"] = (
        HEADER + csv_rows(rows)[0] + extra + csv_rows(rows)[1],
        rows,
        [f"a line of {len(extra) - 1} bytes: longer than any record (4096)"],
    )
    rows = good()
    bad = [jsonl_row(FIRST_METER, v) for v in ("0.5e0", "1E2", '"0.555"', "1e-400")]
    files["JSON numbers"] = (
        jsonl_row(*rows[0]) + "".join(bad) + jsonl_row(*rows[1]),
        rows,
        ["a number written with an exponent"] * 2
        + ["kwh: a JSON string, not a number"]
        + ["a number written with an exponent"],
    )
    rows = good(3)
    registers = ["import", "import", "export", "both", ""]
    with_register = [
        row(meter, 30, kwh=kwh, version="3").rstrip("\n") + f",{register}\n"
        for (meter, kwh), register in zip(rows + rows[:2], registers, strict=True)
    ]
    # the third meter's reading is of its export register: kept apart, neither consumption nor refused
    files["register codes"] = (
        HEADER.rstrip("\n") + ",register\n" + "".join(with_register),
        rows[:2],
        ["register: unknown code both", "register: unknown code "],
    )
    rows = good()
    files["JSON first line of nested arrays"] = ("[" * 3000 + "]" * 3000 + "\n" + jsonl_row(*rows[0]), [], [])
    return {
        f"raw/2024/04/01/10/{'beta' if name.startswith('JSON') else 'alpha'}-v{n:03d}-2024040110-b1."
        f"{'jsonl' if name.startswith('JSON') else 'csv'}.gz": (text.encode(), rows, reasons)
        for n, (name, (text, rows, reasons)) in enumerate(files.items())
    }


def write_vendor_files(lake: Lake) -> None:
    for key, (data, _, _) in vendor_files().items():
        lake.write_bytes(key, gzip.compress(data, compresslevel=1))


# NEM12: a register of its own, and files that land on the day (so that a file with no readable
# date is reported on it)
REGISTER = "QH00000001"
NEM12_LANDED = dt.datetime(2024, 4, 2, 12)
# a file with no readable date is reported on the day it landed
UNREADABLE_LANDED = dt.datetime(2024, 4, 1, 20)
UPDATED = "20240402100000"  # AEST: midnight UTC on 2 April, before the file landed


def nem12_day(date: str, kwh: str, updated: str = UPDATED) -> str:
    return ",".join(["300", date, *[kwh] * 96, "A", "", "", updated, ""])


NEM12_CONFLICTS = "\n".join(
    [
        "100,NEM12,202404021000,MDP9,RETAILER1",
        f"200,{REGISTER},E1,1,E1,N1,SERIAL9,kWh,15,",
        nem12_day("20240401", "0.004"),  # line 3: the same day and UpdateDateTime as line 4
        nem12_day("20240401", "0.036"),
        nem12_day("20240401", "0.999", updated="99991231235959"),  # line 5: updated in the future
        nem12_day("99991231", "0.500"),  # line 6: a day that has not begun
        "900",
    ]
).encode()


def zipped(data: bytes, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", method) as archive:
        archive.writestr("NEM12.csv", data)
    return packed.getvalue()


def damaged(data: bytes, at: int = 60) -> bytes:
    return data[:at] + b"\xff" * 20 + data[at + 20 :]


def with_zip_method(data: bytes, method: int, flags: int = 0) -> bytes:
    """A stored zip whose headers name another compression method (or say it is encrypted)."""
    patched = bytearray(data)
    central = patched.find(b"PK\x01\x02")
    patched[6:8] = struct.pack("<H", flags)
    patched[8:10] = struct.pack("<H", method)
    patched[central + 8 : central + 10] = struct.pack("<H", flags)
    patched[central + 10 : central + 12] = struct.pack("<H", method)
    return bytes(patched)


def nem12_files() -> dict[str, tuple[bytes, str | None]]:
    """key -> (bytes, the reason the whole file is refused with, or None)."""
    plain = NEM12_CONFLICTS
    stored = zipped(plain, zipfile.ZIP_STORED)
    files = {
        "conflicts.csv": (plain, None),
        "deflate.zip": (damaged(zipped(plain)), "not a readable zip: zlib.error: Error -3 while decompressing data"),
        "deflate.gz": (damaged(gzip.compress(plain), 20), "not readable gzip: zlib.error: Error -3"),
        "lzma.zip": (damaged(zipped(plain, zipfile.ZIP_LZMA)), "not a readable zip: LZMAError: Corrupt input data"),
        "method9.zip": (with_zip_method(stored, 9), "not a readable zip: NotImplementedError: That compression method"),
        "method99.zip": (with_zip_method(stored, 99), "not a readable zip: NotImplementedError: That compression"),
        "encrypted.zip": (with_zip_method(stored, 0, flags=1), "not a readable zip: RuntimeError: File <ZipInfo"),
    }
    return {f"raw/nem12/agent-nine/{name}": value for name, value in files.items()}


def write_nem12_files(lake: Lake) -> None:
    meters = lake.read_bytes("reference/meters.csv").decode()
    lake.write_bytes(
        "reference/meters.csv", (meters + f"{REGISTER}-E1,North,99,nem12,2019-01-01,,ordinary,\n").encode()
    )
    for key, (data, reason) in nem12_files().items():
        lake.write_bytes(key, data, landed_at=NEM12_LANDED if reason is None else UNREADABLE_LANDED)


def test_a_vendors_careless_file_loses_only_its_bad_rows(hostile):
    """A byte-order mark, mixed line endings, an unterminated quote, millions of blank lines,
    rows of hundreds of thousands of fields, JSON numbers in forms the contract does not write:
    each bad row is one quarantined row with its reason, and every good row lands."""
    for key, (_, rows, reasons) in vendor_files().items():
        for meter, kwh in rows:
            assert curated_reading(hostile, meter, AT)[:3] == (Decimal(kwh), 3, key), key
        found = quarantine_of(hostile, key)
        if "beta-v008" in key:  # a first line of nested arrays matches no contract: the file is refused
            assert [scope for scope, _ in found] == ["file"] and "matches no known jsonl contract" in found[0][1]
            continue
        assert [scope for scope, _ in found] == ["row"] * len(reasons), (key, found)
        for reason in reasons:
            assert any(r.startswith(reason) for _, r in found), (key, reason, found)


def test_an_export_reading_in_a_vendor_file_is_kept_apart_from_consumption(hostile):
    ((key, data),) = [
        (k, d)
        for k, (d, _, _) in vendor_files().items()
        if d.startswith(b"meter_id,interval_start,kwh,quality,version,meter_clock,received_at,register\n")
    ]
    (line,) = [line for line in data.decode().splitlines() if line.endswith(",export")]
    meter, _, kwh = line.split(",")[:3]
    exported = query(
        f"SELECT kwh, source_file FROM read_parquet({table_files(hostile, READS_15MIN_EXPORT, DAY)}) "
        "WHERE meter_id = ? AND read_at = ?",
        [meter, AT],
    )
    assert exported == [(Decimal(kwh), key)]
    (consumption,) = query(
        f"SELECT kwh, source_file FROM read_parquet({table_files(hostile, READS_15MIN, DAY)}) "
        "WHERE meter_id = ? AND read_at = ?",
        [meter, AT],
    )
    assert consumption[1] != key, "the meter's consumption is the head-end's own reading, not the export"


def test_a_nem12_file_that_cannot_be_read_is_refused_whole_and_fails_no_day(hostile):
    """The day that reports them was curated (the fixture asserts it) and the arrivals sensor's
    scan names the same reasons instead of failing its tick."""
    from meter_assets.ingest import nem12

    lake = Lake(hostile)
    for key, (_, reason) in nem12_files().items():
        if reason is None:
            continue
        assert [(scope, r[: len(reason)]) for scope, r in quarantine_of(hostile, key)] == [("file", reason)], key
        obj = next(o for o in lake.list(nem12.PREFIX) if o.key == key)
        assert nem12.scan_object(lake, obj).reason.startswith(reason)
        assert nem12.reported_days(nem12.scan_object(lake, obj), obj.modified_at, "Australia/Brisbane") == [DAY]


def test_a_nem12_day_sent_twice_with_one_update_time_is_read_whole_from_the_later_record(hostile):
    key = "raw/nem12/agent-nine/conflicts.csv"
    readings = query(
        f"SELECT read_at, kwh, source_file FROM read_parquet({table_files(hostile, READS_15MIN, DAY)}) "
        "WHERE meter_id = ? AND quality_flag = 'actual' ORDER BY read_at",
        [f"{REGISTER}-E1"],
    )
    # the AEST day 1 April is 31 March 14:00 to 1 April 14:00 UTC; London's day starts at 23:00
    start = dt.datetime(2024, 3, 31, 23)
    assert readings == [(start + dt.timedelta(minutes=15 * q), Decimal("0.036"), key) for q in range(60)]
    assert quarantine_of(hostile, key) == [
        (
            "row",
            "300 record: the register's day again at line 4 with the same UpdateDateTime; that later record is read",
        ),
        ("row", "IntervalDate: 99991231 had not begun when the file landed (2024-04-02 12:00:00 UTC)"),
        ("row", "UpdateDateTime: 99991231235959 is after the file landed (2024-04-02 12:00:00 UTC)"),
    ]
