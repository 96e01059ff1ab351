"""Day-ahead load forecasts for the wholesale bids: weather, the portfolio's load, the forecast."""

import dataclasses
import datetime as dt
import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import dagster as dg
import numpy as np
import pyarrow as pa
from dagster_duckdb import DuckDBResource

from meter_assets.config import settings
from meter_assets.forecast import model
from meter_assets.gates import audit_and_publish
from meter_assets.jobs import pod, retries
from meter_assets.market_calendar import local_day_bounds
from meter_assets.partitions import daily_partitions, earlier_days, forecast_partitions
from meter_assets.reference.assets import load_reference, meters
from meter_assets.resources import LakeResource, lake_duckdb
from meter_assets.sql import VIEW_SQL, parquet
from meter_assets.tables import BIDS, FORECAST, METERS, PORTFOLIO_LOAD, READS_15MIN, TEMPERATURE, TEMPERATURE_FORECAST

FORECAST_SPAN_SQL = "SELECT min(valid_at), max(valid_at), count(DISTINCT issued_at) FROM {files}"
PORTFOLIO_TOTALS_SQL = "SELECT count(*), sum(kwh), sum(missing) FROM {files}"

# the model and its backtest beside the forecast table (plain objects, one set per day)
MODELS = "forecasts/load_models"

PORTFOLIO_SQL = """
COPY (
    SELECT
        readings.read_at                                             AS interval_start,
        coalesce(regions.region, 'unknown')                          AS region,
        CAST(coalesce(sum(readings.kwh), 0) AS DECIMAL(18, 3))       AS kwh,
        CAST(count(*) AS INTEGER)                                    AS meters,
        CAST(count(*) FILTER (WHERE readings.quality_flag = 'missing') AS INTEGER) AS missing
    FROM {readings} AS readings
    LEFT JOIN (SELECT meter_id, arg_max(region, installed_on) AS region FROM meters GROUP BY meter_id) AS regions
           USING (meter_id)
    GROUP BY ALL
    ORDER BY interval_start, region
) TO '{target}' (FORMAT parquet)
"""

# the series of the whole portfolio, beside one per region
PORTFOLIO = "portfolio"

# The load per settlement period of each region and of the whole portfolio (missing readings
# filled in proportion to the region's meters that did report), the day to forecast with no
# load yet, and the temperature as forecast at bid time: the newest forecast issued by gate
# closure on the day before the hour's local day, the region's own or, for the portfolio,
# weighted by the regions' meters. Floating-point sums in a fixed order (ORDER BY inside the
# aggregate): the same inputs give the same series to the last bit, however DuckDB's threads
# split the work, so the same data makes the same forecast.
SERIES_SQL = """
CREATE OR REPLACE TABLE all_series AS
WITH quarter_hours AS (
    SELECT region, interval_start, CAST(kwh AS DOUBLE) * meters / nullif(meters - missing, 0) AS kwh
    FROM portfolio
),
regional AS (
    SELECT region AS series, time_bucket(to_minutes(CAST($minutes AS INTEGER)), interval_start) AS period_start,
           sum(kwh ORDER BY interval_start) AS load
    FROM quarter_hours
    GROUP BY 1, 2
),
history AS (
    SELECT series, period_start, load FROM regional
    UNION ALL
    -- unknown where a region is
    SELECT CAST($portfolio AS VARCHAR), period_start,
           CASE WHEN count(load) = count(*) THEN sum(load ORDER BY series) END
    FROM regional
    GROUP BY period_start
),
target AS (
    SELECT series, unnest(generate_series($target_start, $target_end - to_minutes(CAST($minutes AS INTEGER)),
                                          to_minutes(CAST($minutes AS INTEGER)))) AS period_start
    FROM (SELECT DISTINCT series FROM history)
),
periods AS (
    SELECT series, period_start, load FROM history WHERE period_start < $target_start
    UNION ALL
    SELECT series, period_start, NULL FROM target
),
weights AS (
    SELECT region, count(*) AS meters FROM meters GROUP BY region
),
known AS (
    SELECT region, valid_at, arg_max(temperature_c, issued_at) AS temperature_c
    FROM temperature_forecast
    WHERE issued_at <= timezone($tz, (CAST(timezone($tz, valid_at AT TIME ZONE 'UTC') AS DATE) - 1)
                                     + CAST($gate AS TIME)) AT TIME ZONE 'UTC'
    GROUP BY region, valid_at
),
temperatures AS (
    SELECT region AS series, valid_at, temperature_c AS temp FROM known
    UNION ALL
    SELECT CAST($portfolio AS VARCHAR), known.valid_at,
           sum(known.temperature_c * weights.meters ORDER BY region) / sum(weights.meters)
    FROM known
    JOIN weights USING (region)
    GROUP BY known.valid_at
)
SELECT periods.series, periods.period_start, periods.load, temperatures.temp
FROM periods
LEFT JOIN temperatures
       ON temperatures.series = periods.series
      AND temperatures.valid_at = date_trunc('hour', periods.period_start)
ORDER BY periods.series, periods.period_start
"""
ONE_SERIES_SQL = "SELECT period_start, load, temp FROM all_series WHERE series = $series ORDER BY period_start"


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            TEMPERATURE.asset,
            kinds={"duckdb", "delta"},
            description="Observed hourly temperature per region: what the model learns from.",
        ),
        dg.AssetSpec(
            TEMPERATURE_FORECAST.asset,
            kinds={"duckdb", "delta"},
            description="Hourly temperature per region as forecast at each issue: what a bid knew.",
        ),
    ],
    group_name="forecast",
)
def weather(lake: LakeResource, duckdb: DuckDBResource):
    """Observed and forecast hourly temperature per region, for the load forecast."""
    store = lake.lake()
    with lake_duckdb(duckdb, store) as con:
        observed = load_reference(store, con, "temperature")
        forecast = load_reference(store, con, "temperature_forecast")
        first, last, issues = con.execute(
            FORECAST_SPAN_SQL.format(files=parquet(store.required_files(TEMPERATURE_FORECAST)))
        ).fetchone()
    yield dg.MaterializeResult(asset_key=TEMPERATURE.asset, metadata={"rows": observed.rows, **observed.metadata()})
    yield dg.MaterializeResult(
        asset_key=TEMPERATURE_FORECAST.asset,
        metadata={
            "rows": forecast.rows,
            "forecast_issues": issues,
            "forecast_from": str(first),
            "forecast_to": str(last),
            **forecast.metadata(),
        },
    )


def portfolio_load(context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource):
    """The portfolio's kWh per region and quarter hour, with how many meters reported: the forecast's history."""
    store = lake.lake()
    readings = store.required_files(READS_15MIN, context.partition_key)
    build = store.build(PORTFOLIO_LOAD, context.partition_key)
    target = build.uri("part-0000.parquet")
    with lake_duckdb(duckdb, store) as con:
        con.execute(VIEW_SQL.format(view="meters", files=parquet(store.required_files(METERS))))
        con.execute(PORTFOLIO_SQL.format(readings=parquet(readings), target=target))
        rows, kwh, missing = con.execute(PORTFOLIO_TOTALS_SQL.format(files=parquet(target))).fetchone()
    gate = audit_and_publish(context, store, [build], [])
    yield from gate.results(
        {"portfolio_load": {"intervals": rows, "kwh": float(kwh or 0), "missing_readings": int(missing or 0)}}
    )


# where the bid comes from: the portfolio's own model, the sum of the regions' models, or the
# baseline that beat both in the backtest
MODEL_NAMES = {"portfolio_model": "the portfolio model", "regional_models": "the sum of the regional models"}
BID_SOURCES = (*MODEL_NAMES, "seasonal_naive", "previous_day")


def _passes(metrics: model.Metrics) -> tuple[bool, str]:
    if metrics.improvement_on_best_baseline < 0.10:
        return False, (
            f"P50 MAPE {metrics.mape_p50:.2%} does not beat the best baseline by 10 % "
            f"(improvement {metrics.improvement_on_best_baseline:.1%})"
        )
    if not 0.70 <= metrics.coverage_p10_p90 <= 0.90:
        return False, f"P10-P90 holds {metrics.coverage_p10_p90:.1%} of actuals, outside 70-90 %"
    return True, "beats the best baseline by 10 % or more, P10-P90 coverage within 70-90 %"


def _bid_source(metrics: model.Metrics | None, verdict: str, forecast_by: str = "portfolio_model") -> tuple[str, str]:
    """The winning model's P50 (`forecast_by`) only when its backtest beats the best baseline
    by 10 %; otherwise that baseline (the same period a week earlier if there was no backtest)."""
    if metrics is not None and metrics.improvement_on_best_baseline >= 0.10:
        return forecast_by, (
            f"{MODEL_NAMES[forecast_by]}'s P50 beat the best baseline by {metrics.improvement_on_best_baseline:.1%}"
        )
    if metrics is None:
        return "seasonal_naive", f"no backtest ({verdict}): the same period a week earlier"
    best = "seasonal_naive" if metrics.mape_seasonal_naive <= metrics.mape_previous_day else "previous_day"
    return best, (
        f"{MODEL_NAMES[forecast_by]}'s P50 MAPE {metrics.mape_p50:.2%} did not beat the best baseline by 10 % "
        f"(seasonal naive {metrics.mape_seasonal_naive:.2%}, previous day {metrics.mape_previous_day:.2%})"
    )


def _bid_kwh(source: str, quantiles: dict, x) -> list[float]:
    """Per settlement period, the source's kWh; where a baseline lacks a period (a clock
    change), the other baseline's, else the model's."""
    seasonal, previous = model.feature(x, "lag_week"), model.feature(x, "lag_recent")
    order = {
        "seasonal_naive": [seasonal, previous, quantiles[0.5]],
        "previous_day": [previous, seasonal, quantiles[0.5]],
    }.get(source, [quantiles[0.5]])
    return [next(float(c[i]) for c in order if c[i] == c[i]) for i in range(len(x))]


def _summed(starts: np.ndarray, p50s: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray | None:
    """Per period of `starts`, the sum of the parts' P50 (each part its starts and P50s), or
    None if a part lacks a period."""
    total = np.zeros(len(starts))
    for part_starts, p50 in p50s:
        if len(part_starts) == 0:
            return None
        at = np.searchsorted(part_starts, starts).clip(0, len(part_starts) - 1)
        if not np.array_equal(part_starts[at], starts):
            return None
        total += p50[at]
    return total


def _bottom_up(p50: np.ndarray, portfolio: dict[float, np.ndarray]) -> dict[float, np.ndarray]:
    """The regions' summed P50 in the band the portfolio's own models give, in proportion:
    summed P10s and P90s would be as wide as if every region's errors went the same way, and
    the regions' errors partly cancel."""
    scale = np.divide(p50, portfolio[0.5], out=np.ones(len(p50)), where=portfolio[0.5] > 0)
    return {0.1: portfolio[0.1] * scale, 0.5: p50, 0.9: portfolio[0.9] * scale}


def _sum_of_regions(portfolio: model.Backtest, regions: list[model.Backtest]) -> model.Backtest | None:
    """The regions' backtest forecasts summed per period, beside the portfolio's actuals and
    baselines; None if a region was not forecast for every period the portfolio was."""
    p50 = _summed(portfolio.starts, [(r.starts, r.p50) for r in regions])
    if p50 is None:
        return None
    band = _bottom_up(p50, {0.1: portfolio.p10, 0.5: portfolio.p50, 0.9: portfolio.p90})
    return dataclasses.replace(portfolio, p10=band[0.1], p50=band[0.5], p90=band[0.9])


def _bid_check(bids: pa.Table, periods: int) -> dg.AssetCheckResult:
    """Every settlement period of the delivery day has one bid of a finite, non-negative MWh."""
    mwh = bids.column("mwh").to_pylist()
    sources = set(bids.column("source").to_pylist())
    problems = []
    if len(mwh) != periods:
        problems.append(f"{len(mwh)} bids for {periods} settlement periods")
    bad = [v for v in mwh if v is None or not math.isfinite(v) or v < 0]
    if bad:
        problems.append(f"{len(bad)} bids are not a finite, non-negative MWh (e.g. {bad[0]})")
    if not sources <= set(BID_SOURCES):
        problems.append(f"unknown bid source {sorted(sources - set(BID_SOURCES))}")
    return dg.AssetCheckResult(
        asset_key=BIDS.asset,
        check_name="bid_covers_every_period",
        passed=not problems,
        metadata={"periods": periods, "bids": len(mwh), "problems": "; ".join(problems) or "none"},
    )


def load_forecast(context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource):
    """Tomorrow's load per settlement period as P10/P50/P90, of the portfolio and each region, and the bid to buy it."""
    s = settings()
    store = lake.lake()
    today = dt.date.fromisoformat(context.partition_key)
    delivery = today + dt.timedelta(days=1)
    # the newest complete day at gate closure today: yesterday, for meter data (lag 2)
    newest = delivery - dt.timedelta(days=s.forecast_lag_days)
    history = [newest - dt.timedelta(days=d) for d in range(s.forecast_history_days)]
    published = store.snapshot(PORTFOLIO_LOAD)
    files = [f for day in reversed(history) for f in published.files(day.isoformat())] if published else []
    if not files:
        raise FileNotFoundError(f"no portfolio_load before {today}: materialize portfolio_load first")
    # one LightGBM thread per series, as many series at once as there are threads: small
    # models scale poorly over threads, series side by side do not
    spec = model.Spec(
        tz=s.market_tz,
        minutes=s.settlement_minutes,
        country=s.market_country,
        threads=1,
        lag_days=s.forecast_lag_days,
    )
    target_start, target_end = local_day_bounds(delivery)
    began = time.perf_counter()
    with lake_duckdb(duckdb, store) as con:
        con.execute(VIEW_SQL.format(view="portfolio", files=parquet(files)))
        if "region" not in {c for (c, *_) in con.execute("DESCRIBE portfolio").fetchall()}:
            # written before the load was kept per region: rebuilt in a backfill, as any rollup
            raise ValueError(
                "portfolio_load's history has no region column (written by an earlier version): "
                f"backfill portfolio_load from {history[-1]} to {newest}"
            )
        for name, table in (("meters", METERS), ("temperature_forecast", TEMPERATURE_FORECAST)):
            con.execute(VIEW_SQL.format(view=name, files=parquet(store.required_files(table))))
        con.execute(
            SERIES_SQL,
            {
                "minutes": s.settlement_minutes,
                "target_start": target_start,
                "target_end": target_end,
                "tz": s.market_tz,
                "gate": s.gate_closure.isoformat(),
                "portfolio": PORTFOLIO,
            },
        )
        names = [n for (n,) in con.execute("SELECT DISTINCT series FROM all_series ORDER BY 1").fetchall()]
        series = {name: con.execute(ONE_SERIES_SQL, {"series": name}).to_arrow_table() for name in names}
    regions = [n for n in names if n != PORTFOLIO]
    # Each series in a process of its own (LightGBM's native code is not safe to train from
    # two threads of one process), on one thread, as many at once as there are threads:
    # small models gain little from a second thread, a second series does.
    with ProcessPoolExecutor(max_workers=s.duckdb_threads, mp_context=multiprocessing.get_context("spawn")) as pool:
        running = {
            name: pool.submit(model.run_series, series[name], spec, newest, delivery, s.backtest_days)
            for name in (PORTFOLIO, *regions)
        }
        portfolio = running.pop(PORTFOLIO).result()
        by_region, region_errors = {}, {}
        for name, future in running.items():
            try:
                by_region[name] = future.result()
            except ValueError as error:
                region_errors[name] = str(error)
    forecast_seconds = time.perf_counter() - began

    # the direct forecast against the sum of the regions', on the same backtest periods
    scores = {}
    if portfolio.backtest is not None:
        scores["portfolio_model"] = model.score(portfolio.backtest)
        backtests = [r.backtest for r in by_region.values()]
        if regions and not region_errors and all(b is not None for b in backtests):
            summed = _sum_of_regions(portfolio.backtest, backtests)
            if summed is not None:
                scores["regional_models"] = model.score(summed)
    forecast_by = min(scores, key=lambda k: scores[k].mape_p50) if scores else "portfolio_model"
    quantiles = portfolio.quantiles
    if forecast_by == "regional_models":
        p50 = _summed(portfolio.starts, [(r.starts, r.quantiles[0.5]) for r in by_region.values()])
        quantiles = _bottom_up(p50, portfolio.quantiles)
    metrics = scores.get(forecast_by)
    if metrics is not None:
        passed, verdict = _passes(metrics)
    else:
        passed, verdict = False, portfolio.error or "no backtest"
    source, reason = _bid_source(metrics, verdict, forecast_by)
    bid_kwh = _bid_kwh(source, quantiles, portfolio.x)
    starts = portfolio.starts
    tz = s.tz
    local = [p.astype(dt.datetime).replace(tzinfo=dt.UTC).astimezone(tz).replace(tzinfo=None) for p in starts]
    published = [(PORTFOLIO, quantiles)] + [(name, r.quantiles) for name, r in by_region.items()]
    forecast = pa.table(
        {
            "series": pa.array([name for name, _ in published for _ in starts], pa.string()),
            "settlement_period": pa.array(list(range(1, len(starts) + 1)) * len(published), pa.int16()),
            "period_start": pa.array(np.tile(starts, len(published)), pa.timestamp("us")),
            "period_start_local": pa.array(local * len(published), pa.timestamp("us")),
            **{
                f"p{int(q * 100)}_kwh": pa.array(np.concatenate([values[q] for _, values in published]), pa.float64())
                for q in model.QUANTILES
            },
        }
    )
    bids = pa.table(
        {
            "delivery_date": pa.array([delivery] * len(starts), pa.date32()),
            "settlement_period": pa.array(range(1, len(starts) + 1), pa.int16()),
            "period_start": pa.array(starts, pa.timestamp("us")),
            "period_start_local": pa.array(local, pa.timestamp("us")),
            "mwh": pa.array([round(v / 1000, 3) for v in bid_kwh], pa.float64()),
            "source": pa.array([source] * len(starts), pa.string()),
            "reason": pa.array([reason] * len(starts), pa.string()),
        }
    )
    fitted = portfolio.fitted
    ranked = model.importances(fitted)
    comparison = _comparison(scores, by_region, region_errors)
    summary = {
        "delivery_date": delivery.isoformat(),
        "periods": len(starts),
        "trained_on_periods": portfolio.trained_on,
        "band_widened_kwh": round(fitted.widen, 3),
        "forecast_by": forecast_by,
        "bid_source": source,
        "bid_reason": reason,
        "backtest": metrics.as_dict() if metrics else None,
        "backtests": comparison,
    }
    forecast_build = store.build(FORECAST, context.partition_key)
    forecast_build.write_parquet("forecast.parquet", forecast)
    bid_build = store.build(BIDS, context.partition_key, same_as=forecast_build)
    bid_build.write_parquet("bids.parquet", bids)
    models = f"{MODELS}/date={context.partition_key}"

    def keep_model():
        # the portfolio model that made the published forecast, and how every series was judged
        store.write_bytes(f"{models}/feature_importance.json", json.dumps(ranked, indent=1).encode())
        for q, booster in fitted.models.items():
            store.write_bytes(f"{models}/model_p{int(q * 100):02d}.txt", booster.model_to_string().encode())
        store.write_bytes(f"{models}/backtest.json", json.dumps(summary, indent=1).encode())

    check_metadata = {"verdict": verdict, "forecast_by": forecast_by, "bid_source": source}
    if metrics:
        check_metadata.update({k: v for k, v in metrics.as_dict().items() if k != "pinball_by_quantile"})
    for name, score in scores.items():
        check_metadata[f"mape_p50_{name}"] = score.mape_p50
    # a model that loses its backtest is a warning, not a missing bid: the bid then is the baseline's
    check = dg.AssetCheckResult(
        asset_key=FORECAST.asset,
        check_name="backtest_beats_baselines",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=check_metadata,
    )
    checks = [check, _bid_check(bids, (target_end - target_start) // dt.timedelta(minutes=s.settlement_minutes))]
    gate = audit_and_publish(context, store, [forecast_build, bid_build], checks, publish=keep_model)
    yield from gate.results(
        {
            FORECAST.asset: {
                "delivery_date": delivery.isoformat(),
                "periods": len(starts),
                "p50_mwh": round(float(sum(quantiles[0.5])) / 1000, 3),
                "forecast_by": forecast_by,
                "bid_source": source,
                "bid_reason": reason,
                "p10_mwh": round(float(sum(quantiles[0.1])) / 1000, 3),
                "p90_mwh": round(float(sum(quantiles[0.9])) / 1000, 3),
                "regions": len(by_region),
                "trained_on_periods": portfolio.trained_on,
                # the history read, every series trained, forecast and backtested
                "models_seconds": round(forecast_seconds, 2),
                "series_worker_peak_memory_mb": round(
                    max((r.peak_memory_mb or 0 for r in (portfolio, *by_region.values())), default=0)
                ),
                "seconds": round(time.perf_counter() - began, 2),
                "backtests": dg.MetadataValue.table(
                    records=[dg.TableRecord(r) for r in comparison],
                    schema=dg.TableSchema(
                        columns=[
                            dg.TableColumn("forecast"),
                            dg.TableColumn("mape_p50", "float"),
                            dg.TableColumn("mape_seasonal_naive", "float"),
                            dg.TableColumn("mape_previous_day", "float"),
                            dg.TableColumn("coverage_p10_p90", "float"),
                            dg.TableColumn("note"),
                        ]
                    ),
                ),
                "feature_importance": dg.MetadataValue.table(
                    records=[dg.TableRecord(r) for r in ranked],
                    schema=dg.TableSchema(columns=[dg.TableColumn("feature"), dg.TableColumn("gain_share", "float")]),
                ),
                "model": dg.MetadataValue.path(store.uri(f"{models}/model_p50.txt")),
            },
            BIDS.asset: {
                "delivery_date": delivery.isoformat(),
                "mwh": round(float(sum(bids.column("mwh").to_pylist())), 3),
                "source": source,
                "reason": reason,
            },
        }
    )


def _comparison(scores: dict, by_region: dict, region_errors: dict) -> list[dict]:
    """The backtest of each way to forecast the portfolio, then of each region on its own load."""
    rows = []

    def row(forecast: str, metrics: model.Metrics | None, note: str) -> dict:
        return {
            "forecast": forecast,
            "mape_p50": round(metrics.mape_p50, 5) if metrics else None,
            "mape_seasonal_naive": round(metrics.mape_seasonal_naive, 5) if metrics else None,
            "mape_previous_day": round(metrics.mape_previous_day, 5) if metrics else None,
            "coverage_p10_p90": round(metrics.coverage_p10_p90, 4) if metrics else None,
            "note": note,
        }

    for name in MODEL_NAMES:
        rows.append(row(name, scores.get(name), "the portfolio's load" if name in scores else "not backtested"))
    for name, region in by_region.items():
        metrics = model.score(region.backtest) if region.backtest is not None else None
        rows.append(row(f"region {name}", metrics, "the region's load" if metrics else region.error or ""))
    for name, error in region_errors.items():
        rows.append(row(f"region {name}", None, error))
    return rows


load_forecast_job = dg.define_asset_job(
    "load_forecast_job",
    selection=dg.AssetSelection.assets(FORECAST.asset, BIDS.asset),
    description="Forecast tomorrow's portfolio load and write the day-ahead bid.",
    # safe until gate closure: the day's forecast and bid are replaced whole; after it a retry
    # only rewrites the record of a bid already due
    tags={**retries(2), **pod("2", "2Gi", "3Gi")},
)


def load_forecast_schedule(context: dg.ScheduleEvaluationContext):
    """Every morning before gate closure: today's forecast (for delivery tomorrow) and its bid."""
    today = context.scheduled_execution_time.astimezone(settings().tz).date().isoformat()
    return dg.RunRequest(run_key=today, partition_key=today)


def build() -> list[dg.AssetsDefinition]:
    """The forecast domain's partitioned assets, made when the code location loads (the weather is not partitioned)."""
    # the history a forecast made on D for D+1 reads: the portfolio's load up to D+1-lag (D-1)
    s = settings()
    history = dg.AssetDep(
        "portfolio_load",
        partition_mapping=earlier_days(-s.forecast_history_days, 1 - s.forecast_lag_days),
    )
    return [
        dg.asset(
            partitions_def=daily_partitions(),
            deps=["reads_15min", meters],
            group_name="forecast",
            kinds={"duckdb", "delta"},
            pool="lake_compute",
            output_required=False,
        )(portfolio_load),
        dg.multi_asset(
            specs=[
                dg.AssetSpec(
                    FORECAST.asset,
                    deps=[history, TEMPERATURE_FORECAST.asset, meters],
                    skippable=True,
                    kinds={"lightgbm", "delta"},
                    description="Tomorrow's portfolio load per settlement period as P10/P50/P90.",
                ),
                dg.AssetSpec(
                    BIDS.asset,
                    deps=[FORECAST.asset],
                    skippable=True,
                    kinds={"delta"},
                    description="The day-ahead bid: MWh to buy per settlement period, from the P50.",
                ),
            ],
            partitions_def=forecast_partitions(),
            group_name="forecast",
            pool="lake_compute",
            check_specs=[
                dg.AssetCheckSpec(
                    "backtest_beats_baselines",
                    asset=FORECAST.asset,
                    description="Rolling-origin backtest over the last days: P50 beats the best "
                    "baseline by 10 % and P10-P90 holds 70-90 % of actuals; when P50 does not, "
                    "the bid is the best baseline's (a warning, not a missing bid).",
                ),
                dg.AssetCheckSpec(
                    "bid_covers_every_period",
                    asset=BIDS.asset,
                    blocking=True,
                    description="One finite, non-negative bid per settlement period of the delivery "
                    "day; otherwise neither forecast nor bid is published and yesterday's stay.",
                ),
            ],
        )(load_forecast),
    ]


def build_schedules() -> list[dg.ScheduleDefinition]:
    """Every morning, two hours before gate closure (time to look at the forecast, rerun it, bid)."""
    s = settings()
    return [
        dg.schedule(
            job=load_forecast_job,
            cron_schedule=f"0 {(s.gate_closure.hour - 2) % 24} * * *",
            execution_timezone=s.market_tz,
            default_status=dg.DefaultScheduleStatus.RUNNING,
        )(load_forecast_schedule)
    ]
