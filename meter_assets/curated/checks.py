"""Data-quality gates on a freshly curated day, computed in DuckDB over the new files."""

from __future__ import annotations

import dagster as dg

from meter_assets.config import settings
from meter_assets.curated.readings import CurationResult
from meter_assets.resources import CheckThresholds
from meter_assets.sql import parquet

BLOCKING_CHECKS = (
    "one_row_per_meter_interval",
    "kwh_within_physical_range",
    "read_at_on_15min_grid",
    "complete_for_local_day",
    "quarantine_rate_below_threshold",
)

CHECK_SPECS = [dg.AssetCheckSpec(name, asset="reads_15min", blocking=True) for name in BLOCKING_CHECKS] + [
    dg.AssetCheckSpec("missing_share_below_threshold", asset="reads_15min"),
]


# kWh out of range, timestamps off the grid or outside the day
TOTALS_SQL = """
SELECT
    count(*) FILTER (WHERE kwh < 0)                           AS negative,
    count(*) FILTER (WHERE kwh > $max_kwh)                    AS too_large,
    min(kwh)                                                  AS min_kwh,
    max(kwh)                                                  AS max_kwh,
    count(*) FILTER (WHERE epoch(read_at) % 900 <> 0)         AS off_grid,
    count(*) FILTER (WHERE read_at < $day_start OR read_at >= $day_end) AS outside_day
FROM {files}
"""

PER_METER_SQL = """
WITH per_meter AS (
    -- distinct quarter hours as bits of a 127-bit mask, a quarter of the cost of
    -- count(DISTINCT read_at): a day has at most 100, so two of a day's quarter hours
    -- share a bit only if they are equal (rows off the grid or outside the day, which
    -- could share one too, fail read_at_on_15min_grid)
    SELECT meter_id, count(*) AS rows,
           bit_count(bit_or(CAST(1 AS HUGEINT) << CAST(epoch(read_at) // 900 % 127 AS HUGEINT))) AS intervals
    FROM {files}
    GROUP BY meter_id
)
SELECT
    coalesce(sum(rows - intervals), 0)                          AS duplicate_rows,
    list(meter_id ORDER BY meter_id) FILTER (WHERE rows > intervals)[1:10] AS duplicated_meters,
    count(*) FILTER (WHERE intervals <> $intervals)             AS incomplete_meters,
    list(meter_id ORDER BY meter_id) FILTER (WHERE intervals <> $intervals)[1:10] AS first_incomplete,
    count(*)                                                    AS meters
FROM per_meter
"""


def curated_checks(
    con, files: list[str], result: CurationResult, intervals: int, day_start, day_end, thresholds: CheckThresholds
) -> list[dg.AssetCheckResult]:
    s = settings()
    limits = thresholds.limits()
    source = parquet(files)
    totals = con.execute(
        TOTALS_SQL.format(files=source),
        {"max_kwh": s.max_interval_kwh, "day_start": day_start, "day_end": day_end},
    ).fetchone()
    negative, too_large, min_kwh, max_kwh, off_grid, outside_day = totals
    per_meter = con.execute(
        PER_METER_SQL.format(files=source),
        {"intervals": intervals},
    ).fetchone()
    duplicate_rows, duplicated_meters, incomplete, first_incomplete, meters = per_meter
    expected_missing = con.execute(
        "SELECT count(*) FROM expected_meters ANTI JOIN (SELECT DISTINCT meter_id FROM " + source + ") USING (meter_id)"
    ).fetchone()[0]
    staged = result.staged_rows or 1
    quarantine_rate = result.quarantined_rows / staged
    missing_share = result.by_flag.get("missing", 0) / max(result.rows, 1)

    return [
        dg.AssetCheckResult(
            asset_key="reads_15min",
            check_name="one_row_per_meter_interval",
            passed=duplicate_rows == 0,
            metadata={
                "duplicate_rows": int(duplicate_rows),
                "first_meters": dg.MetadataValue.json(duplicated_meters or []),
            },
        ),
        dg.AssetCheckResult(
            asset_key="reads_15min",
            check_name="kwh_within_physical_range",
            passed=negative == 0 and too_large == 0,
            metadata={
                "negative_rows": negative,
                "rows_above_limit": too_large,
                "limit_kwh_per_interval": float(s.max_interval_kwh),
                "min_kwh": float(min_kwh) if min_kwh is not None else None,
                "max_kwh": float(max_kwh) if max_kwh is not None else None,
            },
        ),
        dg.AssetCheckResult(
            asset_key="reads_15min",
            check_name="read_at_on_15min_grid",
            passed=off_grid == 0 and outside_day == 0,
            metadata={"off_grid_rows": off_grid, "rows_outside_local_day": outside_day},
        ),
        dg.AssetCheckResult(
            asset_key="reads_15min",
            check_name="complete_for_local_day",
            passed=incomplete == 0 and expected_missing == 0,
            metadata={
                "intervals_in_day": intervals,
                "meters": meters,
                "meters_with_wrong_interval_count": incomplete,
                "first_incomplete_meters": dg.MetadataValue.json(first_incomplete or []),
                "expected_meters_absent": expected_missing,
            },
        ),
        dg.AssetCheckResult(
            asset_key="reads_15min",
            check_name="missing_share_below_threshold",
            passed=missing_share <= limits.missing_warn_share,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "missing_intervals": result.by_flag.get("missing", 0),
                "missing_interval_share": round(missing_share, 6),
                "threshold": limits.missing_warn_share,
            },
        ),
        dg.AssetCheckResult(
            asset_key="reads_15min",
            check_name="quarantine_rate_below_threshold",
            passed=quarantine_rate <= limits.quarantine_max_rate,
            metadata={
                "quarantined_rows": result.quarantined_rows,
                "quarantined_files": result.quarantined_files,
                "rows_read": result.staged_rows,
                "rate": round(quarantine_rate, 6),
                "threshold": limits.quarantine_max_rate,
            },
        ),
    ]
