"""Raw files as a careless or hostile head-end sends them: each is quarantined with its reason,
loses nothing else, and never fails the day.

Every row file carries one hostile row and one good neighbour: a version-3 correction of a
reading with a value of its own, which the curated day must hold. Expected values are what
the files say and the simulator's ground truth, never the platform's output.
"""

import datetime as dt
import gzip
import shutil
import zlib
from decimal import Decimal

import pytest

from meter_assets.simulator.cli import release_late
from meter_assets.storage import Lake
from meter_assets.tables import QUARANTINE, RAW_METER_FILES, READS_15MIN, REPORT_TABLES

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
        (
            "row",
            "1 line(s) neither read nor rejected by the reader: the "
            "longest line has 52428800 bytes, more than the 2000000 a line "
            "may have",
        )
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
