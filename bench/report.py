"""Full-scale benchmark of the daily operations report.

    python bench/report.py --meters 200000 [--day 2024-05-10] [--workdir data/bench-report] [--reuse]

Simulates the day and the day before through the raw-file path (head-end files with the
simulator's faults, late files released so they land late), curates and rolls both up
with the real assets, then times `ops_daily_report` for the day in its own process, twice
(the second run is what a rebuild after a late file costs). The day before gives the
report its silent-meter comparison and a history to look up when each silent meter last
spoke. Results are also written to `<workdir>/report.json`.
"""

import datetime as dt
import json
import os
import sys
import time

from fullscale import bench_parser, prepare_workdir, run_steps, step_result


def step(name: str, lake: str, meters: int, day: dt.date) -> dict:
    import dagster as dg

    from meter_assets.definitions import daily_assets
    from meter_assets.jobs import DAILY_CHAIN
    from meter_assets.reference.assets import reference_assets
    from meter_assets.resources import resources
    from meter_assets.simulator.cli import generate, release_late
    from meter_assets.simulator.headend import FaultRates
    from meter_assets.storage import Lake

    began = time.perf_counter()
    facts: dict = {}
    days = [day - dt.timedelta(days=1), day]
    if name == "readings":
        summary = generate(Lake(lake), meters, days[0], len(days), seed=7, rates=FaultRates(), log=lambda *_: None)
        facts["released_late_files"] = len(release_late(Lake(lake), dt.date(2099, 1, 1)))
        dg.materialize(reference_assets, resources=resources(lake))
        for d in days:
            dg.materialize(
                daily_assets(),
                partition_key=d.isoformat(),
                resources=resources(lake),
                # the chain up to the daily rollup: what the report reads
                selection=list(DAILY_CHAIN[: DAILY_CHAIN.index("reads_daily") + 1]),
            )
        facts["rows"] = summary["rows"]
    elif name == "report":
        result = dg.materialize(
            daily_assets(), partition_key=day.isoformat(), resources=resources(lake), selection=["ops_daily_report"]
        )
        metadata = result.asset_materializations_for_node("ops_daily_report")[0].metadata
        facts = {
            key: metadata[key].value
            for key in ("silent_meters", "late_files", "quarantined_rows", "delay_p50_minutes", "delay_p95_minutes")
        }
        facts["asset_seconds"] = metadata["seconds"].value
    else:
        raise ValueError(name)
    return step_result(name, began, facts)


def main() -> int:
    parser = bench_parser(__doc__, "bench-report")
    parser.add_argument("--day", type=dt.date.fromisoformat, default=dt.date(2024, 5, 10))
    args = parser.parse_args()
    workdir = os.path.abspath(args.workdir)
    lake = os.path.join(workdir, "lake")
    if args.step:
        print(json.dumps(step(args.step, lake, args.meters, args.day)))
        return 0

    env = prepare_workdir(workdir, args.reuse, args.day - dt.timedelta(days=1))
    steps = ["report", "report"] if args.reuse else ["readings", "report", "report"]
    results = run_steps(
        __file__, steps, ["--meters", str(args.meters), "--day", args.day.isoformat(), "--workdir", workdir], env
    )
    reports = [r for r in results if r["step"] == "report"]
    print(
        f"ops_daily_report for one day at {args.meters:,} meters: {max(r['seconds'] for r in reports):.1f} s "
        f"through Dagster, {max(r['asset_seconds'] for r in reports)} s in the asset (target: under 10 s)"
    )
    with open(os.path.join(workdir, "report.json"), "w") as f:
        json.dump({"meters": args.meters, "day": args.day.isoformat(), "steps": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
