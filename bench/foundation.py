"""Full-scale benchmark of the foundation: simulator, curation and rollups for one day.

    python bench/foundation.py --meters 200000 [--day 2024-05-10] [--workdir data/bench] [--no-export]

The simulated day has the simulator's homes with solar panels (a fifth) sending their export
registers' readings in the vendors' files, curated into `reads_15min_export` by the same step;
`--no-export` makes the day one before the vendors send export (the homes' import the same).

Each step runs in its own process so its peak memory (max RSS) is its own. Prints seconds,
rows per second and peak memory per step (the curated day read back too: through the
published files, and through DuckDB's `delta_scan`, whose extension's one-time load is
printed apart), and the ratio of `reads_15min` to a
bare DuckDB floor (`read_csv`/`read_json` straight to Parquet, no validation) over the same raw files.
Results are also written to `<workdir>/foundation.json`.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def step(name: str, lake: str, meters: int, day: str, export: bool = True) -> dict:
    """Run one step in this process; returns seconds, rows and peak RSS."""
    import datetime as dt

    import dagster as dg

    from meter_assets.definitions import daily_assets
    from meter_assets.reference.assets import reference_assets
    from meter_assets.resources import resources as all_resources
    from meter_assets.simulator.cli import generate
    from meter_assets.simulator.headend import FaultRates
    from meter_assets.storage import Lake

    resources = all_resources(lake)
    con, setup = None, 0.0
    if name in ("read_back", "read_back_delta_scan"):
        # a reader's one-time cost per process (loading DuckDB's Delta extension) is apart
        con, setup = reader(name.endswith("delta_scan"))
    began = time.perf_counter()
    if name == "simulator":
        first = dt.date.fromisoformat(day)
        # the vendors send export from the register change: this day, or (without) the next
        rates = FaultRates(register_change=first if export else first + dt.timedelta(days=1))
        summary = generate(Lake(lake), meters, first, 1, seed=7, rates=rates, log=lambda *_: None)
        rows = summary["rows"]
    elif name == "reference":
        dg.materialize(reference_assets, resources=resources)
        rows = meters
    elif name in ("raw_meter_files", "reads_15min"):
        # the quarantine is an asset of the same step (in the code before Delta, part of reads_15min)
        curated = [name, "reads_15min_quarantine", "reads_15min_export"]
        selection = curated if name == "reads_15min" and delta_lake() else [name]
        result = dg.materialize(daily_assets(), partition_key=day, resources=resources, selection=selection)
        (event,) = [
            e.materialization for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(name)
        ]
        rows = event.metadata["rows"].value
    elif name == "rollups":
        dg.materialize(
            daily_assets(), partition_key=day, resources=resources, selection=["reads_hourly", "reads_daily"]
        )
        rows = meters * 96
    elif name == "duckdb_floor":
        rows = floor(lake, day)
    elif name in ("read_back", "read_back_delta_scan"):
        rows = read_back(con, lake, day, delta_scan=name.endswith("delta_scan"))
    else:
        raise ValueError(name)
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "step": name,
        "seconds": round(seconds, 2),
        "rows": rows,
        "rows_per_second": round(rows / seconds),
        "peak_memory_mb": round(peak),
        "setup_seconds": round(setup, 2),
    }


def reader(delta_scan: bool):
    """A DuckDB connection ready to read the lake, and the seconds that took."""
    import duckdb

    began = time.perf_counter()
    con = duckdb.connect()
    if delta_scan:
        import duckdb_extension_delta

        from meter_assets.storage import load_extension

        load_extension(con, duckdb_extension_delta, "delta")
    return con, time.perf_counter() - began


def read_back(con, lake: str, day: str, delta_scan: bool) -> int:
    """The curated day read back whole (every column, aggregated): through the lake's list of
    published files, or through DuckDB's own Delta reader."""
    from meter_assets.sql import parquet
    from meter_assets.storage import Lake

    if delta_lake():
        from meter_assets.tables import READS_15MIN
    else:  # the code before Delta: the table was a path
        from meter_assets.curated.readings import READS_15MIN
    store = Lake(lake)
    if delta_scan:
        source = f"(SELECT * FROM delta_scan('{store.table_uri(READS_15MIN)}') WHERE date = DATE '{day}')"
    else:
        source = parquet(store.files(READS_15MIN, day))
    rows, _, _, _ = con.execute(
        f"SELECT count(*), sum(kwh), count(DISTINCT meter_id), max(ingested_at) FROM {source}"
    ).fetchone()
    return rows


def floor(lake: str, day: str) -> int:
    """The same raw files through bare DuckDB: read with auto-detection, write Parquet."""
    import datetime as dt

    import duckdb

    from meter_assets.config import settings
    from meter_assets.ingest.inventory import raw_objects
    from meter_assets.sql import sql_list
    from meter_assets.storage import Lake

    store = Lake(lake)
    keys = [o.key for _, o in raw_objects(store, dt.date.fromisoformat(day))[0]]
    csv = [store.uri(k) for k in keys if k.endswith(".csv.gz")]
    jsonl = [store.uri(k) for k in keys if k.endswith(".jsonl.gz")]
    out = os.path.join(os.path.dirname(lake), "floor")
    os.makedirs(out, exist_ok=True)
    s = settings()
    con = duckdb.connect(config={"threads": s.duckdb_threads, "memory_limit": s.duckdb_memory_limit})
    # ignore_errors: the bare reader stops at the first damaged row the simulator injected
    con.execute(
        f"COPY (SELECT * FROM read_csv({sql_list(csv)}, ignore_errors = true)) TO '{out}/csv.parquet' (FORMAT parquet)"
    )
    con.execute(
        f"COPY (SELECT * FROM read_json({sql_list(jsonl)}, format = 'newline_delimited', union_by_name = true, "
        f"ignore_errors = true)) TO '{out}/jsonl.parquet' (FORMAT parquet)"
    )
    return con.execute(
        f"SELECT (SELECT count(*) FROM '{out}/csv.parquet') + (SELECT count(*) FROM '{out}/jsonl.parquet')"
    ).fetchone()[0]


def delta_lake() -> bool:
    """Whether this code writes Delta tables (so DuckDB's Delta reader can be timed too)."""
    import meter_assets

    return os.path.exists(os.path.join(os.path.dirname(meter_assets.__file__), "tables.py"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=200_000)
    parser.add_argument("--day", default="2024-05-10")
    parser.add_argument("--workdir", default=os.path.join(os.path.dirname(HERE), "data", "bench"))
    parser.add_argument("--no-export", action="store_true", help="a day before the vendors send export readings")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    args = parser.parse_args()
    lake = os.path.join(os.path.abspath(args.workdir), "lake")

    if args.step:
        print(json.dumps(step(args.step, lake, args.meters, args.day, export=not args.no_export)))
        return 0

    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    env = {**os.environ, "METER_DATA_DIR": os.path.abspath(args.workdir), "METER_LAKE": lake}
    results = []
    steps = ["simulator", "reference", "raw_meter_files", "reads_15min", "rollups", "read_back", "duckdb_floor"]
    for name in steps + (["read_back_delta_scan"] if delta_lake() else []):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--step",
                name,
                "--meters",
                str(args.meters),
                "--day",
                args.day,
                "--workdir",
                args.workdir,
                *(["--no-export"] if args.no_export else []),
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"{r['step']:>16}: {r['seconds']:7.2f} s  {r['rows']:>12,} rows  {r['rows_per_second']:>12,} rows/s"
            f"  peak {r['peak_memory_mb']:>6,} MB"
            + (
                f"  (+{r['setup_seconds']:.2f} s once per process to load the reader)" if r.get("setup_seconds") else ""
            ),
            flush=True,
        )
    by = {r["step"]: r for r in results}
    ratio = by["reads_15min"]["seconds"] / by["duckdb_floor"]["seconds"]
    print(f"reads_15min / bare DuckDB floor: {ratio:.2f}x (target: within 3x)")
    print(f"rollups (hourly + daily): {by['rollups']['seconds']:.2f} s (target: under 5 s)")
    print(f"largest peak memory: {max(r['peak_memory_mb'] for r in results):,} MB (target: under 4,096 MB)")
    with open(os.path.join(args.workdir, "foundation.json"), "w") as f:
        json.dump(
            {
                "meters": args.meters,
                "day": args.day,
                "export": not args.no_export,
                "steps": results,
                "floor_ratio": round(ratio, 2),
            },
            f,
            indent=1,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
