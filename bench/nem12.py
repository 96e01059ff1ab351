"""`reads_15min` of a full-scale day where a quarter of the meters come as NEM12, against the same day without.

The day (Tuesday 14 May 2024, 200,000 meters by default) comes from the simulator with its
default faults, its like days and the day before from the load model (`fullscale.py`). A
copy of that lake then has a quarter of the meters (the collection groups 2, 6, 10, ...:
alpha's, 50,000 of 200,000) delivered as NEM12 instead: their hourly files removed, one
NEM12 file per group carrying the two AEST days the London day overlaps (14 and 15 May:
two 300 records a meter, 96 quarter hours each), with the simulator's true readings (a
reading the head-end never delivered is written as 0, quality A), and their meter ids
`<NMI>-E1` in the reference exports. `raw_meter_files` and `reads_15min` then run on both
lakes, each step in its own process; prints seconds and peak memory, and the ratio.

    .venv/bin/python bench/nem12.py [--meters 200000] [--reuse]
"""

import datetime as dt
import json
import os
import shutil
import time

from fullscale import bench_parser, prepare_workdir, run_step, step_result, write_readings

DAY = dt.date(2024, 5, 14)
EARLIER_DAYS = [DAY - dt.timedelta(weeks=w) for w in (4, 3, 2, 1)] + [DAY - dt.timedelta(days=1)]
NEM12_DATES = [DAY, DAY + dt.timedelta(days=1)]  # AEST: 13 May 14:00 UTC to 15 May 14:00 UTC


def nem12_groups(groups: int) -> list[int]:
    """A quarter of the collection groups, all of them the CSV vendor's."""
    return [g for g in range(groups) if g % 4 == 2]


def convert(source: str, target: str, meters: int) -> dict:
    """`target`: a copy of `source` with the NEM12 groups' meters delivered as NEM12."""
    import dagster as dg
    import duckdb
    import numpy as np

    from meter_assets.market_calendar import local_day_bounds
    from meter_assets.reference.assets import reference_assets
    from meter_assets.resources import resources
    from meter_assets.simulator.nem12 import meter_ids, nem12_bytes
    from meter_assets.simulator.retailer import population
    from meter_assets.storage import Lake

    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    lake = Lake(target)
    pop = population(meters, 7)
    groups = nem12_groups(pop.groups)
    removed = [o.key for o in lake.list("raw/") if any(f"-g{g:03d}-" in o.key for g in groups)]
    for key in removed:
        os.remove(lake.uri(key))

    day_start, _ = local_day_bounds(DAY)
    with duckdb.connect() as con:
        truth = con.execute(
            f"SELECT CAST(meter_id AS INTEGER) AS meter, read_at, coalesce(CAST(kwh * 1000 AS BIGINT), 0) AS wh "
            f"FROM read_parquet('{source}/simulator/truth/date={DAY}/reads.parquet') ORDER BY meter, read_at"
        ).fetchnumpy()
    first = int(pop.meter_id[0])
    by_meter = truth["wh"].reshape(meters, -1)  # every meter has the day's 96 quarter hours
    assert by_meter.shape[1] == 96 and truth["meter"][0] == first
    written = 0
    for g in groups:
        index = np.flatnonzero(pop.group == g)
        # the UTC quarter hour of each interval of each AEST day, as a slot of the London day; a
        # slot outside it takes the same time of the London day (the other day's partitions)
        slots = np.array(
            [
                [
                    int((dt.datetime.combine(d, dt.time()) - dt.timedelta(hours=10) - day_start).total_seconds()) // 900
                    + i
                    for i in range(96)
                ]
                for d in NEM12_DATES
            ]
        )
        wh = by_meter[index][:, slots % 96]
        data = nem12_bytes(pop.meter_id[index].astype(np.int64), NEM12_DATES, wh, created=dt.datetime(2024, 5, 15, 3))
        lake.write_bytes(
            f"raw/nem12/simmdp/NEM12#{g:05d}#SIMMDP#RETAILER.csv", data, landed_at=dt.datetime(2024, 5, 15, 4)
        )
        written += len(data)

    chosen = np.concatenate([pop.meter_id[pop.group == g] for g in groups]).astype(np.int64)
    renamed = dict(zip(map(str, chosen), meter_ids(chosen).to_pylist(), strict=True))
    with duckdb.connect() as con:
        con.execute("CREATE TABLE renamed (old VARCHAR, new VARCHAR)")
        con.executemany("INSERT INTO renamed VALUES (?, ?)", list(renamed.items()))
        for name in ("meters", "meter_assignments"):
            path = lake.uri(f"reference/{name}.csv")
            con.execute(
                f"COPY (SELECT t.* REPLACE (coalesce(renamed.new, t.meter_id) AS meter_id) "
                f"FROM read_csv('{path}', all_varchar = true) AS t LEFT JOIN renamed ON renamed.old = t.meter_id) "
                f"TO '{path}.new' (HEADER, DELIMITER ',')"
            )
            os.replace(f"{path}.new", path)
    dg.materialize(reference_assets, resources=resources(target))
    return {
        "removed_files": len(removed),
        "nem12_files": len(groups),
        "nem12_bytes": written,
        "nem12_meters": len(chosen),
    }


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

        summary = generate(Lake(lake), meters, DAY, 1, seed=7, rates=FaultRates(), truth=True, log=lambda *_: None)
        return step_result(name, began, {"rows": summary["rows"]})
    if name == "convert":
        return step_result(name, began, convert(lake, lake + "-nem12", meters))
    lake = lake + "-nem12" if name.endswith("(NEM12)") else lake
    asset = name.split()[0]
    selection = (
        ["raw_meter_files"]
        if asset == "raw_meter_files"
        else ["reads_15min", "reads_15min_quarantine", "reads_15min_export"]
    )
    result = dg.materialize(
        daily_assets(), partition_key=DAY.isoformat(), resources=resources(lake), selection=selection
    )
    facts = {}
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey("reads_15min"):
            metadata = event.materialization.metadata
            facts = {k: metadata[k].value for k in ("rows", "actual", "estimated", "missing", "rows_read")}
        if event.asset_key == dg.AssetKey("raw_meter_files"):
            facts = {"by_contract": event.materialization.metadata["by_contract"].value}
    return step_result(name, began, facts)


def run(name: str, args, env: dict) -> dict:
    result = run_step(__file__, name, ["--meters", str(args.meters), "--workdir", args.workdir], env)
    facts = {k: v for k, v in result.items() if k not in ("step", "seconds", "peak_memory_mb")}
    print(f"{name:>26}: {result['seconds']:7.2f} s  peak {result['peak_memory_mb']:>6,} MB  {facts}", flush=True)
    return result


def main():
    parser = bench_parser(__doc__, "bench-nem12")
    args = parser.parse_args()
    lake = os.path.join(args.workdir, "lake")
    if args.step:
        os.environ["METER_LAKE"] = lake + "-nem12" if args.step.endswith("(NEM12)") else lake
        print(json.dumps(step(args.step, lake, args.meters), default=str))
        return

    env = prepare_workdir(args.workdir, args.reuse, EARLIER_DAYS[0])
    if not args.reuse:
        for name in ("history", "simulator", "convert"):
            run(name, args, env)
    results = {}
    for name in ("raw_meter_files", "raw_meter_files (NEM12)", "reads_15min", "reads_15min (NEM12)"):
        results[name] = run(name, args, env)
    ratio = results["reads_15min (NEM12)"]["seconds"] / results["reads_15min"]["seconds"]
    print(
        f"a quarter of the meters as NEM12: reads_15min {ratio:.2f}x the day without (target: within 1.5x); "
        f"peak {results['reads_15min (NEM12)']['peak_memory_mb']:,} MB (target: under 4,096)"
    )
    with open(os.path.join(args.workdir, "nem12.json"), "w") as f:
        json.dump({**results, "ratio": ratio}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
