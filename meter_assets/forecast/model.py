"""Day-ahead load forecasting: features known at bid time, LightGBM quantile models, a backtest.

The same code serves the `load_forecast` asset (the retailer's portfolio) and
`meter-forecast backtest` (any load history a user has). The input is a DuckDB table
`series(period_start TIMESTAMP, load DOUBLE, temp DOUBLE)`: UTC period starts at the
settlement-period frequency, the load in that period (NULL where unknown, e.g. the day
being forecast) and the temperature as forecast at bid time (NULL if there is none).

What is known at bid time: a day-ahead bid for day T closes at gate closure on T-1, when
the newest complete day of meter readings is T-2 (day T-1 is still being metered); a
system operator's series has T-1 by then. So every load feature of a period on day T
comes from day T-lag or earlier (`Spec.lag_days`: 2, `LAG_DAYS`, or 1); the calendar,
public holidays and the temperature forecast are known in advance.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import duckdb
import numpy as np

MATRIX_SQL = "SELECT period_start, local_date, load, {features} FROM features WHERE {where} ORDER BY period_start"

QUANTILES = (0.1, 0.5, 0.9)
LAG_DAYS = 2
# loads, which the models see relative to the anchor: what they learn is a shape and a
# response (to the weekday, the weather, a holiday), not a level, so it carries across
# seasons and a growing portfolio
LOADS = (
    "lag_recent",
    "lag_week",
    "lag_two_weeks",
    "lag_sunday",
    "recent_day_mean",
    "week_day_mean",
    "recent_day_peak",
    "period_mean_last_week",
    "period_mean_same_weekday",
)
FEATURES = (
    "period",
    "dow",
    "is_weekend",
    "is_holiday",
    "next_to_holiday",
    "was_holiday_week_before",
    "recent_was_holiday",
    "doy_sin",
    "doy_cos",
    "temp",
    "heating_degrees",
    "cooling_degrees",
    "temp_change_on_week",
    *LOADS,
    "level_change_on_week",
    "week_level_change",
)
# a day of the year can only be learnt from two of them: with less history it is memorised
SEASONAL = ("doy_sin", "doy_cos")
SEASONAL_HISTORY_DAYS = 730
# small data (thousands to tens of thousands of rows): a hundred shallow trees, deterministic
PARAMS = {
    "learning_rate": 0.15,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "seed": 7,
    "deterministic": True,
    "force_row_wise": True,
}
ROUNDS = 100
CALIBRATION_DAYS = 14
TRUST_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)
# the band's widening on an unusual day (a holiday, next to one): the calibration days say
# how wrong an ordinary day goes, and hold few or none of these
UNUSUAL_DAY_BAND = 3.0
# a day's weight in training halves every this many days back: what the model learns follows
# the season it is in, without forgetting the rest
HALF_LIFE_DAYS = 60
# Rows older than this weigh a quarter or less; rather than train on every one of two years at
# a tiny weight, each is kept with a probability in proportion to its weight and the kept ones
# weigh what a row at this age does: the same expected weight per day, under a third of the
# rows (quantile trees cost in proportion to them), the same draw for the same rows.
FULL_WEIGHT_DAYS = 120

# Calendar in the series' local time. Lags are by local day and clock time (the same
# settlement period k days back, across a clock change too; the repeated hour of a long day
# averaged); the daily mean and peak of the newest complete day, of the same weekday a week
# earlier, and of the day a week before the newest; the same period's mean over the newest
# complete week and over the same weekday of the last four weeks, which average out the
# noise of any one day.
FEATURES_SQL = """
CREATE OR REPLACE TEMP TABLE features AS
WITH local AS (
    SELECT period_start, load, temp, local_at, CAST(local_at AS DATE) AS local_date,
           CAST(local_at AS TIME) AS clock_time,
           -- the newest complete day a bid for this day knows
           CAST(local_at AS DATE) - CAST($lag_days AS INTEGER) AS known_date
    FROM (SELECT *, timezone($tz, period_start AT TIME ZONE 'UTC') AS local_at FROM series)
),
clock AS (
    SELECT local_date, clock_time, date_diff('day', DATE '2000-01-01', local_date) AS day_number,
           avg(load ORDER BY period_start) AS load, avg(temp ORDER BY period_start) AS temp
    FROM local
    GROUP BY local_date, clock_time
),
windows AS (
    SELECT local_date, clock_time,
        avg(load ORDER BY local_date) OVER (
            PARTITION BY clock_time ORDER BY day_number
            RANGE BETWEEN CAST($lag_days AS INTEGER) + 6 PRECEDING AND CAST($lag_days AS INTEGER) PRECEDING
        ) AS period_mean_last_week,
        avg(load ORDER BY local_date) OVER (
            PARTITION BY clock_time, isodow(local_date) ORDER BY day_number
            RANGE BETWEEN 28 PRECEDING AND 7 PRECEDING
        ) AS period_mean_same_weekday
    FROM clock
),
days AS (
    SELECT local_date, avg(load ORDER BY period_start) AS day_mean, max(load) AS day_peak
    FROM local
    GROUP BY 1
    HAVING count(load) = count(*)
),
weeks AS (
    SELECT local_date,
           avg(day_mean ORDER BY local_date) OVER (
               ORDER BY date_diff('day', DATE '2000-01-01', local_date) RANGE BETWEEN 6 PRECEDING AND CURRENT ROW
           ) AS week_mean
    FROM days
)
SELECT
    s.period_start,
    s.local_date,
    s.load,
    (hour(s.local_at) * 60 + minute(s.local_at)) // $minutes           AS period,
    -- a public holiday is a Sunday to the models (people are home), flagged as well
    CASE WHEN holidays.day IS NULL THEN isodow(s.local_at) ELSE 7 END  AS dow,
    CAST(isodow(s.local_at) >= 6 OR holidays.day IS NOT NULL AS INTEGER) AS is_weekend,
    CAST(holidays.day IS NOT NULL AS INTEGER)                          AS is_holiday,
    -- a working day between a holiday and the weekend, or after one: many take it off
    CAST(holidays.day IS NULL AND isodow(s.local_at) <= 5
         AND (next_day.day IS NOT NULL OR day_before.day IS NOT NULL) AS INTEGER)
                                                                       AS next_to_holiday,
    CAST(holiday_before.day IS NOT NULL AS INTEGER)                    AS was_holiday_week_before,
    CAST(holiday_recent.day IS NOT NULL AS INTEGER)                    AS recent_was_holiday,
    sin(2 * pi() * dayofyear(s.local_at) / 365.25)                     AS doy_sin,
    cos(2 * pi() * dayofyear(s.local_at) / 365.25)                     AS doy_cos,
    s.temp,
    greatest(15.5 - s.temp, 0)                                         AS heating_degrees,
    greatest(s.temp - 22, 0)                                           AS cooling_degrees,
    s.temp - week.temp                                                 AS temp_change_on_week,
    recent.load                                                        AS lag_recent,
    week.load                                                          AS lag_week,
    fortnight.load                                                     AS lag_two_weeks,
    sunday.load                                                        AS lag_sunday,
    recent_day.day_mean                                                AS recent_day_mean,
    week_day.day_mean                                                  AS week_day_mean,
    recent_day.day_peak                                                AS recent_day_peak,
    -- a holiday on either day would read as a change of level: then the weeks' means say it
    CASE WHEN holiday_recent.day IS NULL AND holiday_recent_before.day IS NULL
         THEN recent_day.day_mean / nullif(recent_day_before.day_mean, 0)
         ELSE recent_week.week_mean / nullif(week_before.week_mean, 0) END AS level_change_on_week,
    recent_week.week_mean / nullif(week_before.week_mean, 0)           AS week_level_change,
    w.period_mean_last_week,
    w.period_mean_same_weekday
FROM local AS s
LEFT JOIN holidays ON holidays.day = s.local_date
LEFT JOIN holidays AS holiday_before ON holiday_before.day = s.local_date - 7
LEFT JOIN holidays AS next_day ON next_day.day = s.local_date + 1
LEFT JOIN holidays AS day_before ON day_before.day = s.local_date - 1
LEFT JOIN holidays AS holiday_recent ON holiday_recent.day = s.known_date
LEFT JOIN holidays AS holiday_recent_before ON holiday_recent_before.day = s.known_date - 7
LEFT JOIN clock AS recent
       ON recent.local_date = s.known_date AND recent.clock_time = s.clock_time
LEFT JOIN clock AS week ON week.local_date = s.local_date - 7 AND week.clock_time = s.clock_time
LEFT JOIN clock AS fortnight ON fortnight.local_date = s.local_date - 14 AND fortnight.clock_time = s.clock_time
-- the newest Sunday known at bid time: what a public holiday looks like
LEFT JOIN clock AS sunday
       ON sunday.local_date = s.known_date - CAST(isodow(s.known_date) % 7 AS INTEGER)
      AND sunday.clock_time = s.clock_time
LEFT JOIN windows AS w ON w.local_date = s.local_date AND w.clock_time = s.clock_time
LEFT JOIN days AS recent_day ON recent_day.local_date = s.known_date
LEFT JOIN days AS recent_day_before ON recent_day_before.local_date = s.known_date - 7
LEFT JOIN days AS week_day ON week_day.local_date = s.local_date - 7
LEFT JOIN weeks AS recent_week ON recent_week.local_date = s.known_date
LEFT JOIN weeks AS week_before ON week_before.local_date = s.known_date - 7
ORDER BY s.period_start
"""


@dataclass(frozen=True)
class Spec:
    tz: str
    minutes: int = 30
    country: str = "GB"
    threads: int = 2
    # days between the newest complete day known at bid time and the day forecast: 2 for meter
    # data (at gate closure on T-1, day T-1 is still being metered), 1 for a system operator's
    # series (yesterday is published by morning)
    lag_days: int = LAG_DAYS
    subdivision: str | None = None  # the holidays of a state or nation within the country

    def __post_init__(self):
        if not 1 <= self.lag_days <= 7:
            # the week-ago lags would then be unknown at bid time
            raise ValueError(f"lag_days must be 1 to 7, not {self.lag_days}")


@dataclass
class Metrics:
    days: int
    periods: int
    mape_p50: float
    mape_seasonal_naive: float
    mape_previous_day: float
    pinball: float
    pinball_by_quantile: dict[str, float]
    coverage_p10_p90: float
    improvement_on_best_baseline: float
    blocks: list[dict] = field(default_factory=list)  # the days each refit forecast

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "blocks"}


def prepare(con: duckdb.DuckDBPyConnection, spec: Spec) -> None:
    """Holidays of the years the series spans, then the feature table."""
    import holidays

    first, last = con.execute(
        "SELECT min(timezone($tz, period_start AT TIME ZONE 'UTC')), "
        "max(timezone($tz, period_start AT TIME ZONE 'UTC')) FROM series",
        {"tz": spec.tz},
    ).fetchone()
    days = sorted(
        holidays.country_holidays(spec.country, subdiv=spec.subdivision, years=range(first.year, last.year + 1))
    )
    con.execute("CREATE OR REPLACE TEMP TABLE holidays (day DATE)")
    if days:
        con.executemany("INSERT INTO holidays VALUES ($day)", [{"day": d} for d in days])
    con.execute(FEATURES_SQL, {"tz": spec.tz, "minutes": spec.minutes, "lag_days": spec.lag_days})


@dataclass
class Rows:
    x: np.ndarray
    y: np.ndarray
    starts: list
    dates: np.ndarray


def matrix(con: duckdb.DuckDBPyConnection, where: str, params: dict | None = None) -> Rows:
    """Features, target, period starts and local dates of the feature rows matching `where`."""
    rows = con.execute(
        MATRIX_SQL.format(features=", ".join(FEATURES), where=where),
        params or {},
    ).fetchnumpy()

    def column(name: str) -> np.ndarray:
        # NULLs arrive masked: LightGBM reads NaN as missing
        return np.ma.filled(np.ma.asarray(rows[name]).astype(float), np.nan)

    x = np.column_stack([column(f) for f in FEATURES]) if len(rows["period_start"]) else np.empty((0, len(FEATURES)))
    return Rows(
        x=x,
        y=column("load"),
        starts=list(rows["period_start"]),
        dates=np.asarray(rows["local_date"]).astype("datetime64[D]"),
    )


@dataclass
class Fitted:
    models: dict[float, object]
    widen: float  # added outside P10 and P90 (as a ratio), from the calibration days (conformalised quantiles)
    features: tuple[str, ...] = FEATURES  # the features the models use, in their order
    # how much of the P50 model's departure from the anchor is kept (1: all, 0: the anchor
    # alone), chosen on the calibration days: with little history the trees mostly add noise
    trust: float = 1.0


def _train(x: np.ndarray, y: np.ndarray, weight: np.ndarray, q: float, features: tuple[str, ...], spec: Spec):
    import lightgbm as lgb

    data = lgb.Dataset(x, y, weight=weight, feature_name=list(features), free_raw_data=False)
    return lgb.train(
        {**PARAMS, "objective": "quantile", "alpha": q, "num_threads": spec.threads}, data, num_boost_round=ROUNDS
    )


def feature(x: np.ndarray, name: str) -> np.ndarray:
    """One feature's column of a feature matrix."""
    return x[:, FEATURES.index(name)]


def anchor(x: np.ndarray) -> np.ndarray:
    """What each period is forecast relative to: the same period a week earlier, scaled by how
    the level moved between the newest complete day and the same weekday a week before it.
    A public holiday is anchored on the newest Sunday instead, a working day next to one
    halfway between the two (many take it off), a day whose week-ago day was a holiday on the
    same weekday two weeks back; where those are unknown, on the same period's mean on the
    same weekday of the last four weeks. The models learn the ratio to it, so a level they
    never saw in training (a colder winter, a grown portfolio) is still forecast in proportion.
    """
    level = np.nan_to_num(np.clip(feature(x, "level_change_on_week"), 0.5, 2.0), nan=1.0)
    week = feature(x, "lag_week")
    base = np.where(feature(x, "was_holiday_week_before") == 1, feature(x, "lag_two_weeks"), week)
    sunday = feature(x, "lag_sunday")
    base = np.where(feature(x, "next_to_holiday") == 1, (base + sunday) / 2, base)
    base = np.where(feature(x, "is_holiday") == 1, sunday, base) * level
    base = np.where(np.isnan(base), feature(x, "period_mean_same_weekday"), base)
    base = np.where(np.isnan(base), week, base)
    return np.where(base > 0, base, np.nan)


def unusual(x: np.ndarray) -> np.ndarray:
    """Days the calibration days rarely hold: a holiday, a day next to one, a day whose
    week-ago day was one (its anchor is a stand-in)."""
    return (
        (feature(x, "is_holiday") == 1)
        | (feature(x, "next_to_holiday") == 1)
        | (feature(x, "was_holiday_week_before") == 1)
    )


def design(x: np.ndarray, features: tuple[str, ...]) -> np.ndarray:
    """The models' inputs: `features` of `x`, loads as ratios to the anchor."""
    base = anchor(x)
    return np.column_stack([feature(x, f) / base if f in LOADS else feature(x, f) for f in features])


def used_features(dates: np.ndarray) -> tuple[str, ...]:
    """Every feature, but the day of the year only when the history spans two years of it."""
    span = int((dates.max() - dates.min()).astype(int)) if len(dates) else 0
    return FEATURES if span >= SEASONAL_HISTORY_DAYS else tuple(f for f in FEATURES if f not in SEASONAL)


def fit(rows: Rows, spec: Spec) -> Fitted:
    """One LightGBM quantile model per quantile, the band calibrated out of sample.

    Recent days weigh more (halving every `HALF_LIFE_DAYS`). Quantile trees fit their training
    data closely, so a P10-P90 band learnt in sample is too narrow on new days. The P50 model
    learns from every row; the P10 and P90 models from all but the last `CALIBRATION_DAYS`, on
    which the band's misses are measured and the band widened (or narrowed) until it would
    have held 80 % of them (conformalised quantile regression).
    """
    features = used_features(rows.dates)
    newest = rows.dates.max() if len(rows.y) else None
    age = (newest - rows.dates).astype(int) if newest is not None else np.zeros(0)
    keep, weight = _recent_weights(age)
    rows = Rows(x=rows.x[keep], y=rows.y[keep], starts=[], dates=rows.dates[keep])
    weight = weight[keep]
    x = design(rows.x, features)
    cut = newest - np.timedelta64(CALIBRATION_DAYS, "D") if newest is not None else None
    proper = rows.dates <= cut if cut is not None else np.ones(len(rows.y), bool)
    calibrate = ~proper
    if calibrate.sum() < 7 * 24 * 60 // spec.minutes or proper.sum() < calibrate.sum():
        # too little history to set a week aside: the band as learnt
        proper, calibrate = np.ones(len(rows.y), bool), np.zeros(len(rows.y), bool)
    ratio = rows.y / anchor(rows.x)
    known = ~np.isnan(ratio)
    proper, calibrate = proper & known, calibrate & known
    models = {0.5: _train(x[known], ratio[known], weight[known], 0.5, features, spec)}
    for q in (0.1, 0.9):
        models[q] = _train(x[proper], ratio[proper], weight[proper], q, features, spec)
    widen, trust = 0.0, 1.0
    if calibrate.any():
        y = ratio[calibrate]
        misses = np.maximum(models[0.1].predict(x[calibrate]) - y, y - models[0.9].predict(x[calibrate]))
        level = min(1.0, (1 - 2 * QUANTILES[0]) * (1 + 1 / len(y)))
        widen = float(np.quantile(misses, level))
        departure = _train(x[proper], ratio[proper], weight[proper], 0.5, features, spec).predict(x[calibrate]) - 1
        errors = {t: float(np.mean(np.abs(y - 1 - t * departure) / y)) for t in TRUST_STEPS}
        trust = min(errors, key=lambda t: (errors[t], -t))
    return Fitted(models=models, widen=widen, features=features, trust=trust)


def _recent_weights(age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which rows to train on, and their weights: every row of the last `FULL_WEIGHT_DAYS`
    weighted by age, older ones sampled in proportion to their weight (`FULL_WEIGHT_DAYS`)."""
    weight = 0.5 ** (age / HALF_LIFE_DAYS)
    floor = 0.5 ** (FULL_WEIGHT_DAYS / HALF_LIFE_DAYS)
    old = weight < floor
    keep = ~old | (np.random.default_rng(7).random(len(age)) < weight / floor)
    return keep, np.where(old, floor, weight)


def predict(fitted: Fitted, x: np.ndarray) -> dict[float, np.ndarray]:
    """Quantile forecasts, made monotone (P10 <= P50 <= P90) where the models cross."""
    used = design(x, fitted.features)
    widen = fitted.widen * np.where(unusual(x), UNUSUAL_DAY_BAND, 1.0)
    raw = np.vstack(
        [
            fitted.models[0.1].predict(used) - widen,
            1 + fitted.trust * (fitted.models[0.5].predict(used) - 1),
            fitted.models[0.9].predict(used) + widen,
        ]
    )
    ordered = np.sort(raw, axis=0) * anchor(x)
    return {q: ordered[i] for i, q in enumerate(QUANTILES)}


def trainable(day_before: dt.date) -> tuple[str, dict]:
    """The rows a model for a later day may learn from: complete, with every lag present."""
    return (
        "local_date <= $last AND load IS NOT NULL AND lag_recent IS NOT NULL AND lag_week IS NOT NULL",
        {"last": day_before},
    )


def importances(fitted: Fitted) -> list[dict]:
    gains = fitted.models[0.5].feature_importance(importance_type="gain")
    total = float(gains.sum()) or 1.0
    return sorted(
        ({"feature": f, "gain_share": round(float(g) / total, 4)} for f, g in zip(fitted.features, gains, strict=True)),
        key=lambda r: -r["gain_share"],
    )


@dataclass
class Backtest:
    """A backtest's forecasts beside what happened, per settlement period."""

    starts: np.ndarray  # UTC period starts, datetime64
    actual: np.ndarray
    p10: np.ndarray
    p50: np.ndarray
    p90: np.ndarray
    seasonal: np.ndarray  # the same period a week earlier
    previous: np.ndarray  # the same period on the newest day known at bid time
    first: dt.date
    last: dt.date
    blocks: list[dict] = field(default_factory=list)  # the days each refit forecast


def backtest_forecasts(
    con: duckdb.DuckDBPyConnection, spec: Spec, last_day: dt.date, test_days: int = 28, refit_every: int = 7
) -> Backtest:
    """Rolling-origin forecasts of the `test_days` days ending `last_day`.

    Each block of `refit_every` days is forecast by models trained only on what a bid for
    the block's first day could have known (days up to `lag_days` before it); every day's
    load features come from `lag_days` or more days before it, as at bid time. Baselines:
    the same period a week earlier (seasonal naive) and the same period on the newest day
    known at bid time (previous day: with meter data two days before, the day before not
    yet being metered at gate closure).
    """
    first = last_day - dt.timedelta(days=test_days - 1)
    parts: dict[str, list] = {k: [] for k in ("starts", "actual", "p10", "p50", "p90", "seasonal", "previous")}
    blocks = []
    origin = first
    while origin <= last_day:
        block_end = min(origin + dt.timedelta(days=refit_every - 1), last_day)
        where, params = trainable(origin - dt.timedelta(days=spec.lag_days))
        train = matrix(con, where, params)
        if len(train.y) < 7 * 24 * 60 // spec.minutes:
            raise ValueError(f"too little history before {origin} to train on ({len(train.y)} periods)")
        fitted = fit(train, spec)
        test = matrix(
            con,
            "local_date BETWEEN $a AND $b AND load IS NOT NULL AND lag_recent IS NOT NULL AND lag_week IS NOT NULL",
            {"a": origin, "b": block_end},
        )
        quantiles = predict(fitted, test.x)
        parts["starts"].append(np.asarray(test.starts, dtype="datetime64[us]"))
        parts["actual"].append(test.y)
        for q in QUANTILES:
            parts[f"p{int(q * 100)}"].append(quantiles[q])
        parts["seasonal"].append(feature(test.x, "lag_week"))
        parts["previous"].append(feature(test.x, "lag_recent"))
        blocks.append({"from": origin.isoformat(), "to": block_end.isoformat()})
        origin = block_end + dt.timedelta(days=1)
    if not sum(len(a) for a in parts["actual"]):
        raise ValueError(f"no complete days to backtest between {first} and {last_day}")
    return Backtest(**{k: np.concatenate(v) for k, v in parts.items()}, first=first, last=last_day, blocks=blocks)


def score(b: Backtest) -> Metrics:
    """The P50's MAPE against both baselines', the quantiles' pinball loss, the band's coverage."""
    a = b.actual
    mape = {name: _mape(a, f) for name, f in (("p50", b.p50), ("seasonal", b.seasonal), ("previous", b.previous))}
    pinball = {str(q): _pinball(a, f, q) for q, f in zip(QUANTILES, (b.p10, b.p50, b.p90), strict=True)}
    best_baseline = min(mape["seasonal"], mape["previous"])
    return Metrics(
        days=(b.last - b.first).days + 1,
        periods=int(len(a)),
        mape_p50=mape["p50"],
        mape_seasonal_naive=mape["seasonal"],
        mape_previous_day=mape["previous"],
        pinball=float(np.mean(list(pinball.values()))),
        pinball_by_quantile=pinball,
        coverage_p10_p90=float(np.mean((a >= b.p10) & (a <= b.p90))),
        improvement_on_best_baseline=1 - mape["p50"] / best_baseline if best_baseline > 0 else 0.0,
        blocks=b.blocks,
    )


def backtest(
    con: duckdb.DuckDBPyConnection, spec: Spec, last_day: dt.date, test_days: int = 28, refit_every: int = 7
) -> Metrics:
    """The rolling-origin backtest's metrics (`backtest_forecasts`, `score`)."""
    return score(backtest_forecasts(con, spec, last_day, test_days, refit_every))


@dataclass
class SeriesRun:
    """One series' forecast of a day and its rolling-origin backtest."""

    starts: np.ndarray  # UTC period starts of the day forecast, datetime64
    x: np.ndarray  # the day's features (the baselines among them)
    quantiles: dict[float, np.ndarray]
    fitted: Fitted
    trained_on: int  # periods
    backtest: Backtest | None
    error: str | None = None  # why there is no backtest
    peak_memory_mb: float | None = None  # of the process that ran it (Linux)


def _peak_memory_mb() -> float | None:
    """This process's peak resident memory since it started its program (`VmHWM`; unlike
    `getrusage`, not carried over from the process that spawned it)."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return None


def run_series(series, spec: Spec, newest: dt.date, day: dt.date, backtest_days: int) -> SeriesRun:
    """Train on `series` (an Arrow table: period_start, load, temp) up to `newest`, forecast
    `day`, backtest the `backtest_days` days to `newest`: in a DuckDB of its own, on one
    thread, so that series can run side by side in processes of their own."""
    with duckdb.connect(config={"threads": 1}) as con:
        con.register("given", series)
        con.execute("CREATE TEMP TABLE series AS SELECT period_start, load, temp FROM given ORDER BY period_start")
        prepare(con, spec)
        where, params = trainable(newest)
        train = matrix(con, where, params)
        if len(train.y) == 0:
            raise ValueError(f"no complete history with a week of lags before {newest}: too early to forecast")
        fitted = fit(train, spec)
        target = matrix(con, "local_date = $day", {"day": day})
        quantiles = predict(fitted, target.x)
        try:
            backtest, error = backtest_forecasts(con, spec, newest, backtest_days), None
        except ValueError as e:
            backtest, error = None, str(e)
    return SeriesRun(
        np.asarray(target.starts, "datetime64[us]"),
        target.x,
        quantiles,
        fitted,
        len(train.y),
        backtest,
        error,
        _peak_memory_mb(),
    )


def _mape(actual: np.ndarray, forecast: np.ndarray) -> float:
    ok = (actual > 0) & ~np.isnan(forecast)
    return float(np.mean(np.abs(actual[ok] - forecast[ok]) / actual[ok])) if ok.any() else math.nan


def _pinball(actual: np.ndarray, forecast: np.ndarray, q: float) -> float:
    diff = actual - forecast
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff)))
