"""Validation, estimation and editing (VEE) of one range of meters of a curated day, in DuckDB SQL.

A reading a rule finds unusual is flagged by the rule's name (`validation_rule`) and billed
as delivered; only a reading the supply cannot physically deliver (`REPLACING_RULES`) is
set aside: what the meter said is kept in `measured_kwh` and the quarter hour is estimated.
Every quarter hour without a value then gets an estimate, in this order, each flagged with
its method:

1. `linear`: a gap of up to `LINEAR_MAX_INTERVALS` with a kept reading on both sides (the
   day before's last one for a gap from midnight) is the straight line between them;
2. `similar_hours`: a gap of up to `LINEAR_MAX_INTERVALS` with a reading on one side only (up
   to the day's end, or from a midnight with none before it) follows the meter's past days
   weighted by how like the two hours next to the gap their same two hours were;
3. `similar_days`, `similar_weather` or `like_day`: the meter's own profile, a weighted mean
   of its actual readings at the same local time of day over its past days (the weightings
   and how a meter's own backtest chooses one are below, at `PAST_SQL`);
4. `class_profile`: a meter with no past of its own gets the mean of the same quarter hour
   over the meters of its load class in its region that day (its class anywhere, then every
   meter, when that region has none), scaled to the meter's readings around the gap.

The statements read relations the caller names: `day_readings` (the day's curated rows of
the meter range, one per meter and quarter hour, `missing` where nobody delivered),
`history` (the days before: `meter_id`, `read_at`, `kwh`, `quality_flag`), the table
`meter_classes` (`meter_id`, `load_class`, `region`) and, if the weather is known,
`day_temperatures` (`region`, `local_date`, `temperature_c`).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)

from meter_assets.config import settings

# two hours of quarter hours: the longest gap drawn as a straight line
LINEAR_MAX_INTERVALS = 8
# a spike must also be this large to count: more than a home charger (7.4 kW) or an electric
# shower (9.5 kW) draws in a quarter hour, so a household's first EV charge is not refused
# (at a 1 kWh floor the simulator's EV meters lost 0.013 % of a day's readings to the rule)
SPIKE_FLOOR_KWH = Decimal("2.500")
# a correction is a jump only when it also moves the reading by this much
JUMP_FLOOR_KWH = Decimal("1.000")
# a meter "normally consumes" when fewer of its actual readings than this were exactly zero
NORMAL_ZERO_SHARE = 0.05
# the level of a class's profile: the meter's actual readings this long before and after the
# gap (a short gap not drawn as a line: the two hours next to it, which also choose the days
# of `similar_hours`)
LEVEL_WINDOW_HOURS = 6
SHORT_LEVEL_WINDOW_HOURS = 2
# a level (or `similar_hours`' window) is measured on at least this many quarter hours, and a
# level moves an estimate at most by this factor either way (a few unusual hours must not
# double a day's estimate)
LEVEL_MIN_INTERVALS = 4
LEVEL_MAX_FACTOR = 2.0

# the days before a day that estimation reads: the last `RECENT_DAYS`, and the same weekday of
# earlier weeks up to the longest like-day setting (8 weeks)
RECENT_DAYS = 7
HISTORY_DAYS = 8 * 7 + 1
# the weighting of past days (docs/curated.md shows what it did on real homes): a day's weight
# falls by e every `RECENCY_DAYS`, the same weekday counts `1 + WEEKDAY_BONUS` times, a day's
# energy `ENERGY_SCALE` of the meter's typical day away from the last day's worth read divides its
# weight by e (`similar_days`; the scale grows by as much again for each whole day between the
# last day read and the day: a home's regime holds for days, not weeks), as `TEMPERATURE_SCALE_C`
# degrees away from the day's mean temperature does (`similar_weather`)
RECENCY_DAYS = 28.0
WEEKDAY_BONUS = 2.0
ENERGY_SCALE = 0.2
TEMPERATURE_SCALE_C = 3.0
# a day is complete with 22 hours of actual readings; the last day's worth read counts when at
# least half of it was; the backtest estimates a meter's last 3 complete days, and
# another weighting replaces `similar_days` only with 10 % less error
COMPLETE_INTERVALS = 88
DAY_INTERVALS = 96
BACKTEST_DAYS = 3
SWITCH_MARGIN = 0.9

RULES = ("above_connection_limit", "above_own_maximum", "zero_run", "correction_jump")
# the rules whose reading is replaced by an estimate: only what the supply cannot deliver. The
# others flag a reading for review and keep it: an empty home reads zeros, a new heater or
# charger draws more than its like days, a vendor's correction may be right (a customer is
# billed for what the meter measured unless it is impossible)
REPLACING_RULES = ("above_connection_limit",)
PROFILE_METHODS = ("similar_days", "similar_weather", "like_day")
METHODS = ("linear", "similar_hours", *PROFILE_METHODS, "class_profile")

# the local date and time of day of every quarter hour from the earliest like day to the day
# after: converted once, not once per reading
LOCAL_TIMES_SQL = """
CREATE OR REPLACE TEMP TABLE local_times AS
SELECT read_at, CAST(local AS DATE) AS local_date, CAST(local AS TIME) AS local_time
FROM (
    SELECT read_at, timezone($tz, read_at AT TIME ZONE 'UTC') AS local
    FROM (SELECT unnest(generate_series($day_start - to_days($history_days), $day_start + INTERVAL 2 DAY,
                                        INTERVAL 15 MINUTE)) AS read_at)
)
"""
# no weather known: `similar_weather` weighs nothing
EMPTY_DAY_TEMPERATURES = (
    "CREATE TEMP TABLE IF NOT EXISTS day_temperatures AS "
    "SELECT NULL::VARCHAR AS region, NULL::DATE AS local_date, NULL::DOUBLE AS temperature_c WHERE FALSE"
)

# the readings a rule could refuse: large ones, corrections, runs of exact zeros (only
# meters with enough zeros can hold a run, the windows are theirs alone). Every other
# reading passes without a second look.
CANDIDATES_SQL = """
CREATE OR REPLACE TEMP TABLE candidates AS
WITH zero_meters AS (
    SELECT meter_id FROM day_readings WHERE kwh = 0 GROUP BY meter_id HAVING count(*) >= $zero_run
),
zeros AS (
    SELECT meter_id, read_at,
           read_at - to_minutes(15 * row_number() OVER (PARTITION BY meter_id ORDER BY read_at)) AS run
    FROM day_readings SEMI JOIN zero_meters USING (meter_id)
    WHERE kwh = 0
),
zero_runs AS (
    SELECT meter_id, read_at FROM zeros QUALIFY count(*) OVER (PARTITION BY meter_id, run) >= $zero_run
)
SELECT day.meter_id, day.read_at, day.kwh, day.replaced_kwh, zero_runs.meter_id IS NOT NULL AS in_zero_run
FROM day_readings AS day
LEFT JOIN zero_runs USING (meter_id, read_at)
WHERE day.kwh > least($max_kwh, $spike_floor) OR day.replaced_kwh IS NOT NULL OR zero_runs.meter_id IS NOT NULL
"""

# the candidates against the rules; the first rule a reading breaks names it. The earlier days
# (those estimation reads, but the day before) are read only for the meters of a reading the
# own-maximum or zero-run rule could flag (their largest actual reading, and how often it was
# exactly zero).
FLAGS_SQL = """
CREATE OR REPLACE TEMP TABLE flags AS
WITH meter_history AS (
    SELECT meter_id, max(kwh) AS max_kwh, count(*) FILTER (WHERE kwh = 0) / count(*) AS zero_share
    FROM history
    SEMI JOIN (SELECT meter_id FROM candidates WHERE kwh > $spike_floor OR in_zero_run) USING (meter_id)
    WHERE quality_flag = 'actual' AND meter_id BETWEEN $first_meter AND $last_meter
      AND read_at < $day_start - INTERVAL 2 DAY  -- not the day before: it may be the fault's first
    GROUP BY meter_id
),
ruled AS (
    SELECT candidates.meter_id, candidates.read_at,
        CASE
            WHEN kwh > $max_kwh THEN 'above_connection_limit'
            WHEN kwh > $spike_floor AND kwh > $spike_factor * history.max_kwh THEN 'above_own_maximum'
            WHEN in_zero_run AND history.zero_share < $normal_zero_share THEN 'zero_run'
            WHEN abs(kwh - replaced_kwh) > $jump_floor
                 AND (kwh > $jump_factor * replaced_kwh OR replaced_kwh > $jump_factor * kwh) THEN 'correction_jump'
        END AS validation_rule
    FROM candidates
    LEFT JOIN meter_history AS history USING (meter_id)
)
SELECT * FROM ruled WHERE validation_rule IS NOT NULL
"""

# every flagged reading names its rule; one a replacing rule sets aside keeps what the meter
# said in `measured_kwh` (which marks it to be estimated), the others stay as delivered
FLAG_SQL = """
UPDATE day_readings
SET validation_rule = flags.validation_rule,
    measured_kwh = CASE WHEN list_contains($replacing_rules, flags.validation_rule) THEN day_readings.kwh END
FROM flags
WHERE day_readings.meter_id = flags.meter_id AND day_readings.read_at = flags.read_at
"""
VALIDATED_SQL = "CREATE OR REPLACE TEMP VIEW validated AS SELECT * FROM day_readings"

# every quarter hour without a kept value (none delivered, or set aside), with its gap (a run
# of them), the kept readings either side (found in one pass over the day) and whether the gap
# is drawn as a line
GAPS_SQL = """
CREATE OR REPLACE TEMP TABLE gaps AS
WITH gap_rows AS (
    SELECT meter_id, read_at,
           read_at - to_minutes(15 * row_number() OVER (PARTITION BY meter_id ORDER BY read_at)) AS run
    FROM validated
    WHERE kwh IS NULL OR measured_kwh IS NOT NULL
),
runs AS (
    SELECT meter_id, read_at,
           min(read_at) OVER run                       AS gap_start,
           max(read_at) OVER run                       AS gap_end,
           count(*) OVER run                           AS gap_intervals,
           row_number() OVER (run ORDER BY read_at)    AS position
    FROM gap_rows
    WINDOW run AS (PARTITION BY meter_id, run)
),
ends AS (
    SELECT DISTINCT meter_id, gap_start, gap_end FROM runs
),
neighbours AS (
    SELECT meter_id, gap_start, gap_start - INTERVAL 15 MINUTE AS read_at, TRUE AS is_before FROM ends
    UNION ALL
    SELECT meter_id, gap_start, gap_end + INTERVAL 15 MINUTE, FALSE FROM ends
),
kept AS (
    SELECT meter_id, read_at, kwh FROM validated WHERE kwh IS NOT NULL AND measured_kwh IS NULL
    UNION ALL
    -- a gap from midnight: the line starts at the day before's last reading
    SELECT meter_id, read_at, kwh FROM history
    WHERE read_at = $day_start - INTERVAL 15 MINUTE AND quality_flag = 'actual'
      AND meter_id BETWEEN $first_meter AND $last_meter
),
bounds AS (
    SELECT neighbours.meter_id, neighbours.gap_start,
           any_value(kept.kwh) FILTER (WHERE is_before)     AS kwh_before,
           any_value(kept.kwh) FILTER (WHERE NOT is_before) AS kwh_after
    FROM neighbours JOIN kept USING (meter_id, read_at)
    GROUP BY ALL
)
SELECT runs.*, bounds.kwh_before, bounds.kwh_after,
       runs.gap_intervals <= $linear_max AND bounds.kwh_before IS NOT NULL AND bounds.kwh_after IS NOT NULL
           AS linear,
       local_times.local_time
FROM runs
LEFT JOIN bounds USING (meter_id, gap_start)
LEFT JOIN local_times USING (read_at)
"""

# The profile a gap not drawn as a line follows (PAST_SQL to PROFILES_SQL): a weighted mean of
# the meter's own past days per local time of day, by one of three weightings (each day weighs
# in where it has an actual reading; a day the clocks went back has an hour twice: both count):
# - `similar_days`: a day's weight falls by e every `RECENCY_DAYS`, the same weekday counts
#   `1 + WEEKDAY_BONUS` times, and a day whose energy is close to the last day's worth read
#   weighs far more (a home's regime, heating on or off, a house standing empty, holds for days;
#   the later days of a long gap lean on it less, as the regime may have changed since);
# - `similar_weather`: as `similar_days`, but a day whose mean temperature in the meter's region
#   is close to the day's weighs more, instead of one whose energy is close (a home whose
#   heating follows the weather, not its last days; where the weather is known for both);
# - `like_day`: the same weekday of the previous `METER_LIKE_DAY_WEEKS` weeks, equally.
# Each meter's own history chooses: its last `BACKTEST_DAYS` complete days are estimated as
# if blanked, from the days before each, by every weighting, hour by hour; the weighting with
# the least absolute error is the meter's, if it errs `SWITCH_MARGIN` times `similar_days'` or less.

# the meters whose gaps are not drawn as lines: their actual readings of the days before, by
# local date and time of day
PAST_SQL = """
CREATE OR REPLACE TEMP TABLE past AS
WITH needed AS (
    SELECT DISTINCT meter_id FROM gaps WHERE NOT linear
)
SELECT history.meter_id, history.read_at, local_times.local_date, local_times.local_time, history.kwh
FROM history SEMI JOIN needed USING (meter_id) JOIN local_times USING (read_at)
WHERE history.quality_flag = 'actual' AND history.meter_id BETWEEN $first_meter AND $last_meter
  AND history.read_at < $day_start
"""

# each past day of those meters: its energy, how much of it was read, its region's temperature
PAST_DAYS_SQL = """
CREATE OR REPLACE TEMP TABLE past_days AS
SELECT past.meter_id, past.local_date, sum(past.kwh) AS energy, count(*) AS intervals,
       any_value(weather.temperature_c) AS temperature_c
FROM past
LEFT JOIN meter_classes AS classes USING (meter_id)
LEFT JOIN day_temperatures AS weather ON weather.region = classes.region AND weather.local_date = past.local_date
GROUP BY past.meter_id, past.local_date
"""

# the days to estimate a profile for: the day itself, and each meter's last complete days (its
# backtest), each with its temperature and the energy it is likened to: for a backtest day the
# complete day before it, for the day itself the last 96 quarter hours read in the week before
# its first gap (a day's worth at their mean: across a gap of days, the last day the meter was
# read; the last complete day when fewer than 48 were read)
TARGETS_SQL = """
CREATE OR REPLACE TEMP TABLE targets AS
WITH complete AS (
    SELECT * FROM past_days WHERE intervals >= $complete_intervals
),
typical AS (
    SELECT meter_id, avg(energy) AS energy FROM complete GROUP BY meter_id
),
first_gaps AS (
    SELECT meter_id, min(gap_start) AS gap_start FROM gaps WHERE NOT linear GROUP BY meter_id
),
read AS (
    SELECT meter_id, read_at, kwh FROM past
    UNION ALL
    SELECT meter_id, read_at, kwh FROM validated
    WHERE quality_flag = 'actual' AND kwh IS NOT NULL AND measured_kwh IS NULL
),
last_read AS (
    SELECT first_gaps.meter_id, read.read_at, read.kwh
    FROM first_gaps
    JOIN read ON read.meter_id = first_gaps.meter_id
             AND read.read_at >= first_gaps.gap_start - INTERVAL 7 DAY AND read.read_at < first_gaps.gap_start
    QUALIFY row_number() OVER (PARTITION BY first_gaps.meter_id ORDER BY read.read_at DESC) <= $day_intervals
),
last_day_read AS (
    SELECT meter_id, $day_intervals * avg(kwh) AS energy, max(read_at) AS last_read_at
    FROM last_read
    GROUP BY meter_id
    HAVING count(*) >= $day_intervals / 2
),
days AS (
    SELECT meter_id, CAST($day AS DATE) AS target_date, FALSE AS backtest, weather.temperature_c,
           last_day_read.energy AS read_energy, local_times.local_date AS read_date
    FROM (SELECT DISTINCT meter_id FROM past_days) AS meters
    LEFT JOIN meter_classes AS classes USING (meter_id)
    LEFT JOIN day_temperatures AS weather ON weather.region = classes.region AND weather.local_date = $day
    LEFT JOIN last_day_read USING (meter_id)
    LEFT JOIN local_times ON local_times.read_at = last_day_read.last_read_at
    UNION ALL
    SELECT meter_id, local_date, TRUE, temperature_c, NULL, NULL FROM complete
    QUALIFY row_number() OVER (PARTITION BY meter_id ORDER BY local_date DESC) <= $backtest_days
)
SELECT days.* EXCLUDE (read_energy, read_date), coalesce(days.read_energy, day_before.energy) AS reference_energy,
       -- whole days between the last one read and the day: the likeness to it fades with them
       greatest(0, days.target_date - CASE WHEN days.read_energy IS NOT NULL THEN days.read_date
                                           ELSE day_before.local_date END - 1) AS days_unread,
       typical.energy AS typical_energy
FROM days
ASOF LEFT JOIN complete AS day_before
       ON day_before.meter_id = days.meter_id AND day_before.local_date < days.target_date
LEFT JOIN typical ON typical.meter_id = days.meter_id
"""

# every weighting's weight of each past day, for each target (only days before it)
WEIGHTS_SQL = """
CREATE OR REPLACE TEMP TABLE weights AS
WITH paired AS (
    SELECT targets.meter_id, targets.target_date, targets.backtest, past_days.local_date,
           targets.target_date - past_days.local_date AS age,
           CASE WHEN targets.reference_energy IS NULL OR NOT targets.typical_energy > 0 THEN 1
                ELSE exp(-abs(past_days.energy - targets.reference_energy)
                         / ($energy_scale * (1 + targets.days_unread) * targets.typical_energy)) END
               AS energy_likeness,
           CASE WHEN targets.temperature_c IS NULL OR past_days.temperature_c IS NULL THEN NULL
                ELSE exp(-abs(past_days.temperature_c - targets.temperature_c) / $temperature_scale) END
               AS weather_likeness
    FROM targets
    JOIN past_days ON past_days.meter_id = targets.meter_id AND past_days.local_date < targets.target_date
),
weighed AS (
    SELECT meter_id, target_date, backtest, local_date, 'similar_days' AS method,
           exp(-age / $recency_days) * CASE WHEN age % 7 = 0 THEN 1 + $weekday_bonus ELSE 1 END * energy_likeness
               AS weight
    FROM paired
    UNION ALL
    SELECT meter_id, target_date, backtest, local_date, 'similar_weather',
           exp(-age / $recency_days) * CASE WHEN age % 7 = 0 THEN 1 + $weekday_bonus ELSE 1 END * weather_likeness
    FROM paired
    WHERE weather_likeness IS NOT NULL
    UNION ALL
    SELECT meter_id, target_date, backtest, local_date, 'like_day', 1.0
    FROM paired
    WHERE age % 7 = 0 AND age <= 7 * $like_weeks
)
SELECT * FROM weighed WHERE weight > 0
"""

# the backtest, hour by hour: each weighting's estimate of each backtest day against what the
# meter read; the meter's weighting is the one that erred least (`similar_days` unless another
# is clearly better)
CHOSEN_SQL = """
CREATE OR REPLACE TEMP TABLE chosen AS
WITH hours AS (
    SELECT meter_id, local_date, hour(local_time) AS hour, sum(kwh) AS kwh
    FROM past
    GROUP BY ALL
),
estimated AS (
    SELECT weights.meter_id, weights.target_date, weights.method, hours.hour,
           sum(weights.weight * hours.kwh) / sum(weights.weight) AS kwh
    FROM weights
    JOIN hours ON hours.meter_id = weights.meter_id AND hours.local_date = weights.local_date
    WHERE weights.backtest
    GROUP BY ALL
),
errors AS (
    SELECT estimated.meter_id, estimated.method, sum(abs(estimated.kwh - hours.kwh)) AS error,
           count(*) AS hours_estimated
    FROM estimated
    JOIN hours ON hours.meter_id = estimated.meter_id AND hours.local_date = estimated.target_date
              AND hours.hour = estimated.hour
    GROUP BY ALL
),
-- weightings are compared on the same hours: one that could not estimate some is left out
scored AS (
    SELECT errors.*, max(hours_estimated) OVER (PARTITION BY meter_id) AS most_hours,
           any_value(error) FILTER (WHERE method = 'similar_days') OVER (PARTITION BY meter_id) AS default_error
    FROM errors
)
SELECT meter_id, arg_min(method, CASE WHEN method = 'similar_days' THEN error * $switch_margin ELSE error END)
           AS method
FROM scored
WHERE hours_estimated = most_hours AND default_error IS NOT NULL
GROUP BY meter_id
"""

# the day's profile of each meter with a past, by its chosen weighting (`similar_days` for a
# meter whose backtest could not choose)
PROFILES_SQL = """
CREATE OR REPLACE TEMP TABLE profiles AS
WITH candidates AS (
    SELECT weights.*, weights.method = chosen.method AS is_chosen
    FROM weights
    LEFT JOIN chosen USING (meter_id)
    WHERE NOT weights.backtest AND (weights.method = chosen.method OR weights.method = 'similar_days')
),
picked AS (
    -- the chosen weighting where it weighs any day for the day itself, else `similar_days`
    SELECT meter_id, coalesce(any_value(method) FILTER (WHERE is_chosen), 'similar_days') AS method
    FROM candidates
    GROUP BY meter_id
)
SELECT candidates.meter_id, candidates.method, past.local_time,
       sum(candidates.weight * past.kwh) / sum(candidates.weight) AS kwh
FROM candidates
JOIN picked USING (meter_id, method)
JOIN past ON past.meter_id = candidates.meter_id AND past.local_date = candidates.local_date
GROUP BY ALL
"""

# a short gap with a reading on one side only: what came next to it on the day says more than
# any day's total (a storage heater switching on at midnight, the evening's last hours). Its
# window is the meter's actual readings of the day within `SHORT_LEVEL_WINDOW_HOURS` of the gap;
# each past day read at every time of the window weighs by recency and weekday, as
# `similar_days`, times its likeness there: `exp(-|its window's energy - the day's| /
# (ENERGY_SCALE x its past days' mean window energy))`; the gap's quarter hours are the weighted
# mean of those days at the same local time (on the real homes it erred 15 to 40 % less than
# the profile scaled to the same window, docs/curated.md)
SIMILAR_HOURS_SQL = """
CREATE OR REPLACE TEMP TABLE similar_hours AS
WITH short_gaps AS (
    SELECT DISTINCT meter_id, gap_start, gap_end FROM gaps WHERE NOT linear AND gap_intervals <= $linear_max
),
window_read AS (
    SELECT short_gaps.meter_id, short_gaps.gap_start, local_times.local_time, day.kwh
    FROM short_gaps
    JOIN validated AS day
      ON day.meter_id = short_gaps.meter_id AND day.quality_flag = 'actual' AND day.measured_kwh IS NULL
     AND day.kwh IS NOT NULL
     AND day.read_at >= short_gaps.gap_start - to_hours($short_level_window)
     AND day.read_at <= short_gaps.gap_end + to_hours($short_level_window)
     AND (day.read_at < short_gaps.gap_start OR day.read_at > short_gaps.gap_end)
    JOIN local_times ON local_times.read_at = day.read_at
),
windows AS (
    SELECT meter_id, gap_start, sum(kwh) AS energy, count(*) AS intervals
    FROM window_read
    GROUP BY ALL
    HAVING count(*) >= $level_min_intervals
),
past_windows AS (
    SELECT window_read.meter_id, window_read.gap_start, past.local_date, sum(past.kwh) AS energy,
           count(*) AS intervals
    FROM window_read
    SEMI JOIN windows USING (meter_id, gap_start)
    JOIN past ON past.meter_id = window_read.meter_id AND past.local_time = window_read.local_time
    GROUP BY ALL
),
weighed AS (
    SELECT past_windows.meter_id, past_windows.gap_start, past_windows.local_date,
           exp(-($day - past_windows.local_date) / $recency_days)
           * CASE WHEN ($day - past_windows.local_date) % 7 = 0 THEN 1 + $weekday_bonus ELSE 1 END
           * CASE WHEN NOT avg(past_windows.energy) OVER same_gap > 0 THEN 1
                  ELSE exp(-abs(past_windows.energy - windows.energy)
                           / ($energy_scale * avg(past_windows.energy) OVER same_gap)) END AS weight
    FROM past_windows
    JOIN windows USING (meter_id, gap_start)
    WHERE past_windows.intervals = windows.intervals  -- read at every time of the window
    WINDOW same_gap AS (PARTITION BY past_windows.meter_id, past_windows.gap_start)
)
SELECT gaps.meter_id, gaps.read_at, sum(weighed.weight * past.kwh) / sum(weighed.weight) AS kwh
FROM gaps
JOIN weighed ON weighed.meter_id = gaps.meter_id AND weighed.gap_start = gaps.gap_start
JOIN past ON past.meter_id = gaps.meter_id AND past.local_date = weighed.local_date
         AND past.local_time = gaps.local_time
GROUP BY ALL
HAVING sum(weighed.weight) > 0
"""

# the day's mean actual reading per quarter hour by load class and region, by class, of every
# meter, and of every meter all day (when not one meter read that quarter hour); for meters
# with no history of their own
CLASS_PROFILE_SQL = """
CREATE OR REPLACE TEMP TABLE class_profile AS
SELECT CASE WHEN grouping(classes.region) = 0 THEN 'region'
            WHEN grouping(classes.load_class) = 0 THEN 'class'
            WHEN grouping(staged.read_at) = 0 THEN 'everyone'
            ELSE 'day' END AS scope,
       classes.load_class, classes.region, staged.read_at, avg(staged.kwh) AS kwh
FROM staged
JOIN meter_classes AS classes USING (meter_id)
WHERE staged.reason IS NULL AND staged.quality_flag = 'actual' AND staged.kwh <= $max_kwh
GROUP BY GROUPING SETS ((classes.load_class, classes.region, staged.read_at), (classes.load_class, staged.read_at),
                        (staged.read_at), ())
"""

# gaps neither a line nor the meter's own past can fill
WITHOUT_HISTORY_SQL = """
SELECT count(*) FROM gaps ANTI JOIN profiles USING (meter_id, local_time) WHERE NOT linear
"""
EMPTY_CLASS_PROFILE = (
    "CREATE OR REPLACE TEMP TABLE class_profile AS SELECT NULL::VARCHAR AS scope, NULL::VARCHAR AS load_class, "
    "NULL::VARCHAR AS region, NULL::TIMESTAMP AS read_at, NULL::DOUBLE AS kwh WHERE FALSE"
)

# each gap's estimate: a line, the days like the hours next to it, the meter's profile or its
# class's. The class's is scaled to the level of the meter's actual readings of the day around
# the gap against what the class says for them; the meter's own is not: on the real homes,
# scaling a gap to the hours beside it made the estimates worse, and the profile already weighs
# the days most like the last one read (docs/curated.md)
ESTIMATE_SQL = """
CREATE OR REPLACE TEMP TABLE estimates AS
WITH profiled AS (
    SELECT DISTINCT meter_id FROM gaps WHERE NOT linear
),
sources AS (
    -- what the meter's profile and its class say for every quarter hour of a meter with a gap
    SELECT day.meter_id, day.read_at, day.kwh, day.quality_flag, day.measured_kwh IS NOT NULL AS set_aside,
           profiles.kwh AS profile_kwh, profiles.method AS profile_method,
           coalesce(by_region.kwh, by_class.kwh, everyone.kwh, whole_day.kwh) AS class_kwh
    FROM validated AS day
    SEMI JOIN profiled USING (meter_id)
    LEFT JOIN meter_classes AS classes USING (meter_id)
    LEFT JOIN local_times USING (read_at)
    LEFT JOIN profiles USING (meter_id, local_time)
    LEFT JOIN class_profile AS by_region
           ON by_region.scope = 'region' AND by_region.load_class = classes.load_class
          AND by_region.region = classes.region AND by_region.read_at = day.read_at
    LEFT JOIN class_profile AS by_class
           ON by_class.scope = 'class' AND by_class.load_class = classes.load_class AND by_class.read_at = day.read_at
    LEFT JOIN class_profile AS everyone ON everyone.scope = 'everyone' AND everyone.read_at = day.read_at
    LEFT JOIN class_profile AS whole_day ON whole_day.scope = 'day'
),
methods AS (
    SELECT gaps.*, sources.profile_kwh, sources.class_kwh, similar_hours.kwh AS similar_hours_kwh,
           CASE WHEN gaps.linear THEN 'linear'
                WHEN similar_hours.kwh IS NOT NULL THEN 'similar_hours'
                WHEN sources.profile_kwh IS NOT NULL THEN sources.profile_method
                WHEN sources.class_kwh IS NOT NULL THEN 'class_profile' END AS method
    FROM gaps
    LEFT JOIN sources USING (meter_id, read_at)
    LEFT JOIN similar_hours USING (meter_id, read_at)
),
-- the meter's actual readings around each gap, beside what the gap's source says for them
around AS (
    SELECT gap.meter_id, gap.gap_start, gap.method, sources.kwh AS actual_kwh, sources.class_kwh AS source_kwh
    FROM (SELECT DISTINCT meter_id, gap_start, gap_end, method,
                 -- a short gap with a reading on one side only: the class's shape at the height
                 -- of the two hours next to it
                 CASE WHEN gap_intervals <= $linear_max THEN $short_level_window ELSE $level_window END AS hours
          FROM methods
          WHERE method = 'class_profile') AS gap
    JOIN sources
      ON sources.meter_id = gap.meter_id AND sources.quality_flag = 'actual' AND NOT sources.set_aside
     AND sources.read_at >= gap.gap_start - to_hours(gap.hours)
     AND sources.read_at <= gap.gap_end + to_hours(gap.hours)
     AND (sources.read_at < gap.gap_start OR sources.read_at > gap.gap_end)
),
levels AS (
    SELECT meter_id, gap_start, method,
           CASE WHEN count(*) >= $level_min_intervals AND sum(source_kwh) > 0
                THEN greatest(1 / $level_max_factor, least($level_max_factor, sum(actual_kwh) / sum(source_kwh)))
           END AS level
    FROM around
    WHERE source_kwh IS NOT NULL
    GROUP BY ALL
)
SELECT
    methods.meter_id,
    methods.read_at,
    methods.method,
    CAST(least($max_kwh, CASE methods.method
        -- the line in whole Wh, rounded half up exactly: (before * (n + 1) + (after - before) * k) / (n + 1)
        WHEN 'linear' THEN CAST((2 * (CAST(methods.kwh_before * 1000 AS BIGINT) * (methods.gap_intervals + 1)
                                      + CAST((methods.kwh_after - methods.kwh_before) * 1000 AS BIGINT)
                                        * methods.position)
                                 + methods.gap_intervals + 1) // (2 * (methods.gap_intervals + 1))
                                AS DECIMAL(12, 0)) * 0.001
        WHEN 'class_profile' THEN CAST(round(methods.class_kwh * coalesce(levels.level, 1), 3) AS DECIMAL(12, 3))
        WHEN 'similar_hours' THEN CAST(round(methods.similar_hours_kwh, 3) AS DECIMAL(12, 3))
        ELSE CAST(round(methods.profile_kwh, 3) AS DECIMAL(12, 3))
    END) AS DECIMAL(12, 3)) AS kwh
FROM methods
LEFT JOIN levels USING (meter_id, gap_start, method)
WHERE methods.method IS NOT NULL
"""

# the estimates in place; a reading set aside that nothing could estimate is missing. An
# estimate never replaces an actual reading that was not set aside.
ESTIMATED_SQL = """
UPDATE day_readings
SET kwh = estimates.kwh, quality_flag = 'estimated', estimated_by = 'platform', estimation_method = estimates.method
FROM estimates
WHERE day_readings.meter_id = estimates.meter_id AND day_readings.read_at = estimates.read_at
  AND estimates.kwh IS NOT NULL
"""
UNESTIMATED_SQL = """
UPDATE day_readings
SET kwh = NULL, quality_flag = 'missing', estimated_by = NULL, estimation_method = NULL
WHERE measured_kwh IS NOT NULL AND estimated_by IS DISTINCT FROM 'platform'
"""

# the day as edited, in the order `day_readings` was made and in its columns (the published
# kWh type kept), without the first version's reading
EDITED_SQL = """
SELECT * EXCLUDE (replaced_kwh) REPLACE (CAST(kwh AS DECIMAL(12, 3)) AS kwh) FROM day_readings
"""


def days_read(day: dt.date) -> list[dt.date]:
    """The days before `day` whose curated readings estimation reads, oldest first: the last
    `RECENT_DAYS`, and the same weekday of the previous `METER_LIKE_DAY_WEEKS` weeks."""
    recent = {day - dt.timedelta(days=d) for d in range(1, RECENT_DAYS + 1)}
    like = {day - dt.timedelta(weeks=w) for w in range(1, settings().like_day_weeks + 1)}
    return sorted(recent | like)


@dataclass(frozen=True)
class Rules:
    """The validation rules' settings and the estimation's, as DuckDB parameters."""

    max_kwh: Decimal
    spike_factor: Decimal
    zero_run_intervals: int
    jump_factor: Decimal

    @classmethod
    def from_settings(cls) -> Rules:
        s = settings()
        return cls(s.max_interval_kwh, s.spike_factor, s.zero_run_hours * 4, s.correction_jump_factor)

    def params(self) -> dict:
        return {
            "max_kwh": self.max_kwh,
            "spike_factor": self.spike_factor,
            "spike_floor": SPIKE_FLOOR_KWH,
            "zero_run": self.zero_run_intervals,
            "normal_zero_share": NORMAL_ZERO_SHARE,
            "jump_factor": self.jump_factor,
            "jump_floor": JUMP_FLOOR_KWH,
            "replacing_rules": list(REPLACING_RULES),
        }


class Estimator:
    """Validates and estimates the ranges of meters of one day, one after another, on one connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, rules: Rules):
        self.con = con
        self.rules = rules
        self.tz = settings().market_tz
        self.class_profile = False  # built on first need, from the day's `staged` rows
        self.local_times = False

    def edit(self, first_meter: str, last_meter: str, day_start: dt.datetime) -> str:
        """Validate `day_readings` of the meters from `first_meter` to `last_meter` and estimate
        their gaps; returns the SELECT of the edited rows (over temp tables this leaves behind).

        `day_start` (UTC) is where the day begins: `history` holds its like days and the day before.
        """
        params = {
            **self.rules.params(),
            "first_meter": first_meter,
            "last_meter": last_meter,
            "day_start": day_start,
            "day": day_start.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(self.tz)).date(),
            "tz": self.tz,
            "linear_max": LINEAR_MAX_INTERVALS,
            "level_window": LEVEL_WINDOW_HOURS,
            "short_level_window": SHORT_LEVEL_WINDOW_HOURS,
            "level_min_intervals": LEVEL_MIN_INTERVALS,
            "level_max_factor": LEVEL_MAX_FACTOR,
            "history_days": HISTORY_DAYS,
            "complete_intervals": COMPLETE_INTERVALS,
            "day_intervals": DAY_INTERVALS,
            "backtest_days": BACKTEST_DAYS,
            "recency_days": RECENCY_DAYS,
            "weekday_bonus": WEEKDAY_BONUS,
            "energy_scale": ENERGY_SCALE,
            "temperature_scale": TEMPERATURE_SCALE_C,
            "like_weeks": settings().like_day_weeks,
            "switch_margin": SWITCH_MARGIN,
        }
        if not self.local_times:
            self._run(LOCAL_TIMES_SQL, params)
            self.con.execute(EMPTY_DAY_TEMPERATURES)
            self.local_times = True
        for sql in (CANDIDATES_SQL, FLAGS_SQL, FLAG_SQL, VALIDATED_SQL, GAPS_SQL):
            self._run(sql, params)
        for sql in (PAST_SQL, PAST_DAYS_SQL, TARGETS_SQL, WEIGHTS_SQL, CHOSEN_SQL, PROFILES_SQL, SIMILAR_HOURS_SQL):
            self._run(sql, params)
        if not self.class_profile:
            needed = self.con.execute(WITHOUT_HISTORY_SQL).fetchone()[0]
            self._run(CLASS_PROFILE_SQL if needed else EMPTY_CLASS_PROFILE, params)
            self.class_profile = bool(needed)
        for sql in (ESTIMATE_SQL, ESTIMATED_SQL, UNESTIMATED_SQL):
            self._run(sql, params)
        return EDITED_SQL

    def _run(self, sql: str, params: dict) -> None:
        """One statement with the parameters it names (DuckDB refuses any it does not)."""
        self.con.execute(sql, {k: v for k, v in params.items() if re.search(rf"\${k}\b", sql)})


def edit_tables(
    day_readings: pa.Table,
    history: pa.Table,
    meter_classes: pa.Table,
    day_actuals: pa.Table,
    rules: Rules,
    day_start: dt.datetime,
    temperatures: pa.Table | None = None,
) -> pa.Table:
    """The edited day of `day_readings` (the shape `CURATE_SQL` makes) from Arrow tables, in a
    DuckDB of its own: for the accuracy benchmark and the tests, the same statements as curation.

    `day_actuals` (`meter_id`, `read_at`, `kwh`) stands for the day's staged rows, from which
    the class profile is made; `temperatures` (`region`, `local_date`, `temperature_c`), if
    given, for the regions' mean temperature per local day.
    """
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        for name, table in (
            ("day_table", day_readings),
            ("history_table", history),
            ("classes_table", meter_classes),
            ("actuals_table", day_actuals),
        ):
            con.register(name, table)
        con.execute(ARROW_INPUTS_SQL)
        if temperatures is not None:
            con.register("temperatures_table", temperatures)
            con.execute(ARROW_TEMPERATURES_SQL)
        first, last = con.execute("SELECT min(meter_id), max(meter_id) FROM day_readings").fetchone()
        edited = Estimator(con, rules).edit(first, last, day_start)
        return con.execute(EDITED_ORDERED_SQL.format(edited=edited)).to_arrow_table()


ARROW_INPUTS_SQL = """
CREATE TEMP TABLE day_readings AS
SELECT meter_id, read_at, kwh, quality_flag,
       CASE WHEN quality_flag = 'estimated' THEN 'head-end' END AS estimated_by,
       CASE WHEN quality_flag = 'estimated' THEN 'head-end' END AS estimation_method,
       CAST(NULL AS VARCHAR) AS validation_rule, CAST(NULL AS DECIMAL(12, 3)) AS measured_kwh,
       version, device_read_at, received_at, clock_offset_s, copies, source_file, ingested_at, interval_minutes,
       replaced_kwh
FROM day_table ORDER BY meter_id, read_at;
CREATE TEMP VIEW history AS SELECT meter_id, read_at, kwh, quality_flag FROM history_table;
CREATE TEMP TABLE meter_classes AS SELECT meter_id, load_class, region FROM classes_table;
CREATE TEMP VIEW staged AS
SELECT meter_id, read_at, kwh, 'actual' AS quality_flag, NULL::VARCHAR AS reason FROM actuals_table
"""
ARROW_TEMPERATURES_SQL = (
    "CREATE TEMP TABLE day_temperatures AS SELECT CAST(region AS VARCHAR) AS region, "
    "CAST(local_date AS DATE) AS local_date, CAST(temperature_c AS DOUBLE) AS temperature_c FROM temperatures_table"
)
EDITED_ORDERED_SQL = "{edited} ORDER BY meter_id, read_at"


def readings_table(meter_id, read_at, kwh, quality_flag=None, replaced_kwh=None) -> pa.Table:
    """A day of readings as curation hands it to validation (arrays of equal length; a NULL
    `kwh` is a missing quarter hour), the delivery columns left empty."""
    n = len(meter_id)
    kwh = pa.array(kwh, pa.decimal128(12, 3))
    if quality_flag is None:
        quality_flag = pa.compute.if_else(pa.compute.is_null(kwh), "missing", "actual")
    return pa.table(
        {
            "meter_id": pa.compute.cast(pa.array(meter_id), pa.string()),
            "read_at": pa.array(read_at, pa.timestamp("us")),
            "kwh": kwh,
            "quality_flag": pa.array(quality_flag, pa.string()),
            "version": pa.nulls(n, pa.int16()),
            "device_read_at": pa.nulls(n, pa.timestamp("us")),
            "received_at": pa.nulls(n, pa.timestamp("us")),
            "clock_offset_s": pa.nulls(n, pa.int32()),
            "copies": pa.nulls(n, pa.int32()),
            "source_file": pa.nulls(n, pa.string()),
            "ingested_at": pa.nulls(n, pa.timestamp("us")),
            "interval_minutes": pa.nulls(n, pa.int16()),
            "replaced_kwh": pa.array(replaced_kwh if replaced_kwh is not None else [None] * n, pa.decimal128(12, 3)),
        }
    )
