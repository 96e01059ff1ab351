"""The day-ahead model on real, public demand (not the simulator's load), scored here from the
raw series: its P50 against the same period a week earlier and on the newest day known at
bid time, and how often its P10-P90 band held the actual load."""

import datetime as dt

import duckdb
import numpy as np
import pytest

from meter_assets.forecast import model, public_data

# one window each: England and Wales in August (no temperature), Victoria in March (with
# Melbourne's temperature and the state's Labour Day holiday)
WINDOWS = [("gb_national", dt.date(2000, 8, 27)), ("victoria", dt.date(2014, 3, 31))]


@pytest.mark.parametrize(("name", "last_day"), WINDOWS)
def test_the_model_beats_the_best_baseline_on_real_demand(tmp_path, name, last_day):
    series = public_data.SERIES[name]
    csv = str(tmp_path / f"{name}.csv")
    public_data.write_csv(name, csv)
    con = duckdb.connect()
    con.execute(
        """CREATE TABLE raw AS
           SELECT CAST(timezone('UTC', timestamp) AS TIMESTAMP) AS period_start, load,
                  CAST(temperature AS DOUBLE) AS temperature
           FROM read_csv($csv, header = true)""",
        {"csv": csv},
    )
    con.execute("CREATE TABLE series AS SELECT period_start, load, temperature AS temp FROM raw")
    spec = model.Spec(tz=series.tz, country=series.country, subdivision=series.subdivision, lag_days=series.lag_days)
    model.prepare(con, spec)

    # rolling origin: each week forecast by models that saw only what its first day's bid knew
    forecasts = []
    first = last_day - dt.timedelta(days=27)
    for week in range(4):
        origin = first + dt.timedelta(days=7 * week)
        where, params = model.trainable(origin - dt.timedelta(days=series.lag_days))
        fitted = model.fit(model.matrix(con, where, params), spec)
        rows = model.matrix(con, "local_date BETWEEN $a AND $b", {"a": origin, "b": origin + dt.timedelta(days=6)})
        quantiles = model.predict(fitted, rows.x)
        forecasts += zip(rows.starts, quantiles[0.1], quantiles[0.5], quantiles[0.9], strict=True)
    con.execute("CREATE TABLE forecast (period_start TIMESTAMP, p10 DOUBLE, p50 DOUBLE, p90 DOUBLE)")
    con.executemany(
        "INSERT INTO forecast VALUES ($t, $p10, $p50, $p90)",
        [{"t": t.astype(dt.datetime), "p10": a, "p50": b, "p90": c} for t, a, b, c in forecasts],
    )
    # both series keep one UTC offset all window long, so a local day back is 24 UTC hours back
    scored = con.execute(
        """SELECT count(*),
                  avg(abs(actual.load - f.p50) / actual.load),
                  avg(abs(actual.load - week.load) / actual.load),
                  avg(abs(actual.load - known.load) / actual.load),
                  avg(CAST(actual.load BETWEEN f.p10 AND f.p90 AS INTEGER))
           FROM forecast AS f
           JOIN raw AS actual USING (period_start)
           JOIN raw AS week ON week.period_start = f.period_start - INTERVAL 7 DAY
           JOIN raw AS known ON known.period_start = f.period_start - to_days(CAST($lag AS INTEGER))""",
        {"lag": series.lag_days},
    ).fetchone()
    periods, model_mape, week_mape, known_mape, coverage = scored
    print(
        f"{name}: P50 {model_mape:.4f}, a week earlier {week_mape:.4f}, newest known day {known_mape:.4f}, "
        f"coverage {coverage:.3f}"
    )
    assert periods == 28 * 48 == len(forecasts)
    assert not np.isnan(model_mape)
    assert model_mape <= 0.9 * min(week_mape, known_mape)
    assert 0.70 <= coverage <= 0.90


@pytest.mark.parametrize(
    ("name", "periods", "first_utc", "last_utc"),
    [
        # 5 June 2000 00:00 in London is 4 June 23:00 UTC (summer time); 12 weeks of half hours
        ("gb_national", 4032, "2000-06-04 23:00:00", "2000-08-27 22:30:00"),
        # 1 January 2014 00:00 in AEMO's market time (UTC+10 all year); 365 days of half hours
        ("victoria", 17520, "2013-12-31 14:00:00", "2014-12-31 13:30:00"),
        # 16 December 2006 17:24 in Paris (UTC+1 in winter), one reading a minute with gaps
        ("household_sceaux", 2075259, "2006-12-16 16:24:00", "2010-11-26 20:02:00"),
    ],
)
def test_each_public_series_lands_in_utc_with_every_period(tmp_path, name, periods, first_utc, last_utc):
    csv = str(tmp_path / f"{name}.csv")
    public_data.write_csv(name, csv)
    count, first, last, loads = duckdb.execute(
        """SELECT count(*), min(timezone('UTC', timestamp)), max(timezone('UTC', timestamp)), count(load)
           FROM read_csv($csv, header = true)""",
        {"csv": csv},
    ).fetchone()
    assert (count, loads) == (periods, periods)
    assert (str(first), str(last)) == (first_utc, last_utc)
