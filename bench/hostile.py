"""Peak memory of a day's inventory and curation with hostile files among the real ones.

    python bench/hostile.py [--meters 2000] [--day 2024-05-10] [--workdir data/bench-hostile]

Simulates one day, then curates it twice, each time in a fresh process (`raw_meter_files`
and `reads_15min`): as delivered, and with three hostile files added under the same hour: a
gzip bomb (1 MB that inflates to 1 GiB), a 1 GiB last line without a newline (1 MB
compressed), and a last line just under the decompressed-size limit (250 MiB). Prints each
run's seconds and peak memory (max RSS) and the difference (target: under 1 GB above the
clean day).
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
import zlib

HEADER = b"meter_id,interval_start,kwh,quality,version,meter_clock,received_at\n"


def packed(first: bytes, filler: int, size: int) -> bytes:
    """`first`, then `size` bytes of one repeated byte, gzip-compressed a MiB at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes([filler]) * (1 << 20)
    parts = [packer.compress(first)] + [packer.compress(block) for _ in range(size >> 20)]
    return b"".join(parts + [packer.flush()])


def curate(workdir: str, day: str) -> dict:
    import dagster as dg

    from meter_assets.definitions import assets
    from meter_assets.reference.assets import reference_assets
    from meter_assets.resources import resources

    dg.materialize(reference_assets, resources=resources(os.path.join(workdir, "lake")))
    began = time.perf_counter()
    result = dg.materialize(
        assets("raw_meter_files", "reads_15min"), partition_key=day, resources=resources(os.path.join(workdir, "lake"))
    )
    (quarantined,) = [
        e.materialization.metadata
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("reads_15min_quarantine")
    ]
    return {
        "seconds": round(time.perf_counter() - began, 2),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "quarantined_files": quarantined["quarantined_files"].value,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--day", default="2024-05-10")
    parser.add_argument("--workdir", default="data/bench-hostile")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = os.path.abspath(args.workdir)
    if args.step:
        print(json.dumps(curate(workdir, args.day)))
        return 0

    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    env = {
        **os.environ,
        "METER_DATA_DIR": workdir,
        "METER_LAKE": os.path.join(workdir, "lake"),
        "METER_START_DATE": args.day,
    }
    bin_dir = os.path.dirname(sys.executable)
    subprocess.run(
        [
            os.path.join(bin_dir, "meter-sim"),
            "generate",
            "--meters",
            str(args.meters),
            "--start",
            args.day,
            "--days",
            "1",
            "--lake",
            env["METER_LAKE"],
        ],
        env=env,
        check=True,
        capture_output=True,
    )

    def run(label: str) -> dict:
        out = subprocess.run(
            [sys.executable, __file__, "--step", "curate", "--day", args.day, "--workdir", workdir],
            env=env,
            capture_output=True,
            text=True,
        )
        if out.returncode:
            sys.stderr.write(out.stderr[-5000:])
            raise SystemExit(f"{label} failed")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{label}: {result['seconds']} s, peak {result['peak_memory_mb']:,} MB, "
            f"{result['quarantined_files']} file(s) quarantined"
        )
        return result

    clean = run("as delivered")
    hour = dt.datetime.fromisoformat(args.day) + dt.timedelta(hours=10)
    folder = os.path.join(env["METER_LAKE"], hour.strftime("raw/%Y/%m/%d/%H"))
    name = f"alpha-h{{}}-{hour:%Y%m%d%H}-b1.csv.gz"
    files = {
        "900": packed(HEADER, 0, 1 << 30),
        "901": packed(HEADER, ord("9"), 1 << 30),
        "902": packed(HEADER, ord("9"), 250 << 20),
    }
    for number, data in files.items():
        with open(os.path.join(folder, name.format(number)), "wb") as f:
            f.write(data)
    print("hostile files:", {name.format(n): f"{len(d):,} bytes" for n, d in files.items()})
    hostile = run("with hostile files")
    extra = hostile["peak_memory_mb"] - clean["peak_memory_mb"]
    print(f"peak memory above the clean day: {extra:,} MB (target: under 1,024 MB)")
    with open(os.path.join(workdir, "hostile.json"), "w") as f:
        json.dump({"meters": args.meters, "clean": clean, "hostile": hostile, "extra_mb": extra}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
