"""Full-scale benchmark of billing: a 30-day month of 200,000 customers' readings.

    python bench/billing.py --meters 200000 [--month 2024-06] [--workdir data/bench-billing] [--reuse]

The month's curated readings are written straight from the simulator's load model
(bench/fullscale.py), with the simulator's reference data (two tariff plans, a price
change mid-month, move-ins and move-outs). Then, each in its
own process so that its peak memory (max RSS) is its own, through Dagster's executor:

- `bills`: the month's bills computed and written to the ledger as drafts;
- `bills_again`: the same month on the same data, which must write nothing;
- `issue`: the month issued (sealed) and exported to the lake;
- `adjust`: one day's readings corrected, then `bills` again: adjustments, nothing else.

Results are also written to `<workdir>/billing.json`.
"""

import argparse
import json
import os
import sys
import time

from fullscale import month_days, prepare_workdir, run_step, step_result, write_readings, write_rollups

HERE = os.path.dirname(os.path.abspath(__file__))


def correct_one_day(lake_root: str, month: str) -> int:
    """A corrected file for one day: 2,000 meters' readings of the 10th rise by 10 %, rolled up again."""
    import dagster as dg
    import duckdb

    from meter_assets.definitions import assets
    from meter_assets.resources import resources
    from meter_assets.sql import parquet
    from meter_assets.storage import Lake
    from meter_assets.tables import READS_15MIN

    lake = Lake(lake_root)
    day = month_days(month)[9].isoformat()
    build = lake.build(READS_15MIN, day)
    with duckdb.connect() as con:
        con.execute(f"""
            COPY (
                SELECT * REPLACE (
                    CASE WHEN hash(meter_id) % 100 = 0 THEN CAST(kwh * 1.1 AS DECIMAL(12, 3)) ELSE kwh END AS kwh
                )
                FROM {parquet(lake.required_files(READS_15MIN, day))}
            ) TO '{build.uri("part-0000.parquet")}' (FORMAT parquet)
        """)
    lake.publish(build)
    dg.materialize(assets("reads_hourly", "reads_daily"), partition_key=day, resources=resources(lake_root))
    return 1


def step(name: str, lake: str, meters: int, month: str) -> dict:
    began = time.perf_counter()
    metadata = {}
    if name == "readings":
        rows = write_readings(lake, meters, month_days(month))
    elif name == "rollups":
        rows = write_rollups(lake, month_days(month))
    else:
        import dagster as dg

        from meter_assets.definitions import assets
        from meter_assets.resources import resources

        if name == "adjust":
            correct_one_day(lake, month)
        result = dg.materialize(
            assets("bills", "issued_bills"),
            partition_key=month,
            resources=resources(lake),
            selection=["issued_bills", "bill_lines", "bill_adjustments"] if name == "issue" else ["bills"],
        )
        event = result.asset_materializations_for_node("issued_bills" if name == "issue" else "bills")[0]
        metadata = {k: v.value for k, v in event.metadata.items() if isinstance(v.value, (int, float, str))}
        rows = int(metadata.get("customers", metadata.get("bills", 0)))
    return step_result(name, began, {"rows": rows, "metadata": metadata})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=200_000)
    parser.add_argument("--month", default="2024-06")
    parser.add_argument("--workdir", default=os.path.join(os.path.dirname(HERE), "data", "bench-billing"))
    parser.add_argument("--reuse", action="store_true", help="keep the month's readings from an earlier run")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = os.path.abspath(args.workdir)
    lake = os.path.join(workdir, "lake")

    if args.step:
        print(json.dumps(step(args.step, lake, args.meters, args.month)))
        return 0

    steps = ["bills", "bills_again", "issue", "adjust"]
    if not args.reuse:
        steps[:0] = ["readings", "rollups"]
    # the start date must cover the month for its partition to exist
    env = prepare_workdir(workdir, args.reuse, month_days(args.month)[0])
    results = []
    for name in steps:
        results.append(
            run_step(__file__, name, ["--meters", str(args.meters), "--month", args.month, "--workdir", workdir], env)
        )
        r = results[-1]
        facts = ", ".join(f"{k} {v}" for k, v in r["metadata"].items() if k in SHOWN)
        print(f"{r['step']:>12}: {r['seconds']:7.2f} s  peak {r['peak_memory_mb']:>6,} MB  {facts}", flush=True)
    by = {r["step"]: r for r in results}
    print(
        f"month's bills for {args.meters:,} customers: {by['bills']['seconds']:.1f} s, peak "
        f"{by['bills']['peak_memory_mb']:,} MB (target: under 120 s and 6,144 MB)"
    )
    with open(os.path.join(workdir, "billing.json"), "w") as f:
        json.dump({"meters": args.meters, "month": args.month, "steps": results}, f, indent=1)
    return 0


SHOWN = (
    "customers",
    "compute_seconds",
    "stage_seconds",
    "ledger_seconds",
    "drafts_new",
    "drafts_unchanged",
    "adjustments_written",
    "bills_issued",
    "issue_seconds",
    "export_seconds",
    "exported_bills",
    "exported_bill_lines",
)

if __name__ == "__main__":
    sys.exit(main())
