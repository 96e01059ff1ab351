"""The NEM12 contract's reader: published files read to the totals an independent reader
(nemreader) finds, broken files and records refused with a reason naming the line and the
field, and the 5- and 30-minute grids put on quarter hours without losing energy."""

from __future__ import annotations

import collections
import datetime as dt
import gzip
import io
import logging
import zipfile
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nemreader import read_nem_file

from meter_assets.ingest import nem12

EXAMPLES = Path(__file__).parent / "nem12_examples"
PUBLISHED = sorted((EXAMPLES / "published").iterdir())
TZ = "Australia/Brisbane"
# kWh per unit, as the specification names the units (vendors write them in any case)
UNITS = {"wh": Decimal("0.001"), "kwh": Decimal(1), "mwh": Decimal(1000)}


def parse(files: dict[int, bytes], tz: str = TZ) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    nem12.parse(con, files, tz)
    return con


def refused(con, file_id: int = 0) -> list[tuple]:
    return con.execute(
        "SELECT scope, line_no, reason FROM nem12_refused WHERE file_id = ? ORDER BY line_no, reason", [file_id]
    ).fetchall()


def nemreader_totals(path: Path) -> dict[tuple, Decimal]:
    """(NMI, suffix, interval date) -> kWh, as nemreader reads the file (energy registers only)."""
    logging.getLogger("nemreader").setLevel(logging.CRITICAL)
    totals: dict[tuple, Decimal] = collections.defaultdict(Decimal)
    for nmi, registers in read_nem_file(str(path)).readings.items():
        for suffix, readings in registers.items():
            for r in readings:
                if r.uom.lower() in UNITS and r.read_value is not None:
                    totals[(nmi, suffix, r.t_start.date())] += Decimal(repr(r.read_value)) * UNITS[r.uom.lower()]
    return dict(totals)


def test_published_files_read_to_the_totals_nemreader_finds():
    con = parse({i: p.read_bytes() for i, p in enumerate(PUBLISHED)})
    # the interval date is market time, 10 hours ahead of UTC all year
    ours = con.execute(
        """
        SELECT file_id, nmi, suffix, CAST(read_at + INTERVAL 10 HOUR AS DATE) AS day, sum(kwh)
        FROM nem12_intervals
        WHERE reason IS NULL
        GROUP BY ALL
        """
    ).fetchall()
    found = collections.defaultdict(dict)
    for file_id, nmi, suffix, day, kwh in ours:
        found[file_id][(nmi, suffix, day)] = kwh
    assert len(PUBLISHED) > 90
    for i, path in enumerate(PUBLISHED):
        assert found[i] == nemreader_totals(path), path.name
    assert sum(len(f) for f in found.values()) > 400
    assert con.execute("SELECT count(*) FROM nem12_file_errors").fetchone()[0] == 0


def test_a_published_record_broken_over_three_lines_is_refused_line_by_line():
    """One scenario file has a 300 record split by line breaks: each piece is refused, the rest read."""
    path = EXAMPLES / "published" / "NEM12#Scenario10#ETSAMDP#NEMMCO.zip"
    con = parse({0: path.read_bytes()})
    assert refused(con) == [
        ("row", 27, "300 record: 3 fields; a day of 48 30-minute intervals has 55"),
        ("row", 28, "record indicator 11: not a NEM12 record"),
        ("row", 29, "record indicator 37: not a NEM12 record"),
        ("row", 30, "its 300 record (line 27) is refused"),
        ("row", 31, "its 300 record (line 27) is refused"),
    ]
    days = con.execute("SELECT count(DISTINCT day_line) FROM nem12_intervals WHERE reason IS NULL").fetchone()[0]
    assert days == con.execute("SELECT count(*) - 1 FROM nem12_days").fetchone()[0] > 0


INVALID = {
    "Example_NEM12_missing_header.csv": ("file", "no NEM12 header"),
    "Example_NEM12_powercor.csv": ("file", "no NEM12 header"),
    "Example_NEM12_powercor.csv.zip": ("file", "no NEM12 header"),
    "Example_NEM12_powercor_missing_fields.csv": ("file", "no NEM12 header"),
    "Example_empty_file.csv": ("file", "an empty file"),
    "Example_NEM12_empty.csv": ("file", "no meter data"),
    "Example_NEM12_incomplete_interval.csv": ("row", "300 record: 7 fields; a day of 48 30-minute intervals has 55"),
    "Example_NEM12_no_scheduled_read.csv": ("row", "NMI: not 10 letters or digits: NMI111"),
    "Example_NEM12_15min_200_30min_300.csv": ("row", "NMI: not 10 letters or digits: 123"),
    "Example_NEM12_15min_200_30min_400.csv": ("row", "NMI: not 10 letters or digits: 123"),
    "Example_NEM12_30min_200_15min_300.csv": ("row", "NMI: not 10 letters or digits: 123"),
    "Example_NEM12_30min_200_15min_400.csv": ("row", "NMI: not 10 letters or digits: 123"),
    "Example_NEM12_different_interval_length.csv": ("row", "NMI: not 10 letters or digits: C123"),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_an_invalid_published_file_is_refused_with_its_reason(name):
    con = parse({0: (EXAMPLES / "invalid" / name).read_bytes()})
    scope, reason = INVALID[name]
    assert any(s == scope and reason in r for s, _, r in refused(con)), refused(con)
    if scope == "file":
        assert con.execute("SELECT count(*) FROM nem12_quarter_hours").fetchone()[0] == 0


def test_every_invalid_example_is_listed():
    assert sorted(p.name for p in (EXAMPLES / "invalid").iterdir()) == sorted(INVALID)


# a small valid file: one register of 30-minute kWh over two days, the second variable
HEADER = "100,NEM12,202405140300,MDP1,RETAILER1"
CHANNEL = "200,QB01000001,E1,1,E1,N1,SERIAL1,kWh,30,"
DAY_VALUES = [f"{0.1 * (i + 1):.3f}" for i in range(48)]


def day(date: str, values: list[str] | None = None, quality: str = "A") -> str:
    return ",".join(["300", date, *(values or DAY_VALUES), quality, "", "", "20240514030000", ""])


def nem12_file(*records: str) -> bytes:
    return "\n".join(records).encode()


VALID = [HEADER, CHANNEL, day("20240512"), day("20240513", quality="V"), "400,1,40,A,,", "400,41,48,S14,79,", "900"]
# a broken record in place of one line of VALID -> its line and reason
WRONG_COUNT = "fields; a day of 48 30-minute intervals has 55"
BROKEN = {
    "300 record with 47 values": (2, day("20240512", DAY_VALUES[:47]), f"54 {WRONG_COUNT}"),
    "300 record with 96 values": (2, day("20240512", DAY_VALUES * 2), f"103 {WRONG_COUNT}"),
    "a date that does not exist": (2, day("20240230"), "IntervalDate: not a date: 20240230"),
    "a date in another form": (2, day("2024-05-12"), "IntervalDate: not a date"),
    "a value that is not a number": (2, day("20240512", ["x", *DAY_VALUES[1:]]), "IntervalValue1: not a number: x"),
    "a negative value": (2, day("20240512", [*DAY_VALUES[:4], "-0.5", *DAY_VALUES[5:]]), "IntervalValue5: negative"),
    "a value with an exponent": (2, day("20240512", ["1e3", *DAY_VALUES[1:]]), "IntervalValue1: not a number: 1e3"),
    "an empty value": (2, day("20240512", ["", *DAY_VALUES[1:]]), "IntervalValue1: not a number: "),
    "an unknown quality": (2, day("20240512", quality="Z9"), "QualityMethod: not a quality method: Z9"),
    "a 400 range beyond the day": (4, "400,1,49,A,,", "1 to 49 is not a range of the day's 48 intervals"),
    "a 400 range backwards": (4, "400,40,1,A,,", "40 to 1 is not a range"),
    "a 400 range from zero": (4, "400,0,40,A,,", "0 to 40 is not a range"),
    "a 400 record of quality V": (4, "400,1,40,V,,", "QualityMethod: not a quality method for intervals: V"),
    "an unknown record": (5, "450,1,2", "record indicator 450: not a NEM12 record"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_record_is_refused_with_its_line_and_field_and_the_rest_is_read(case):
    index, record, reason = BROKEN[case]
    lines = [*VALID]
    lines[index] = record
    con = parse({0: nem12_file(*lines)})
    found = refused(con)
    assert any(line == index + 1 and reason in r for _, line, r in found), found
    assert {scope for scope, _, _ in found} == {"row"}
    # the other day is read whole: the first day when the second is broken, and the reverse
    other = "20240513" if index == 2 else "20240512"
    local_start = dt.datetime.strptime(other, "%Y%m%d") - dt.timedelta(hours=10)
    kwh = con.execute(
        "SELECT sum(kwh), count(*) FROM nem12_quarter_hours WHERE read_at >= ? AND read_at < ?",
        [local_start, local_start + dt.timedelta(days=1)],
    ).fetchone()
    assert kwh == (sum(Decimal(v) for v in DAY_VALUES), 96)


def test_a_value_beyond_exact_arithmetic_is_refused_by_name_and_fails_nothing():
    channel = CHANNEL.replace("kWh", "MWh")
    con = parse({0: nem12_file(HEADER, channel, day("20240512", ["999999999", *DAY_VALUES[1:]]), "900")})
    assert refused(con) == [("row", 3, "IntervalValue1: too large: 999999999 MWh")]
    assert con.execute("SELECT count(*) FROM nem12_quarter_hours").fetchone()[0] == 94


def test_intervals_a_variable_day_leaves_without_a_400_record_are_refused():
    lines = [*VALID]
    lines[5] = "400,41,46,S14,79,"
    con = parse({0: nem12_file(*lines)})
    assert [r for _, line, r in refused(con)] == [
        "IntervalValue47: the day's quality is V and no 400 record covers this interval",
        "IntervalValue48: the day's quality is V and no 400 record covers this interval",
    ]
    qualities = con.execute(
        "SELECT quality_method, reason_code, count(*) FROM nem12_intervals WHERE reason IS NULL GROUP BY ALL ORDER BY 1"
    ).fetchall()
    assert qualities == [("A", None, 48 + 40), ("S14", "79", 6)]


@pytest.mark.parametrize(
    "records, reason",
    [
        ([HEADER, CHANNEL, day("20240512")], "no end of data"),
        ([CHANNEL, day("20240512"), "900"], "no NEM12 header"),
        (["100,NEM13,202405140300,MDP1,RETAILER1", CHANNEL, day("20240512"), "900"], "no NEM12 header"),
        ([HEADER, CHANNEL, day("20240512"), "900", HEADER, CHANNEL, "900"], "files joined together"),
        ([HEADER, "900"], "no meter data"),
    ],
)
def test_a_file_without_its_header_or_end_is_refused_whole(records, reason):
    con = parse({0: nem12_file(*records), 1: nem12_file(*VALID)})
    assert refused(con) == [("file", None, next(r for _, _, r in refused(con)))]
    assert reason in refused(con)[0][2]
    # the other file of the same parse is read
    assert con.execute("SELECT count(DISTINCT file_id) FROM nem12_quarter_hours").fetchone()[0] == 1


NOT_ENERGY = "UOM: kVArh is not active energy (Wh, kWh or MWh); not curated"


@pytest.mark.parametrize(
    "channel, reason",
    [
        ("200,QB0100000,E1,1,E1,N1,SERIAL1,kWh,30,", "NMI: not 10 letters or digits: QB0100000"),
        ("200,QB010000011,E1,1,E1,N1,SERIAL1,kWh,30,", "NMI: not 10 letters or digits: QB010000011"),
        ("200,QB01000001,E,1,E,N1,SERIAL1,kWh,30,", "NMISuffix: not a register suffix: E"),
        ("200,QB01000001,E1,1,E1,N1,SERIAL1,kWh,60,", "IntervalLength: not 5, 15 or 30: 60"),
        ("200,QB01000001,E1,1,E1,N1,SERIAL1,kVArh,30,", NOT_ENERGY),
        ("200,QB01000001,A1,1,A1,N1,SERIAL1,kWh,30,", "NMISuffix: A1 is neither consumption (E) nor export (B)"),
        ("200,QB01000001,E1,1,E1,N1,SERIAL1,kWh", "200 record: 8 fields, not 10"),
    ],
)
def test_a_refused_register_refuses_its_days_by_name(channel, reason):
    con = parse({0: nem12_file(HEADER, channel, day("20240512"), "900")})
    assert refused(con) == [("row", 2, reason), ("row", 3, "its 200 record (line 2) is refused")]


def test_a_day_starts_at_midnight_market_time_and_lands_in_utc():
    con = parse({0: nem12_file(*VALID)})
    first, last = con.execute("SELECT min(read_at), max(read_at) FROM nem12_quarter_hours").fetchone()
    assert (first, last) == (dt.datetime(2024, 5, 11, 14, 0), dt.datetime(2024, 5, 13, 13, 45))
    # the contract's time zone is a setting: the same file from South Australia starts 30 minutes later
    adelaide = parse({0: nem12_file(*VALID)}, tz="Australia/Adelaide")
    assert adelaide.execute("SELECT min(read_at) FROM nem12_quarter_hours").fetchone()[0] == dt.datetime(
        2024, 5, 11, 14, 30
    )


@given(
    values=st.lists(st.integers(min_value=0, max_value=10**8), min_size=48, max_size=48),
    unit=st.sampled_from(["Wh", "kWh", "KWH", "MWh"]),
)
@settings(max_examples=40, deadline=None)
def test_a_30_minute_value_splits_into_two_quarter_hours_that_keep_its_energy(values, unit):
    written = [f"{Decimal(v) / 1000:.3f}" for v in values]
    channel = CHANNEL.replace("kWh", unit)
    con = parse({0: nem12_file(HEADER, channel, day("20240512", written), "900")})
    per_unit = UNITS[unit.lower()]
    halves = con.execute("SELECT read_at, kwh, interval_minutes FROM nem12_quarter_hours ORDER BY read_at").fetchall()
    assert len(halves) == 96 and {m for _, _, m in halves} == {30}
    for i, text in enumerate(written):
        # to the Wh, a half away from zero
        kwh = (Decimal(text) * per_unit).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
        first, second = halves[2 * i][1], halves[2 * i + 1][1]
        assert first + second == kwh
        assert abs(first - second) <= Decimal("0.001")


def test_5_minute_values_sum_to_quarter_hours_and_an_incomplete_one_is_left_out():
    values = [f"{(i % 7) * 11 + i % 3}.{i % 10}" for i in range(288)]  # Wh, to a tenth
    values[5] = "bad"
    channel = "200,QB01000002,E1,1,E1,N1,SERIAL2,Wh,5,"
    con = parse({0: nem12_file(HEADER, channel, day("20240512", values), "900")})
    rows = con.execute("SELECT read_at, kwh FROM nem12_quarter_hours ORDER BY read_at").fetchall()
    assert len(rows) == 95  # the quarter hour holding the bad value is not made up from two of three
    expected = [sum(Decimal(v) for v in values[3 * q : 3 * q + 3]) / 1000 for q in range(96) if q != 1]
    assert [kwh for _, kwh in rows] == [e.quantize(Decimal("0.001"), rounding=ROUND_HALF_UP) for e in expected]
    assert len({kwh for _, kwh in rows}) > 10


def test_zip_and_gzip_deliveries_read_like_the_plain_file_and_a_zip_of_two_is_refused():
    plain = nem12_file(*VALID)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("a.csv", plain)
    two = io.BytesIO()
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a.csv", plain)
        archive.writestr("b.csv", plain)
    con = parse({0: plain, 1: packed.getvalue(), 2: gzip.compress(plain), 3: two.getvalue(), 4: b"\xff\xfe100"})
    sums = dict(con.execute("SELECT file_id, sum(kwh) FROM nem12_quarter_hours GROUP BY ALL").fetchall())
    assert sums[0] == sums[1] == sums[2] and 3 not in sums and 4 not in sums
    assert refused(con, 3) == [("file", None, "the zip holds 2 files; a NEM12 zip holds one")]
    assert "not UTF-8 text" in refused(con, 4)[0][2]


def test_a_zipped_file_larger_than_the_limit_is_refused_without_being_inflated():
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.csv", b"0" * (1 << 20))
    with pytest.raises(nem12.UnreadableFile, match="more than 1000"):
        nem12.unpack(packed.getvalue(), limit=1000)
    with pytest.raises(nem12.UnreadableFile, match="more than 1000"):
        nem12.unpack(gzip.compress(b"0" * (1 << 20)), limit=1000)


def test_a_file_of_more_refusals_than_a_few_faults_is_refused_whole(monkeypatch):
    """Past `MAX_REFUSED` refused records and values a file is one quarantined file, not a flood
    of rows; below it, each refusal is its own row and the rest is read."""
    monkeypatch.setattr(nem12, "MAX_REFUSED", 3)
    bad = day("20240512", ["x"] * 3 + DAY_VALUES[3:])
    worse = day("20240512", ["x"] * 4 + DAY_VALUES[4:])
    con = parse({0: nem12_file(HEADER, CHANNEL, bad, "900"), 1: nem12_file(HEADER, CHANNEL, worse, "900")})
    assert [r[2] for r in refused(con, 0)] == [f"IntervalValue{i}: not a number: x" for i in (1, 2, 3)]
    assert refused(con, 1) == [
        ("file", None, "4 records and values refused, more than 3: not a file of a few faults; not read")
    ]
    files = {f for (f,) in con.execute("SELECT DISTINCT file_id FROM nem12_quarter_hours").fetchall()}
    assert files == {0}
