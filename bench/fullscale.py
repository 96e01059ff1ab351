"""Full-scale simulated data for the benchmarks: curated readings straight from the load model.

The raw-file path to `reads_15min` is what bench/foundation.py measures; the billing and
serving benchmarks need many days of readings, so they write them directly: the
simulator's load for 200,000 meters, about 1 % of intervals estimated and 0.3 % missing,
with the simulator's reference data (its plans include the dynamic one), and a fifth of the
homes with solar panels: their import net of what they use of their own generation, and their
export register's readings (`reads_15min_export`, the same quality as the import's); then each
day's rollups through the real assets.
"""

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import time

SEED = 7


def month_days(month: str) -> list[dt.date]:
    from meter_assets.market_calendar import month_bounds

    start, end = month_bounds(month)
    return [start + dt.timedelta(days=d) for d in range((end - start).days)]


def curated_table(meters, kwh_of, flags, starts):
    """Curated readings of `meters` (numbers) from kWh per meter and quarter hour, with their
    quality (0 actual, 1 estimated, 2 missing: no kWh)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute  # noqa: F401

    from meter_assets.simulator.headend import kwh_decimal

    flags = flags.reshape(-1)
    kwh = kwh_decimal(np.rint(kwh_of * 1000).astype(np.int64).reshape(-1)).cast(pa.decimal128(12, 3))
    return pa.table(
        {
            "meter_id": pa.compute.cast(pa.array(np.repeat(meters, kwh_of.shape[1])), pa.string()),
            "read_at": pa.array(np.tile(starts, kwh_of.shape[0]).astype("datetime64[us]")),
            "kwh": pa.compute.if_else(pa.array(flags == 2), pa.scalar(None, pa.decimal128(12, 3)), kwh),
            "quality_flag": pa.array(np.array(["actual", "estimated", "missing"])[flags]),
            # every register here reads quarter hours (NEM12's half hours are bench/nem12.py's)
            "interval_minutes": pa.array(np.full(kwh_of.size, 15, dtype=np.int16)),
        }
    )


def write_readings(lake_root: str, meters: int, days: list[dt.date], solar_share: float = 0.2) -> int:
    """Reference exports and curated readings (export too, for `solar_share` of the homes) for
    every one of `days` (in order)."""
    import dagster as dg
    import numpy as np
    import pyarrow.compute  # noqa: F401

    from meter_assets.config import settings
    from meter_assets.reference.assets import reference_assets
    from meter_assets.resources import resources
    from meter_assets.simulator.reference import write_reference
    from meter_assets.simulator.retailer import hourly_temperature, interval_load_kwh, population
    from meter_assets.simulator.solar import SolarHomes
    from meter_assets.storage import Lake
    from meter_assets.tables import READS_15MIN, READS_15MIN_EXPORT

    lake = Lake(lake_root)
    pop = population(meters, SEED)
    solar = SolarHomes(pop, SEED, share=solar_share)
    temperature = hourly_temperature(days[0], (days[-1] - days[0]).days + 1, SEED)
    export_from = np.where(solar.position >= 0, days[0], None)
    write_reference(lake, pop, days[0], len(days), SEED, temperature, export_from=export_from)
    dg.materialize(reference_assets, resources=resources(lake_root))
    rows = 0
    for day in days:
        load, starts = interval_load_kwh(pop, day, settings().tz, temperature, SEED)
        load, export = solar.net(day, load, starts)
        rng = np.random.default_rng([SEED, 9, day.toordinal()])
        quality = rng.choice(np.array([0, 1, 2], dtype=np.int8), size=load.shape, p=[0.987, 0.010, 0.003])

        for table, kwh_of, meter_numbers, flags in (
            (READS_15MIN, load, pop.meter_id, quality),
            (READS_15MIN_EXPORT, export, pop.meter_id[solar.rows], quality[solar.rows]),
        ):
            written = curated_table(meter_numbers, kwh_of, flags, starts)
            build = lake.build(table, day.isoformat())
            build.write_parquet("part-0000.parquet", written)
            lake.publish(build)
            rows += written.num_rows
        print(f"{day}: {rows:,} readings so far, {len(solar):,} homes exporting", file=sys.stderr, flush=True)
    return rows


def write_rollups(lake_root: str, days: list[dt.date]) -> int:
    """Each day's hourly and daily rollups, through the real assets."""
    import dagster as dg

    from meter_assets.definitions import assets
    from meter_assets.resources import resources

    for day in days:
        dg.materialize(
            assets("reads_hourly", "reads_daily"), partition_key=day.isoformat(), resources=resources(lake_root)
        )
    return len(days)


def prepare_workdir(workdir: str, reuse: bool, first_day: dt.date) -> dict:
    """A fresh (or, with `reuse`, kept but with a fresh PostgreSQL) working folder; the steps' environment."""
    if reuse:
        shutil.rmtree(os.path.join(workdir, "postgres"), ignore_errors=True)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
    env = {
        **os.environ,
        "METER_DATA_DIR": workdir,
        "METER_LAKE": os.path.join(workdir, "lake"),
        "METER_START_DATE": first_day.isoformat(),
    }
    for role in ("OWNER", "PIPELINE", "API"):
        env.pop(f"METER_PG_{role}_DSN", None)
    return env


def run_step(script: str, name: str, arguments: list[str], env: dict) -> dict:
    """One step in its own process (so its peak memory is its own); its last line of output, as JSON."""
    out = subprocess.run([sys.executable, script, "--step", name, *arguments], env=env, capture_output=True, text=True)
    if out.returncode:
        sys.stderr.write(out.stderr[-5000:])
        raise SystemExit(f"step {name} failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def step_result(name: str, began: float, facts: dict) -> dict:
    """What a step prints: its name, seconds since `began`, this process's peak memory, its facts."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step": name, "seconds": round(time.perf_counter() - began, 2), "peak_memory_mb": round(peak), **facts}


def run_steps(script: str, names: list[str], arguments: list[str], env: dict) -> list[dict]:
    """Each step in its own process, one line printed per step as it ends."""
    results = []
    for name in names:
        results.append(r := run_step(script, name, arguments, env))
        print(
            f"{name:>12}: {r['seconds']:7.2f} s  peak {r['peak_memory_mb']:>6,} MB  "
            + ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("step", "seconds", "peak_memory_mb")),
            flush=True,
        )
    return results


def bench_parser(doc: str, workdir_name: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: --meters, --workdir, --reuse (and the internal --step)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=200_000)
    parser.add_argument(
        "--workdir",
        default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", workdir_name),
    )
    parser.add_argument("--reuse", action="store_true", help="keep the data of an earlier run")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    return parser
