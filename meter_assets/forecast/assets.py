"""Day-ahead load forecasts for the wholesale bids: weather, the portfolio's load, the forecast."""

import datetime as dt
import json
import math
import time

import dagster as dg
import pyarrow as pa
from dagster_duckdb import DuckDBResource

from meter_assets.config import settings
from meter_assets.forecast import model
from meter_assets.gates import audit_and_publish
from meter_assets.market_calendar import local_day_bounds
from meter_assets.partitions import daily_partitions, forecast_partitions
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
        read_at                                                      AS interval_start,
        CAST(coalesce(sum(kwh), 0) AS DECIMAL(18, 3))                AS kwh,
        CAST(count(*) AS INTEGER)                                    AS meters,
        CAST(count(*) FILTER (WHERE quality_flag = 'missing') AS INTEGER) AS missing
    FROM {readings}
    GROUP BY read_at
    ORDER BY read_at
) TO '{target}' (FORMAT parquet)
"""

# The portfolio's load per settlement period (missing readings filled in proportion to the
# meters that did report), the day to forecast with no load yet, and the temperature as
# forecast at bid time: per region, the newest forecast issued by gate closure on the day
# before the hour's local day, weighted by the region's meters.
# Floating-point sums in a fixed order (ORDER BY inside the aggregate): the same inputs give the
# same series to the last bit, however DuckDB's threads split the work, so the same data makes
# the same forecast.
SERIES_SQL = """
CREATE OR REPLACE TEMP TABLE series AS
WITH quarter_hours AS (
    SELECT interval_start, CAST(kwh AS DOUBLE) * meters / nullif(meters - missing, 0) AS kwh
    FROM portfolio
),
history AS (
    SELECT time_bucket(to_minutes(CAST($minutes AS INTEGER)), interval_start) AS period_start,
           sum(kwh ORDER BY interval_start) AS load
    FROM quarter_hours
    GROUP BY 1
),
target AS (
    SELECT unnest(generate_series($target_start, $target_end - to_minutes(CAST($minutes AS INTEGER)),
                                  to_minutes(CAST($minutes AS INTEGER)))) AS period_start
),
periods AS (
    SELECT period_start, load FROM history WHERE period_start < $target_start
    UNION ALL
    SELECT period_start, NULL FROM target
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
hourly AS (
    SELECT known.valid_at,
           sum(known.temperature_c * weights.meters ORDER BY region) / sum(weights.meters) AS temp
    FROM known
    JOIN weights USING (region)
    GROUP BY known.valid_at
)
SELECT periods.period_start, periods.load, hourly.temp
FROM periods
LEFT JOIN hourly ON hourly.valid_at = date_trunc('hour', periods.period_start)
ORDER BY periods.period_start
"""


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
    """The whole portfolio's kWh per quarter hour of the day, with how many meters reported: the forecast's history."""
    store = lake.lake()
    readings = store.required_files(READS_15MIN, context.partition_key)
    build = store.build(PORTFOLIO_LOAD, context.partition_key)
    target = build.uri("part-0000.parquet")
    with lake_duckdb(duckdb, store) as con:
        con.execute(PORTFOLIO_SQL.format(readings=parquet(readings), target=target))
        rows, kwh, missing = con.execute(PORTFOLIO_TOTALS_SQL.format(files=parquet(target))).fetchone()
    gate = audit_and_publish(context, store, [build], [])
    yield from gate.results(
        {"portfolio_load": {"intervals": rows, "kwh": float(kwh or 0), "missing_readings": int(missing or 0)}}
    )


# where the bid comes from: the model, or the baseline that beat it in the backtest
BID_SOURCES = ("model", "seasonal_naive", "previous_day")


def _passes(metrics: model.Metrics) -> tuple[bool, str]:
    if metrics.improvement_on_best_baseline < 0.10:
        return False, (
            f"P50 MAPE {metrics.mape_p50:.2%} does not beat the best baseline by 10 % "
            f"(improvement {metrics.improvement_on_best_baseline:.1%})"
        )
    if not 0.70 <= metrics.coverage_p10_p90 <= 0.90:
        return False, f"P10-P90 holds {metrics.coverage_p10_p90:.1%} of actuals, outside 70-90 %"
    return True, "beats the best baseline by 10 % or more, P10-P90 coverage within 70-90 %"


def _bid_source(metrics: model.Metrics | None, verdict: str) -> tuple[str, str]:
    """The model's P50 only when its backtest beats the best baseline by 10 %; otherwise that
    baseline (the same period a week earlier if there was no backtest to choose by)."""
    if metrics is not None and metrics.improvement_on_best_baseline >= 0.10:
        return "model", f"the model's P50 beat the best baseline by {metrics.improvement_on_best_baseline:.1%}"
    if metrics is None:
        return "seasonal_naive", f"no backtest ({verdict}): the same period a week earlier"
    best = "seasonal_naive" if metrics.mape_seasonal_naive <= metrics.mape_previous_day else "previous_day"
    return best, (
        f"the model's P50 MAPE {metrics.mape_p50:.2%} did not beat the best baseline by 10 % "
        f"(seasonal naive {metrics.mape_seasonal_naive:.2%}, previous day {metrics.mape_previous_day:.2%})"
    )


def _bid_kwh(source: str, quantiles: dict, x) -> list[float]:
    """Per settlement period, the source's kWh; where a baseline lacks a period (a clock
    change), the other baseline's, else the model's."""
    seasonal = x[:, model.FEATURES.index("lag_week")]
    previous = x[:, model.FEATURES.index("lag_recent")]
    order = {
        "model": [quantiles[0.5]],
        "seasonal_naive": [seasonal, previous, quantiles[0.5]],
        "previous_day": [previous, seasonal, quantiles[0.5]],
    }[source]
    return [next(float(c[i]) for c in order if c[i] == c[i]) for i in range(len(x))]


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
    """Tomorrow's portfolio load per settlement period as P10/P50/P90, and the bid to buy it (MWh per period)."""
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
    spec = model.Spec(
        tz=s.market_tz,
        minutes=s.settlement_minutes,
        country=s.market_country,
        threads=s.duckdb_threads,
        lag_days=s.forecast_lag_days,
    )
    target_start, target_end = local_day_bounds(delivery)
    began = time.perf_counter()
    with lake_duckdb(duckdb, store) as con:
        con.execute(VIEW_SQL.format(view="portfolio", files=parquet(files)))
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
            },
        )
        model.prepare(con, spec)
        where, params = model.trainable(newest)
        train = model.matrix(con, where, params)
        if len(train.y) == 0:
            raise ValueError(f"no complete history with a week of lags before {newest}: too early to forecast")
        fitted = model.fit(train, spec)
        target = model.matrix(con, "local_date = $day", {"day": delivery})
        starts = target.starts
        quantiles = model.predict(fitted, target.x)
        trained_seconds = time.perf_counter() - began
        try:
            metrics = model.backtest(con, spec, newest, s.backtest_days)
            passed, verdict = _passes(metrics)
        except ValueError as error:
            metrics, passed, verdict = None, False, str(error)
    source, reason = _bid_source(metrics, verdict)
    bid_kwh = _bid_kwh(source, quantiles, target.x)
    tz = s.tz
    forecast = pa.table(
        {
            "settlement_period": pa.array(range(1, len(starts) + 1), pa.int16()),
            "period_start": pa.array(starts, pa.timestamp("us")),
            "period_start_local": pa.array(
                [p.astype(dt.datetime).replace(tzinfo=dt.UTC).astimezone(tz).replace(tzinfo=None) for p in starts],
                pa.timestamp("us"),
            ),
            "p10_kwh": quantiles[0.1],
            "p50_kwh": quantiles[0.5],
            "p90_kwh": quantiles[0.9],
        }
    )
    bids = pa.table(
        {
            "delivery_date": pa.array([delivery] * len(starts), pa.date32()),
            "settlement_period": forecast.column("settlement_period"),
            "period_start": forecast.column("period_start"),
            "period_start_local": forecast.column("period_start_local"),
            "mwh": pa.array([round(v / 1000, 3) for v in bid_kwh], pa.float64()),
            "source": pa.array([source] * len(starts), pa.string()),
            "reason": pa.array([reason] * len(starts), pa.string()),
        }
    )
    ranked = model.importances(fitted)
    summary = {
        "delivery_date": delivery.isoformat(),
        "periods": len(starts),
        "trained_on_periods": len(train.y),
        "band_widened_kwh": round(fitted.widen, 3),
        "bid_source": source,
        "bid_reason": reason,
        "backtest": metrics.as_dict() if metrics else None,
    }
    forecast_build = store.build(FORECAST, context.partition_key)
    forecast_build.write_parquet("forecast.parquet", forecast)
    bid_build = store.build(BIDS, context.partition_key, same_as=forecast_build)
    bid_build.write_parquet("bids.parquet", bids)
    models = f"{MODELS}/date={context.partition_key}"

    def keep_model():
        # the model that made the published forecast, and how it was judged
        store.write_bytes(f"{models}/feature_importance.json", json.dumps(ranked, indent=1).encode())
        for q, booster in fitted.models.items():
            store.write_bytes(f"{models}/model_p{int(q * 100):02d}.txt", booster.model_to_string().encode())
        store.write_bytes(f"{models}/backtest.json", json.dumps(summary, indent=1).encode())

    check_metadata = {"verdict": verdict, "bid_source": source}
    if metrics:
        check_metadata.update({k: v for k, v in metrics.as_dict().items() if k != "pinball_by_quantile"})
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
                "bid_source": source,
                "bid_reason": reason,
                "p10_mwh": round(float(sum(quantiles[0.1])) / 1000, 3),
                "p90_mwh": round(float(sum(quantiles[0.9])) / 1000, 3),
                "trained_on_periods": len(train.y),
                "train_and_forecast_seconds": round(trained_seconds, 2),
                "seconds": round(time.perf_counter() - began, 2),
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


load_forecast_job = dg.define_asset_job(
    "load_forecast_job",
    selection=dg.AssetSelection.assets(FORECAST.asset, BIDS.asset),
    description="Forecast tomorrow's portfolio load and write the day-ahead bid.",
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
        partition_mapping=dg.TimeWindowPartitionMapping(
            start_offset=-s.forecast_history_days,
            end_offset=1 - s.forecast_lag_days,
            allow_nonexistent_upstream_partitions=True,
        ),
    )
    return [
        dg.asset(
            partitions_def=daily_partitions(),
            deps=["reads_15min"],
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
