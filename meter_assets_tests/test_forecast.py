"""The day-ahead load forecast: no look-ahead, beats its baselines, and the CLI on any series."""

import csv
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys

import dagster as dg
import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from meter_assets.definitions import assets
from meter_assets.forecast import model
from meter_assets.forecast.assets import MODELS, weather
from meter_assets.reference.assets import reference_assets
from meter_assets.simulator.portfolio import write_portfolio_history
from meter_assets.sql import parquet
from meter_assets.storage import Lake
from meter_assets.tables import BIDS, FORECAST, PORTFOLIO_LOAD, READS_DAILY

from .conftest import resources_for, spring_days

START = dt.date(2024, 1, 1)
DAYS = 120
METERS = 1000
# days of actual load after the history that forecasts are judged against: a forecast made on
# D reads the portfolio's load up to D - 1 only, so D + 1 is held back from it
HELD_BACK = 7


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> str:
    """120 days of a 1,000-meter portfolio's load and weather, straight from the load model, and
    the week after them as the actuals held back from the forecasts."""
    root = str(tmp_path_factory.mktemp("forecast") / "lake")
    write_portfolio_history(Lake(root), METERS, START, DAYS + 1 + HELD_BACK, seed=3, log=lambda *_: None)
    dg.materialize([*reference_assets, weather], resources=resources_for(root))
    return root


def _series(
    root: str, scale_from: dt.date | None = None, factor: float = 1.0, lag_days: int = 2
) -> duckdb.DuckDBPyConnection:
    """The feature table of the portfolio's history; loads from `scale_from` on multiplied by `factor`."""
    lake = Lake(root)
    files = [f for d in range(DAYS) for f in lake.files(PORTFOLIO_LOAD, (START + dt.timedelta(days=d)).isoformat())]
    con = duckdb.connect()
    con.execute(
        f"""CREATE TABLE series AS
            SELECT time_bucket(INTERVAL 30 MINUTE, interval_start) AS period_start,
                   sum(CAST(kwh AS DOUBLE)
                       * CASE WHEN CAST(timezone('Europe/London', interval_start AT TIME ZONE 'UTC') AS DATE) >= $from
                              THEN $factor ELSE 1 END) AS load,
                   CAST(NULL AS DOUBLE) AS temp
            FROM {parquet(files)}
            GROUP BY 1""",
        {"from": scale_from or dt.date(2999, 1, 1), "factor": factor},
    )
    model.prepare(con, model.Spec(tz="Europe/London", lag_days=lag_days))
    return con


@pytest.mark.parametrize("lag_days", [2, 1])
def test_features_of_a_day_never_see_what_is_unknown_at_bid_time(history, lag_days):
    """Meter data (lag 2): the day and the day before are unknown; a system operator's series
    (lag 1): the day itself."""
    target = START + dt.timedelta(days=100)
    honest = model.matrix(_series(history, lag_days=lag_days), "local_date = $d", {"d": target})
    # triple the load of the target day and the days after the newest known: no feature moves
    shifted = model.matrix(
        _series(history, scale_from=target - dt.timedelta(days=lag_days - 1), factor=3.0, lag_days=lag_days),
        "local_date = $d",
        {"d": target},
    )
    assert len(honest.y) == 48 and np.allclose(shifted.y, 3 * honest.y)
    # (equal up to the order DuckDB happened to sum in: 1e-16 apart, where a leak would be 3x)
    np.testing.assert_allclose(shifted.x, honest.x, rtol=1e-12)
    # ... while tripling from the newest known day does move the lags: the test can tell
    moved = model.matrix(
        _series(history, scale_from=target - dt.timedelta(days=lag_days), factor=3.0, lag_days=lag_days),
        "local_date = $d",
        {"d": target},
    )
    assert not np.allclose(moved.x, honest.x, rtol=1e-3, equal_nan=True)


def test_the_forecast_beats_both_baselines_and_writes_the_bid(history):
    day = START + dt.timedelta(days=DAYS)  # made today, for delivery tomorrow, from data up to yesterday
    result = dg.materialize(assets("load_forecast"), partition_key=day.isoformat(), resources=resources_for(history))
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["bid_covers_every_period"].passed
    check = checks["backtest_beats_baselines"]
    assert check.passed, check.metadata["verdict"].value
    metrics = {k: v.value for k, v in check.metadata.items()}
    assert metrics["days"] == 28 and metrics["improvement_on_best_baseline"] >= 0.10
    assert metrics["mape_p50"] < min(metrics["mape_seasonal_naive"], metrics["mape_previous_day"])
    assert 0.70 <= metrics["coverage_p10_p90"] <= 0.90

    lake = Lake(history)
    forecast = _portfolio_forecast(history, day)
    bids = pq.read_table(lake.files(BIDS, day.isoformat())[0]).to_pylist()
    assert len(forecast) == len(bids) == 48
    assert all(f["p10_kwh"] <= f["p50_kwh"] <= f["p90_kwh"] for f in forecast)
    assert [b["mwh"] for b in bids] == [round(f["p50_kwh"] / 1000, 3) for f in forecast]
    assert {b["source"] for b in bids} == {metrics["forecast_by"]} and "beat the best baseline" in bids[0]["reason"]
    assert {b["delivery_date"] for b in bids} == {day + dt.timedelta(days=1)}
    assert forecast[0]["period_start"] == dt.datetime.combine(day, dt.time(23))  # the next midnight in London (BST)
    # a 1,000-meter portfolio uses about 7.4 MWh a day in spring: the bid is of that size
    assert 4 < sum(b["mwh"] for b in bids) < 12

    metadata = result.asset_materializations_for_node("load_forecast")[0].metadata
    features = [r.data["feature"] for r in metadata["feature_importance"].value.records]
    # 120 days of history: a day of the year cannot be learnt from them, so it is not used
    assert sorted(features) == sorted(set(model.FEATURES) - {"doy_sin", "doy_cos"})
    for q in ("p10", "p50", "p90"):
        assert lake.exists(f"{MODELS}/date={day}/model_{q}.txt")


def _portfolio_forecast(root: str, day: dt.date) -> list[dict]:
    """The published forecast of the whole portfolio (the regions' rows beside it left out)."""
    rows = pq.read_table(Lake(root).files(FORECAST, day.isoformat())[0]).to_pylist()
    return [r for r in rows if r["series"] == "portfolio"]


def test_forecast_files_against_held_back_actuals(history, tmp_path):
    """Accuracy measured here, from the published forecast files and the portfolio's actual load,
    not from the backtest the asset reports: a week of forecasts, each made on D for D + 1."""
    import shutil

    root = str(tmp_path / "lake")
    shutil.copytree(history, root)
    lake = Lake(root)
    made = []
    for k in range(HELD_BACK):
        day = START + dt.timedelta(days=DAYS + k)
        result = dg.materialize(
            assets("load_forecast"), partition_key=day.isoformat(), resources=resources_for(root), raise_on_error=False
        )
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        # every day has a forecast and a bid; the days whose own backtest the model won bid its P50
        assert result.success and lake.keys(FORECAST, day.isoformat()) and lake.keys(BIDS, day.isoformat())
        if checks["backtest_beats_baselines"].passed:
            made.append(day)
        else:
            print(day, {k: v.value for k, v in checks["backtest_beats_baselines"].metadata.items()})
    assert len(made) >= HELD_BACK - 2, f"the model won its backtest on {made} only"
    forecasts = [f for day in made for f in lake.files(FORECAST, day.isoformat())]
    actual_days = [START + dt.timedelta(days=d) for d in range(DAYS - 14, DAYS + 1 + HELD_BACK)]
    actuals = [f for day in actual_days for f in lake.files(PORTFOLIO_LOAD, day.isoformat())]
    with duckdb.connect() as con:
        con.execute(
            f"""CREATE TABLE actual AS
                SELECT time_bucket(INTERVAL 30 MINUTE, interval_start) AS period_start, sum(kwh)::DOUBLE AS kwh
                FROM {parquet(actuals)} GROUP BY 1"""
        )
        # the same period a week earlier, and two days earlier (the newest day known at gate closure)
        rows = con.execute(
            f"""SELECT a.kwh, f.p10_kwh, f.p50_kwh, f.p90_kwh, week.kwh, known.kwh
                FROM {parquet(forecasts)} AS f
                JOIN actual AS a USING (period_start)
                JOIN actual AS week ON week.period_start = f.period_start - INTERVAL 7 DAY
                JOIN actual AS known ON known.period_start = f.period_start - INTERVAL 2 DAY
                -- the published forecast of the whole portfolio, beside the regions'
                WHERE f.series = 'portfolio'"""
        ).fetchall()
    assert len(rows) == 48 * len(made), "every settlement period of those days has a forecast and an actual"

    def mape(column: int) -> float:
        return sum(abs(r[0] - r[column]) / r[0] for r in rows) / len(rows)

    model_mape, week_mape, known_mape = mape(2), mape(4), mape(5)
    coverage = sum(r[1] <= r[0] <= r[3] for r in rows) / len(rows)
    print(
        f"held-back week: P50 MAPE {model_mape:.4f}, a week earlier {week_mape:.4f}, "
        f"two days earlier {known_mape:.4f}, P10-P90 coverage {coverage:.3f}"
    )
    # what the gate promises, on days the model never saw
    assert model_mape <= 0.9 * min(week_mape, known_mape)
    assert 0.70 <= coverage <= 0.90


def test_a_forecast_issued_after_gate_closure_is_not_used(history, tmp_path):
    import shutil

    root = str(tmp_path / "lake")
    shutil.copytree(history, root)
    day = START + dt.timedelta(days=DAYS)
    first = dg.materialize(assets("load_forecast"), partition_key=day.isoformat(), resources=resources_for(root))
    before = [f["p50_kwh"] for f in _portfolio_forecast(root, day)]
    assert first.success
    # a new forecast for every hour of delivery day, issued after gate closure: freezing weather
    delivery = day + dt.timedelta(days=1)
    path = os.path.join(root, "reference", "temperature_forecast.csv")
    regions = sorted({r["region"] for r in csv.DictReader(open(path))})

    def freezing_forecast_issued_at(issued: str) -> list[float]:
        """Every hour of delivery day at -15 C, issued on `day` at `issued`; the forecast made then."""
        with open(path, "a") as f:
            for region in regions:
                for hour in range(-1, 24):
                    valid = dt.datetime.combine(delivery, dt.time()) + dt.timedelta(hours=hour)
                    f.write(f"{region},{day} {issued},{valid:%Y-%m-%d %H:%M:%S},-15.0\n")
        dg.materialize([weather], resources=resources_for(root))
        dg.materialize(assets("load_forecast"), partition_key=day.isoformat(), resources=resources_for(root))
        return [f["p50_kwh"] for f in _portfolio_forecast(root, day)]

    after = freezing_forecast_issued_at("12:00:00")
    assert after == before

    # positive control: the same freezing forecast issued before gate closure (later than the
    # 09:00 issue the history has) is used, and the bid changes
    in_time = freezing_forecast_issued_at("09:30:00")
    assert in_time != before


def test_portfolio_load_is_the_days_readings(after_release):
    """Each region's load per quarter hour, with its meters counted; checked against the daily
    rollup and the head-end's own meters export (which region each meter is in)."""
    lake = Lake(after_release)
    regions = f"read_csv('{after_release}/reference/meters.csv')"
    for day in spring_days():
        portfolio = parquet(lake.files(PORTFOLIO_LOAD, day.isoformat()))
        daily = parquet(lake.files(READS_DAILY, day.isoformat()))
        con = duckdb.connect()
        ((kwh, intervals, meters, missing),) = con.execute(
            f"""SELECT sum(kwh), count(*), min(meters), sum(missing)
                FROM (SELECT interval_start, sum(kwh) AS kwh, sum(meters) AS meters, sum(missing) AS missing
                      FROM {portfolio} GROUP BY 1)"""
        ).fetchall()
        ((daily_kwh, daily_missing),) = con.execute(f"SELECT sum(kwh), sum(missing_intervals) FROM {daily}").fetchall()
        assert (kwh, missing, meters) == (daily_kwh, daily_missing, 300)
        assert intervals == {dt.date(2024, 3, 31): 92}.get(day, 96)
        by_region = con.execute(
            f"SELECT region, sum(kwh), max(meters) FROM {portfolio} GROUP BY 1 ORDER BY 1"
        ).fetchall()
        expected = con.execute(
            f"""SELECT region, sum(kwh), count(DISTINCT meter_id)
                FROM {daily} JOIN {regions} USING (meter_id) GROUP BY 1 ORDER BY 1"""
        ).fetchall()
        assert by_region == expected and len(by_region) == 7


def _weekly_series(path: str, days: int = 100) -> None:
    """Half-hourly demand: a daily cycle, weekends 25 % lower, Mondays a little higher, noise."""
    rng = np.random.default_rng(4)
    first = dt.datetime(2023, 1, 2)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["timestamp", "demand_mw"])
        for i in range(days * 48):
            at = first + dt.timedelta(minutes=30 * i)
            weekly = -25.0 if at.weekday() >= 5 else (8.0 if at.weekday() == 0 else 0.0)
            value = 100 + 30 * np.sin(2 * np.pi * (at.hour + at.minute / 60 - 9) / 24) + weekly + rng.normal(0, 3)
            out.writerow([at.isoformat(), f"{value:.3f}"])


def test_the_cli_recovers_a_weekly_pattern(tmp_path):
    path = str(tmp_path / "demand.csv")
    _weekly_series(path)
    cli = os.path.join(os.path.dirname(sys.executable), "meter-forecast")
    out = subprocess.run(
        [
            cli,
            "backtest",
            "--csv",
            path,
            "--time-col",
            "timestamp",
            "--value-col",
            "demand_mw",
            "--freq",
            "30min",
            "--test-days",
            "28",
            "--country",
            "GB",
            "--tz",
            "UTC",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    metrics = json.loads(out.stdout)
    assert metrics["history_periods"] == 100 * 48 and (metrics["days"], metrics["periods"]) == (28, 28 * 48)
    # the noise alone costs about 2.4 % MAPE; a forecast that missed the weekly shape would
    # err by the weekend's 25 % on the days after each change, as the previous-day baseline does
    assert metrics["mape_p50"] < 0.04
    assert metrics["mape_previous_day"] > 5 * metrics["mape_p50"]
    # a stationary series whose only change is noise: the same period a week earlier is
    # nearly as good as it gets (the 10 % rule is held on real demand and the simulated retailer)
    assert metrics["mape_p50"] < metrics["mape_seasonal_naive"] and metrics["coverage_within_70_90"]

    bad = subprocess.run(
        [cli, "backtest", "--csv", path, "--time-col", "when", "--value-col", "demand_mw"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "'when' is not a column" in bad.stderr
    # a lag beyond a week would make the week-ago lags unknown at bid time
    late = subprocess.run(
        [cli, "backtest", "--csv", path, "--time-col", "timestamp", "--value-col", "demand_mw", "--lag-days", "8"],
        capture_output=True,
        text=True,
    )
    assert late.returncode != 0 and "lag_days must be 1 to 7, not 8" in late.stderr


def _losing(score, best: str):
    """The real backtest, but scored as if the models (portfolio and regional) had lost to the `best` baseline."""

    def judged(*args, **kwargs):
        metrics = score(*args, **kwargs)
        metrics.mape_seasonal_naive, metrics.mape_previous_day = (0.05, 0.06) if best == "seasonal" else (0.06, 0.05)
        metrics.mape_p50, metrics.improvement_on_best_baseline = 0.055, -0.1
        return metrics

    return judged


def _baseline_mwh(root: str, day: dt.date) -> list[float]:
    """The portfolio's load on `day` per half hour, missing readings filled in proportion, in
    MWh to the bid's 3 decimals: computed here from the published portfolio_load."""
    files = Lake(root).files(PORTFOLIO_LOAD, day.isoformat())
    rows = duckdb.sql(
        f"""SELECT time_bucket(INTERVAL 30 MINUTE, interval_start) AS period_start,
                   sum(CAST(kwh AS DOUBLE) * meters / (meters - missing)) AS kwh
            FROM {parquet(files)} GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    return [round(kwh / 1000, 3) for _, kwh in rows]


@pytest.mark.parametrize("best", ["seasonal", "previous"])
def test_a_model_that_loses_its_backtest_bids_the_best_baseline(history, tmp_path, monkeypatch, best):
    """The bid is the model's only when its backtest beats the best baseline by 10 %; otherwise
    the bid file and the metadata say which baseline it is and why (the model's case is above)."""
    import shutil

    root = str(tmp_path / "lake")
    shutil.copytree(history, root)
    day = START + dt.timedelta(days=DAYS)
    monkeypatch.setattr(model, "score", _losing(model.score, best))
    result = dg.materialize(assets("load_forecast"), partition_key=day.isoformat(), resources=resources_for(root))
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    losing = checks["backtest_beats_baselines"]
    assert not losing.passed and losing.severity == dg.AssetCheckSeverity.WARN
    assert checks["bid_covers_every_period"].passed

    bids = pq.read_table(Lake(root).files(BIDS, day.isoformat())[0]).to_pylist()
    source = {"seasonal": "seasonal_naive", "previous": "previous_day"}[best]
    assert {b["source"] for b in bids} == {source}
    assert "did not beat the best baseline" in bids[0]["reason"]
    # a week before delivery (D + 1 - 7), or the newest complete day (D - 1): from the published load
    known = day - dt.timedelta(days=6) if best == "seasonal" else day - dt.timedelta(days=1)
    assert [b["mwh"] for b in bids] == _baseline_mwh(root, known)
    # the model's forecast is still published beside it, and differs from the bid
    forecast = [f["p50_kwh"] for f in _portfolio_forecast(root, day)]
    assert [round(v / 1000, 3) for v in forecast] != [b["mwh"] for b in bids]
    metadata = result.asset_materializations_for_node("load_forecast")
    bid_metadata = next(m.metadata for m in metadata if m.asset_key == dg.AssetKey(BIDS.asset))
    assert bid_metadata["source"].value == source and "did not beat" in bid_metadata["reason"].value


@pytest.mark.parametrize("winner", ["regional_models", "portfolio_model"])
def test_regions_and_the_portfolio_are_forecast_and_the_bid_follows_the_winner(history, tmp_path, monkeypatch, winner):
    """Every region is forecast beside the portfolio; the portfolio's published forecast and
    bid come from whichever of its own model and the sum of the regions' won the backtest.
    Each way is made to win by nudging the summed backtest (perfect, or twice the load)."""
    import shutil

    from meter_assets.forecast import assets as forecast_assets

    root = str(tmp_path / "lake")
    shutil.copytree(history, root)
    day = START + dt.timedelta(days=DAYS)
    real = forecast_assets._sum_of_regions

    def nudged(portfolio, regions):
        summed = real(portfolio, regions)
        p50 = summed.actual if winner == "regional_models" else 2 * summed.actual
        return dataclasses.replace(summed, p50=p50)

    monkeypatch.setattr(forecast_assets, "_sum_of_regions", nudged)
    result = dg.materialize(assets("load_forecast"), partition_key=day.isoformat(), resources=resources_for(root))
    metadata = result.asset_materializations_for_node("load_forecast")[0].metadata
    assert metadata["forecast_by"].value == winner and metadata["regions"].value == 7
    backtests = {r.data["forecast"]: r.data for r in metadata["backtests"].value.records}
    assert {f"region {r}" for r in _regions(root)} | {"portfolio_model", "regional_models"} == set(backtests)
    # every model but the nudged sum beats the same period a week earlier on its own load
    assert all(0 < b["mape_p50"] < b["mape_seasonal_naive"] for f, b in backtests.items() if f != "regional_models")

    rows = pq.read_table(Lake(root).files(FORECAST, day.isoformat())[0]).to_pylist()
    by_series = {}
    for r in rows:
        by_series.setdefault(r["series"], []).append(r)
    assert set(by_series) == {"portfolio", *_regions(root)} and all(len(v) == 48 for v in by_series.values())
    summed = [sum(by_series[r][i]["p50_kwh"] for r in _regions(root)) for i in range(48)]
    portfolio = [f["p50_kwh"] for f in by_series["portfolio"]]
    if winner == "regional_models":
        np.testing.assert_allclose(portfolio, summed, rtol=1e-9)
    else:
        assert not np.allclose(portfolio, summed, rtol=1e-6)
    assert all(f["p10_kwh"] <= f["p50_kwh"] <= f["p90_kwh"] for f in rows)
    bids = pq.read_table(Lake(root).files(BIDS, day.isoformat())[0]).to_pylist()
    assert {b["source"] for b in bids} == {winner}
    assert [b["mwh"] for b in bids] == [round(v / 1000, 3) for v in portfolio]


def test_a_history_written_before_regions_asks_for_a_backfill(history, tmp_path):
    """portfolio_load as an earlier version wrote it (the portfolio's total, no region): the
    forecast fails and says what to rebuild, and publishes nothing."""
    import shutil

    from deltalake import DeltaTable, write_deltalake

    root = str(tmp_path / "lake")
    shutil.copytree(history, root)
    lake = Lake(root)
    con = duckdb.connect()
    con.register("rows", DeltaTable(lake.table_uri(PORTFOLIO_LOAD)).to_pyarrow_table())
    totals = con.sql(
        "SELECT interval_start, sum(kwh) AS kwh, sum(meters)::INTEGER AS meters, sum(missing)::INTEGER AS missing, "
        "CAST(date AS DATE) AS date FROM rows GROUP BY ALL ORDER BY interval_start"
    ).to_arrow_table()
    write_deltalake(
        lake.table_uri(PORTFOLIO_LOAD), totals, partition_by=["date"], mode="overwrite", schema_mode="overwrite"
    )
    day = (START + dt.timedelta(days=DAYS)).isoformat()
    published = {t.path: lake.keys(t, day) for t in (FORECAST, BIDS)}
    result = dg.materialize(
        assets("load_forecast"), partition_key=day, resources=resources_for(root), raise_on_error=False
    )
    assert not result.success and {t.path: lake.keys(t, day) for t in (FORECAST, BIDS)} == published
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "portfolio_load's history has no region column" in str(failure.step_failure_data.error)
    assert "backfill portfolio_load from" in str(failure.step_failure_data.error)


def _regions(root: str) -> set[str]:
    """The regions of the meters export, read here from the file."""
    with open(os.path.join(root, "reference", "meters.csv")) as f:
        return {r["region"] for r in csv.DictReader(f)}


def test_a_broken_bid_keeps_the_old_forecast_and_bid(history, tmp_path, monkeypatch):
    import shutil

    from meter_assets.forecast import assets as forecast_assets

    root = str(tmp_path / "lake")
    shutil.copytree(history, root)
    lake = Lake(root)
    day = (START + dt.timedelta(days=DAYS)).isoformat()
    assert dg.materialize(assets("load_forecast"), partition_key=day, resources=resources_for(root)).success
    before = {t.path: lake.keys(t, day) for t in (FORECAST, BIDS)}
    model_before = lake.read_bytes(f"{MODELS}/date={day}/model_p50.txt")

    real = forecast_assets._bid_kwh
    monkeypatch.setattr(forecast_assets, "_bid_kwh", lambda *a: [float("nan")] + real(*a)[1:])
    result = dg.materialize(
        assets("load_forecast"), partition_key=day, resources=resources_for(root), raise_on_error=False
    )
    assert not result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["bid_covers_every_period"].passed
    assert "1 bids are not a finite, non-negative MWh" in checks["bid_covers_every_period"].metadata["problems"].value
    assert result.get_asset_materialization_events() == []
    assert {t.path: lake.keys(t, day) for t in (FORECAST, BIDS)} == before
    assert lake.read_bytes(f"{MODELS}/date={day}/model_p50.txt") == model_before


def _clock_series(tz: str, first: dt.date, last: dt.date, spec: model.Spec) -> duckdb.DuckDBPyConnection:
    """Half-hourly load that names its own UTC period (half hours since 1970): the feature table."""
    con = duckdb.connect()
    con.execute(
        """CREATE TABLE series AS
           SELECT period_start, epoch(period_start) / 1800 AS load, CAST(NULL AS DOUBLE) AS temp
           FROM generate_series($first, $last, INTERVAL 30 MINUTE) AS t(period_start)""",
        {"first": dt.datetime.combine(first, dt.time()), "last": dt.datetime.combine(last, dt.time())},
    )
    model.prepare(con, spec)
    return con


def _load_at(day: dt.date, clock: dt.time, zone) -> float:
    """The load of the half hour at local `clock` on `day`: NaN if the clocks skipped it, the
    mean of both if they went through it twice."""
    instants = {dt.datetime.combine(day, clock, tzinfo=zone).replace(fold=fold).astimezone(dt.UTC) for fold in (0, 1)}
    real = [u for u in instants if u.astimezone(zone).time() == clock]
    return sum(u.timestamp() / 1800 for u in real) / len(real) if real else float("nan")


@pytest.mark.parametrize("lag_days", [1, 2])
def test_lags_are_by_local_clock_time_across_both_clock_changes(lag_days):
    """The same settlement period k days back is the same local clock time, not 24 k UTC hours
    back (an hour off for the days after a clock change); the half hour the spring change
    skipped is unknown, the one the autumn change repeats is the mean of both."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Europe/London")
    con = _clock_series(
        "Europe/London", dt.date(2024, 3, 1), dt.date(2024, 11, 10), model.Spec("Europe/London", lag_days=lag_days)
    )
    hour_off = 0
    for target in (
        dt.date(2024, 3, 31),
        dt.date(2024, 4, 1),
        dt.date(2024, 4, 2),
        dt.date(2024, 10, 27),
        dt.date(2024, 10, 28),
        dt.date(2024, 10, 29),
        dt.date(2024, 11, 2),
    ):
        rows = model.matrix(con, "local_date = $d", {"d": target})
        assert len(rows.y) == {dt.date(2024, 3, 31): 46, dt.date(2024, 10, 27): 50}.get(target, 48)
        for start, x in zip(rows.starts, rows.x, strict=True):
            clock = start.astype(dt.datetime).replace(tzinfo=dt.UTC).astimezone(zone).time()
            for feature, back in (("lag_recent", lag_days), ("lag_week", 7)):
                expected = _load_at(target - dt.timedelta(days=back), clock, zone)
                np.testing.assert_equal(
                    x[model.FEATURES.index(feature)], expected, err_msg=f"{target} {clock} {feature}"
                )
                utc_back = (start.astype(dt.datetime) - dt.timedelta(days=back)).replace(
                    tzinfo=dt.UTC
                ).timestamp() / 1800
                hour_off += utc_back != expected
    # positive control: whole UTC days back would have been wrong on these days
    assert hour_off > 100


def test_the_demo_says_what_it_bid_and_where_the_bid_came_from(history, tmp_path):
    import shutil

    from meter_assets.demo import forecast_today

    root = str(tmp_path / "lake")
    shutil.copytree(history, root)
    day = START + dt.timedelta(days=DAYS)
    lines = []
    forecast_today(dg.DagsterInstance.ephemeral(), log=lines.append, today=day, lake=root)
    (line,) = lines
    bids = pq.read_table(Lake(root).files(BIDS, day.isoformat())[0]).to_pylist()
    mwh = round(sum(b["mwh"] for b in bids), 3)
    assert f"load forecast {day} for {day + dt.timedelta(days=1)}" in line
    assert f"bid {mwh} MWh from {bids[0]['source']} ({bids[0]['reason']})" in line
