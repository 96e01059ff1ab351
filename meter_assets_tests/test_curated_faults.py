"""Each fault the simulator injected, and what the curated layer made of it.

Expected values come from the simulator's manifest and ground truth, never from the
platform's own output.
"""

import datetime as dt
import json
import re

from meter_assets.curated.estimation import METHODS
from meter_assets.market_calendar import local_day_of
from meter_assets.simulator.headend import MALFORMED_VARIANTS
from meter_assets.storage import Lake
from meter_assets.tables import QUARANTINE, RAW_METER_FILES, READS_15MIN, READS_15MIN_EXPORT, READS_DAILY

from .conftest import faults, query, spring_days, table_files


def curated(root: str) -> str:
    return (
        "("
        + " UNION ALL ".join(f"SELECT * FROM read_parquet({table_files(root, READS_15MIN, d)})" for d in spring_days())
        + ")"
    )


def quarantined(root: str) -> str:
    return (
        "("
        + " UNION ALL ".join(f"SELECT * FROM read_parquet({table_files(root, QUARANTINE, d)})" for d in spring_days())
        + ")"
    )


def readings(root: str, keys: list[tuple]) -> dict[tuple, tuple]:
    """The curated row of each (meter, quarter hour), read in one query: exactly one each."""
    import duckdb
    import pyarrow as pa

    wanted = pa.table({"meter_id": [k[0] for k in keys], "read_at": [k[1] for k in keys]})
    with duckdb.connect() as con:
        con.register("wanted", wanted)
        rows = con.execute(
            "SELECT meter_id, read_at, kwh, quality_flag, version, copies, clock_offset_s, source_file "
            f"FROM {curated(root)} JOIN wanted USING (meter_id, read_at)"
        ).fetchall()
    found = {}
    for meter_id, read_at, *row in rows:
        assert (meter_id, read_at) not in found, (meter_id, read_at, "more than one row")
        found[(meter_id, read_at)] = tuple(row)
    assert set(found) == set(keys), sorted(set(keys) - set(found))[:5]
    return found


def reading(root: str, meter_id: str, read_at: dt.datetime):
    return readings(root, [(meter_id, read_at)])[(meter_id, read_at)]


def test_curated_matches_ground_truth_after_every_late_file(after_release, generated):
    truth = f"read_parquet('{generated}/simulator/truth/*/reads.parquet')"
    # what the head-end never delivered is the platform's estimate: flagged so, never an actual
    mismatches = query(
        f"""
        SELECT t.meter_id, t.read_at, t.kwh, t.quality_flag, c.kwh, c.quality_flag, c.estimated_by
        FROM {truth} AS t FULL OUTER JOIN {curated(after_release)} AS c USING (meter_id, read_at)
        WHERE CASE WHEN t.quality_flag = 'missing'
                   THEN c.quality_flag IS DISTINCT FROM 'estimated' OR c.estimated_by IS DISTINCT FROM 'platform'
                        OR c.kwh IS NULL OR c.estimation_method NOT IN {tuple(METHODS)}
                   ELSE c.quality_flag IS DISTINCT FROM t.quality_flag OR c.kwh IS DISTINCT FROM t.kwh
                        OR c.estimated_by IS DISTINCT FROM CASE t.quality_flag WHEN 'estimated' THEN 'head-end' END
              END
        LIMIT 10
        """
    )
    assert mismatches == []
    (gaps,) = query(f"SELECT count(*) FROM {truth} WHERE quality_flag = 'missing'")[0]
    assert gaps > 0
    (rows,) = query(f"SELECT count(*) FROM {curated(after_release)}")[0]
    assert rows == 300 * (96 + 92 + 96)


def test_resent_files_collapse_to_one_row(after_release):
    resends = faults(after_release, "resend")
    assert resends
    for resend in resends:
        original = json.loads(resend["detail"])["original_key"]
        (copies, rows) = query(
            f"SELECT min(copies), count(*) FROM {curated(after_release)} WHERE source_file IN (?, ?)",
            [original, resend["file_key"]],
        )[0]
        assert rows > 0 and copies >= 2, "every reading of a resent file was seen twice and kept once"
        (duplicates,) = query(
            f"SELECT count(*) FROM (SELECT meter_id, read_at FROM {curated(after_release)} "
            "GROUP BY ALL HAVING count(*) > 1)"
        )[0]
        assert duplicates == 0


def test_correction_wins_over_original(after_release, before_release):
    corrections = faults(after_release, "correction")
    assert len(corrections) >= 5
    keys = [(fix["meter_id"], fix["read_at"]) for fix in corrections]
    after, before = readings(after_release, keys), readings(before_release, keys)
    for key, fix in zip(keys, corrections, strict=True):
        kwh, flag, version, _, _, source = after[key]
        # a NEM12 correction is version 1 again: its later UpdateDateTime is what makes it win
        detail = json.loads(fix["detail"])
        assert (kwh, flag, version, source) == (fix["kwh"], "actual", detail["version"], fix["file_key"])
        original = before[key]
        assert str(original[0]) == detail["original_kwh"] and original[2] == 1
    assert {"/nem12/" in fix["file_key"] for fix in corrections} == {True, False}, "both kinds of correction"


def test_estimated_intervals_are_flagged_not_passed_as_measured(after_release):
    corrected = {(f["meter_id"], f["read_at"]) for f in faults(after_release, "correction")}
    estimated = [f for f in faults(after_release, "estimated") if (f["meter_id"], f["read_at"]) not in corrected]
    assert len(estimated) > 20
    lost = {(f["meter_id"], f["read_at"]) for f in faults(after_release, "malformed_row")}
    truncated = faults(after_release, "truncated_file")[0]["file_key"]
    checked = [f for f in estimated[:200] if (f["meter_id"], f["read_at"]) not in lost and f["file_key"] != truncated]
    found = readings(after_release, [(f["meter_id"], f["read_at"]) for f in checked])
    for f in checked:
        kwh, flag, *_ = found[(f["meter_id"], f["read_at"])]
        assert (kwh, flag) == (f["kwh"], "estimated")


def test_offline_intervals_are_the_platforms_estimates(after_release):
    spans = faults(after_release, "missing")
    assert {json.loads(s["detail"])["reason"] for s in spans} == {"offline", "dead"}
    for span in spans:
        rows = query(
            "SELECT count(*), count(*) FILTER (WHERE quality_flag = 'estimated' AND estimated_by = 'platform' "
            "AND kwh IS NOT NULL AND source_file IS NULL AND version IS NULL) "
            f"FROM {curated(after_release)} "
            "WHERE meter_id = ? AND read_at >= ? AND read_at < ?",
            [span["meter_id"], span["read_at"], span["read_until"]],
        )[0]
        expected = int((span["read_until"] - span["read_at"]) / dt.timedelta(minutes=15))
        assert rows == (expected, expected), span


def test_clock_drift_is_corrected_from_receive_time(after_release, generated):
    drifts = faults(after_release, "clock_drift")
    assert drifts
    truth = f"read_parquet('{generated}/simulator/truth/*/reads.parquet')"
    for drift in drifts:
        seconds = json.loads(drift["detail"])["drift_seconds"]
        rows = query(
            f"""
            SELECT count(*),
                   count(*) FILTER (WHERE c.clock_offset_s = ? AND epoch(c.read_at) % 900 = 0
                                    AND c.device_read_at = c.read_at + to_seconds(?)),
                   count(*) FILTER (WHERE c.kwh IS NOT DISTINCT FROM t.kwh)
            FROM {curated(after_release)} AS c JOIN {truth} AS t USING (meter_id, read_at)
            WHERE c.meter_id = ? AND c.read_at >= ? AND c.read_at < ? AND c.quality_flag <> 'missing' AND c.version = 1
            """,
            [seconds, seconds, drift["meter_id"], drift["read_at"], drift["read_until"]],
        )[0]
        assert rows[0] > 0 and rows[0] == rows[1] == rows[2], drift


def test_malformed_rows_are_quarantined_with_a_reason_and_neighbours_kept(after_release):
    malformed = faults(after_release, "malformed_row")
    assert len(malformed) >= 5
    reasons = {
        r[0]: r[1] for r in query(f"SELECT source_file, list(reason) FROM {quarantined(after_release)} GROUP BY ALL")
    }
    for bad in malformed:
        assert bad["file_key"] in reasons, bad
        assert all(reason for reason in reasons[bad["file_key"]])
        kwh, flag, *_, source = reading(after_release, bad["meter_id"], bad["read_at"])
        corrected = any(
            f["meter_id"] == bad["meter_id"] and f["read_at"] == bad["read_at"]
            for f in faults(after_release, "correction")
        )
        # the interval is then the platform's estimate (no file delivered it)
        assert (flag == "estimated" and source is None) or corrected
        copies = [bad["file_key"]] + [
            r["file_key"]
            for r in faults(after_release, "resend")
            if json.loads(r["detail"])["original_key"] == bad["file_key"]
        ]
        (neighbours,) = query(
            f"SELECT count(*) FROM {curated(after_release)} WHERE list_contains(?, source_file)", [copies]
        )[0]
        assert neighbours > 0, "one bad row never drops the rest of its file"
    # each damage the simulator did has the reason the contract rules give it (written by hand)
    for bad in malformed:
        detail = json.loads(bad["detail"])
        if "/nem12/" in bad["file_key"]:
            expected = detail["field"] + EXPECTED_REASONS[("nem12", detail["variant"])]
        else:
            expected = EXPECTED_REASONS[("csv" if bad["file_key"].endswith(".csv.gz") else "jsonl", detail["variant"])]
        pattern = expected if isinstance(expected, re.Pattern) else re.compile(re.escape(expected))
        assert any(pattern.match(reason) for reason in reasons[bad["file_key"]]), (
            detail,
            reasons[bad["file_key"]],
        )
    assert {json.loads(b["detail"])["variant"] for b in malformed} == set(MALFORMED_VARIANTS), "every kind of damage"


EXPECTED_REASONS = {
    ("csv", "not_a_number"): "energy: not a number: N/A",
    ("csv", "negative"): "energy: negative reading -",
    ("csv", "bad_timestamp"): "interval_start: not an ISO 8601 UTC time: ",
    # cut at half its length, a line keeps some of its fields (7 in version 1, 8 with the register)
    ("csv", "cut_short"): re.compile("([1-6] fields: the contract has 7|[1-7] fields: the contract has 8)"),
    ("csv", "field_count"): re.compile("(8 fields: the contract has 7|9 fields: the contract has 8)"),
    # "N/A" is a JSON string where the contract has a number
    ("jsonl", "not_a_number"): re.compile("(kwh|energyWh): a JSON string, not a number"),
    ("jsonl", "negative"): "energy: negative reading -",
    ("jsonl", "bad_timestamp"): "interval_start: not an ISO 8601 UTC time: ",
    ("jsonl", "cut_short"): "not valid JSON",
    ("jsonl", "field_count"): "meter_clock: missing",
    ("nem12", "not_a_number"): ": not a number: N/A",
    ("nem12", "negative"): ": negative: -",
}


def test_truncated_file_is_quarantined_whole_and_the_day_goes_on(after_release):
    (truncated,) = faults(after_release, "truncated_file")
    key = truncated["file_key"]
    day = local_day_of(dt.datetime.strptime(key.split("/")[-1].split("-")[2], "%Y%m%d%H"))
    rows = query(
        f"SELECT scope, reason FROM read_parquet({table_files(after_release, QUARANTINE, day)}) WHERE source_file = ?",
        [key],
    )
    assert rows == [("file", rows[0][1])] and "truncated" in rows[0][1]
    (status,) = query(
        f"SELECT status FROM read_parquet({table_files(after_release, RAW_METER_FILES, day)}) WHERE file_key = ?", [key]
    )[0]
    assert status == "unreadable"
    (actual,) = query(
        f"SELECT count(*) FROM read_parquet({table_files(after_release, READS_15MIN, day)}) "
        "WHERE quality_flag = 'actual'"
    )[0]
    assert actual > 0.9 * 300 * 96


def test_vendor_v2_files_are_converted_from_wh(after_release, generated):
    truth = f"read_parquet('{generated}/simulator/truth/*/reads.parquet')"
    (rows, exact, from_v1) = query(
        f"""
        SELECT count(*) FILTER (WHERE c.source_file LIKE '%beta%' AND c.read_at >= TIMESTAMP '2024-03-31 00:00'),
               count(*) FILTER (WHERE c.source_file LIKE '%beta%' AND c.read_at >= TIMESTAMP '2024-03-31 00:00'
                                  AND c.kwh = t.kwh),
               count(*) FILTER (WHERE c.source_file LIKE '%beta%' AND c.read_at < TIMESTAMP '2024-03-30 23:00')
        FROM {curated(after_release)} AS c JOIN {truth} AS t USING (meter_id, read_at)
        """
    )[0]
    assert rows > 1000 and exact == rows and from_v1 > 1000
    inventories = [f for d in spring_days() for f in Lake(after_release).files(RAW_METER_FILES, d.isoformat())]
    contracts = {r[0] for r in query(f"SELECT DISTINCT contract FROM read_parquet({inventories})")}
    assert {"alpha-csv-v1", "alpha-csv-v2", "beta-jsonl-v1", "beta-jsonl-v2", "beta-jsonl-v3"} <= contracts


def test_export_registers_are_curated_to_the_truth_apart_from_consumption(after_release, generated):
    """Both vendors' export readings (from the register change, 1 April) end as the simulator's
    truth: corrections and late files applied, head-end estimates flagged, every quarter hour
    not delivered a `missing` row with no kWh (never estimated: a credit pays for measured energy)."""
    truth = f"read_parquet('{generated}/simulator/truth/*/export.parquet')"
    exported = (
        "("
        + " UNION ALL ".join(
            f"SELECT * FROM read_parquet({table_files(after_release, READS_15MIN_EXPORT, d)})" for d in spring_days()
        )
        + ")"
    )
    mismatches = query(
        f"""
        SELECT t.meter_id, t.read_at, t.kwh, t.quality_flag, e.kwh, e.quality_flag, e.estimated_by
        FROM {truth} AS t FULL OUTER JOIN {exported} AS e USING (meter_id, read_at)
        WHERE e.quality_flag IS DISTINCT FROM t.quality_flag OR e.kwh IS DISTINCT FROM t.kwh
           OR e.estimated_by IS DISTINCT FROM CASE t.quality_flag WHEN 'estimated' THEN 'head-end' END
        LIMIT 10
        """
    )
    assert mismatches == []
    by_flag = dict(query(f"SELECT quality_flag, count(*) FROM {truth} GROUP BY ALL"))
    assert by_flag["actual"] > 1000 and by_flag.get("estimated", 0) + by_flag.get("missing", 0) > 0, by_flag
    (meters, positive, days) = query(
        f"SELECT count(DISTINCT meter_id), count(*) FILTER (WHERE kwh > 0), list(DISTINCT CAST(read_at AS DATE)) "
        f"FROM {exported}"
    )[0]
    assert meters > 20 and positive > 100 and min(days) >= dt.date(2024, 3, 31), (meters, positive, days)
    sources = {r[0] for r in query(f"SELECT DISTINCT regexp_extract(source_file, '(alpha|beta)') FROM {exported}")}
    assert {"alpha", "beta"} <= sources
    # each day's export per meter in reads_daily (through reads_hourly) is the truth's, summed by
    # London day here; a meter with no export register has none (NULL), not zero
    daily = " UNION ALL ".join(
        f"SELECT * FROM read_parquet({table_files(after_release, READS_DAILY, d)})" for d in spring_days()
    )
    wrong = query(
        f"""
        WITH truth AS (
            SELECT meter_id, CAST(timezone('Europe/London', read_at AT TIME ZONE 'UTC') AS DATE) AS local_date,
                   coalesce(sum(kwh), 0) AS export_kwh, count(*) AS intervals,
                   count(*) FILTER (WHERE quality_flag = 'missing') AS missing
            FROM {truth} GROUP BY ALL
        )
        SELECT meter_id, local_date, truth.export_kwh, daily.export_kwh
        FROM truth FULL OUTER JOIN ({daily}) AS daily USING (meter_id, local_date)
        WHERE truth.export_kwh IS DISTINCT FROM daily.export_kwh
           OR truth.intervals IS DISTINCT FROM daily.export_intervals
           OR truth.missing IS DISTINCT FROM daily.export_missing_intervals
        LIMIT 5
        """
    )
    assert wrong == []
    # a malformed export reading is quarantined by name like any other, its neighbours kept
    malformed = faults(after_release, "malformed_row", register="export")
    found = {r[0] for r in query(f"SELECT source_file FROM {quarantined(after_release)} WHERE scope = 'row'")}
    assert {f["file_key"] for f in malformed} <= found


def test_late_files_are_missing_until_they_arrive(before_release, after_release):
    late = faults(before_release, "late_file")
    assert {"/nem12/" in f["file_key"] for f in late} == {True, False}, "late hourly and NEM12 files"
    for f in late:
        before = query(f"SELECT count(*) FROM {curated(before_release)} WHERE source_file = ?", [f["file_key"]])[0][0]
        after = query(f"SELECT count(*) FROM {curated(after_release)} WHERE source_file = ?", [f["file_key"]])[0][0]
        assert before == 0 and after > 0


def test_unknown_contract_file_is_quarantined_whole(tmp_path, generated):
    import gzip
    import shutil

    from meter_assets.storage import Lake

    from .conftest import materialize_days

    root = str(tmp_path / "lake")
    shutil.copytree(generated, root)
    key = "raw/2024/04/01/10/gamma-g009-2024040110-b1.csv.gz"
    Lake(root).write_bytes(key, gzip.compress(b"serial;ts;value\n123;2024-04-01T10:00:00Z;1.0\n"))
    results = materialize_days(root, [dt.date(2024, 4, 1)])
    checks = {c.check_name: c for c in results[-1].get_asset_check_evaluations()}
    assert not checks["every_file_matches_a_contract"].passed
    assert checks["quarantine_rate_below_threshold"].passed
    rows = query(
        f"SELECT scope, reason FROM read_parquet({table_files(root, QUARANTINE, dt.date(2024, 4, 1))}) "
        "WHERE source_file = ?",
        [key],
    )
    assert rows and rows[0][0] == "file" and "matches no known csv contract" in rows[0][1]


def test_a_file_the_reader_fails_on_is_set_aside_and_the_rest_kept(tmp_path, generated, monkeypatch):
    import shutil

    import duckdb

    from meter_assets.curated import readings

    from .conftest import materialize_days

    root = str(tmp_path / "lake")
    shutil.copytree(generated, root)
    day = dt.date(2024, 4, 1)
    from meter_assets.storage import Lake

    poisoned = next(o.key for o in Lake(root).list("raw/2024/04/01/10/") if "alpha" in o.key)
    real_stage = readings._stage

    def reader_fails_on_one_file(con, contract, uris, target, params):
        if any(u.endswith(poisoned) for u in uris):
            raise duckdb.InvalidInputException("simulated reader failure")
        return real_stage(con, contract, uris, target, params)

    monkeypatch.setattr(readings, "_stage", reader_fails_on_one_file)
    results = materialize_days(root, [day])
    assert results[-1].success
    rows = query(
        f"SELECT scope, reason FROM read_parquet({table_files(root, QUARANTINE, day)}) WHERE source_file = ?",
        [poisoned],
    )
    assert rows == [("file", "the alpha-csv-v2 reader failed on this file: simulated reader failure")]
    others = query(
        f"SELECT count(DISTINCT source_file) FROM read_parquet({table_files(root, READS_15MIN, day)}) "
        "WHERE source_file LIKE '%alpha%'"
    )[0][0]
    assert others >= 40  # of the 48 alpha files of two groups (a late one is not there yet)
    (dupes,) = query(
        f"SELECT count(*) - count(DISTINCT (source_file, line, reason, record)) "
        f"FROM read_parquet({table_files(root, QUARANTINE, day)})"
    )[0]
    assert dupes == 0


def test_estimates_keep_the_published_column_types(after_release):
    """A day curated with estimates reads with the days before it: the types are the lake's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = Lake(after_release).files(READS_15MIN, spring_days()[0].isoformat())
    schema = pq.read_schema(files[0])
    assert schema.field("kwh").type == pa.decimal128(12, 3)
    assert schema.field("measured_kwh").type == pa.decimal128(12, 3)
    assert schema.field("meter_id").type == pa.string()


def test_every_curated_file_is_sorted_by_meter_and_time(after_release):
    """Estimates are written into the sorted day in place: the files stay in meter and time order."""
    import itertools

    import pyarrow.parquet as pq

    for day in spring_days():
        for path in Lake(after_release).files(READS_15MIN, day.isoformat()):
            table = pq.read_table(path, columns=["meter_id", "read_at"])
            # meter ids are text: in the order of their UTF-8 bytes, as any Parquet reader sorts them
            keys = zip(
                (m.encode() for m in table.column("meter_id").to_pylist()),
                table.column("read_at").to_pylist(),
                strict=True,
            )
            assert all(a < b for a, b in itertools.pairwise(keys)), path
