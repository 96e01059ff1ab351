"""The day-ahead model on real, public load: rolling-origin backtests over several seasons.

    python bench/real_demand.py [--series gb_national victoria household_sceaux] [--workdir data/bench-real-demand]

For each series of `meter_assets/forecast/public_data.py` (national and regional system
demand, one household), writes it as CSV and runs `meter-forecast backtest` on each of its
windows (28 days each, refitted weekly, every model trained only on what its bid could have
known, with the series' data lag: 1 day for a system operator's series, 2 for meter data).
Prints a Markdown table, one row per window and a pooled row per series (MAPE and coverage
over all of its windows' periods), and writes the rows to `<workdir>/real_demand.json`.
"""

import argparse
import datetime as dt
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

HEADER = (
    "| series | kind | history before the window | test window | lag | P50 MAPE | same period a week earlier "
    "| previous available day | better than the best baseline | pinball | P10-P90 coverage |"
)


def window(csv: str, name: str, last_day: str) -> dict:
    from meter_assets.forecast import cli
    from meter_assets.forecast.public_data import SERIES

    series = SERIES[name]
    args = argparse.Namespace(
        csv=csv,
        time_col="timestamp",
        value_col="load",
        temp_col="temperature" if series.temperature else None,
        freq=cli.minutes_of(series.freq),
        test_days=series.test_days,
        country=series.country,
        subdivision=series.subdivision,
        tz=series.tz,
        agg="mean",
        lag_days=series.lag_days,
        last_day=dt.date.fromisoformat(last_day),
    )
    began = time.perf_counter()
    result = cli.backtest_command(args)
    result["seconds"] = round(time.perf_counter() - began, 1)
    result["series"] = name
    return result


def row(name: str, kind: str, history: str, test: str, lag: int, m: dict) -> str:
    return (
        f"| {name} | {kind} | {history} | {test} | {lag} | {m['mape_p50']:.2%} | {m['mape_seasonal_naive']:.2%} "
        f"| {m['mape_previous_day']:.2%} | {m['improvement_on_best_baseline']:.0%} | {m['pinball']:.4g} "
        f"| {m['coverage_p10_p90']:.0%} |"
    )


def pooled(results: list[dict]) -> dict:
    """MAPE, pinball and coverage over every period of the windows (weighted by their periods)."""
    periods = sum(r["periods"] for r in results)

    def mean(key: str) -> float:
        return sum(r[key] * r["periods"] for r in results) / periods

    p50, seasonal, previous = mean("mape_p50"), mean("mape_seasonal_naive"), mean("mape_previous_day")
    return {
        "periods": periods,
        "mape_p50": p50,
        "mape_seasonal_naive": seasonal,
        "mape_previous_day": previous,
        "improvement_on_best_baseline": 1 - p50 / min(seasonal, previous),
        "pinball": mean("pinball"),
        "coverage_p10_p90": mean("coverage_p10_p90"),
    }


def main() -> int:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from meter_assets.forecast.public_data import SERIES, write_csv

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", nargs="+", choices=sorted(SERIES), default=list(SERIES))
    parser.add_argument("--workdir", default=os.path.join("data", "bench-real-demand"))
    # one window at a time: each already trains on every core (LightGBM's OpenMP threads spin
    # while they wait, so two processes of two threads on two cores run many times slower)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    began = time.perf_counter()
    csvs = {name: os.path.join(args.workdir, f"{name}.csv") for name in args.series}
    for name, csv in csvs.items():
        write_csv(name, csv)
    jobs = [(csvs[name], name, last) for name in args.series for last in SERIES[name].windows]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(window, *zip(*jobs, strict=True)))

    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for name in args.series:
        series = SERIES[name]
        mine = [r for r in results if r["series"] == name]
        for r in mine:
            last = dt.date.fromisoformat(r["backtest_last_day"])
            first = last - dt.timedelta(days=r["days"] - 1)
            history = f"{(first - dt.date.fromisoformat(r['first_period'][:10])).days} days"
            lines.append(row(name, series.kind, history, f"{first} to {last}", series.lag_days, r))
        if len(mine) > 1:
            lines.append(
                row(f"**{name}, all windows**", series.kind, "", f"{len(mine)} windows", series.lag_days, pooled(mine))
            )
    print("\n".join(lines))
    print(f"\n{len(results)} windows in {time.perf_counter() - began:.0f} s")
    with open(os.path.join(args.workdir, "real_demand.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
