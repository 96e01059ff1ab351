"""The day-ahead bid: only what was known at gate closure, the model's only when it won its
backtest, the winner of the portfolio's own model and the regions' sum, never a broken one."""

import csv
import dataclasses
import datetime as dt
import os

import dagster as dg
import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from meter_assets.definitions import assets
from meter_assets.forecast import model
from meter_assets.forecast.assets import MODELS, weather
from meter_assets.sql import parquet
from meter_assets.storage import Lake
from meter_assets.tables import BIDS, FORECAST, PORTFOLIO_LOAD

from .conftest import resources_for
from .forecast_history import DAYS, REGIONS, START, portfolio_forecast, write_history

# each module its own copy, so that the two run side by side
history = pytest.fixture(scope="module", name="history")(write_history)
# the same inputs are trained and backtested once per session, whichever test comes first
pytestmark = pytest.mark.usefixtures("remembered_forecasts")


def test_a_forecast_issued_after_gate_closure_is_not_used(history, tmp_path):
    import shutil

    root = str(tmp_path / "lake")
    shutil.copytree(history, root)
    day = START + dt.timedelta(days=DAYS)
    first = dg.materialize(assets("load_forecast"), partition_key=day.isoformat(), resources=resources_for(root))
    before = [f["p50_kwh"] for f in portfolio_forecast(root, day)]
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
        return [f["p50_kwh"] for f in portfolio_forecast(root, day)]

    after = freezing_forecast_issued_at("12:00:00")
    assert after == before

    # positive control: the same freezing forecast issued before gate closure (later than the
    # 09:00 issue the history has) is used, and the bid changes
    in_time = freezing_forecast_issued_at("09:30:00")
    assert in_time != before


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
    forecast = [f["p50_kwh"] for f in portfolio_forecast(root, day)]
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
    assert metadata["forecast_by"].value == winner and metadata["regions"].value == REGIONS
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


def test_without_history_to_backtest_the_bid_is_a_week_earlier(history, tmp_path):
    """Thirty days of history train a model but cannot backtest 28 days: nothing says the model
    wins, so the bid is the same period a week before delivery, and says why."""
    import shutil

    root = str(tmp_path / "lake")
    shutil.copytree(history, root)
    day = START + dt.timedelta(days=30)
    result = dg.materialize(assets("load_forecast"), partition_key=day.isoformat(), resources=resources_for(root))
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["backtest_beats_baselines"].passed and checks["bid_covers_every_period"].passed
    assert "too little history" in checks["backtest_beats_baselines"].metadata["verdict"].value

    bids = pq.read_table(Lake(root).files(BIDS, day.isoformat())[0]).to_pylist()
    assert {b["source"] for b in bids} == {"seasonal_naive"} and "no backtest" in bids[0]["reason"]
    assert [b["mwh"] for b in bids] == _baseline_mwh(root, day - dt.timedelta(days=6))


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
