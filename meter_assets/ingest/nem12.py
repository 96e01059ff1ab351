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
from dataclasses import dataclass

import duckdb
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


class UnreadableFile(ValueError):
    """A file that is not a NEM12 file at all: quarantined whole with this reason."""


def unpack(data: bytes, limit: int = MAX_UNPACKED_BYTES) -> bytes:
    """A NEM12 file's text as delivered: plain, gzip or a zip that holds one file."""
    if data[:4] == b"PK\x03\x04":
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            members = [m for m in archive.infolist() if not m.is_dir()]
        except zipfile.BadZipFile as exc:
            raise UnreadableFile(f"not a readable zip: {exc}") from exc
        if len(members) != 1:
            raise UnreadableFile(f"the zip holds {len(members)} files; a NEM12 zip holds one")
        if members[0].file_size > limit:
            raise UnreadableFile(f"the zipped file is {members[0].file_size} bytes, more than {limit}")
        try:
            return archive.read(members[0])
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise UnreadableFile(f"not a readable zip: {exc}") from exc
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
                text = stream.read(limit + 1)
        except (OSError, EOFError) as exc:
            raise UnreadableFile(f"not readable gzip: {exc}") from exc
        if len(text) > limit:
            raise UnreadableFile(f"more than {limit} bytes once decompressed")
        return text
    return data


DAY_RECORD = re.compile(rb"^300,([0-9]{8}),", re.MULTILINE)


@dataclass(frozen=True)
class Scan:
    """What a NEM12 file holds, without parsing it: its interval dates (market time), lines,
    longest line, and the reason it cannot be read at all (then it holds nothing)."""

    dates: tuple[dt.date, ...]
    lines: int
    longest_line_bytes: int
    reason: str | None = None

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
    return scan.market_days(nem12_tz) if scan.dates else [local_day_of(landed_at)]


def scan(data: bytes, limit: int = MAX_UNPACKED_BYTES) -> Scan:
    try:
        text = unpack(data, limit)
    except UnreadableFile as exc:
        return Scan((), 0, 0, str(exc))
    if not text.startswith(HEADER_PREFIX.encode()):
        return Scan((), 0, 0, f"no NEM12 header: the first record is not 100,NEM12: {text[:60]!r}")
    dates = set()
    for found in set(DAY_RECORD.findall(text)):
        try:
            dates.add(dt.datetime.strptime(found.decode(), "%Y%m%d").date())
        except ValueError:
            continue  # a date that does not exist: refused record by record when the file is parsed
    lines = text.split(b"\n")
    return Scan(tuple(sorted(dates)), len(lines) - (lines[-1] == b""), max(map(len, lines)))


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
    """Every line of each file (`file_id`, `line_no` from 1, `line`), and the files that could
    not be read at all, with the reason."""
    file_ids: list[pa.Array] = []
    numbers: list[pa.Array] = []
    texts: list[pa.Array] = []
    unreadable: dict[int, str] = {}
    for file_id, data in files.items():
        try:
            text = unpack(data, limit).decode("utf-8")
        except UnreadableFile as exc:
            unreadable[file_id] = str(exc)
            continue
        except UnicodeDecodeError as exc:
            unreadable[file_id] = f"not UTF-8 text: byte {exc.start} is {data[exc.start : exc.start + 1]!r}"
            continue
        lines = pa.array(text.split("\n"), pa.string())
        file_ids.append(pa.array([file_id] * len(lines), pa.int32()))
        numbers.append(pa.array(range(1, len(lines) + 1), pa.int32()))
        texts.append(lines)
    table = pa.table(
        {
            "file_id": pa.concat_arrays(file_ids) if file_ids else pa.array([], pa.int32()),
            "line_no": pa.concat_arrays(numbers) if numbers else pa.array([], pa.int32()),
            "line": pa.concat_arrays(texts) if texts else pa.array([], pa.string()),
        }
    )
    return table, unreadable


# Each record, split into its fields, with the 200 record (register) and 300 record (day) it
# belongs to: the last of each before it in the file.
RECORDS_SQL = """
CREATE OR REPLACE TEMP TABLE nem12_records AS
WITH split AS (
    SELECT file_id, line_no, string_split(rtrim(line, chr(13)), ',') AS f
    FROM nem12_lines
    WHERE trim(line, chr(13) || ' ') <> ''
)
SELECT file_id, line_no, f, f[1] AS record,
       max(line_no) FILTER (WHERE f[1] = '200') OVER file_order AS channel_line,
       max(line_no) FILTER (WHERE f[1] = '300') OVER file_order AS day_line,
       min(line_no) OVER whole_file AS first_line,
       max(line_no) OVER whole_file AS last_line
FROM split
WINDOW file_order AS (PARTITION BY file_id ORDER BY line_no ROWS UNBOUNDED PRECEDING),
       whole_file AS (PARTITION BY file_id)
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
    SELECT records.file_id, records.line_no AS day_line, records.f, records.channel_line,
           channels.nmi, channels.suffix, channels.flow, channels.interval_minutes, channels.kwh_per_unit, channels.uom,
           channels.reason AS channel_reason,
           1440 // channels.interval_minutes AS n
    FROM nem12_records AS records
    LEFT JOIN nem12_channels AS channels USING (file_id, channel_line)
    WHERE records.record = '300'
)
SELECT file_id, day_line, channel_line, nmi, suffix, flow, interval_minutes, kwh_per_unit, uom, n,
       f[3 : 2 + n] AS values,
       try_strptime(f[2], '%Y%m%d') AS interval_date,
       f[n + 3] AS quality_method,
       f[n + 4] AS reason_code,
       f[n + 5] AS reason_description,
       try_strptime(f[n + 6], '%Y%m%d%H%M%S') AS updated_at,
       CASE
           WHEN channel_line IS NULL THEN '300 record before any 200 record'
           WHEN channel_reason IS NOT NULL THEN 'its 200 record (line ' || channel_line || ') is refused'
           WHEN len(f) <> n + 7 THEN '300 record: ' || len(f) || ' fields; a day of ' || n || ' '
                                     || interval_minutes || '-minute intervals has ' || (n + 7)
           WHEN NOT regexp_full_match(f[2], '[0-9]{8}') OR try_strptime(f[2], '%Y%m%d') IS NULL
                THEN 'IntervalDate: not a date: ' || f[2]
           WHEN NOT regexp_full_match(f[n + 3], $quality_pattern) THEN 'QualityMethod: not a quality method: '
                                                                          || f[n + 3]
           WHEN f[n + 6] <> '' AND try_strptime(f[n + 6], '%Y%m%d%H%M%S') IS NULL
                THEN 'UpdateDateTime: not a time: ' || f[n + 6]
       END AS reason
FROM days
"""

# the interval events (400 records) of variable days, checked
EVENTS_SQL = """
CREATE OR REPLACE TEMP TABLE nem12_events AS
SELECT records.file_id, records.line_no AS event_line, records.day_line,
       TRY_CAST(records.f[2] AS INTEGER) AS first_interval,
       TRY_CAST(records.f[3] AS INTEGER) AS last_interval,
       records.f[4] AS quality_method, records.f[5] AS reason_code, records.f[6] AS reason_description,
       CASE
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
                THEN 'record indicator ' || record || ': not a NEM12 record' END AS reason
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
        q.meter_id,
        q.read_at                                                              AS device_read_at,
        q.read_at,
        try(CAST(q.kwh AS DECIMAL(12, 3)))                                     AS kwh,
        CASE WHEN starts_with(q.quality_method, 'A') THEN 'actual' ELSE 'estimated' END AS quality_flag,
        CAST(1 AS SMALLINT)                                                    AS version,
        coalesce(timezone('UTC', timezone($tz, q.updated_at)), files.arrived_at) AS received_at,
        CAST(0 AS BIGINT)                                                      AS clock_offset_s,
        CAST(q.interval_minutes AS SMALLINT)                                   AS interval_minutes,
        CASE
            WHEN q.meter_id NOT IN (SELECT meter_id FROM known_meters) THEN 'meter_id: unknown meter ' || q.meter_id
            WHEN try(CAST(q.kwh AS DECIMAL(12, 3))) IS NULL
                 THEN 'energy: ' || q.kwh || ' kWh is too large for a meter reading'
        END                                                                    AS reason
    FROM nem12_quarter_hours AS q
    JOIN files USING (file_id)
    WHERE q.read_at >= $day_start AND q.read_at < $day_end AND q.quality_method <> 'N'
      -- an export register's good readings go to reads_15min_export (EXPORT_SQL), never here
      AND (q.flow = 'import' OR q.meter_id NOT IN (SELECT meter_id FROM known_meters)
           OR try(CAST(q.kwh AS DECIMAL(12, 3))) IS NULL)
    UNION ALL
    SELECT refused.file_id, lines.line, CAST(refused.line_no AS BIGINT), refused.meter_id, NULL, refused.read_at,
           NULL, NULL, NULL, NULL, NULL, NULL, refused.reason
    FROM nem12_refused AS refused
    LEFT JOIN nem12_lines AS lines USING (file_id, line_no)
    WHERE refused.scope = 'row'
      AND (refused.read_at IS NULL OR (refused.read_at >= $day_start AND refused.read_at < $day_end))
) TO '{target}' (FORMAT parquet, COMPRESSION lz4_raw)
"""


# The day's readings of export registers (suffix B: what the premises fed into the grid),
# kept apart from consumption: the latest delivery of each quarter hour.
EXPORT_SQL = """
COPY (
    SELECT
        q.meter_id,
        q.read_at,
        CAST(q.kwh AS DECIMAL(12, 3))                                          AS kwh,
        CASE WHEN starts_with(q.quality_method, 'A') THEN 'actual' ELSE 'estimated' END AS quality_flag,
        q.quality_method,
        CAST(q.interval_minutes AS SMALLINT)                                   AS interval_minutes,
        files.file_key                                                         AS source_file,
        files.arrived_at                                                       AS ingested_at
    FROM nem12_quarter_hours AS q
    JOIN files USING (file_id)
    WHERE q.flow = 'export' AND q.read_at >= $day_start AND q.read_at < $day_end AND q.quality_method <> 'N'
      AND q.meter_id IN (SELECT meter_id FROM known_meters) AND try(CAST(q.kwh AS DECIMAL(12, 3))) IS NOT NULL
    QUALIFY row_number() OVER (
        PARTITION BY q.meter_id, q.read_at ORDER BY q.updated_at DESC NULLS LAST, files.arrived_at DESC, q.file_id DESC
    ) = 1
    ORDER BY q.meter_id, q.read_at
) TO '{target}' (FORMAT parquet, COMPRESSION zstd)
"""
EMPTY_EXPORT_SQL = """
COPY (
    SELECT NULL::VARCHAR AS meter_id, NULL::TIMESTAMP AS read_at, NULL::DECIMAL(12, 3) AS kwh,
           NULL::VARCHAR AS quality_flag, NULL::VARCHAR AS quality_method, NULL::SMALLINT AS interval_minutes,
           NULL::VARCHAR AS source_file, NULL::TIMESTAMP AS ingested_at
    WHERE FALSE
) TO '{target}' (FORMAT parquet, COMPRESSION zstd)
"""


def stage(
    con: duckdb.DuckDBPyConnection,
    files: dict[int, bytes],
    target: str,
    day_start: dt.datetime,
    day_end: dt.datetime,
    tz: str,
    limit: int = MAX_UNPACKED_BYTES,
) -> dict[int, str]:
    """Stage the local day's readings of these NEM12 files (by the day's file ids) to the
    Parquet file `target`; returns the files refused whole, with the reason."""
    parse(con, files, tz, limit)
    con.execute(STAGE_SQL.format(target=target), {"tz": tz, "day_start": day_start, "day_end": day_end})
    return dict(con.execute("SELECT file_id, reason FROM nem12_file_errors").fetchall())


def write_export(con: duckdb.DuckDBPyConnection, target: str, day_start: dt.datetime, day_end: dt.datetime) -> int:
    """Write the day's export readings of the files `stage` parsed (none if it parsed none)
    to the Parquet file `target`; returns the rows written."""
    parsed = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'nem12_quarter_hours'").fetchone()[0]
    if not parsed:
        con.execute(EMPTY_EXPORT_SQL.format(target=target))
        return 0
    return con.execute(EXPORT_SQL.format(target=target), {"day_start": day_start, "day_end": day_end}).fetchone()[0]


def parse(con: duckdb.DuckDBPyConnection, files: dict[int, bytes], tz: str, limit: int = MAX_UNPACKED_BYTES) -> None:
    """Parse NEM12 files (by file id) into the connection's temp tables: `nem12_intervals`
    (every interval as the file gives it, with a reason if refused), `nem12_refused` (refused
    files, records and values) and `nem12_quarter_hours` (good intervals on the curated grid)."""
    lines, unreadable = lines_table(files, limit)
    con.register("nem12_lines", lines)
    con.register("nem12_files", pa.table({"file_id": pa.array(list(files), pa.int32())}))
    con.execute(RECORDS_SQL)
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
    con.execute(DAYS_SQL, {"quality_pattern": QUALITY_PATTERN})
    con.execute(EVENTS_SQL, {"quality_pattern": QUALITY_PATTERN})
    con.execute(INTERVALS_SQL, {"tz": tz, "value_pattern": VALUE_PATTERN})
    con.execute(REFUSED_SQL)
    con.execute(QUARTER_HOURS_SQL)
