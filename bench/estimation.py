"""`reads_15min` of a full-scale day with validation and estimation, against the same day without them.

The day (Tuesday 14 May 2024, 200,000 meters by default) comes from the simulator with its
default faults plus 2 % of meters offline for 6 to 48 hours (cut at the day's end: a
48-hour outage is the whole day); the days estimation reads (the 7 days before and the
Tuesdays 2 to 4 weeks before) are curated readings written straight from the simulator's
load model (`fullscale.py`), with the simulator's weather published. The step runs in its
own process, alternately without validation and estimation (this checkout's curation with
the estimator's statements skipped: gaps stay missing) and with them, `--runs` times each.
Prints seconds and peak memory of each run, the ratio of the medians, and what the
estimation did.

    .venv/bin/python bench/estimation.py [--meters 200000] [--runs 2] [--reuse]
"""

import datetime as dt
import json
import os
import statistics
import time

from fullscale import bench_parser, prepare_workdir, run_step, step_result, write_readings

from meter_assets.curated.estimation import days_read

HERE = os.path.dirname(os.path.abspath(__file__))
DAY = dt.date(2024, 5, 14)
# the days estimation reads (at the default settings: the last week and the same weekday 2 to
# 4 weeks before)
EARLIER_DAYS = days_read(DAY)
OFFLINE_SHARE = 0.02
OFFLINE_INTERVALS = (24, 192)  # 6 to 48 hours


def step(name: str, lake: str, meters: int) -> dict:
    import dagster as dg

    from meter_assets.definitions import assets, daily_assets
    from meter_assets.resources import resources

    began = time.perf_counter()
    if name == "history":
        rows = write_readings(lake, meters, EARLIER_DAYS)
        # the weather estimation weighs days by, as the forecast's asset publishes it
        dg.materialize(assets("temperature"), resources=resources(lake))
        return step_result(name, began, {"rows": rows})
    if name == "simulator":
        from meter_assets.simulator.cli import generate
        from meter_assets.simulator.headend import FaultRates
        from meter_assets.storage import Lake

        rates = FaultRates(offline=OFFLINE_SHARE, offline_intervals=OFFLINE_INTERVALS)
        summary = generate(Lake(lake), meters, DAY, 1, seed=7, rates=rates, log=lambda *_: None)
        return step_result(name, began, {"rows": summary["rows"]})
    if name == "without":
        # the same curation with the estimator's statements skipped: the day as deduplicated
        from meter_assets.curated import estimation

        estimation.Estimator.edit = lambda self, first, last, day_start: estimation.EDITED_SQL
    curated = ["reads_15min", "reads_15min_quarantine", "reads_15min_export"]
    selection = ["raw_meter_files"] if name == "raw_meter_files" else curated
    result = dg.materialize(
        daily_assets(), partition_key=DAY.isoformat(), resources=resources(lake), selection=selection
    )
    facts = {}
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey("reads_15min"):
            metadata = event.materialization.metadata
            facts = {k: metadata[k].value for k in ("rows", "actual", "estimated", "missing") if k in metadata}
            for k in ("estimated_by_method", "flagged_by_rule", "replaced_by_rule", "earlier_days_read"):
                if k in metadata:
                    facts[k] = metadata[k].value
    return step_result(name, began, facts)


def run(name: str, label: str, args, env: dict) -> dict:
    result = run_step(__file__, name, ["--meters", str(args.meters), "--workdir", args.workdir], env)
    print(f"{label:>27}: {result['seconds']:7.2f} s  peak {result['peak_memory_mb']:>6,} MB", flush=True)
    return result


def main():
    parser = bench_parser(__doc__, "bench-estimation")
    parser.add_argument("--runs", type=int, default=2, help="runs of each, alternately (0: only prepare the data)")
    args = parser.parse_args()
    lake = os.path.join(args.workdir, "lake")
    if args.step:
        os.environ["METER_LAKE"] = lake
        print(json.dumps(step(args.step, lake, args.meters), default=str))
        return

    env = prepare_workdir(args.workdir, args.reuse, EARLIER_DAYS[0])
    if not args.reuse:
        run("history", "history", args, env)
        run("simulator", "simulator", args, env)
        run("raw_meter_files", "raw_meter_files", args, env)

    if not args.runs:
        return
    runs = {"without": [], "with": []}
    for _ in range(args.runs):
        runs["without"].append(run("without", "reads_15min, no estimation", args, env))
        runs["with"].append(run("with", "reads_15min", args, env))
    median = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    ratio = median["with"] / median["without"]
    print(f"with validation and estimation: {ratio:.2f}x the day without them (target: within 1.3x)")
    after = runs["with"][-1]
    print(f"peak {max(r['peak_memory_mb'] for r in runs['with']):,} MB (target: under 4,096)")
    for key in ("estimated_by_method", "flagged_by_rule", "replaced_by_rule", "earlier_days_read", "missing"):
        print(f"  {key}: {after.get(key)}")
    with open(os.path.join(args.workdir, "estimation.json"), "w") as f:
        json.dump({**runs, "ratio": ratio}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
