"""Curating one local day of head-end files into `reads_15min`, in DuckDB SQL.

The steps, one statement each:
1. stage every readable file of a contract into one typed shape, with a reason per bad row;
2. quarantine: bad rows, rows the CSV reader could not split, and unreadable files;
3. curate: the latest version of each meter and interval, plus a `missing` row for each
   interval an expected meter did not deliver, written sorted by meter and time, one
   Parquet file per range of meters.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from meter_assets.config import settings
from meter_assets.curated.estimation import HISTORY_DAYS, Estimator, Rules
from meter_assets.ingest import nem12
from meter_assets.ingest.contracts import BY_NAME, Contract
from meter_assets.market_calendar import INTERVAL, local_day_bounds
from meter_assets.sql import VIEW_SQL, parquet, sql_list

# Meters per curation step: bounds the dedupe's memory at full scale.
CHUNK_METERS = 50_000

# A corrected timestamp further than this from a quarter-hour is not trusted.
GRID_TOLERANCE_S = 120
# A meter clock further than this from the head-end's is broken, not drifting: its
# readings are quarantined rather than moved by the difference.
MAX_CLOCK_OFFSET_S = 86_400
# The head-end cannot receive a reading before its interval ends, nor after the file that
# carries it landed in the lake; clocks may disagree by this much.
RECEIVE_TOLERANCE_S = nem12.RECEIVE_TOLERANCE_S
# numbers as decimal digits (no exponent, hexadecimal or padding); a version from 0
VERSION_PATTERN = "0|[1-9][0-9]{0,4}"
ENERGY_PATTERN = r"-?[0-9]{1,15}(\.[0-9]{1,6})?"
# the readers' limit on one line (DuckDB's default, stated): a longer line is quarantined
MAX_LINE_BYTES = 2_000_000
# the longest line a record of these contracts has, and then some: a longer one is not split
MAX_RECORD_BYTES = 4096
RECORD_CHARS = nem12.RECORD_CHARS
# `copies` is a SMALLINT: a reading delivered more often than this is counted as this often
MAX_COPIES = 32_767

# Fields arrive as text; every cast is a TRY_CAST so one bad value names itself in `reason`
# instead of failing the day.
STAGE_SQL = """
COPY (
WITH lines AS (
    {lines}
),
source AS (
    {fields}
),
typed AS (
    SELECT
        file_id,
        source_arrived_at,
        record,
        shape,
        fields,
        -- identifiers and versions exactly as the contract writes them: "1000090.5", "0x0F42A5",
        -- "1e1" and "1.6" are not rounded or converted into something else
        CASE WHEN regexp_full_match(fields.meter_id, $meter_id_pattern)
             THEN fields.meter_id END                                           AS meter_id,
        CASE WHEN ends_with(fields.interval_start, 'Z')
             THEN TRY_CAST(fields.interval_start AS TIMESTAMP) END              AS device_read_at,
        CASE WHEN regexp_full_match(fields.energy, $energy_pattern)
             THEN TRY_CAST(fields.energy AS DECIMAL(18, 3)) END                 AS energy,
        CASE fields.quality WHEN $actual THEN 'actual'
                            WHEN $estimated THEN 'estimated' END                AS quality_flag,
        -- a contract without a register delivers consumption only
        CASE WHEN $import_code IS NULL THEN 'import'
             WHEN fields.register = $import_code THEN 'import'
             WHEN fields.register = $export_code THEN 'export' END              AS flow,
        CASE WHEN regexp_full_match(fields.version, $version_pattern)
             THEN TRY_CAST(fields.version AS SMALLINT) END                      AS version,
        CASE WHEN ends_with(fields.meter_clock, 'Z')
             THEN TRY_CAST(fields.meter_clock AS TIMESTAMP) END                 AS meter_clock,
        CASE WHEN ends_with(fields.received_at, 'Z')
             THEN TRY_CAST(fields.received_at AS TIMESTAMP) END                 AS received_at
    FROM source
),
normalised AS (
    SELECT
        *,
        -- try(): a number too large for a reading is refused by name below, not by failing the file
        try(CAST({kwh_expression} AS DECIMAL(12, 3)))                           AS kwh,
        try(date_diff('second', received_at, meter_clock))                      AS clock_offset_s
    FROM typed
),
corrected AS (
    -- only a plausible clock is corrected for; try(): no value, however extreme, fails the day
    SELECT
        *,
        CASE WHEN abs(clock_offset_s) <= $max_clock_offset
             THEN try(device_read_at - to_seconds(clock_offset_s)) END          AS corrected_at
    FROM normalised
),
snapped AS (
    SELECT
        *,
        try(make_timestamp(CAST(round(epoch_us(corrected_at) / 900e6) AS BIGINT) * 900000000)) AS read_at
    FROM corrected
)
SELECT
    file_id,
    -- a refused line is kept as far as anyone reads it (a bomb's line is not carried whole)
    CASE WHEN reason IS NOT NULL AND reason <> 'blank' THEN left(record, {record_chars}) END AS record,
    CAST(NULL AS BIGINT) AS line,
    meter_id, device_read_at, read_at, kwh, quality_flag, version, received_at, clock_offset_s,
    CAST(15 AS SMALLINT) AS interval_minutes,
    flow,
    reason
FROM (
    SELECT
        *,
        CASE
            WHEN shape IS NOT NULL             THEN shape
            WHEN meter_id IS NULL              THEN 'meter_id: '
                || coalesce('not a meter id of the ' || $vendor || ' head-end: ' || fields.meter_id, 'missing')
            WHEN meter_id NOT IN (SELECT meter_id FROM known_meters)
                                               THEN 'meter_id: unknown meter ' || meter_id
            WHEN device_read_at IS NULL        THEN 'interval_start: '
                || coalesce('not an ISO 8601 UTC time: ' || fields.interval_start, 'missing')
            WHEN energy IS NULL                THEN 'energy: ' || coalesce('not a number: ' || fields.energy, 'missing')
            WHEN {whole_check}                 THEN 'energy: not a whole number of Wh: ' || fields.energy
            WHEN kwh IS NULL                   THEN 'energy: ' || fields.energy || ' is too large for a meter reading'
            WHEN kwh < 0                       THEN 'energy: negative reading ' || kwh || ' kWh'
            WHEN quality_flag IS NULL          THEN 'quality: '
                || coalesce('unknown code ' || fields.quality, 'missing')
            WHEN flow IS NULL                  THEN 'register: '
                || coalesce('unknown code ' || fields.register, 'missing')
            WHEN version IS NULL               THEN 'version: '
                || coalesce('not a whole number from 0 to 32767: ' || fields.version, 'missing')
            WHEN meter_clock IS NULL           THEN 'meter_clock: '
                || coalesce('not an ISO 8601 UTC time: ' || fields.meter_clock, 'missing')
            WHEN received_at IS NULL           THEN 'received_at: '
                || coalesce('not an ISO 8601 UTC time: ' || fields.received_at, 'missing')
            WHEN received_at > source_arrived_at + to_seconds($receive_tolerance)
                                               THEN 'received_at: ' || received_at || ' is after the file landed ('
                                                    || source_arrived_at || ')'
            WHEN corrected_at IS NULL          THEN 'meter_clock: ' || meter_clock || ' is more than '
                                                    || $max_clock_offset || ' s from the receive time ' || received_at
            WHEN read_at IS NULL OR abs(date_diff('second', read_at, corrected_at)) > $grid_tolerance
                                               THEN 'clock: corrected time ' || corrected_at || ' is not within '
                                                    || $grid_tolerance || ' s of a quarter hour'
            WHEN read_at < $day_start OR read_at >= $day_end
                                               THEN 'read_at: ' || read_at || ' is outside the local day'
            WHEN received_at < read_at + INTERVAL 15 MINUTE - to_seconds($receive_tolerance)
                                               THEN 'received_at: ' || received_at || ' is before the interval '
                                                    || read_at || ' ended'
        END AS reason
    FROM snapped
)
) TO '{target}' (FORMAT parquet, COMPRESSION lz4_raw)
"""

# Both formats are read a line at a time (the CSV reader only finds the line breaks, which
# may be LF, CRLF, CR or a mix, and drops a byte-order mark) and split here: a line of any
# shape costs what its text costs, a quote never swallows the lines after it, and a line of
# the wrong shape is one row refused. Only a line of a record's length is split at all.
LINES_SOURCE = """
    SELECT files.file_id, files.arrived_at AS source_arrived_at, lines.line AS record
    FROM read_csv({uris}, header = {header}, auto_detect = false, columns = {{'line': 'VARCHAR'}},
                  delim = '\\x1f', quote = '', escape = '', strict_mode = false, filename = true,
                  store_rejects = true, max_line_size = {max_line_bytes}) AS lines
    JOIN files ON files.uri = lines.filename
"""

# a line no record of the contracts is as long as: refused unsplit (a reader's limit, or ours)
TOO_LONG = """'a line of ' || strlen(record) || ' bytes: ' || CASE WHEN strlen(record) > {max_line_bytes}
    THEN 'more than the {max_line_bytes} a line may have' ELSE 'longer than any record ({max_record_bytes})' END"""

# a field the writer put in double quotes is read without them
CSV_FIELDS = """
    SELECT *,
           CASE WHEN shape IS NULL THEN {struct} END AS fields
    FROM (
        SELECT file_id, source_arrived_at, record,
               CASE WHEN record IS NULL THEN 'blank'
                    WHEN strlen(record) > {max_record_bytes} THEN {too_long}
                    WHEN len(split) <> {count} THEN CASE WHEN trim(record) = '' THEN 'blank'
                         ELSE len(split) || ' fields: the contract has {count}' END
               END AS shape,
               CASE WHEN NOT contains(record, '"') THEN split
                    ELSE list_transform(split, lambda x: CASE WHEN strlen(x) > 1 AND starts_with(x, '"')
                                                                   AND ends_with(x, '"') THEN x[2:-2] ELSE x END)
               END AS parts
        FROM (
            SELECT *, CASE WHEN strlen(record) <= {max_record_bytes} THEN string_split(record, ',') END AS split
            FROM lines
        )
    )
"""

# JSON values have types: energy and versions are numbers written in decimal digits (the JSON
# reader would turn 1E2 into 100.0 and 1e-400 into 0), text is a string; one parse a line
JSONL_FIELDS = """
    SELECT *,
           CASE WHEN shape IS NULL THEN {struct} END AS fields
    FROM (
        SELECT *,
               CASE WHEN record IS NULL THEN 'blank'
                    WHEN strlen(record) > {max_record_bytes} THEN {too_long}
                    WHEN parts IS NULL THEN CASE WHEN trim(record) = '' THEN 'blank' ELSE 'not valid JSON' END
                    WHEN NOT starts_with(ltrim(record), '{{') THEN 'not a JSON object'
                    WHEN NOT ({typed}) THEN concat_ws('; ', {mistyped})
                    -- only a line with a digit before an e pays for looking outside its strings
                    WHEN regexp_matches(record, '[0-9][eE]')
                         AND regexp_matches(regexp_replace(record, '"(\\\\.|[^"\\\\])*"', '""', 'g'), '[0-9.][eE]')
                    THEN 'a number written with an exponent: the contract writes decimal digits'
               END AS shape
        FROM (
            SELECT *,
                   CASE WHEN strlen(record) <= {max_record_bytes} AND json_valid(record)
                        THEN CAST(json_extract(record, {paths}) AS VARCHAR[]) END AS parts
            FROM lines
        )
    )
"""

QUARANTINE_SQL = """
COPY (
    WITH bad_rows AS (
        -- a blank line is read and holds nothing: it is accounted for, not quarantined
        SELECT file_id, line, reason, left(record, $record_chars) AS record, meter_id, read_at
        FROM staged
        WHERE reason IS NOT NULL AND reason <> 'blank'
    ),
    -- one row per line the reader rejected, however many errors it found in it
    unsplittable_rows AS (
        SELECT files.file_id, errors.line,
               min(errors.error_type || ': ' || errors.error_message) AS reason,
               left(rtrim(min(errors.csv_line), chr(10)), $record_chars) AS record, CAST(NULL AS VARCHAR) AS meter_id,
               CAST(NULL AS TIMESTAMP) AS read_at
        FROM reject_errors AS errors
        JOIN reject_scans AS scans USING (scan_id, file_id)
        JOIN files ON files.uri = scans.file_path
        GROUP BY files.file_id, errors.line
    ),
    unreadable_files AS (
        SELECT file_id, CAST(NULL AS BIGINT) AS line, reason, CAST(NULL AS VARCHAR) AS record,
               CAST(NULL AS VARCHAR) AS meter_id, CAST(NULL AS TIMESTAMP) AS read_at
        FROM files
        WHERE status <> 'ok'
    ),
    -- every line of a readable file is read or rejected; any other is accounted for here (a
    -- line the reader drops, such as an over-long last line, is never lost without a trace)
    read_lines AS (
        SELECT file_id, count(*) AS lines FROM staged GROUP BY file_id
    ),
    rejected_lines AS (
        SELECT scans.file_path AS uri, count(DISTINCT errors.line) AS lines
        FROM reject_errors AS errors
        JOIN reject_scans AS scans USING (scan_id, file_id)
        GROUP BY scans.file_path
    ),
    unaccounted_lines AS (
        SELECT files.file_id, CAST(NULL AS BIGINT) AS line,
               (files.rows - coalesce(read_lines.lines, 0) - coalesce(rejected_lines.lines, 0))
               || ' line(s) neither read nor rejected by the reader: '
               || CASE WHEN files.longest_line_bytes > $max_line_bytes
                       THEN 'the longest line has ' || files.longest_line_bytes || ' bytes, more than the '
                            || $max_line_bytes || ' a line may have'
                       ELSE 'lines the reader dropped' END AS reason,
               CAST(NULL AS VARCHAR) AS record, CAST(NULL AS VARCHAR) AS meter_id, CAST(NULL AS TIMESTAMP) AS read_at
        FROM files
        LEFT JOIN read_lines USING (file_id)
        LEFT JOIN rejected_lines USING (uri)
        WHERE files.status = 'ok' AND files.contract <> 'nem12'  -- a NEM12 line holds a day, not a reading
          AND files.rows > coalesce(read_lines.lines, 0) + coalesce(rejected_lines.lines, 0)
    )
    SELECT files.file_key AS source_file, files.contract, q.line, q.reason, q.record, q.meter_id, q.read_at,
           files.arrived_at AS ingested_at,
           CASE WHEN files.status = 'ok' THEN 'row' ELSE 'file' END AS scope
    FROM (SELECT * FROM bad_rows UNION ALL SELECT * FROM unsplittable_rows UNION ALL SELECT * FROM unreadable_files
          UNION ALL SELECT * FROM unaccounted_lines) AS q
    JOIN files USING (file_id)
    ORDER BY source_file, q.line NULLS LAST, q.meter_id, q.read_at, q.reason
) TO '{target}' (FORMAT parquet, COMPRESSION zstd)
"""

CURATE_SQL = """
CREATE OR REPLACE TEMP TABLE day_readings AS
    WITH ranked AS (
        -- one sortable number per row: version first, then receive time, then file
        SELECT *,
               (CAST(version AS BIGINT) << 48) | (CAST(epoch(received_at) AS BIGINT) << 16) | file_id AS rank
        FROM staged
        WHERE reason IS NULL AND flow = 'import' AND meter_id BETWEEN $first_meter AND $last_meter
    ),
    keys AS MATERIALIZED (
        SELECT meter_id, read_at, count(*) AS copies FROM ranked GROUP BY meter_id, read_at
    ),
    repeated AS (
        SELECT meter_id, read_at FROM keys WHERE copies > 1
    ),
    latest_version AS (
        -- most readings arrive once and pass straight through; a resent file collapses to
        -- one row, a correction (higher version) wins, and among equal versions the one
        -- received last (choosing among copies is the costly part, so only repeated keys pay it)
        SELECT meter_id, read_at, kwh, quality_flag, version, device_read_at, received_at, clock_offset_s, file_id,
               interval_minutes, 1 AS copies, CAST(NULL AS DECIMAL(12, 3)) AS replaced_kwh
        FROM ranked ANTI JOIN repeated USING (meter_id, read_at)
        UNION ALL
        SELECT
            meter_id,
            read_at,
            arg_max(kwh, rank)            AS kwh,
            arg_max(quality_flag, rank)   AS quality_flag,
            arg_max(version, rank)        AS version,
            arg_max(device_read_at, rank) AS device_read_at,
            arg_max(received_at, rank)    AS received_at,
            arg_max(clock_offset_s, rank) AS clock_offset_s,
            arg_max(file_id, rank)        AS file_id,
            arg_max(interval_minutes, rank) AS interval_minutes,
            count(*)                      AS copies,
            -- the first version's reading, when a later version replaced it (a correction)
            CASE WHEN min(version) < max(version) THEN arg_min(kwh, rank) END AS replaced_kwh
        FROM ranked SEMI JOIN repeated USING (meter_id, read_at)
        GROUP BY meter_id, read_at
    ),
    local_day AS (
        SELECT unnest(generate_series($day_start, $day_end - INTERVAL 15 MINUTE, INTERVAL 15 MINUTE)) AS read_at
    ),
    delivered_per_meter AS (
        SELECT meter_id, count(*) AS intervals FROM keys GROUP BY meter_id
    ),
    incomplete_meters AS (
        SELECT expected.meter_id, expected.expected_from, expected.expected_until
        FROM expected_meters AS expected
        LEFT JOIN delivered_per_meter AS delivered USING (meter_id)
        WHERE coalesce(delivered.intervals, 0) < $intervals
          AND expected.meter_id BETWEEN $first_meter AND $last_meter
    ),
    delivered_by_incomplete AS (
        SELECT meter_id, read_at FROM keys SEMI JOIN incomplete_meters USING (meter_id)
    ),
    missing AS (
        SELECT incomplete.meter_id, local_day.read_at
        FROM incomplete_meters AS incomplete
        CROSS JOIN local_day
        ANTI JOIN delivered_by_incomplete AS delivered USING (meter_id, read_at)
        WHERE local_day.read_at >= incomplete.expected_from AND local_day.read_at < incomplete.expected_until
    )
    -- in the published column order, sorted: validation and estimation edit rows in place
    SELECT
        meter_id,
        read_at,
        kwh,
        quality_flag,
        CASE WHEN quality_flag = 'estimated' THEN 'head-end' END AS estimated_by,
        CASE WHEN quality_flag = 'estimated' THEN 'head-end' END AS estimation_method,
        CAST(NULL AS VARCHAR)            AS validation_rule,
        CAST(NULL AS DECIMAL(12, 3))     AS measured_kwh,
        version,
        device_read_at,
        received_at,
        clock_offset_s,
        CAST(least(copies, $max_copies) AS SMALLINT) AS copies,
        CAST(files.file_key AS source_files) AS source_file,
        files.arrived_at                 AS ingested_at,
        -- the meter's own interval: 30 means this quarter hour is half of a half-hour reading
        interval_minutes,
        replaced_kwh
    FROM latest_version
    JOIN files USING (file_id)
    UNION ALL
    SELECT
        meter_id, read_at, NULL, 'missing', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL
    FROM missing
    ORDER BY meter_id, read_at
"""

# The export registers' day, curated as consumption is (the latest version of each quarter
# hour, a `missing` row for each one an expected register did not deliver) and never estimated:
# an export credit pays for energy measured, so a gap earns nothing until its reading comes.
EXPORT_SQL = """
COPY (
    WITH ranked AS (
        SELECT *,
               (CAST(version AS BIGINT) << 48) | (CAST(epoch(received_at) AS BIGINT) << 16) | file_id AS rank
        FROM staged
        WHERE reason IS NULL AND flow = 'export'
    ),
    latest_version AS (
        SELECT
            meter_id,
            read_at,
            arg_max(kwh, rank)              AS kwh,
            arg_max(quality_flag, rank)     AS quality_flag,
            arg_max(version, rank)          AS version,
            arg_max(received_at, rank)      AS received_at,
            arg_max(file_id, rank)          AS file_id,
            arg_max(interval_minutes, rank) AS interval_minutes,
            count(*)                        AS copies,
            CASE WHEN min(version) < max(version) THEN arg_min(kwh, rank) END AS replaced_kwh
        FROM ranked
        GROUP BY meter_id, read_at
    ),
    local_day AS (
        SELECT unnest(generate_series($day_start, $day_end - INTERVAL 15 MINUTE, INTERVAL 15 MINUTE)) AS read_at
    ),
    missing AS (
        SELECT expected.meter_id, local_day.read_at
        FROM expected_export AS expected
        CROSS JOIN local_day
        ANTI JOIN latest_version AS delivered USING (meter_id, read_at)
        WHERE local_day.read_at >= expected.expected_from AND local_day.read_at < expected.expected_until
    )
    SELECT
        meter_id,
        read_at,
        kwh,
        quality_flag,
        CASE WHEN quality_flag = 'estimated' THEN 'head-end' END AS estimated_by,
        version,
        received_at,
        CAST(least(copies, $max_copies) AS SMALLINT) AS copies,
        files.file_key                   AS source_file,
        files.arrived_at                 AS ingested_at,
        interval_minutes,
        replaced_kwh
    FROM latest_version
    JOIN files USING (file_id)
    UNION ALL
    SELECT meter_id, read_at, NULL, 'missing', NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL
    FROM missing
    ORDER BY meter_id, read_at
) TO '{target}' (FORMAT parquet, COMPRESSION zstd)
"""

# the day's file keys as an enumeration: the curated rows carry a small number for the file
# they came in until the day is written
SOURCE_FILES_SQL = """
DROP TYPE IF EXISTS source_files;
CREATE TYPE source_files AS ENUM (SELECT file_key FROM files ORDER BY file_id)
"""
# the edited day, in the order it was made (by meter and time)
WRITE_SQL = """
COPY (SELECT * REPLACE (CAST(source_file AS VARCHAR) AS source_file) FROM ({edited}))
TO '{target}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)
"""


@dataclass(frozen=True)
class CurationResult:
    rows: int
    files: list[str]
    by_flag: dict[str, int]
    staged_rows: int
    quarantined_rows: int
    quarantined_files: int
    duplicate_rows: int
    corrected_rows: int
    clock_corrected_rows: int
    by_rule: dict[str, int] = field(default_factory=dict)  # readings flagged by each validation rule
    replaced_by_rule: dict[str, int] = field(default_factory=dict)  # of them, replaced by an estimate
    by_method: dict[str, int] = field(default_factory=dict)  # estimated quarter hours by method (`head-end` too)
    export_rows: int = 0  # quarter hours of export registers, kept apart in reads_15min_export


def _source(contract: Contract, uris: list[str]) -> tuple[str, str]:
    """The SQL that reads a contract's files line by line, and the SQL that splits the lines."""
    csv = contract.format == "csv"
    lines = LINES_SOURCE.format(uris=sql_list(uris), header="true" if csv else "false", max_line_bytes=MAX_LINE_BYTES)
    too_long = TOO_LONG.format(max_line_bytes=MAX_LINE_BYTES, max_record_bytes=MAX_RECORD_BYTES)
    if csv:
        return lines, CSV_FIELDS.format(
            max_record_bytes=MAX_RECORD_BYTES,
            too_long=too_long,
            count=len(contract.fields),
            struct=_struct(contract, [f"parts[{i}]" for i in range(1, len(contract.fields) + 1)]),
        )
    values, typed, mistyped = [], [], []
    for i, name in enumerate(contract.fields, 1):
        part = f"parts[{i}]"
        number = f"(ascii({part}) BETWEEN 48 AND 57 OR ascii({part}) = 45)"
        string = f"starts_with({part}, '\"')"
        kind = (
            f"CASE WHEN starts_with({part}, '\"') THEN 'string' WHEN {number} THEN 'number' "
            f"WHEN {part} IN ('true', 'false') THEN 'boolean' WHEN {part} = 'null' THEN 'null' "
            f"WHEN starts_with({part}, '{{') THEN 'object' ELSE 'array' END"
        )
        wanted = "number" if name in contract.json_numbers else "string"
        # every row pays for the test of its types, only a mistyped one for naming them
        typed.append(f"({part} IS NULL OR {number if wanted == 'number' else string})")
        mistyped.append(
            f"CASE WHEN {part} IS NOT NULL AND {kind} <> '{wanted}' "
            f"THEN '{name}: a JSON ' || {kind} || ', not a {wanted}' END"
        )
        # a string's text without its quotes (its escapes decoded, in the rare string that has one)
        values.append(
            part
            if wanted == "number"
            else f"CASE WHEN contains({part}, '\\') THEN json_extract_string({part}, '$') ELSE {part}[2:-2] END"
        )
    return lines, JSONL_FIELDS.format(
        paths=sql_list([f"$.{f}" for f in contract.fields]),
        typed=" AND ".join(typed),
        mistyped=", ".join(mistyped),
        max_record_bytes=MAX_RECORD_BYTES,
        too_long=too_long,
        struct=_struct(contract, values),
    )


def _struct(contract: Contract, values: list[str]) -> str:
    """The SQL struct of a record's fields by role (`register` NULL where the contract has none)."""
    by_role = dict(zip((role for role, _ in contract.roles), values, strict=True))
    by_role.setdefault("register", "CAST(NULL AS VARCHAR)")
    return "{" + ", ".join(f"'{role}': {value}" for role, value in by_role.items()) + "}"


def curate_day(
    con: duckdb.DuckDBPyConnection,
    day: dt.date,
    inventory: pa.Table,
    lake_uri,
    meters_uris: list[str],
    history_uris: list[str],
    curated_uri: Callable[[str], str],
    quarantine_uri: str,
    scratch: str,
    read_bytes: Callable[[str], bytes],
    export_uri: str,
    weather_uris: list[str] | None = None,
) -> CurationResult:
    """Stage, quarantine and curate one local day: curated Parquet files where `curated_uri`
    puts a file name, quarantined rows in the file `quarantine_uri`.

    `history_uris` are the curated files of the days before that validation and estimation
    read (the last week, the same weekday of earlier weeks); `weather_uris` the observed
    temperature per region, if any, which estimation weighs days by.

    `scratch` is a local folder for the staged rows; staging streams to Parquet there so a
    full day never has to sit in memory at once.

    `read_bytes` reads a raw file by its key: NEM12 files are unpacked and split into lines
    in Python before DuckDB parses them. Export registers' readings (every contract that has a
    register) go to the file `export_uri`, never into the day's consumption.
    """
    day_start, day_end = local_day_bounds(day)
    intervals = int((day_end - day_start) / INTERVAL)

    if "longest_line_bytes" not in inventory.column_names:  # an inventory written before it was kept
        inventory = inventory.append_column("longest_line_bytes", pa.nulls(inventory.num_rows, pa.int64()))
    # file ids in the order files landed: of two deliveries alike in all else, the later wins
    inventory = inventory.sort_by([("arrived_at", "ascending"), ("file_key", "ascending")])
    files = inventory.append_column("file_id", pa.array(range(inventory.num_rows), pa.int32()))
    files = files.append_column(
        "uri", pa.array([lake_uri(k) for k in files.column("file_key").to_pylist()], pa.string())
    )
    con.register("files", files)
    meters = parquet(meters_uris)
    con.execute(
        EXPECTED_METERS_SQL.format(meters=meters),
        {
            "day_start": day_start,
            "day_end": day_end,
            "export_meter": nem12.EXPORT_METER_PATTERN,
            "tz": settings().market_tz,
        },
    )
    con.execute(EXPECTED_EXPORT_SQL.format(meters=meters), {"tz": settings().market_tz})
    con.execute(KNOWN_METERS_SQL.format(meters=meters))
    con.execute(METER_CLASSES_SQL.format(meters=meters))
    if history_uris:
        con.execute(HISTORY_SQL.format(files=parquet(history_uris)))
    else:
        con.execute(EMPTY_HISTORY)
    if weather_uris:
        con.execute(
            DAY_TEMPERATURES_SQL.format(weather=parquet(weather_uris)),
            {"tz": settings().market_tz, "first": day_start - dt.timedelta(days=HISTORY_DAYS), "last": day_end},
        )

    ok = files.filter(pa.compute.equal(files.column("status"), "ok"))
    staged_parts: list[str] = []
    unreadable: dict[str, str] = {}
    for name in sorted(set(ok.column("contract").to_pylist())):
        if name == nem12.CONTRACT:
            target = f"{scratch}/staged-{name}.parquet"
            unreadable.update(_stage_nem12(con, ok, read_bytes, target, day_start, day_end))
            staged_parts.append(target)
            continue
        contract = BY_NAME[name]
        uris = [
            u for u, c in zip(ok.column("uri").to_pylist(), ok.column("contract").to_pylist(), strict=True) if c == name
        ]
        params = {
            "actual": contract.actual_code,
            "estimated": contract.estimated_code,
            "grid_tolerance": GRID_TOLERANCE_S,
            "max_clock_offset": MAX_CLOCK_OFFSET_S,
            "receive_tolerance": RECEIVE_TOLERANCE_S,
            "meter_id_pattern": contract.meter_id_pattern,
            "vendor": contract.vendor,
            "version_pattern": VERSION_PATTERN,
            "energy_pattern": ENERGY_PATTERN,
            "import_code": contract.import_code,
            "export_code": contract.export_code,
            "day_start": day_start,
            "day_end": day_end,
        }
        target = f"{scratch}/staged-{name}.parquet"
        last_scan = _last_reject_scan(con)
        try:
            _stage(con, contract, uris, target, params)
            staged_parts.append(target)
        except duckdb.Error:
            # One file the reader cannot take must not stop the day: find it, set it aside.
            _forget_rejects_after(con, last_scan)
            for i, uri in enumerate(uris):
                try:
                    _stage(con, contract, [uri], f"{target}.{i}", params)
                    staged_parts.append(f"{target}.{i}")
                except duckdb.Error as exc:
                    unreadable[uri] = f"the {name} reader failed on this file: {str(exc).splitlines()[0]}"
    if unreadable:
        files = _mark_unreadable(files, unreadable)
        con.register("files", files)
    if staged_parts:
        con.execute(VIEW_SQL.format(view="staged", files=parquet(staged_parts)))
    else:
        con.execute(EMPTY_STAGED)
    if not _has_table(con, "reject_errors"):
        con.execute(EMPTY_REJECTS)

    con.execute(
        QUARANTINE_SQL.format(target=quarantine_uri), {"max_line_bytes": MAX_LINE_BYTES, "record_chars": RECORD_CHARS}
    )
    export_rows = con.execute(
        EXPORT_SQL.format(target=export_uri), {"day_start": day_start, "day_end": day_end, "max_copies": MAX_COPIES}
    ).fetchone()[0]
    # The dedupe is a hash aggregate over every meter and interval; in meter ranges it stays
    # small, and ranges written in order keep the day sorted by meter across files. Only ranges
    # that hold a meter: a quarantined row's id is not a meter's.
    ranges = con.execute(METER_RANGES_SQL, {"chunk": CHUNK_METERS}).fetchall()
    con.execute(SOURCE_FILES_SQL)
    rules = Rules.from_settings()
    estimator = Estimator(con, rules)
    curated_parts = []
    for part, (low, high) in enumerate(ranges or [("", "")]):
        curated_parts.append(curated_uri(f"part-{part:04d}.parquet"))
        con.execute(
            CURATE_SQL,
            {
                "day_start": day_start,
                "day_end": day_end,
                "intervals": intervals,
                "max_copies": MAX_COPIES,
                "first_meter": low,
                "last_meter": high,
            },
        )
        con.execute(WRITE_SQL.format(edited=estimator.edit(low, high, day_start), target=curated_parts[-1]))

    staged = con.execute(
        "SELECT count(*) FILTER (WHERE reason IS DISTINCT FROM 'blank'), "
        "count(*) FILTER (WHERE reason IS NULL AND clock_offset_s <> 0) FROM staged"
    ).fetchone()
    curated = con.execute(CURATED_COUNTS_SQL.format(files=parquet(curated_parts))).fetchall()
    edits = con.execute(EDIT_COUNTS_SQL.format(files=parquet(curated_parts))).fetchall()
    quarantined = con.execute(QUARANTINED_COUNTS_SQL.format(files=parquet(quarantine_uri))).fetchone()
    by_flag = {flag: count for flag, count, _, _ in curated}
    return CurationResult(
        rows=sum(by_flag.values()),
        files=curated_parts,
        by_flag=by_flag,
        staged_rows=staged[0],
        quarantined_rows=quarantined[0],
        quarantined_files=quarantined[1],
        duplicate_rows=int(sum(d or 0 for _, _, d, _ in curated)),
        corrected_rows=int(sum(c or 0 for _, _, _, c in curated)),
        clock_corrected_rows=staged[1],
        by_rule={rule: count for kind, rule, count in edits if kind == "rule"},
        replaced_by_rule={rule: count for kind, rule, count in edits if kind == "replaced"},
        by_method={method: count for kind, method, count in edits if kind == "method"},
        export_rows=export_rows,
    )


# the first and last meter id of each range of `$chunk` meters, in the order ids sort
METER_RANGES_SQL = """
WITH ids AS (
    SELECT meter_id FROM staged WHERE reason IS NULL AND flow = 'import' UNION SELECT meter_id FROM expected_meters
)
SELECT min(meter_id), max(meter_id)
FROM (SELECT meter_id, (row_number() OVER (ORDER BY meter_id) - 1) // $chunk AS part FROM ids)
GROUP BY part
ORDER BY part
"""
# the meters installed for some of the day, and the part of it they were expected to report
# (consumption only: an export register's readings are kept apart, never a missing consumption)
# (installed_on and removed_on are local dates: a meter is expected from the local midnight that
# starts the first until the one that starts the second, whatever the offset from UTC)
EXPECTED_METERS_SQL = """
CREATE OR REPLACE TEMP TABLE expected_meters AS
WITH local_dates AS (
    SELECT meter_id,
           timezone('UTC', timezone($tz, CAST(installed_on AS TIMESTAMP))) AS installed_at,
           timezone('UTC', timezone($tz, CAST(removed_on AS TIMESTAMP))) AS removed_at
    FROM {meters}
    WHERE NOT regexp_full_match(meter_id, $export_meter)
)
SELECT meter_id,
       greatest($day_start, installed_at) AS expected_from,
       least($day_end, coalesce(removed_at, $day_end)) AS expected_until
FROM local_dates
WHERE installed_at < $day_end AND (removed_at IS NULL OR removed_at > $day_start)
"""
# the meters whose export register is read for some of the day (from `export_from`, while installed)
EXPECTED_EXPORT_SQL = """
CREATE OR REPLACE TEMP TABLE expected_export AS
SELECT meter_id,
       greatest(expected_from, timezone('UTC', timezone($tz, CAST(export_from AS TIMESTAMP)))) AS expected_from,
       expected_until
FROM expected_meters
JOIN (SELECT meter_id, export_from FROM {meters} WHERE export_from IS NOT NULL) USING (meter_id)
WHERE timezone('UTC', timezone($tz, CAST(export_from AS TIMESTAMP))) < expected_until
"""
METER_CLASSES_SQL = "CREATE OR REPLACE TEMP TABLE meter_classes AS SELECT meter_id, load_class, region FROM {meters}"
HISTORY_SQL = "CREATE OR REPLACE TEMP VIEW history AS SELECT meter_id, read_at, kwh, quality_flag FROM {files}"
# each region's mean observed temperature per local day, over the days estimation may read
DAY_TEMPERATURES_SQL = """
CREATE OR REPLACE TEMP TABLE day_temperatures AS
SELECT region, CAST(timezone($tz, observed_at AT TIME ZONE 'UTC') AS DATE) AS local_date,
       avg(temperature_c) AS temperature_c
FROM {weather}
WHERE observed_at >= $first AND observed_at < $last AND isfinite(temperature_c)
GROUP BY ALL
"""
EMPTY_HISTORY = (
    "CREATE OR REPLACE TEMP VIEW history AS SELECT NULL::VARCHAR AS meter_id, NULL::TIMESTAMP AS read_at, "
    "NULL::DECIMAL(12, 3) AS kwh, NULL::VARCHAR AS quality_flag WHERE FALSE"
)
CURATED_COUNTS_SQL = """
SELECT quality_flag, count(*), sum(copies - 1) FILTER (WHERE copies > 1), count(*) FILTER (WHERE version > 1)
FROM {files} GROUP BY quality_flag
"""
EDIT_COUNTS_SQL = """
SELECT 'rule', validation_rule, count(*) FROM {files} WHERE validation_rule IS NOT NULL GROUP BY ALL
UNION ALL
SELECT 'replaced', validation_rule, count(*) FROM {files} WHERE measured_kwh IS NOT NULL GROUP BY ALL
UNION ALL
SELECT 'method', estimation_method, count(*) FROM {files} WHERE estimation_method IS NOT NULL GROUP BY ALL
"""
QUARANTINED_COUNTS_SQL = (
    "SELECT count(*) FILTER (WHERE scope = 'row'), count(*) FILTER (WHERE scope = 'file') FROM {files}"
)
KNOWN_METERS_SQL = "CREATE OR REPLACE TEMP TABLE known_meters AS SELECT DISTINCT meter_id FROM {meters}"


def _stage_nem12(
    con: duckdb.DuckDBPyConnection,
    ok: pa.Table,
    read_bytes: Callable[[str], bytes],
    target: str,
    day_start: dt.datetime,
    day_end: dt.datetime,
) -> dict[str, str]:
    """Stage the day's NEM12 files; returns the uris of those refused whole, with the reason."""
    ids, keys, uris = (ok.column(c).to_pylist() for c in ("file_id", "file_key", "uri"))
    chosen = [i for i, c in enumerate(ok.column("contract").to_pylist()) if c == nem12.CONTRACT]
    data = {ids[i]: read_bytes(keys[i]) for i in chosen}
    arrived = ok.column("arrived_at").to_pylist()
    landed = {ids[i]: arrived[i] for i in chosen}
    limit = settings().max_raw_file_mb << 20
    refused = nem12.stage(con, data, target, day_start, day_end, settings().nem12_tz, limit, landed)
    uri_of = {ids[i]: uris[i] for i in chosen}
    return {uri_of[file_id]: reason for file_id, reason in refused.items()}


def _stage(con: duckdb.DuckDBPyConnection, contract: Contract, uris: list[str], target: str, params: dict) -> None:
    wh = contract.energy_unit == "Wh"
    if os.path.exists(target):
        os.remove(target)
    lines, fields = _source(contract, uris)
    con.execute(
        STAGE_SQL.format(
            lines=lines,
            fields=fields,
            kwh_expression="energy * 0.001" if wh else "energy",
            whole_check="energy <> round(energy)" if wh else "FALSE",
            record_chars=RECORD_CHARS,
            target=target,
        ),
        params,
    )


def _last_reject_scan(con: duckdb.DuckDBPyConnection) -> int:
    if not _has_table(con, "reject_scans"):
        return -1
    return con.execute("SELECT coalesce(max(scan_id), -1) FROM reject_scans").fetchone()[0]


def _forget_rejects_after(con: duckdb.DuckDBPyConnection, scan_id: int) -> None:
    """Drop the rejects of a failed multi-file read; the files are read again one by one."""
    if _has_table(con, "reject_scans"):
        con.execute("DELETE FROM reject_errors WHERE scan_id > ?", [scan_id])
        con.execute("DELETE FROM reject_scans WHERE scan_id > ?", [scan_id])


def _mark_unreadable(files: pa.Table, reasons: dict[str, str]) -> pa.Table:
    uris = files.column("uri").to_pylist()
    status = [
        ("unreadable" if u in reasons else st) for u, st in zip(uris, files.column("status").to_pylist(), strict=True)
    ]
    reason = [reasons.get(u, r) for u, r in zip(uris, files.column("reason").to_pylist(), strict=True)]
    files = files.set_column(files.schema.get_field_index("status"), "status", pa.array(status, pa.string()))
    return files.set_column(files.schema.get_field_index("reason"), "reason", pa.array(reason, pa.string()))


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]).fetchone()[0])


# A day with no readable file still gets a (file-level) quarantine and an all-missing day.
EMPTY_STAGED = """
CREATE OR REPLACE TEMP TABLE staged AS
SELECT NULL::INTEGER AS file_id, NULL::VARCHAR AS record, NULL::BIGINT AS line, NULL::VARCHAR AS meter_id,
       NULL::TIMESTAMP AS device_read_at, NULL::TIMESTAMP AS read_at, NULL::DECIMAL(12, 3) AS kwh,
       NULL::VARCHAR AS quality_flag, NULL::SMALLINT AS version, NULL::TIMESTAMP AS received_at,
       NULL::INTEGER AS clock_offset_s, NULL::SMALLINT AS interval_minutes, NULL::VARCHAR AS flow,
       NULL::VARCHAR AS reason
WHERE FALSE
"""

EMPTY_REJECTS = """
CREATE OR REPLACE TEMP TABLE reject_errors AS
SELECT NULL::BIGINT AS scan_id, NULL::BIGINT AS file_id, NULL::BIGINT AS line, NULL::VARCHAR AS error_type,
       NULL::VARCHAR AS error_message, NULL::VARCHAR AS csv_line WHERE FALSE;
CREATE OR REPLACE TEMP TABLE reject_scans AS
SELECT NULL::BIGINT AS scan_id, NULL::BIGINT AS file_id, NULL::VARCHAR AS file_path WHERE FALSE
"""
