"""Full-scale benchmark of the day-ahead load forecast: two years of history, seven regions and the portfolio.

    python bench/forecast.py --meters 200000 [--days 730] [--sample 20000] [--workdir data/bench-forecast] [--reuse]

Writes `--days` days of `portfolio_load` (each region's kWh per quarter hour) and the
weather straight from the simulator's load model: `--sample` simulated meters scaled up to
`--meters` (the forecast reads the regions' totals per quarter hour, so its cost does not
depend on the number of meters, only on the days and regions; simulating every meter for
two years would take hours). Then `load_forecast` runs for the day after the history, in
its own process: for the portfolio and each of the seven regions side by side, reading the
history, training the quantile models, forecasting the next day, and the 28-day
rolling-origin backtest; then the direct portfolio forecast against the sum of the regions'
and the bid from the winner. Prints the times and the backtest metrics; results are also
written to `<workdir>/forecast.json`.
"""

import datetime as dt
import json
import os
import sys
import time

from fullscale import bench_parser, prepare_workdir, run_steps, step_result


def step(name: str, lake: str, meters: int, sample: int, start: dt.date, days: int) -> dict:
    import dagster as dg

    from meter_assets.definitions import assets
    from meter_assets.forecast.assets import weather
    from meter_assets.reference.assets import reference_assets
    from meter_assets.resources import resources
    from meter_assets.simulator.portfolio import write_portfolio_history
    from meter_assets.storage import Lake

    began = time.perf_counter()
    facts: dict = {}
    if name == "history":
        write_portfolio_history(
            Lake(lake),
            sample,
            start,
            days,
            seed=7,
            scale=meters // sample,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
        dg.materialize([*reference_assets, weather], resources=resources(lake))
        facts["days"] = days
    elif name == "forecast":
        day = start + dt.timedelta(days=days)
        result = dg.materialize(
            assets("load_forecast"), partition_key=day.isoformat(), resources=resources(lake), raise_on_error=False
        )
        metadata = result.asset_materializations_for_node("load_forecast")[0].metadata
        checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
        check = checks["backtest_beats_baselines"]
        facts = {
            "partition": day.isoformat(),
            # the series are trained in worker processes: the largest of them, beside this one's own peak
            "worker_peak_memory_mb": metadata["series_worker_peak_memory_mb"].value,
            "models_seconds": metadata["models_seconds"].value,
            "asset_seconds": metadata["seconds"].value,
            "trained_on_periods": metadata["trained_on_periods"].value,
            "p50_mwh": metadata["p50_mwh"].value,
            "check_passed": check.passed,
            "bid_source": metadata["bid_source"].value,
            "forecast_by": metadata["forecast_by"].value,
            "regions": metadata["regions"].value,
            "backtests": [r.data for r in metadata["backtests"].value.records],
            "bid_checked": checks["bid_covers_every_period"].passed,
            **{k: v.value for k, v in check.metadata.items()},
        }
    else:
        raise ValueError(name)
    return step_result(name, began, facts)


def main() -> int:
    parser = bench_parser(__doc__, "bench-forecast")
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2023, 1, 1))
    args = parser.parse_args()
    workdir = os.path.abspath(args.workdir)
    lake = os.path.join(workdir, "lake")
    if args.step:
        print(json.dumps(step(args.step, lake, args.meters, args.sample, args.start, args.days), default=str))
        return 0

    env = prepare_workdir(workdir, args.reuse, args.start)
    results = {
        r["step"]: r
        for r in run_steps(
            __file__,
            ["forecast"] if args.reuse else ["history", "forecast"],
            [
                "--meters",
                str(args.meters),
                "--sample",
                str(args.sample),
                "--days",
                str(args.days),
                "--start",
                args.start.isoformat(),
                "--workdir",
                workdir,
            ],
            env,
        )
    }
    f = results["forecast"]
    print(
        f"load_forecast with {args.days} days of history, the portfolio and {f['regions']} regions: "
        f"training, forecasts and backtests {f['models_seconds']} s, the asset {f['asset_seconds']} s, "
        f"{f['seconds']} s through Dagster (target: under 60 s); peak memory {f['peak_memory_mb']:,} MB in the "
        f"step's process and {f['worker_peak_memory_mb']:,} MB in each of its two series workers at most "
        f"(together {f['peak_memory_mb'] + 2 * f['worker_peak_memory_mb']:,} MB at most; target: under 2 GB)"
    )
    for row in f["backtests"]:
        print(
            f"  {row['forecast']:<24} P50 MAPE {row['mape_p50'] or float('nan'):.2%}, a week earlier "
            f"{row['mape_seasonal_naive'] or float('nan'):.2%}, previous known day "
            f"{row['mape_previous_day'] or float('nan'):.2%}, P10-P90 coverage "
            f"{row['coverage_p10_p90'] or float('nan'):.1%}  {row['note']}"
        )
    print(f"the portfolio is forecast by {f['forecast_by']} ({f['regions']} regions side by side)")
    print(
        f"backtest over {f.get('days')} days: P50 MAPE {f.get('mape_p50', float('nan')):.2%}, seasonal naive "
        f"{f.get('mape_seasonal_naive', float('nan')):.2%}, "
        f"previous day {f.get('mape_previous_day', float('nan')):.2%}, "
        f"P10-P90 coverage {f.get('coverage_p10_p90', float('nan')):.1%}, check passed: {f['check_passed']}, "
        f"bid from: {f['bid_source']}"
    )
    with open(os.path.join(workdir, "forecast.json"), "w") as out:
        json.dump(
            {"meters": args.meters, "sample": args.sample, "days": args.days, "steps": results},
            out,
            indent=1,
            default=str,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
