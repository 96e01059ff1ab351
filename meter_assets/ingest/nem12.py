"""AEMO's Meter Data File Format NEM12: interval files as meter data agents send them.

One file carries many meters (NMIs and their registers, the NMI suffix) over many days, each day
a `300` record of 288, 96 or 48 values (5, 15 or 30 minutes) under the `200` record of its
register, with its quality method, and `400` records giving the quality of ranges of intervals
when the day's method is `V` (variable). Interval dates are market time without clock changes
(the setting `METER_NEM12_TZ`).

Reading is two steps. Python splits a file's bytes into numbered lines (after unpacking a zip
or gzip); DuckDB does the rest in SQL: every record is checked against the specification, a
bad record or value is quarantined with the file, its line and the field, and the good
intervals come out with their register, quality and time in UTC. `QUARTER_HOURS_SQL` then puts
them on the curated grid: 5-minute values summed by quarter hour, a 30-minute value split in
two halves that keep its energy exactly (marked as derived by `interval_minutes = 30`).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass, replace

import duckdb
import numpy as np
import pyarrow as pa

from meter_assets.market_calendar import local_day_bounds, local_day_of
from meter_assets.storage import Lake, LakeObject

CONTRACT = "nem12"
# NEM12 files are delivered anywhere below this prefix, under any name
PREFIX = "raw/nem12/"
# what the inventory knows of each NEM12 file (its days, lines, damage), by key and ETag
INDEX_PREFIX = "inventory/nem12_files/"
# a file whose first record is this is NEM12, whatever its name
HEADER_PREFIX = "100,NEM12,"
# the specification's interval lengths, minutes
INTERVAL_MINUTES = (5, 15, 30)
NMI_PATTERN = "[A-Z0-9]{10}"
SUFFIX_PATTERN = "[A-Z][A-Z0-9]"
# the meter id of an export register (`<NMI>-B<n>`): what a premises feeds into the grid
EXPORT_METER_PATTERN = f"{NMI_PATTERN}-B[A-Z0-9]"
# a quality flag and, but for actual, null and variable data, the method that made the value
QUALITY_PATTERN = "[AN]|V|[AEFS][0-9]{2}|[EFS]"
# a value as agents write one (".25" too), never negative, with no exponent; up to a billion
# of its unit, so that in kWh it fits an exact 64-bit decimal
VALUE_PATTERN = r"[0-9]{1,9}(\.[0-9]{1,6})?|\.[0-9]{1,6}"
# a file this large once unpacked is not read (the inventory bounds gzip the same way)
MAX_UNPACKED_BYTES = 2 << 30
# The longest record the specification allows is a day of 288 five-minute values (295 fields,
# a few KiB); a longer line or one of more fields is refused unsplit, so no line, however long
# or however many commas it holds, costs more than its bytes.
MAX_RECORD_BYTES = 64 << 10
MAX_RECORD_FIELDS = 295
# A file of more records than this is refused whole (a year of 15-minute days of 10,000
# registers is 3.65 million): its table of lines would cost more than the pod has.
MAX_RECORDS = 5_000_000
# Unpacked and split a chunk at a time, so blank lines and bombs cost nothing they do not keep.
UNPACK_CHUNK = 1 << 20
SPLIT_CHUNK = 4 << 20
# Interval dates a file may carry: from the first smart meters to the day after it landed
# (a later day has not begun; far-off dates would overflow the calendar).
FIRST_INTERVAL_DATE = dt.date(1990, 1, 1)
# a quarantined record keeps this much of its line, in every contract: enough to see it, never
# the whole of a bomb
RECORD_CHARS = 4096
# A record cannot be updated after its file landed; clocks may disagree by this much (the
# tolerance every contract's receive time has).
RECEIVE_TOLERANCE_S = 300


class UnreadableFile(ValueError):
    """A file that is not a NEM12 file at all: quarantined whole with this reason."""


def unpack(data: bytes, limit: int = MAX_UNPACKED_BYTES) -> bytes | bytearray:
    """A NEM12 file's text as delivered: plain, gzip or a zip that holds one file. Inflated a
    MiB at a time up to `limit`, whatever the archive declares; any archive that cannot be
    read (corrupt data, an unsupported or encrypted method, a damaged LZMA or bzip2 member)
    is an `UnreadableFile` naming why, never an error of the day."""
    if data[:4] == b"PK\x03\x04":
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            members = [m for m in archive.infolist() if not m.is_dir()]
        except Exception as exc:  # zipfile raises many kinds of error: each is a refusal
            raise UnreadableFile(f"not a readable zip: {_named(exc)}") from exc
        if len(members) != 1:
            raise UnreadableFile(f"the zip holds {len(members)} files; a NEM12 zip holds one")
        if members[0].file_size > limit:
            raise UnreadableFile(f"the zipped file is {members[0].file_size} bytes, more than {limit}")
        try:
            with archive.open(members[0]) as stream:
                return _read_within(stream, limit)
        except UnreadableFile:
            raise
        except Exception as exc:
            raise UnreadableFile(f"not a readable zip: {_named(exc)}") from exc
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
                return _read_within(stream, limit)
        except UnreadableFile:
            raise
        except Exception as exc:
            raise UnreadableFile(f"not readable gzip: {_named(exc)}") from exc
    if len(data) > limit:
        raise UnreadableFile(f"more than {limit} bytes")
    return data


def _read_within(stream: io.BufferedIOBase, limit: int) -> bytearray:
    # one buffer that grows, never a list of parts joined into a second copy
    text = bytearray()
    while chunk := stream.read(UNPACK_CHUNK):
        if len(text) + len(chunk) > limit:
            raise UnreadableFile(f"more than {limit} bytes once decompressed")
        text += chunk
    return text


def _named(exc: Exception) -> str:
    name = "zlib.error" if isinstance(exc, zlib.error) else type(exc).__name__
    return f"{name}: {exc}" if str(exc) else name


DAY_RECORD = re.compile(rb"^300,([0-9]{8}),", re.MULTILINE)


@dataclass(frozen=True)
class Scan:
    """What a NEM12 file holds, without parsing it: its interval dates (market time), lines,
    longest line, and the reason it cannot be read at all (then it holds nothing)."""

    dates: tuple[dt.date, ...]
    lines: int
    longest_line_bytes: int
    reason: str | None = None

    def landed(self, landed_at: dt.datetime) -> Scan:
        """The scan without the dates a file that landed then cannot carry: a day that had
        not begun (its records are refused when the file is read) or before any meter."""
        latest = landed_at.date() + dt.timedelta(days=1)
        return replace(self, dates=tuple(d for d in self.dates if FIRST_INTERVAL_DATE <= d <= latest))

    def last_hour(self, nem12_tz: str) -> dt.datetime | None:
        """The last UTC hour the file carries readings of (the end of its latest market day):
        it cannot be sent before that hour is over, and is late when it lands long after."""
        if not self.dates:
            return None
        return local_day_bounds(max(self.dates), nem12_tz)[1] - dt.timedelta(hours=1)

    def market_days(self, nem12_tz: str) -> list[dt.date]:
        """The market's local days the file's intervals fall in: a NEM12 day in AEST feeds
        two days of a European market."""
        days: set[dt.date] = set()
        for date in self.dates:
            start, end = local_day_bounds(date, nem12_tz)
            days.add(local_day_of(start))
            days.add(local_day_of(end - dt.timedelta(minutes=1)))
        return sorted(days)


def reported_days(scan: Scan, landed_at: dt.datetime, nem12_tz: str) -> list[dt.date]:
    """The local days a NEM12 file belongs to: those its intervals fall in, or, when it has no
    readable date (not NEM12, damaged), the day it landed, so that its refusal is reported."""
    scan = scan.landed(landed_at)
    return scan.market_days(nem12_tz) if scan.dates else [local_day_of(landed_at)]


def scan(data: bytes, limit: int = MAX_UNPACKED_BYTES) -> Scan:
    try:
        text = unpack(data, limit)
    except UnreadableFile as exc:
        return Scan((), 0, 0, str(exc))
    if not text.startswith(HEADER_PREFIX.encode()):
        return Scan((), 0, 0, f"no NEM12 header: the first record is not 100,NEM12: {text[:60]!r}")
    dates = set()
    for found in {m.group(1) for m in DAY_RECORD.finditer(text)}:
        try:
            dates.add(dt.datetime.strptime(found.decode(), "%Y%m%d").date())
        except ValueError:
            continue  # a date that does not exist: refused record by record when the file is parsed
    lines = longest = 0
    for chunk in _chunks(text):
        lines += len(chunk.starts)
        longest = max(longest, int((chunk.ends - chunk.starts).max(initial=0)))
    return Scan(tuple(sorted(dates)), lines, longest)


@dataclass(frozen=True)
class _Chunk:
    """Lines of a stretch of a file that starts and ends at line breaks: their numbers in the
    file (from 1), and where each starts and ends (without its line break) in `data`."""

    data: np.ndarray
    numbers: np.ndarray
    starts: np.ndarray
    ends: np.ndarray


def _chunks(text: bytes | bytearray, size: int = SPLIT_CHUNK):
    """The file's lines, `size` bytes at a time (a longer line is a chunk of its own): no
    more than a chunk's positions is ever held, however many lines the file has."""
    whole = np.frombuffer(text, np.uint8)
    at = line = 0
    while at < len(text):
        end = at + size
        if end < len(text):
            cut = text.rfind(b"\n", at, end)
            cut = cut if cut >= 0 else text.find(b"\n", end)
            end = len(text) if cut < 0 else cut + 1
        else:
            end = len(text)
        data = whole[at:end]
        breaks = np.flatnonzero(data == 10)
        starts = np.concatenate(([0], breaks + 1))
        ends = np.concatenate((breaks, [len(data)]))
        if end < len(text) or data[-1] == 10:  # the piece after the last break is the next chunk's
            starts, ends = starts[:-1], ends[:-1]
        yield _Chunk(data, np.arange(line + 1, line + 1 + len(starts), dtype=np.int64), starts, ends)
        line += len(starts)
        at = end


def _index_key(obj: LakeObject) -> str:
    digest = hashlib.sha1(f"{obj.key}\n{obj.etag}".encode()).hexdigest()
    return f"{INDEX_PREFIX}{digest}.json"


def scan_object(lake: Lake, obj: LakeObject, limit: int = MAX_UNPACKED_BYTES) -> Scan:
    """A raw NEM12 file's scan, read once: raw files never change in place (a replaced file
    has another ETag), so the scan is kept beside the inventory and read back after."""
    key = _index_key(obj)
    if lake.exists(key):
        kept = json.loads(lake.read_bytes(key))
        return Scan(tuple(dt.date.fromisoformat(d) for d in kept["dates"]), *kept["counts"], kept["reason"])
    found = scan(lake.read_bytes(obj.key), limit)
    kept = {
        "key": obj.key,
        "etag": obj.etag,
        "dates": [d.isoformat() for d in found.dates],
        "counts": [found.lines, found.longest_line_bytes],
        "reason": found.reason,
    }
    lake.write_bytes(key, json.dumps(kept).encode())
    return found


def lines_table(files: dict[int, bytes], limit: int = MAX_UNPACKED_BYTES) -> tuple[pa.Table, dict[int, str]]:
    """Every line of each file that is not blank (`file_id`, `line_no` from 1, `line`, and its
    length in bytes, `line_bytes`; a line over `MAX_RECORD_BYTES` is cut there), and the files
    that could not be read at all, with the reason."""
    parts: list[pa.Table] = []
    unreadable: dict[int, str] = {}
    for file_id, data in files.items():
        try:
            lines = _lines(unpack(data, limit))
        except UnreadableFile as exc:
            unreadable[file_id] = str(exc)
            continue
        parts.append(lines.append_column("file_id", pa.array(np.full(lines.num_rows, file_id, np.int32))))
    schema = LINES_SCHEMA.append(pa.field("file_id", pa.int32()))
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    return table.select(["file_id", "line_no", "line", "line_bytes", "utf8"]), unreadable


# the bytes that make a line more than blank (the reader trims line breaks and spaces)
_FILLED = np.ones(256, bool)
_FILLED[[10, 13, 32]] = False


def _lines(text: bytes | bytearray) -> pa.Table:
    """The lines of a file that hold something, as Arrow, built from the bytes a chunk at a time
    (each chunk's lines one record batch: no copy of the whole file is ever made)."""
    batches = []
    records = 0
    for chunk in _chunks(text):
        # a line holds something if any of its bytes (up to the next line's start) is not blank
        kept = np.maximum.reduceat(_FILLED[chunk.data], chunk.starts) if len(chunk.starts) else np.zeros(0, bool)
        records += int(kept.sum())
        if records > MAX_RECORDS:
            raise UnreadableFile(f"more than {MAX_RECORDS} records: not read")
        starts, ends = chunk.starts[kept], chunk.ends[kept]
        cut = np.minimum(ends, starts + MAX_RECORD_BYTES)
        for _ in range(3):  # never inside a character: back off its continuation bytes
            inside = (cut < ends) & ((chunk.data[np.minimum(cut, len(chunk.data) - 1)] & 0xC0) == 0x80)
            cut = cut - inside
        # the bytes of the kept lines (cut short where too long), one after another
        owner = np.repeat(np.arange(len(starts)), cut - starts)
        offsets = np.concatenate(([0], np.cumsum(cut - starts))).astype(np.int64)
        at = np.arange(int(offsets[-1]), dtype=np.int64) - offsets[:-1][owner] + starts[owner]
        body = chunk.data[at]
        line = pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(body))
        try:
            line.validate(full=True)  # UTF-8
            utf8 = pa.array(np.ones(len(starts), bool))
        except pa.ArrowInvalid:
            line, utf8 = _utf8_lines(line.view(pa.large_binary()), header=not batches)
        batches.append(
            pa.record_batch(
                {
                    "line_no": pa.array(chunk.numbers[kept].astype(np.int32)),
                    "line": line,
                    "line_bytes": pa.array((ends - starts).astype(np.int64)),
                    "utf8": utf8,
                }
            )
        )
    return pa.Table.from_batches(batches, schema=LINES_SCHEMA)


LINES_SCHEMA = pa.schema(
    [("line_no", pa.int32()), ("line", pa.large_string()), ("line_bytes", pa.int64()), ("utf8", pa.bool_())]
)


def _utf8_lines(binary: pa.Array, header: bool) -> tuple[pa.Array, pa.Array]:
    """Lines of which some are not UTF-8: those are shown with their bytes escaped and marked,
    to be refused one by one (a file whose header is not UTF-8 is not read at all)."""
    texts, valid = [], []
    for data in binary.to_pylist():
        try:
            texts.append(data.decode("utf-8"))
            valid.append(True)
        except UnicodeDecodeError as exc:
            if header and not valid:
                raise UnreadableFile(
                    f"not UTF-8 text: byte {exc.start} of the header is {data[exc.start : exc.start + 1]!r}"
                ) from exc
            texts.append(data.decode("utf-8", errors="backslashreplace"))
            valid.append(False)
    return pa.array(texts, pa.large_string()), pa.array(valid, pa.bool_())


# Each record, split into its fields, with the 200 record (register) and 300 record (day) it
# belongs to: the last of each before it in the file.
RECORDS_SQL = """
CREATE OR REPLACE TEMP TABLE nem12_records AS
WITH measured AS (
    -- the window below sorts what it carries: the lines' text stays out of it
    SELECT file_id, line_no, line_bytes, utf8,
           split_part(rtrim(line, chr(13)), ',', 1) AS record,
           length(line) - length(replace(line, ',', '')) + 1 AS field_count,
           CASE WHEN record = '200' THEN TRY_CAST(split_part(line, ',', 9) AS INTEGER) END AS interval_minutes
    FROM nem12_lines
    WHERE trim(line, chr(13) || ' ') <> ''
),
shaped AS (
    SELECT *,
           last_value(interval_minutes IGNORE NULLS) OVER file_order AS channel_minutes,
           max(line_no) FILTER (WHERE record = '200') OVER file_order AS channel_line,
           max(line_no) FILTER (WHERE record = '300') OVER file_order AS day_line,
           min(line_no) OVER whole_file AS first_line,
           max(line_no) OVER whole_file AS last_line
    FROM measured
    WINDOW file_order AS (PARTITION BY file_id ORDER BY line_no ROWS UNBOUNDED PRECEDING),
           whole_file AS (PARTITION BY file_id)
)
-- A line is split into fields only in the shape of its record (a day, the fields its
-- register's interval length gives it): however many commas a line holds, it costs no more
-- than a record of the specification.
SELECT shaped.file_id, shaped.line_no, record, field_count, channel_line, day_line, first_line, last_line,
       CASE WHEN shaped.utf8 AND shaped.line_bytes <= $max_bytes AND CASE
                WHEN record = '300' THEN channel_minutes IN (5, 15, 30) AND field_count = 1440 // channel_minutes + 7
                ELSE field_count <= $max_fields END
            THEN string_split(rtrim(lines.line, chr(13)), ',') END AS f,
       CASE WHEN NOT shaped.utf8 THEN 'not UTF-8 text: ' || left(lines.line, 200)
            WHEN shaped.line_bytes > $max_bytes OR field_count > $max_fields
            THEN 'a record of ' || shaped.line_bytes || ' bytes and ' || field_count || ' fields: longer than any '
                 || 'NEM12 record (' || $max_bytes || ' bytes, ' || $max_fields || ' fields); not read' END AS unsplit
FROM shaped
JOIN nem12_lines AS lines USING (file_id, line_no)
"""

# what is wrong with a whole file: it cannot be read, or its first record must be the NEM12 header and its last the end
FILE_ERRORS_SQL = """
CREATE OR REPLACE TEMP TABLE nem12_file_errors AS
SELECT file_id, reason FROM nem12_unreadable
UNION ALL
SELECT file_id,
       CASE WHEN count(*) FILTER (WHERE line_no = first_line AND record = '100' AND f[2] = 'NEM12') = 0
                 THEN 'no NEM12 header: the first record is not 100,NEM12'
            WHEN count(*) FILTER (WHERE line_no = last_line AND record = '900') = 0
                 THEN 'no end of data: the last record is not 900 (the file may be cut short)'
            WHEN count(*) FILTER (WHERE record = '100') > 1 OR count(*) FILTER (WHERE record = '900') > 1
                 THEN 'more than one 100 or 900 record: files joined together'
            WHEN count(*) FILTER (WHERE record = '200') = 0 THEN 'no meter data: the file has no 200 record'
       END AS reason
FROM nem12_records
GROUP BY file_id
HAVING reason IS NOT NULL
UNION ALL
SELECT file_id, 'an empty file'
FROM nem12_files ANTI JOIN nem12_records USING (file_id) ANTI JOIN nem12_unreadable USING (file_id)
"""

# the registers (200 records), checked
CHANNELS_SQL = """
CREATE OR REPLACE TEMP TABLE nem12_channels AS
SELECT file_id, line_no AS channel_line,
       f[2] AS nmi, f[5] AS suffix, f[7] AS meter_serial, f[8] AS uom,
       TRY_CAST(f[9] AS INTEGER) AS interval_minutes,
       CAST(CASE lower(f[8]) WHEN 'wh' THEN 0.001 WHEN 'kwh' THEN 1 WHEN 'mwh' THEN 1000 END AS DECIMAL(7, 3))
                                                                              AS kwh_per_unit,
       CASE left(f[5], 1) WHEN 'E' THEN 'import' WHEN 'B' THEN 'export' END      AS flow,
       CASE
           WHEN unsplit IS NOT NULL THEN unsplit
           -- NextScheduledReadDate, the last field, may be left out
           WHEN len(f) NOT IN (9, 10) THEN '200 record: ' || len(f) || ' fields, not 10'
           WHEN NOT regexp_full_match(f[2], $nmi_pattern) THEN 'NMI: not 10 letters or digits: ' || f[2]
           WHEN NOT regexp_full_match(f[5], $suffix_pattern) THEN 'NMISuffix: not a register suffix: ' || f[5]
           WHEN lower(f[8]) NOT IN ('wh', 'kwh', 'mwh')
                THEN 'UOM: ' || f[8] || ' is not active energy (Wh, kWh or MWh); not curated'
           WHEN f[9] NOT IN ('5', '15', '30') THEN 'IntervalLength: not 5, 15 or 30: ' || f[9]
           WHEN left(f[5], 1) NOT IN ('E', 'B')
                THEN 'NMISuffix: ' || f[5] || ' is neither consumption (E) nor export (B)'
       END AS reason
FROM nem12_records
WHERE record = '200'
"""

# the days (300 records), checked; `n` is the number of intervals a day of the register has
DAYS_SQL = """
CREATE OR REPLACE TEMP TABLE nem12_days AS
WITH days AS (
    SELECT records.file_id, records.line_no AS day_line, records.f, records.unsplit, records.field_count,
           records.channel_line,
           channels.nmi, channels.suffix, channels.flow, channels.interval_minutes, channels.kwh_per_unit, channels.uom,
           channels.reason AS channel_reason, files.landed_at,
           1440 // channels.interval_minutes AS n
    FROM nem12_records AS records
    JOIN nem12_files AS files USING (file_id)
    LEFT JOIN nem12_channels AS channels USING (file_id, channel_line)
    WHERE records.record = '300'
),
checked AS (
    SELECT file_id, day_line, channel_line, nmi, suffix, flow, interval_minutes, kwh_per_unit, uom, n,
           f[3 : 2 + n] AS values,
           try_strptime(f[2], '%Y%m%d') AS interval_date,
           f[n + 3] AS quality_method,
           f[n + 4] AS reason_code,
           f[n + 5] AS reason_description,
           try_strptime(f[n + 6], '%Y%m%d%H%M%S') AS updated_at,
           CASE
               WHEN unsplit IS NOT NULL THEN unsplit
               WHEN channel_line IS NULL THEN '300 record before any 200 record'
               WHEN channel_reason IS NOT NULL THEN 'its 200 record (line ' || channel_line || ') is refused'
               WHEN field_count <> n + 7 THEN '300 record: ' || field_count || ' fields; a day of ' || n || ' '
                                         || interval_minutes || '-minute intervals has ' || (n + 7)
               WHEN NOT regexp_full_match(f[2], '[0-9]{8}') OR try_strptime(f[2], '%Y%m%d') IS NULL
                    THEN 'IntervalDate: not a date: ' || f[2]
               WHEN try_strptime(f[2], '%Y%m%d') < $first_date
                    THEN 'IntervalDate: ' || f[2] || ' is before any interval meter (' || $first_date || ')'
               WHEN timezone('UTC', timezone($tz, try_strptime(f[2], '%Y%m%d'))) > landed_at
                    THEN 'IntervalDate: ' || f[2] || ' had not begun when the file landed (' || landed_at || ' UTC)'
               WHEN NOT regexp_full_match(f[n + 3], $quality_pattern) THEN 'QualityMethod: not a quality method: '
                                                                              || f[n + 3]
               WHEN f[n + 6] <> '' AND try_strptime(f[n + 6], '%Y%m%d%H%M%S') IS NULL
                    THEN 'UpdateDateTime: not a time: ' || f[n + 6]
               -- a time from the future would outrank every later correction
               WHEN timezone('UTC', timezone($tz, try_strptime(f[n + 6], '%Y%m%d%H%M%S')))
                    > landed_at + to_seconds($receive_tolerance)
                    THEN 'UpdateDateTime: ' || f[n + 6] || ' is after the file landed (' || landed_at || ' UTC)'
           END AS reason
    FROM days
)
-- Two readable records of one register and day with one UpdateDateTime in one file: the
-- later in the file is read whole, never the two mixed interval by interval. (Only readable
-- records are compared: a file of refused ones costs no sort.)
SELECT checked.* REPLACE (
    coalesce(checked.reason, CASE WHEN checked.day_line < later.last_of_day
        THEN '300 record: the register''s day again at line ' || later.last_of_day
             || ' with the same UpdateDateTime; that later record is read' END) AS reason
)
FROM checked
LEFT JOIN (
    SELECT file_id, nmi, suffix, interval_date, updated_at, max(day_line) AS last_of_day
    FROM checked
    WHERE reason IS NULL
    GROUP BY ALL
) AS later
  ON later.file_id = checked.file_id AND later.nmi = checked.nmi AND later.suffix = checked.suffix
 AND later.interval_date = checked.interval_date AND later.updated_at IS NOT DISTINCT FROM checked.updated_at
 AND checked.reason IS NULL
"""

# the interval events (400 records) of variable days, checked
EVENTS_SQL = """
CREATE OR REPLACE TEMP TABLE nem12_events AS
SELECT records.file_id, records.line_no AS event_line, records.day_line,
       TRY_CAST(records.f[2] AS INTEGER) AS first_interval,
       TRY_CAST(records.f[3] AS INTEGER) AS last_interval,
       records.f[4] AS quality_method, records.f[5] AS reason_code, records.f[6] AS reason_description,
       CASE
           WHEN records.unsplit IS NOT NULL THEN records.unsplit
           WHEN days.day_line IS NULL OR records.day_line < records.channel_line
                THEN '400 record without a 300 record before it'
           WHEN days.reason IS NOT NULL THEN 'its 300 record (line ' || days.day_line || ') is refused'
           WHEN days.quality_method <> 'V' THEN '400 record under a 300 record of quality ' || days.quality_method
                                                || ', not V'
           WHEN len(records.f) <> 6 THEN '400 record: ' || len(records.f) || ' fields, not 6'
           WHEN NOT regexp_full_match(records.f[2], '[0-9]{1,3}') OR NOT regexp_full_match(records.f[3], '[0-9]{1,3}')
                OR TRY_CAST(records.f[2] AS INTEGER) NOT BETWEEN 1 AND days.n
                OR TRY_CAST(records.f[3] AS INTEGER) NOT BETWEEN TRY_CAST(records.f[2] AS INTEGER) AND days.n
                THEN 'StartInterval, EndInterval: ' || records.f[2] || ' to ' || records.f[3]
                     || ' is not a range of the day''s ' || days.n || ' intervals'
           WHEN records.f[4] = 'V' OR NOT regexp_full_match(records.f[4], $quality_pattern)
                THEN 'QualityMethod: not a quality method for intervals: ' || records.f[4]
       END AS reason
FROM nem12_records AS records
LEFT JOIN nem12_days AS days USING (file_id, day_line)
WHERE records.record = '400'
"""

# every interval of the accepted days, with the quality its 400 record gives it on a variable day
INTERVALS_SQL = """
CREATE OR REPLACE TEMP TABLE nem12_intervals AS
WITH day_values AS (
    -- only the keys go through the unnest (carrying every column through it costs ten times more)
    SELECT file_id, day_line, unnest(generate_series(1, n)) AS interval_no, unnest(values) AS value
    FROM nem12_days
    WHERE reason IS NULL
),
days AS (
    SELECT file_id, day_line, nmi, suffix, flow, nmi || '-' || suffix AS meter_id, interval_minutes, kwh_per_unit, uom,
           updated_at, quality_method AS day_quality, reason_code AS day_reason_code,
           -- market time has no clock changes: the intervals follow the day's start in fixed steps
           timezone('UTC', timezone($tz, interval_date)) AS day_start
    FROM nem12_days
    WHERE reason IS NULL
),
intervals AS (
    SELECT * FROM day_values JOIN days USING (file_id, day_line)
),
event_intervals AS (
    SELECT file_id, day_line, unnest(generate_series(first_interval, last_interval)) AS interval_no,
           quality_method, reason_code, event_line
    FROM nem12_events
    WHERE reason IS NULL
),
events AS (
    SELECT file_id, day_line, interval_no, count(*) AS events,
           arg_min(quality_method, event_line) AS event_quality, arg_min(reason_code, event_line) AS event_reason_code
    FROM event_intervals
    GROUP BY ALL
)
SELECT file_id, day_line, interval_no, nmi, suffix, flow, meter_id, interval_minutes,
       day_start + to_minutes(interval_minutes * (interval_no - 1)) AS read_at,
       -- try(): thousands of MWh in a quarter hour overflow the exact decimal; refused below, not a failed day
       CASE WHEN regexp_full_match(value, $value_pattern)
            THEN try(CAST(CAST(value AS DECIMAL(18, 6)) * kwh_per_unit AS DECIMAL(18, 6))) END AS kwh,
       coalesce(event_quality, day_quality) AS quality_method,
       nullif(coalesce(event_reason_code, day_reason_code), '') AS reason_code,
       updated_at,
       CASE
           WHEN NOT regexp_full_match(value, $value_pattern)
                THEN 'IntervalValue' || interval_no || ': '
                     || CASE WHEN starts_with(value, '-') THEN 'negative: '
                             WHEN regexp_full_match(value, '[0-9]+(\\.[0-9]+)?') THEN 'too large or too precise: '
                             ELSE 'not a number: ' END || value
           WHEN kwh IS NULL THEN 'IntervalValue' || interval_no || ': too large: ' || value || ' ' || uom
           WHEN day_quality = 'V' AND events IS NULL THEN 'IntervalValue' || interval_no
                || ': the day''s quality is V and no 400 record covers this interval'
           WHEN events > 1 THEN 'IntervalValue' || interval_no || ': covered by more than one 400 record'
       END AS reason
FROM intervals
LEFT JOIN events USING (file_id, day_line, interval_no)
"""

# A file with more refused records and values than this is not a file an agent sends with a
# few faults in it: it is refused whole, one quarantined file rather than a flood of rows
# (which would also shut the day's quarantine gate for everyone).
MAX_REFUSED = 50_000
BROKEN_FILES_SQL = """
INSERT INTO nem12_file_errors
SELECT file_id, count(*) || ' records and values refused, more than ' || $max_refused
                || ': not a file of a few faults; not read'
FROM (
    SELECT file_id FROM nem12_records WHERE record NOT IN ('100', '200', '300', '400', '500', '900')
    UNION ALL SELECT file_id FROM nem12_channels WHERE reason IS NOT NULL
    UNION ALL SELECT file_id FROM nem12_days WHERE reason IS NOT NULL
    UNION ALL SELECT file_id FROM nem12_events WHERE reason IS NOT NULL
    UNION ALL SELECT file_id FROM nem12_intervals WHERE reason IS NOT NULL
)
WHERE file_id NOT IN (SELECT file_id FROM nem12_file_errors)
GROUP BY file_id
HAVING count(*) > $max_refused
"""

# every refused record or value, with its file, line and reason
REFUSED_SQL = """
CREATE OR REPLACE TEMP TABLE nem12_refused AS
SELECT file_id, CAST(NULL AS INTEGER) AS line_no, CAST(NULL AS VARCHAR) AS meter_id,
       CAST(NULL AS TIMESTAMP) AS read_at, reason, 'file' AS scope
FROM nem12_file_errors
UNION ALL
SELECT file_id, line_no, NULL, NULL, reason, 'row' FROM (
    SELECT file_id, line_no,
           CASE WHEN record NOT IN ('100', '200', '300', '400', '500', '900')
                THEN 'record indicator ' || left(record, 40) || ': not a NEM12 record'
                WHEN record NOT IN ('200', '300', '400') THEN unsplit END AS reason
    FROM nem12_records
    UNION ALL SELECT file_id, channel_line, reason FROM nem12_channels
    UNION ALL SELECT file_id, day_line, reason FROM nem12_days
    UNION ALL SELECT file_id, event_line, reason FROM nem12_events
) AS records
WHERE reason IS NOT NULL AND file_id NOT IN (SELECT file_id FROM nem12_file_errors)
UNION ALL
SELECT file_id, day_line, meter_id, read_at, reason, 'row'
FROM nem12_intervals
WHERE reason IS NOT NULL AND file_id NOT IN (SELECT file_id FROM nem12_file_errors)
"""

# The curated grid: a quarter hour from three 5-minute values (all three must be good, else it
# is missing and estimated like any gap), from one 15-minute value, or from half a 30-minute
# value: the first half rounded to Wh, the second the rest, so the two always add up to it.
QUARTER_HOURS_SQL = """
CREATE OR REPLACE TEMP TABLE nem12_quarter_hours AS
WITH good AS (
    SELECT * FROM nem12_intervals
    WHERE reason IS NULL AND file_id NOT IN (SELECT file_id FROM nem12_file_errors)
),
five AS (
    SELECT file_id, meter_id, flow, time_bucket(INTERVAL 15 MINUTE, read_at) AS read_at, 5 AS interval_minutes,
           sum(kwh) AS kwh, max(quality_method) FILTER (WHERE quality_method <> 'A') AS worst,
           count(*) AS parts, max(day_line) AS day_line, max(updated_at) AS updated_at
    FROM good WHERE interval_minutes = 5
    GROUP BY ALL
),
halves AS (
    SELECT file_id, meter_id, flow, read_at + to_minutes(15 * half) AS read_at, 30 AS interval_minutes,
           CASE half WHEN 0 THEN round(kwh * 0.5, 3) ELSE round(kwh, 3) - round(kwh * 0.5, 3) END AS kwh,
           quality_method, day_line, updated_at
    FROM good, (SELECT unnest([0, 1]) AS half)
    WHERE interval_minutes = 30
)
SELECT file_id, meter_id, flow, read_at, interval_minutes, CAST(round(kwh, 3) AS DECIMAL(12, 3)) AS kwh,
       quality_method, day_line, updated_at
FROM good WHERE interval_minutes = 15
UNION ALL
SELECT file_id, meter_id, flow, read_at, interval_minutes, round(kwh, 3), coalesce(worst, 'A'), day_line, updated_at
FROM five WHERE parts = 3
UNION ALL
SELECT file_id, meter_id, flow, read_at, interval_minutes, kwh, quality_method, day_line, updated_at FROM halves
"""


# The day's readings from NEM12 files, in the staged shape of every contract (see
# `meter_assets/curated/readings.py`): the quarter hours of the local day, and the refused
# records and values (those of this day, and those with no time, on every day the file feeds).
# A later UpdateDateTime wins over an earlier one; null data (`N`) is no reading at all.
STAGE_SQL = """
COPY (
    SELECT
        q.file_id,
        CAST(NULL AS VARCHAR)                                                  AS record,
        CAST(q.day_line AS BIGINT)                                             AS line,
        q.meter                                                                AS meter_id,
        q.read_at                                                              AS device_read_at,
        q.read_at,
        try(CAST(q.kwh AS DECIMAL(12, 3)))                                     AS kwh,
        CASE WHEN starts_with(q.quality_method, 'A') THEN 'actual' ELSE 'estimated' END AS quality_flag,
        CAST(1 AS SMALLINT)                                                    AS version,
        coalesce(timezone('UTC', timezone($tz, q.updated_at)), files.arrived_at) AS received_at,
        CAST(0 AS BIGINT)                                                      AS clock_offset_s,
        CAST(q.interval_minutes AS SMALLINT)                                   AS interval_minutes,
        q.flow,
        CASE
            WHEN q.meter NOT IN (SELECT meter_id FROM known_meters) THEN 'meter_id: unknown meter ' || q.meter_id
            WHEN try(CAST(q.kwh AS DECIMAL(12, 3))) IS NULL
                 THEN 'energy: ' || q.kwh || ' kWh is too large for a meter reading'
        END                                                                    AS reason
    FROM (
        -- an export register (B) is the export of the meter whose import register (E) has the
        -- same element, the suffix's second character: B1's readings are meter E1's export
        SELECT *, CASE WHEN flow = 'export' THEN regexp_replace(meter_id, '-B([A-Z0-9])$', '-E\\1')
                       ELSE meter_id END AS meter
        FROM nem12_quarter_hours
    ) AS q
    JOIN files USING (file_id)
    WHERE q.read_at >= $day_start AND q.read_at < $day_end AND q.quality_method <> 'N'
    UNION ALL
    SELECT refused.file_id, left(lines.line, $record_chars), CAST(refused.line_no AS BIGINT), refused.meter_id, NULL,
           refused.read_at,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, refused.reason
    FROM nem12_refused AS refused
    LEFT JOIN nem12_lines AS lines USING (file_id, line_no)
    WHERE refused.scope = 'row'
      AND (refused.read_at IS NULL OR (refused.read_at >= $day_start AND refused.read_at < $day_end))
) TO '{target}' (FORMAT parquet, COMPRESSION lz4_raw)
"""


def stage(
    con: duckdb.DuckDBPyConnection,
    files: dict[int, bytes],
    target: str,
    day_start: dt.datetime,
    day_end: dt.datetime,
    tz: str,
    limit: int = MAX_UNPACKED_BYTES,
    landed: dict[int, dt.datetime] | None = None,
) -> dict[int, str]:
    """Stage the local day's readings of these NEM12 files (by the day's file ids) to the
    Parquet file `target`; returns the files refused whole, with the reason."""
    parse(con, files, tz, limit, landed)
    con.execute(
        STAGE_SQL.format(target=target),
        {"tz": tz, "day_start": day_start, "day_end": day_end, "record_chars": RECORD_CHARS},
    )
    return dict(con.execute("SELECT file_id, reason FROM nem12_file_errors").fetchall())


def parse(
    con: duckdb.DuckDBPyConnection,
    files: dict[int, bytes],
    tz: str,
    limit: int = MAX_UNPACKED_BYTES,
    landed: dict[int, dt.datetime] | None = None,
) -> None:
    """Parse NEM12 files (by file id) into the connection's temp tables: `nem12_intervals`
    (every interval as the file gives it, with a reason if refused), `nem12_refused` (refused
    files, records and values) and `nem12_quarter_hours` (good intervals on the curated grid).
    `landed` is when each file landed (UTC; now if not given): no record may be from after it."""
    lines, unreadable = lines_table(files, limit)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    con.register("nem12_lines", lines)
    con.register(
        "nem12_files",
        pa.table(
            {
                "file_id": pa.array(list(files), pa.int32()),
                "landed_at": pa.array([(landed or {}).get(f, now) for f in files], pa.timestamp("us")),
            }
        ),
    )
    con.execute(RECORDS_SQL, {"max_bytes": MAX_RECORD_BYTES, "max_fields": MAX_RECORD_FIELDS})
    con.register(
        "nem12_unreadable",
        pa.table(
            {
                "file_id": pa.array(list(unreadable), pa.int32()),
                "reason": pa.array(list(unreadable.values()), pa.string()),
            }
        ),
    )
    con.execute(FILE_ERRORS_SQL)
    con.execute(CHANNELS_SQL, {"nmi_pattern": NMI_PATTERN, "suffix_pattern": SUFFIX_PATTERN})
    con.execute(
        DAYS_SQL,
        {
            "quality_pattern": QUALITY_PATTERN,
            "tz": tz,
            "first_date": FIRST_INTERVAL_DATE,
            "receive_tolerance": RECEIVE_TOLERANCE_S,
        },
    )
    con.execute(EVENTS_SQL, {"quality_pattern": QUALITY_PATTERN})
    con.execute(INTERVALS_SQL, {"tz": tz, "value_pattern": VALUE_PATTERN})
    con.execute(BROKEN_FILES_SQL, {"max_refused": MAX_REFUSED})
    con.execute(REFUSED_SQL)
    con.execute(QUARTER_HOURS_SQL)
