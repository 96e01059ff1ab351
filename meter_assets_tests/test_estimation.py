"""Validation and estimation of one day's readings, against values worked out here from the inputs.

Each test hands the estimator a day of readings, the meters' like days and their classes as
plain rows, and recomputes what the published day must hold in Python (Decimal arithmetic,
no SQL), following the rules as docs/curated.md states them.
"""

import datetime as dt
import math
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meter_assets.curated.estimation import (
    COMPLETE_INTERVALS,
    ENERGY_SCALE,
    LEVEL_MIN_INTERVALS,
    LINEAR_MAX_INTERVALS,
    METHODS,
    PROFILE_METHODS,
    RECENCY_DAYS,
    SHORT_LEVEL_WINDOW_HOURS,
    TEMPERATURE_SCALE_C,
    WEEKDAY_BONUS,
    Rules,
    edit_tables,
    readings_table,
)
from meter_assets.market_calendar import local_day_bounds

TZ = ZoneInfo("Europe/London")
RULES = Rules(max_kwh=Decimal("6.000"), spike_factor=Decimal("5"), zero_run_intervals=24, jump_factor=Decimal("10"))
Q = dt.timedelta(minutes=15)
MILLI = Decimal("0.001")


def quarter_hours(day: dt.date) -> list[dt.datetime]:
    start, end = local_day_bounds(day, "Europe/London")
    return [start + i * Q for i in range(int((end - start) / Q))]


def local_time_day(read_at: dt.datetime) -> dt.date:
    return read_at.replace(tzinfo=dt.UTC).astimezone(TZ).date()


def local_time(read_at: dt.datetime) -> dt.time:
    return read_at.replace(tzinfo=dt.UTC).astimezone(TZ).time()


def run(
    day_rows: list[dict], history: list[dict], classes: dict[int, tuple[str, str]], temperatures: dict | None = None
) -> dict:
    """The estimator over these rows; returns the edited day by (meter, read_at).

    Meters are numbered here for brevity; the platform's meter ids are text (so 10 sorts before 9).
    `temperatures`: the mean temperature of a (region, local date), if the weather is known.
    """
    day = readings_table(
        [str(r["meter_id"]) for r in day_rows],
        [r["read_at"] for r in day_rows],
        [r.get("kwh") for r in day_rows],
        replaced_kwh=[r.get("replaced_kwh") for r in day_rows],
    )
    hist = pa.table(
        {
            "meter_id": pa.array([str(r["meter_id"]) for r in history], pa.string()),
            "read_at": pa.array([r["read_at"] for r in history], pa.timestamp("us")),
            "kwh": pa.array([r["kwh"] for r in history], pa.decimal128(12, 3)),
            "quality_flag": ["actual"] * len(history),
        }
    )
    meter_classes = pa.table(
        {
            "meter_id": pa.array([str(m) for m in classes], pa.string()),
            "load_class": [c for c, _ in classes.values()],
            "region": [r for _, r in classes.values()],
        }
    )
    actuals = day.filter(pa.compute.is_valid(day.column("kwh"))).select(["meter_id", "read_at", "kwh"])
    day_start = local_day_bounds(local_time_day(min(r["read_at"] for r in day_rows)), "Europe/London")[0]
    weather = None
    if temperatures is not None:
        weather = pa.table(
            {
                "region": [region for region, _ in temperatures],
                "local_date": pa.array([d for _, d in temperatures], pa.date32()),
                "temperature_c": list(temperatures.values()),
            }
        )
    rows = edit_tables(day, hist, meter_classes, actuals, RULES, day_start, weather).to_pylist()
    return {(int(r["meter_id"]), r["read_at"]): r for r in rows}


def like_history(meter: int, day: dt.date, kwh_of, weeks: int = 4) -> list[dict]:
    return [
        {"meter_id": meter, "read_at": t, "kwh": kwh_of(w, t)}
        for w in range(1, weeks + 1)
        for t in quarter_hours(day - dt.timedelta(weeks=w))
    ]


def profile_of(
    history, day_rows, day: dt.date, gap_start: dt.datetime, method: str, temperature=None
) -> dict[dt.time, float]:
    """A meter's profile for `day` as docs/curated.md states it, worked out here: a weighted mean
    of its past days' actual readings per local time of day."""
    by_day = defaultdict(list)
    for h in history:
        by_day[local_time_day(h["read_at"])].append(h)
    energy = {d: float(sum(h["kwh"] for h in rows)) for d, rows in by_day.items()}
    complete = [d for d, rows in by_day.items() if len(rows) >= COMPLETE_INTERVALS and d < day]
    typical = sum(energy[d] for d in complete) / len(complete) if complete else None
    # likened to the last 96 quarter hours read in the week before the day's first gap (a day's
    # worth at their mean), or the last complete day when fewer than 48 were read
    read = sorted(
        (r["read_at"], r["kwh"])
        for r in [*history, *day_rows]
        if r.get("kwh") is not None and gap_start - dt.timedelta(days=7) <= r["read_at"] < gap_start
    )
    last_read = read[-96:]
    read = [kwh for _, kwh in last_read]
    if len(read) >= 48:
        reference, reference_day = 96 * float(sum(read)) / len(read), local_time_day(last_read[-1][0])
    else:
        reference_day = max(complete) if complete else None
        reference = energy[reference_day] if complete else None
    # the likeness's scale grows by itself for each whole day between the one read and the day
    days_unread = max(0, (day - reference_day).days - 1) if reference_day else 0
    sums, weights = defaultdict(float), defaultdict(float)
    for d, rows in by_day.items():
        age = (day - d).days
        if age <= 0:
            continue
        if method == "like_day":
            if age % 7 or age > 28:
                continue
            weight = 1.0
        else:
            weight = math.exp(-age / RECENCY_DAYS) * (1 + WEEKDAY_BONUS if age % 7 == 0 else 1)
            if method == "similar_weather":
                weight *= math.exp(-abs(temperature[d] - temperature[day]) / TEMPERATURE_SCALE_C)
            elif reference is not None and typical > 0:
                weight *= math.exp(-abs(energy[d] - reference) / (ENERGY_SCALE * (1 + days_unread) * typical))
        for h in rows:
            sums[local_time(h["read_at"])] += weight * float(h["kwh"])
            weights[local_time(h["read_at"])] += weight
    return {t: sums[t] / weights[t] for t in sums}


def similar_hours_of(meter_rows, history, gap: set[dt.datetime]) -> dict[dt.datetime, float]:
    """The rule for a short gap with a reading on one side only, worked out: the meter's past
    days weighted by recency, weekday and how like the day's readings within two hours of the
    gap their readings at the same local times were; empty when fewer than 4 were read."""
    start, end = min(gap), max(gap)
    day = local_time_day(start)
    window = dt.timedelta(hours=SHORT_LEVEL_WINDOW_HOURS)
    around = [
        r
        for r in meter_rows
        if r["read_at"] not in gap and start - window <= r["read_at"] <= end + window and r.get("kwh") is not None
    ]
    if len(around) < LEVEL_MIN_INTERVALS:
        return {}
    by_day = defaultdict(lambda: defaultdict(list))
    for h in history:
        by_day[local_time_day(h["read_at"])][local_time(h["read_at"])].append(float(h["kwh"]))
    energy_today = float(sum(r["kwh"] for r in around))
    windows = {}
    for d, at in by_day.items():
        found = [v for r in around for v in at.get(local_time(r["read_at"]), [])]
        if d < day and len(found) == len(around):
            windows[d] = sum(found)
    if not windows:
        return {}
    mean = sum(windows.values()) / len(windows)
    weights = {}
    for d, energy in windows.items():
        age = (day - d).days
        weight = math.exp(-age / RECENCY_DAYS) * (1 + WEEKDAY_BONUS if age % 7 == 0 else 1)
        weights[d] = weight * (math.exp(-abs(energy - energy_today) / (ENERGY_SCALE * mean)) if mean > 0 else 1)
    out = {}
    for t in gap:
        pairs = [(weights[d], v) for d in weights for v in by_day[d].get(local_time(t), [])]
        if pairs and sum(w for w, _ in pairs) > 0:
            out[t] = sum(w * v for w, v in pairs) / sum(w for w, _ in pairs)
    return out


def expected_profile(
    meter_rows, history, gap: set[dt.datetime], method: str, temperature=None
) -> dict[dt.datetime, Decimal]:
    """The profile rule, worked out: the meter's profile by local time, unscaled; a short gap
    with a reading on one side only the days like the hours next to it (`similar_hours`)."""
    start = min(gap)
    profile = profile_of(history, meter_rows, local_time_day(start), start, method, temperature)
    similar = similar_hours_of(meter_rows, history, gap) if len(gap) <= LINEAR_MAX_INTERVALS else {}
    return {t: Decimal(str(round(similar.get(t, profile.get(local_time(t))), 3))) for t in gap}


def test_a_short_gap_is_the_line_between_its_neighbours():
    day = dt.date(2024, 5, 14)
    times = quarter_hours(day)
    values = [Decimal("0.100") + Decimal(i % 7) * Decimal("0.050") for i in range(len(times))]
    gap = set(times[40:45])
    rows = [{"meter_id": 7, "read_at": t, "kwh": None if t in gap else v} for t, v in zip(times, values, strict=True)]
    out = run(rows, [], {7: ("ordinary", "London")})
    before, after = values[39], values[45]
    for k, t in enumerate(times[40:45], start=1):
        expected = (before + (after - before) * k / 6).quantize(MILLI, ROUND_HALF_UP)
        row = out[(7, t)]
        assert (row["kwh"], row["quality_flag"], row["estimated_by"], row["estimation_method"]) == (
            expected,
            "estimated",
            "platform",
            "linear",
        )
    # the readings around it are untouched
    assert all(
        out[(7, t)]["kwh"] == v and out[(7, t)]["estimated_by"] is None
        for t, v in zip(times, values, strict=True)
        if t not in gap
    )


def test_a_short_gap_from_midnight_starts_its_line_at_the_day_befores_last_reading():
    day = dt.date(2024, 10, 27)  # the clocks go back: the line is in UTC quarter hours all the same
    times = quarter_hours(day)
    last_before = quarter_hours(day - dt.timedelta(days=1))[-1]
    history = [{"meter_id": 2, "read_at": last_before, "kwh": Decimal("0.400")}]
    rows = [{"meter_id": 2, "read_at": t, "kwh": None if i < 3 else Decimal("0.800")} for i, t in enumerate(times)]
    out = run(rows, history, {2: ("ordinary", "London")})
    assert [(out[(2, t)]["kwh"], out[(2, t)]["estimation_method"]) for t in times[:3]] == [
        (Decimal("0.500"), "linear"),
        (Decimal("0.600"), "linear"),
        (Decimal("0.700"), "linear"),
    ]


def test_a_long_gap_follows_the_meters_profile():
    day = dt.date(2024, 5, 14)
    times = quarter_hours(day)

    def pattern(week, t):
        return Decimal("0.200") + Decimal(week) * Decimal("0.010") + Decimal(t.hour % 5) * Decimal("0.030")

    history = like_history(3, day, pattern)
    # this week the household uses 30 % more than its like days
    rows = [{"meter_id": 3, "read_at": t, "kwh": (pattern(2.5, t) * Decimal("1.3")).quantize(MILLI)} for t in times]
    gap = set(times[30:54])  # six hours
    for r in rows:
        if r["read_at"] in gap:
            r["kwh"] = None
    out = run(rows, history, {3: ("ordinary", "London")})
    (method,) = {out[(3, t)]["estimation_method"] for t in gap}
    assert method in PROFILE_METHODS
    expected = expected_profile(rows, history, gap, method)
    # the platform works the mean in binary floating point: within a Wh of the exact value
    assert all(abs(out[(3, t)]["kwh"] - expected[t]) <= MILLI for t in gap)
    # the readings around it are untouched
    assert all(out[(3, r["read_at"])]["kwh"] == r["kwh"] for r in rows if r["read_at"] not in gap)


def heating_history(day: dt.date, read_back: range, heating_back: int) -> list[dict]:
    """Meter 4's days `read_back` days before `day`: heating on (0.9 kWh a quarter hour at
    night, 0.3 by day) for those up to `heating_back` days before, 0.15 flat before that."""
    history = []
    for back in read_back:
        heating = back <= heating_back
        for t in quarter_hours(day - dt.timedelta(days=back)):
            night = local_time(t).hour < 7
            kwh = Decimal("0.900") if heating and night else Decimal("0.300") if heating else Decimal("0.150")
            history.append({"meter_id": 4, "read_at": t, "kwh": kwh})
    return history


def test_a_day_without_readings_follows_the_past_days_most_like_the_last_one():
    """A home whose heating came on three days ago: a whole day's gap follows those days, not
    the same weekday of earlier weeks (a regime holds from one day to the next), and no level
    from the evening before scales it."""
    day = dt.date(2024, 1, 16)
    times = quarter_hours(day)
    history = heating_history(day, read_back=range(1, 15), heating_back=3)
    rows = [{"meter_id": 4, "read_at": t} for t in times]
    out = run(rows, history, {4: ("heating", "London")})
    methods = {out[(4, t)]["estimation_method"] for t in times}
    assert methods == {"similar_days"}
    expected = expected_profile(rows, history, set(times), "similar_days")
    assert all(abs(out[(4, t)]["kwh"] - expected[t]) <= MILLI for t in times)
    # the estimate is the heating days' (about 10.8 kWh), far above the weeks before (3.6 kWh)
    assert sum(out[(4, t)]["kwh"] for t in times) > Decimal("9.5")


def test_the_later_days_of_a_long_gap_lean_less_on_the_last_day_read():
    """The same home, its heating on for the 3 days before a gap of 3 days: the gap's third day
    likens days to the last one read with a scale three times as wide (two whole days lie
    between), so the mild weeks before weigh in more than on the gap's first day."""
    day = dt.date(2024, 1, 16)
    times = quarter_hours(day)
    # the gap: the day and the 2 days before it, not read
    history = heating_history(day, read_back=range(3, 17), heating_back=5)
    rows = [{"meter_id": 4, "read_at": t} for t in times]
    out = run(rows, history, {4: ("heating", "London")})
    assert {out[(4, t)]["estimation_method"] for t in times} == {"similar_days"}
    expected = expected_profile(rows, history, set(times), "similar_days")
    assert all(abs(out[(4, t)]["kwh"] - expected[t]) <= MILLI for t in times)
    # between the mild days (14.4 kWh) and the heating days (45.6 kWh), nearer the heating
    estimated = sum(out[(4, t)]["kwh"] for t in times)
    assert Decimal("30") < estimated < Decimal("44")


def test_a_meter_whose_load_follows_the_weather_is_estimated_from_days_as_cold():
    """Electric heating on a week of alternating cold and mild days: the day before is mild, the
    day is cold. The meter's backtest finds that days as cold predict it, not days like the last
    one read, and the estimate is a cold day's."""
    day = dt.date(2024, 1, 16)
    times = quarter_hours(day)
    ages = [*range(1, 8), 14, 21, 28]
    temperature = {day: 0.0} | {day - dt.timedelta(days=a): 0.0 if a % 2 == 0 else 12.0 for a in ages}
    history = []
    for age in ages:
        d = day - dt.timedelta(days=age)
        cold = temperature[d] < 5
        for t in quarter_hours(d):
            evening = Decimal("0.100") if 17 <= local_time(t).hour < 22 else Decimal("0.000")
            history.append(
                {"meter_id": 6, "read_at": t, "kwh": (Decimal("0.500") if cold else Decimal("0.100")) + evening}
            )
    rows = [{"meter_id": 6, "read_at": t} for t in times]
    out = run(rows, history, {6: ("heating", "Scotland")}, {("Scotland", d): c for d, c in temperature.items()})
    assert {out[(6, t)]["estimation_method"] for t in times} == {"similar_weather"}
    expected = expected_profile(rows, history, set(times), "similar_weather", temperature)
    assert all(abs(out[(6, t)]["kwh"] - expected[t]) <= MILLI for t in times)
    # a cold day's energy (about 48 kWh), not the mild day before's (about 10 kWh)
    assert sum(out[(6, t)]["kwh"] for t in times) > Decimal("40")


def test_a_meter_whose_weeks_repeat_is_estimated_from_its_like_days():
    """A meter that is busy every Tuesday and quiet otherwise: its own backtest finds that the
    same weekday of earlier weeks predicts it best."""
    day = dt.date(2024, 5, 14)  # a Tuesday
    times = quarter_hours(day)
    history = []
    for back in range(1, 29):
        d = day - dt.timedelta(days=back)
        busy = back % 7 == 0
        for t in quarter_hours(d):
            wave = Decimal(local_time(t).hour % 6) * Decimal("0.050")
            history.append(
                {"meter_id": 8, "read_at": t, "kwh": (Decimal("0.800") if busy else Decimal("0.100")) + wave}
            )
    rows = [{"meter_id": 8, "read_at": t} for t in times]
    out = run(rows, history, {8: ("ordinary", "London")})
    assert {out[(8, t)]["estimation_method"] for t in times} == {"like_day"}
    expected = expected_profile(rows, history, set(times), "like_day")
    assert all(abs(out[(8, t)]["kwh"] - expected[t]) <= MILLI for t in times)


def test_a_meter_without_history_gets_its_class_in_its_region():
    day = dt.date(2024, 5, 14)
    times = quarter_hours(day)
    classes = {
        1: ("ev", "London"),
        2: ("ev", "London"),
        3: ("ev", "Scotland"),
        4: ("ordinary", "London"),
        9: ("ev", "London"),
    }
    value = {1: Decimal("1.000"), 2: Decimal("2.000"), 3: Decimal("5.000"), 4: Decimal("0.100")}
    rows = [{"meter_id": m, "read_at": t, "kwh": v} for m, v in value.items() for t in times]
    # meter 9 sent nothing all day and has no history: London's EV meters, 1.5 kWh each quarter hour
    rows += [{"meter_id": 9, "read_at": t} for t in times]
    out = run(rows, [], classes)
    assert {(out[(9, t)]["kwh"], out[(9, t)]["estimation_method"]) for t in times} == {
        (Decimal("1.500"), "class_profile")
    }


def test_a_reading_the_supply_cannot_deliver_is_kept_aside_and_estimated():
    day = dt.date(2024, 5, 14)
    times = quarter_hours(day)
    rows = [{"meter_id": 5, "read_at": t, "kwh": Decimal("0.300")} for t in times]
    rows[50].update(kwh=Decimal("7.500"))  # 30 kW for a quarter hour on a 100 A supply
    out = run(rows, like_history(5, day, lambda w, t: Decimal("0.250")), {5: ("ordinary", "London")})
    row = out[(5, times[50])]
    assert (row["validation_rule"], row["measured_kwh"], row["quality_flag"], row["estimated_by"]) == (
        "above_connection_limit",
        Decimal("7.500"),
        "estimated",
        "platform",
    )
    # a single bad quarter hour between two good ones is the line between them
    assert (row["kwh"], row["estimation_method"]) == (Decimal("0.300"), "linear")
    assert sum(r["validation_rule"] is not None for r in out.values()) == 1


@pytest.mark.parametrize(
    "rule, reading, replaced, history_max",
    [
        ("above_own_maximum", Decimal("3.100"), None, Decimal("0.600")),
        ("correction_jump", Decimal("2.400"), Decimal("0.200"), Decimal("3.000")),
    ],
)
def test_an_unusual_reading_is_flagged_for_review_and_billed_as_delivered(rule, reading, replaced, history_max):
    day = dt.date(2024, 5, 14)
    times = quarter_hours(day)
    rows = [{"meter_id": 5, "read_at": t, "kwh": Decimal("0.300")} for t in times]
    rows[50].update(kwh=reading, replaced_kwh=replaced)
    history = like_history(5, day, lambda w, t: history_max if t.minute == 0 and t.hour == 12 else Decimal("0.250"))
    out = run(rows, history, {5: ("ordinary", "London")})
    row = out[(5, times[50])]
    assert (row["validation_rule"], row["kwh"], row["measured_kwh"], row["quality_flag"], row["estimated_by"]) == (
        rule,
        reading,
        None,
        "actual",
        None,
    )
    assert sum(r["validation_rule"] is not None for r in out.values()) == 1
    assert all(r["estimated_by"] is None for r in out.values())


def test_the_same_readings_pass_on_a_meter_that_can_draw_them():
    day = dt.date(2024, 5, 14)
    times = quarter_hours(day)
    rows = [{"meter_id": 5, "read_at": t, "kwh": Decimal("0.300")} for t in times]
    rows[50].update(kwh=Decimal("3.100"))  # an EV charging: it did so on its like days too
    rows[60].update(kwh=Decimal("0.350"), replaced_kwh=Decimal("0.300"))  # a small correction
    history = like_history(5, day, lambda w, t: Decimal("3.000") if t.hour == 1 else Decimal("0.250"))
    out = run(rows, history, {5: ("ev", "London")})
    assert all(r["validation_rule"] is None and r["estimated_by"] is None for r in out.values())
    assert out[(5, times[50])]["kwh"] == Decimal("3.100")


def test_a_households_first_ev_charge_is_not_a_spike():
    day = dt.date(2024, 5, 14)
    times = quarter_hours(day)
    # a home charger's quarter hour (7.4 kW, the simulator's largest was 2.267 kWh) on a meter
    # whose like days never drew more than 0.25 kWh: nine times its maximum, yet real
    rows = [
        {"meter_id": 6, "read_at": t, "kwh": Decimal("2.267") if 80 <= i < 88 else Decimal("0.200")}
        for i, t in enumerate(times)
    ]
    out = run(rows, like_history(6, day, lambda w, t: Decimal("0.250")), {6: ("ev", "London")})
    assert all(r["validation_rule"] is None and r["estimated_by"] is None for r in out.values())


def test_hours_of_zeros_are_flagged_only_on_a_meter_that_consumes_and_billed_as_read():
    day = dt.date(2024, 5, 14)
    times = quarter_hours(day)
    zeros = set(times[20:48])  # seven hours
    rows = [
        {"meter_id": m, "read_at": t, "kwh": Decimal("0.000") if t in zeros else Decimal("0.400")}
        for m in (1, 2)
        for t in times
    ]
    history = like_history(1, day, lambda w, t: Decimal("0.400"))
    # meter 2 is a holiday home: its like days were mostly zeros
    history += like_history(2, day, lambda w, t: Decimal("0.000") if t.hour < 20 else Decimal("0.100"))
    out = run(rows, history, {1: ("ordinary", "London"), 2: ("ordinary", "London")})
    # an empty home or a supply switched off reads zeros too: flagged for review, never estimated
    assert {(out[(1, t)]["validation_rule"], out[(1, t)]["kwh"], out[(1, t)]["quality_flag"]) for t in zeros} == {
        ("zero_run", Decimal("0.000"), "actual")
    }
    assert all(out[(2, t)]["validation_rule"] is None and out[(2, t)]["kwh"] == 0 for t in zeros)
    # six zeros in a row are not seven hours: nothing flagged outside the run
    assert all(out[(1, t)]["validation_rule"] is None for t in times if t not in zeros)
    assert all(r["estimated_by"] is None for r in out.values())


def test_a_household_s_real_extremes_are_billed_as_delivered():
    """A weekend away, heating peaks, an EV charge and an electric shower, at once, on meters whose
    like days had none of them: every reading stays what the meter delivered."""
    day = dt.date(2024, 1, 15)  # a Monday in winter; the weekend before the home stood empty
    times = quarter_hours(day)
    before = quarter_hours(day - dt.timedelta(days=1))
    ordinary = Decimal("0.150")
    delivered = {}
    for i, t in enumerate(times):
        # meter 1: home at 17:00 after a weekend away, zeros until then (68 quarter hours)
        delivered[(1, t)] = Decimal("0.000") if i < 68 else Decimal("0.350")
        # meter 2: storage and panel heaters at full tilt through the cold night (3 kW: 0.75 kWh)
        delivered[(2, t)] = Decimal("0.750") if i < 28 or i >= 88 else Decimal("0.200")
        # meter 3: a first EV charge at 7.4 kW overnight, and a 9.5 kW electric shower at 07:00
        delivered[(3, t)] = Decimal("1.850") if 4 <= i < 24 else Decimal("2.375") if i == 28 else ordinary
        # meter 4: the heaters, the charger and the shower together at 18:00 (just under 100 A)
        delivered[(4, t)] = Decimal("5.900") if i == 72 else ordinary
    rows = [{"meter_id": m, "read_at": t, "kwh": v} for (m, t), v in delivered.items()]
    # like days of a quiet home, and the Sunday before: meter 1 empty, the others ordinary
    history = [h for m in (1, 2, 3, 4) for h in like_history(m, day, lambda w, t: ordinary)]
    history += [
        {"meter_id": m, "read_at": t, "kwh": Decimal(0) if m == 1 else ordinary} for m in (1, 2, 3, 4) for t in before
    ]
    out = run(rows, history, {m: ("ordinary", "London") for m in (1, 2, 3, 4)})
    assert {k: out[k]["kwh"] for k in delivered} == delivered
    assert {out[k]["quality_flag"] for k in delivered} == {"actual"}
    assert all(out[k]["estimated_by"] is None and out[k]["measured_kwh"] is None for k in delivered)
    # what a rule found unusual is flagged for review all the same
    assert {out[(1, t)]["validation_rule"] for t in times[:68]} == {"zero_run"}
    assert out[(4, times[72])]["validation_rule"] == "above_own_maximum"


DAYS = [dt.date(2024, 3, 31), dt.date(2024, 10, 27), dt.date(2024, 5, 14), dt.date(2024, 12, 25)]


def test_a_short_gap_to_the_end_of_the_day_follows_the_days_like_the_hours_before():
    """A home whose evenings differ from week to week (a heater on every other week): an
    evening read like the heater's is finished like the heater's, not like the mean of them."""
    day = dt.date(2024, 3, 31)  # the clocks go forward: a 23-hour day ends all the same

    def evening(w, t):  # the heater weeks' last quarter hours rise, the others' fall
        late = local_time(t) >= dt.time(23, 15)
        if w % 2:
            return Decimal("0.900") if late else Decimal("0.600")
        return Decimal("0.100") if late else Decimal("0.200")

    times = quarter_hours(day)
    history = like_history(5, day, evening)
    rows = [
        {"meter_id": 5, "read_at": t, "kwh": None if i >= len(times) - 3 else Decimal("0.580")}
        for i, t in enumerate(times)
    ]
    out = run(rows, history, {5: ("ordinary", "London")})
    gap = set(times[-3:])
    assert {out[(5, t)]["estimation_method"] for t in gap} == {"similar_hours"}
    expected = expected_profile(rows, history, gap, "similar_hours")
    assert {t: out[(5, t)]["kwh"] for t in gap} == expected
    # the heater weeks', where the mean of the like days would say 0.500
    assert all(out[(5, t)]["kwh"] > Decimal("0.850") for t in gap)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    day=st.sampled_from(DAYS),
    gaps=st.lists(st.tuples(st.integers(1, 2), st.integers(0, 99), st.integers(1, 120)), min_size=0, max_size=5),
    with_history=st.tuples(st.booleans(), st.booleans()),
    seed=st.integers(0, 10_000),
)
def test_every_quarter_hour_ends_with_a_value_and_actuals_never_change(day, gaps, with_history, seed):
    """Two meters on any day (the clock changes included), gaps anywhere and of any length."""
    times = quarter_hours(day)
    values = {
        (m, t): Decimal((seed * 7 + m * 131 + i * 17) % 900 + 50) * MILLI for m in (1, 2) for i, t in enumerate(times)
    }
    missing = set()
    for meter, start, length in gaps:
        missing |= {(meter, t) for t in times[start : start + length]}
    rows = [{"meter_id": m, "read_at": t, "kwh": None if (m, t) in missing else v} for (m, t), v in values.items()]
    history = []
    for meter, wanted in zip((1, 2), with_history, strict=True):
        if wanted:
            history += like_history(meter, day, lambda w, t: Decimal("0.300") + Decimal(t.hour) * MILLI * 10, weeks=2)
    classes = {1: ("ordinary", "London"), 2: ("heating", "Scotland")}
    out = run(rows, history, classes)

    assert set(out) == set(values)
    # a quarter hour stays without a value only if nothing at all can say what it was: no
    # history of its meter and not one reading from any meter all day
    nothing_read = len(missing) == len(values)
    for key, row in out.items():
        if nothing_read and not with_history[key[0] - 1]:
            assert (row["kwh"], row["quality_flag"], row["estimated_by"]) == (None, "missing", None)
            continue
        assert row["kwh"] is not None and 0 <= row["kwh"] <= RULES.max_kwh, (key, row)
        if key in missing:
            assert (row["quality_flag"], row["estimated_by"]) == ("estimated", "platform")
            assert row["estimation_method"] in METHODS
        else:
            assert (row["kwh"], row["quality_flag"], row["estimated_by"]) == (values[key], "actual", None)

    # each gap's method follows the rules, and a line stays between its two ends
    for meter in (1, 2):
        run_start = None
        for i, t in enumerate([*times, None]):
            gap = t is not None and (meter, t) in missing
            if gap and run_start is None:
                run_start = i
            if not gap and run_start is not None:
                span = times[run_start:i]
                before = values[(meter, times[run_start - 1])] if run_start > 0 else None
                after = values[(meter, times[i])] if i < len(times) else None
                methods = {out[(meter, s)]["estimation_method"] for s in span}
                if len(span) <= LINEAR_MAX_INTERVALS and before is not None and after is not None:
                    assert methods == {"linear"}
                    low, high = sorted((before, after))
                    assert all(low <= out[(meter, s)]["kwh"] <= high for s in span)
                elif with_history[meter - 1] and len(span) <= LINEAR_MAX_INTERVALS:
                    # the days like the hours next to it, or, with fewer than 4 of them read, the profile
                    assert len(methods) == 1 and methods <= {"similar_hours", *PROFILE_METHODS}
                elif with_history[meter - 1]:
                    assert len(methods) == 1 and methods <= set(PROFILE_METHODS)
                elif not nothing_read:
                    assert methods == {"class_profile"}
                run_start = None
