"""Peak memory of a day's inventory and curation with hostile files among the real ones.

    python bench/hostile.py [--meters 2000] [--day 2024-05-10] [--workdir data/bench-hostile]

Simulates one day, then curates it three times, each time in a fresh process
(`raw_meter_files` and `reads_15min`): as delivered; with three hostile files added under the
same hour: a gzip bomb (1 MB that inflates to 1 GiB), a 1 GiB last line without a newline
(1 MB compressed), and a last line just under the decompressed-size limit (250 MiB); and,
instead of those, a second round: NEM12 files of 250 MiB of blank lines and of 250 MiB of
`300` records of empty fields (gzip), a zip that declares 200 bytes and inflates to
600 MiB, and a CSV file of 1,000 rows of 100,001 fields. Prints each run's seconds and peak
memory (max RSS) and the difference (target: under 1 GB above the clean day).
"""

import argparse
import datetime as dt
import io
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import time
import zipfile
import zlib

HEADER = b"meter_id,interval_start,kwh,quality,version,meter_clock,received_at\n"


def packed(first: bytes, filler: int | bytes, size: int, last: bytes = b"") -> bytes:
    """`first`, then `size` bytes of one repeated byte (or line), then `last`, gzip-compressed a
    MiB at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    unit = bytes([filler]) if isinstance(filler, int) else filler
    block = unit * ((1 << 20) // len(unit))
    parts = [packer.compress(first)] + [packer.compress(block) for _ in range(size >> 20)]
    return b"".join(parts + [packer.compress(last), packer.flush()])


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

    def run(label: str, **settings: str) -> dict:
        out = subprocess.run(
            [sys.executable, __file__, "--step", "curate", "--day", args.day, "--workdir", workdir],
            env={**env, **settings},
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

    # the second round: NEM12 files that inflate to the limit in lines that cost nothing to keep,
    # a zip that lies about its size, and CSV rows of a hundred thousand fields
    for number in files:
        os.remove(os.path.join(folder, name.format(number)))
    landed = (hour + dt.timedelta(hours=2)).timestamp()
    nem12 = os.path.join(env["METER_LAKE"], "raw", "nem12", "bench")
    os.makedirs(nem12, exist_ok=True)
    day = dt.date.fromisoformat(args.day)
    head = (
        f"100,NEM12,{day:%Y%m%d}0000,MDP1,RETAILER1\n200,QZ00000001,E1,1,E1,N1,S1,kWh,15,\n"
        + ",".join(["300", f"{day:%Y%m%d}", *["0.1"] * 96, "A", "", "", "", ""])
        + "\n"
    ).encode()
    second = {
        "blank-lines.csv.gz": packed(head, ord("\n"), 250 << 20, b"900\n"),
        "empty-fields.csv.gz": packed(head, b"300," + b"," * 290 + b"\n", 250 << 20, b"900\n"),
        "lying.zip": lying_zip(head, 600 << 20),
    }
    for key, data in second.items():
        path = os.path.join(nem12, key)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (landed, landed))
    wide = HEADER + (b"1000001,x" + b",x" * 100_000 + b"\n") * 1000
    with open(os.path.join(folder, name.format("903")), "wb") as f:
        f.write(zlib.compress(wide, 9, wbits=31))
    print("second round:", {k: f"{len(d):,} bytes" for k, d in second.items()}, "and 1,000 rows of 100,001 fields")
    second_round = run("with the second round")
    extra_second = second_round["peak_memory_mb"] - clean["peak_memory_mb"]
    print(f"peak memory above the clean day: {extra_second:,} MB (target: under 1,024 MB)")
    with open(os.path.join(workdir, "hostile.json"), "w") as f:
        json.dump(
            {
                "meters": args.meters,
                "clean": clean,
                "hostile": hostile,
                "extra_mb": extra,
                "second_round": second_round,
                "second_round_extra_mb": extra_second,
            },
            f,
            indent=1,
        )
    return 0


def lying_zip(head: bytes, size: int) -> bytes:
    """A zip of one file that inflates to `size` bytes of blank lines and declares 200."""
    packed = io.BytesIO()
    with (
        zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("NEM12.csv", "w", force_zip64=True) as member,
    ):
        member.write(head)
        block = b"\n" * (1 << 20)
        for _ in range(size >> 20):
            member.write(block)
    data = bytearray(packed.getvalue())
    central = data.find(b"PK\x01\x02")
    data[central + 24 : central + 28] = struct.pack("<I", 200)
    return bytes(data)


if __name__ == "__main__":
    sys.exit(main())
