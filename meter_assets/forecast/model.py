"""Day-ahead load forecasting: features known at bid time, LightGBM quantile models, a backtest.

The same code serves the `load_forecast` asset (the retailer's portfolio) and
`meter-forecast backtest` (any load history a user has). The input is a DuckDB table
`series(period_start TIMESTAMP, load DOUBLE, temp DOUBLE)`: UTC period starts at the
settlement-period frequency, the load in that period (NULL where unknown, e.g. the day
being forecast) and the temperature as forecast at bid time (NULL if there is none).

What is known at bid time: a day-ahead bid for day T closes at gate closure on T-1, when
the newest complete day of readings is T-2 (day T-1 is still being metered). So every
load feature of a period on day T comes from day T-2 or earlier (`LAG_DAYS`); the
calendar, public holidays and the temperature forecast are known in advance.
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
FEATURES = (
    "period",
    "dow",
    "is_weekend",
    "is_holiday",
    "doy_sin",
    "doy_cos",
    "temp",
    "heating_degrees",
    "lag_recent",
    "lag_week",
    "recent_day_mean",
    "week_day_mean",
    "recent_day_peak",
    "period_mean_last_week",
    "period_mean_same_weekday",
)
# small data (tens of thousands of rows): a few hundred shallow trees, deterministic
PARAMS = {
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "seed": 7,
    "deterministic": True,
    "force_row_wise": True,
}
ROUNDS = 300
CALIBRATION_DAYS = 14

# Calendar in the series' local time; lags by whole days in UTC (a period two days back,
# one hour off for the two days after a clock change); the daily mean and peak of the
# newest complete day and of the same weekday a week earlier, by local date; and the same
# period's mean over the newest complete week and over the same weekday of the last four
# weeks, which average out the noise of any one day.
FEATURES_SQL = """
CREATE OR REPLACE TEMP TABLE features AS
WITH local AS (
    SELECT
        period_start, load, temp, timezone($tz, period_start AT TIME ZONE 'UTC') AS local_at,
        avg(load) OVER (PARTITION BY strftime(period_start, '%H:%M') ORDER BY period_start
                        RANGE BETWEEN to_days(CAST($lag_days AS INTEGER) + 6) PRECEDING
                              AND to_days(CAST($lag_days AS INTEGER)) PRECEDING) AS period_mean_last_week,
        avg(load) OVER (PARTITION BY strftime(period_start, '%H:%M'), isodow(period_start) ORDER BY period_start
                        RANGE BETWEEN INTERVAL 28 DAY PRECEDING AND INTERVAL 7 DAY PRECEDING)
            AS period_mean_same_weekday
    FROM series
),
days AS (
    SELECT CAST(local_at AS DATE) AS local_date, avg(load ORDER BY period_start) AS day_mean, max(load) AS day_peak
    FROM local
    GROUP BY 1
    HAVING count(load) = count(*)
)
SELECT
    s.period_start,
    CAST(s.local_at AS DATE)                                           AS local_date,
    s.load,
    (hour(s.local_at) * 60 + minute(s.local_at)) // $minutes           AS period,
    isodow(s.local_at)                                                 AS dow,
    CAST(isodow(s.local_at) >= 6 AS INTEGER)                           AS is_weekend,
    CAST(holidays.day IS NOT NULL AS INTEGER)                          AS is_holiday,
    sin(2 * pi() * dayofyear(s.local_at) / 365.25)                     AS doy_sin,
    cos(2 * pi() * dayofyear(s.local_at) / 365.25)                     AS doy_cos,
    s.temp,
    greatest(15.5 - s.temp, 0)                                         AS heating_degrees,
    recent.load                                                        AS lag_recent,
    week.load                                                          AS lag_week,
    recent_day.day_mean                                                AS recent_day_mean,
    week_day.day_mean                                                  AS week_day_mean,
    recent_day.day_peak                                                AS recent_day_peak,
    s.period_mean_last_week,
    s.period_mean_same_weekday
FROM local AS s
LEFT JOIN holidays ON holidays.day = CAST(s.local_at AS DATE)
LEFT JOIN local AS recent ON recent.period_start = s.period_start - to_days(CAST($lag_days AS INTEGER))
LEFT JOIN local AS week ON week.period_start = s.period_start - INTERVAL 7 DAY
LEFT JOIN days AS recent_day ON recent_day.local_date = CAST(s.local_at AS DATE) - CAST($lag_days AS INTEGER)
LEFT JOIN days AS week_day ON week_day.local_date = CAST(s.local_at AS DATE) - 7
ORDER BY s.period_start
"""


@dataclass(frozen=True)
class Spec:
    tz: str
    minutes: int = 30
    country: str = "GB"
    threads: int = 2


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
    days = sorted(holidays.country_holidays(spec.country, years=range(first.year, last.year + 1)))
    con.execute("CREATE OR REPLACE TEMP TABLE holidays (day DATE)")
    if days:
        con.executemany("INSERT INTO holidays VALUES ($day)", [{"day": d} for d in days])
    con.execute(FEATURES_SQL, {"tz": spec.tz, "minutes": spec.minutes, "lag_days": LAG_DAYS})


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


def _train(x: np.ndarray, y: np.ndarray, q: float, spec: Spec):
    import lightgbm as lgb

    data = lgb.Dataset(x, y, feature_name=list(FEATURES), free_raw_data=False)
    return lgb.train(
        {**PARAMS, "objective": "quantile", "alpha": q, "num_threads": spec.threads}, data, num_boost_round=ROUNDS
    )


def baseline(x: np.ndarray) -> np.ndarray:
    """What each period is forecast relative to: its mean on the same weekday of the last four
    weeks (else a week earlier). The models learn the ratio to it, so a level they never saw
    in training (a colder winter, a bigger portfolio) is still forecast in proportion."""
    base = x[:, FEATURES.index("period_mean_same_weekday")]
    base = np.where(np.isnan(base), x[:, FEATURES.index("lag_week")], base)
    return np.where(base > 0, base, np.nan)


def fit(rows: Rows, spec: Spec) -> Fitted:
    """One LightGBM quantile model per quantile, the band calibrated out of sample.

    Quantile trees fit their training data closely, so a P10-P90 band learnt in sample is too
    narrow on new days. The P50 model learns from every row; the P10 and P90 models from all
    but the last `CALIBRATION_DAYS`, on which the band's misses are measured and the band
    widened (or narrowed) until it would have held 80 % of them (conformalised quantile
    regression).
    """
    cut = rows.dates.max() - np.timedelta64(CALIBRATION_DAYS, "D") if len(rows.y) else None
    proper = rows.dates <= cut if cut is not None else np.ones(len(rows.y), bool)
    calibrate = ~proper
    if calibrate.sum() < 7 * 24 * 60 // spec.minutes or proper.sum() < calibrate.sum():
        # too little history to set a week aside: the band as learnt
        proper, calibrate = np.ones(len(rows.y), bool), np.zeros(len(rows.y), bool)
    ratio = rows.y / baseline(rows.x)
    known = ~np.isnan(ratio)
    proper, calibrate = proper & known, calibrate & known
    models = {0.5: _train(rows.x[known], ratio[known], 0.5, spec)}
    for q in (0.1, 0.9):
        models[q] = _train(rows.x[proper], ratio[proper], q, spec)
    widen = 0.0
    if calibrate.any():
        y = ratio[calibrate]
        misses = np.maximum(models[0.1].predict(rows.x[calibrate]) - y, y - models[0.9].predict(rows.x[calibrate]))
        level = min(1.0, (1 - 2 * QUANTILES[0]) * (1 + 1 / len(y)))
        widen = float(np.quantile(misses, level))
    return Fitted(models=models, widen=widen)


def predict(fitted: Fitted, x: np.ndarray) -> dict[float, np.ndarray]:
    """Quantile forecasts, made monotone (P10 <= P50 <= P90) where the models cross."""
    raw = np.vstack(
        [
            fitted.models[0.1].predict(x) - fitted.widen,
            fitted.models[0.5].predict(x),
            fitted.models[0.9].predict(x) + fitted.widen,
        ]
    )
    ordered = np.sort(raw, axis=0) * baseline(x)
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
        ({"feature": f, "gain_share": round(float(g) / total, 4)} for f, g in zip(FEATURES, gains, strict=True)),
        key=lambda r: -r["gain_share"],
    )


def backtest(
    con: duckdb.DuckDBPyConnection, spec: Spec, last_day: dt.date, test_days: int = 28, refit_every: int = 7
) -> Metrics:
    """Rolling-origin evaluation over the `test_days` days ending `last_day`.

    Each block of `refit_every` days is forecast by models trained only on what a bid for
    the block's first day could have known (days up to two before it); every day's load
    features come from two or more days before it, as at bid time. Baselines: the same
    period a week earlier (seasonal naive) and the same period on the newest complete day
    (previous day, two days before: the day before the target is not yet metered at
    gate closure).
    """
    first = last_day - dt.timedelta(days=test_days - 1)
    actual, p10, p50, p90, seasonal, previous, days = [], [], [], [], [], [], []
    origin = first
    while origin <= last_day:
        block_end = min(origin + dt.timedelta(days=refit_every - 1), last_day)
        where, params = trainable(origin - dt.timedelta(days=LAG_DAYS))
        train = matrix(con, where, params)
        if len(train.y) < 7 * 24 * 60 // spec.minutes:
            raise ValueError(f"too little history before {origin} to train on ({len(train.y)} periods)")
        fitted = fit(train, spec)
        test = matrix(
            con,
            "local_date BETWEEN $a AND $b AND load IS NOT NULL AND lag_recent IS NOT NULL AND lag_week IS NOT NULL",
            {"a": origin, "b": block_end},
        )
        x, y = test.x, test.y
        quantiles = predict(fitted, x)
        actual.append(y)
        p10.append(quantiles[0.1])
        p50.append(quantiles[0.5])
        p90.append(quantiles[0.9])
        seasonal.append(x[:, FEATURES.index("lag_week")])
        previous.append(x[:, FEATURES.index("lag_recent")])
        days.append((origin, block_end))
        origin = block_end + dt.timedelta(days=1)
    a, lo, mid, hi = (np.concatenate(v) for v in (actual, p10, p50, p90))
    naive, prev = np.concatenate(seasonal), np.concatenate(previous)
    if len(a) == 0:
        raise ValueError(f"no complete days to backtest between {first} and {last_day}")
    mape = {name: _mape(a, f) for name, f in (("p50", mid), ("seasonal", naive), ("previous", prev))}
    pinball = {str(q): _pinball(a, f, q) for q, f in zip(QUANTILES, (lo, mid, hi), strict=True)}
    best_baseline = min(mape["seasonal"], mape["previous"])
    return Metrics(
        days=(last_day - first).days + 1,
        periods=int(len(a)),
        mape_p50=mape["p50"],
        mape_seasonal_naive=mape["seasonal"],
        mape_previous_day=mape["previous"],
        pinball=float(np.mean(list(pinball.values()))),
        pinball_by_quantile=pinball,
        coverage_p10_p90=float(np.mean((a >= lo) & (a <= hi))),
        improvement_on_best_baseline=1 - mape["p50"] / best_baseline if best_baseline > 0 else 0.0,
        blocks=[{"from": f.isoformat(), "to": t.isoformat()} for f, t in days],
    )


def _mape(actual: np.ndarray, forecast: np.ndarray) -> float:
    ok = (actual > 0) & ~np.isnan(forecast)
    return float(np.mean(np.abs(actual[ok] - forecast[ok]) / actual[ok])) if ok.any() else math.nan


def _pinball(actual: np.ndarray, forecast: np.ndarray, q: float) -> float:
    diff = actual - forecast
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff)))
