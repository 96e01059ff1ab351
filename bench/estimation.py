"""`reads_15min` of a full-scale day with validation and estimation, against the same day without them.

The day (Tuesday 14 May 2024, 200,000 meters by default) comes from the simulator with its
default faults plus 2 % of meters offline for 6 to 48 hours (cut at the day's end: a
48-hour outage is the whole day); its four like days (the Tuesdays 1 to 4 weeks before) are
curated readings written straight from the simulator's load model (`fullscale.py`), as is
the day before. The
step runs twice, each in its own process: with the code before validation and estimation
existed (a `git worktree` of `--baseline`, imported ahead of this checkout), then with this
checkout. Prints seconds and peak memory of each, the ratio, and what the estimation did.

The baseline reads integer meter ids; since ids are text (commit 6649e4d) it cannot read
the lake this checkout's simulator writes, so it runs only when named (`--baseline`, from a
checkout before that commit); without it the benchmark times this checkout's step alone.

    .venv/bin/python bench/estimation.py [--meters 200000] [--reuse] [--baseline 355c430]
"""

import datetime as dt
import json
import os
import subprocess
import time

from fullscale import bench_parser, prepare_workdir, run_step, step_result, write_readings

HERE = os.path.dirname(os.path.abspath(__file__))
DAY = dt.date(2024, 5, 14)
# the like days, and the day before (whose evening gives a gap from midnight its level)
EARLIER_DAYS = [DAY - dt.timedelta(weeks=w) for w in (4, 3, 2, 1)] + [DAY - dt.timedelta(days=1)]
OFFLINE_SHARE = 0.02
OFFLINE_INTERVALS = (24, 192)  # 6 to 48 hours


def step(name: str, lake: str, meters: int) -> dict:
    import dagster as dg

    from meter_assets.definitions import daily_assets
    from meter_assets.resources import resources

    began = time.perf_counter()
    if name == "history":
        return step_result(name, began, {"rows": write_readings(lake, meters, EARLIER_DAYS)})
    if name == "simulator":
        from meter_assets.simulator.cli import generate
        from meter_assets.simulator.headend import FaultRates
        from meter_assets.storage import Lake

        rates = FaultRates(offline=OFFLINE_SHARE, offline_intervals=OFFLINE_INTERVALS)
        summary = generate(Lake(lake), meters, DAY, 1, seed=7, rates=rates, log=lambda *_: None)
        return step_result(name, began, {"rows": summary["rows"]})
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


def run(name: str, args, env: dict) -> dict:
    result = run_step(__file__, name, ["--meters", str(args.meters), "--workdir", args.workdir], env)
    print(f"{name:>22}: {result['seconds']:7.2f} s  peak {result['peak_memory_mb']:>6,} MB", flush=True)
    return result


def main():
    parser = bench_parser(__doc__, "bench-estimation")
    parser.add_argument("--baseline", help="the commit before validation and estimation (355c430)")
    args = parser.parse_args()
    lake = os.path.join(args.workdir, "lake")
    if args.step:
        os.environ["METER_LAKE"] = lake
        print(json.dumps(step(args.step, lake, args.meters), default=str))
        return

    env = prepare_workdir(args.workdir, args.reuse, EARLIER_DAYS[0])
    if not args.reuse:
        run("history", args, env)
        run("simulator", args, env)
        run("raw_meter_files", args, env)

    repo = os.path.dirname(HERE)
    baseline = os.path.join(args.workdir, "baseline")
    before = None
    if args.baseline:
        if not os.path.exists(baseline):
            subprocess.run(["git", "-C", repo, "worktree", "add", "--detach", baseline, args.baseline], check=True)
        before = run("reads_15min (before)", args, {**env, "PYTHONPATH": baseline})
    after = run("reads_15min", args, env)
    ratio = after["seconds"] / before["seconds"] if before else None
    if ratio:
        print(f"with validation and estimation: {ratio:.2f}x the day without them (target: within 1.3x)")
    print(f"peak {after['peak_memory_mb']:,} MB (target: under 4,096)")
    for key in ("estimated_by_method", "flagged_by_rule", "replaced_by_rule", "earlier_days_read", "missing"):
        print(f"  {key}: {after.get(key)}")
    with open(os.path.join(args.workdir, "estimation.json"), "w") as f:
        json.dump({"before": before, "after": after, "ratio": ratio}, f, indent=1, default=str)
    if args.baseline:
        subprocess.run(["git", "-C", repo, "worktree", "remove", "--force", baseline], check=True)


if __name__ == "__main__":
    main()
