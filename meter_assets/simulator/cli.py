"""`meter-sim`: generate a simulated retailer into the lake, and release its late files.

meter-sim generate --meters 1000 --start 2024-05-01 --days 7 [--seed 7] [--nem12] [--lake URI]
meter-sim release-late --until 2024-05-09 [--dates 2024-05-03,2024-05-05] [--lake URI]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time

import numpy as np

from meter_assets.config import settings
from meter_assets.market_calendar import local_day_bounds, local_day_of
from meter_assets.simulator.headend import FaultRates, HeadEnd, held_key, run_parameters
from meter_assets.simulator.nem12 import KEY_PREFIX, MeterDataAgent, date_of_key
from meter_assets.simulator.prices import (
    CORRECTIONS_KEY,
    PRICES_KEY,
    DynamicHomes,
    corrected_versions,
    day_ahead_prices,
    price_corrections,
)
from meter_assets.simulator.reference import csv_bytes, tenancies, write_reference
from meter_assets.simulator.retailer import hourly_temperature, population
from meter_assets.simulator.solar import SolarHomes
from meter_assets.storage import Lake


def generate(
    lake: Lake,
    meters: int,
    start: dt.date,
    days: int,
    seed: int,
    rates: FaultRates,
    truth: bool = False,
    nem12: bool = False,
    log=print,
) -> dict:
    """Write reference data, every day's head-end files and the fault manifest. With `nem12`, a
    meter data agent reads one collection group in four and sends NEM12 files instead."""
    began = time.perf_counter()
    if rates.format_change is None:
        rates = dataclasses.replace(rates, format_change=start + dt.timedelta(days=days // 2))
    if rates.register_change is None:
        rates = dataclasses.replace(rates, register_change=rates.format_change + dt.timedelta(days=1))
    pop = population(meters, seed, nem12=nem12)
    solar = SolarHomes(pop, seed)
    temperature = hourly_temperature(start, days, seed)
    # the market publishes every day: prices for the whole months the range touches, so that a
    # month's bills can price every day of it
    first, end = months_around(start, days)
    prices = day_ahead_prices(first, (end - first).days, temperature, seed)
    # the head-ends read the export registers of the homes with panels from the register change
    # (the meter data agent's meters send none)
    export_from = np.where(solar.position >= 0, rates.register_change, None)
    export_from[pop.nem12] = None
    reference = write_reference(lake, pop, start, days, seed, temperature, prices, export_from)
    # corrected price exports wait with the late files; what each corrected goes in the manifest
    corrections = price_corrections(prices, rates.price_correction, seed)
    for arrival, version in corrected_versions(prices, corrections):
        lake.write_bytes(held_key(arrival, PRICES_KEY), csv_bytes(version))
    lake.write_parquet(CORRECTIONS_KEY, corrections)

    # communications that fail for good, somewhere in the simulated range
    rng = np.random.default_rng([seed, 6])
    first = int(dt.datetime.combine(start, dt.time()).replace(tzinfo=dt.UTC).timestamp())
    dead_at = np.full(pop.size, np.iinfo(np.int64).max, dtype=np.int64)
    dying = np.flatnonzero(rng.random(pop.size) < rates.dead)
    dead_at[dying] = first + rng.integers(0, days * 96, dying.size) * 900

    agent = MeterDataAgent(lake, pop, settings().nem12_tz, seed, rates)
    dynamic = DynamicHomes(pop.meter_id, tenancies(pop, start, days, seed), "DYNAMIC", prices)
    head_end = HeadEnd(lake, pop, settings().tz, seed, rates, temperature, dead_at, truth, agent, dynamic, solar)
    summary = {"meters": meters, "days": days, "files": 0, "rows": 0, "bytes": 0, "faults": {}}
    for d in range(days):
        day = start + dt.timedelta(days=d)
        result = head_end.day(day, last=d == days - 1)
        summary["files"] += result.files
        summary["rows"] += result.rows
        summary["bytes"] += result.bytes
        for kind, count in result.faults.items():
            summary["faults"][kind] = summary["faults"].get(kind, 0) + count
        log(f"{day}: {result.files} files, {result.rows:,} readings, {result.bytes / 1e6:.1f} MB")
    summary["reference"] = reference
    # the run record is part of the deterministic output; the timing is reported, not stored
    lake.write_bytes(
        "simulator/run.json",
        run_parameters(
            meters=meters, start=start, days=days, seed=seed, rates=rates, nem12=nem12, summary=summary
        ).encode(),
    )
    return {**summary, "seconds": round(time.perf_counter() - began, 2)}


def months_around(start: dt.date, days: int) -> tuple[dt.date, dt.date]:
    """The first day of the month of `start`, and the first day after the month of the range's last day."""
    last = start + dt.timedelta(days=days - 1)
    return start.replace(day=1), (last.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def days_carried(key: str) -> set[dt.date]:
    """The local days whose readings a simulated raw file carries, from its key (none for a reference export)."""
    if key.startswith("reference/"):
        return set()
    if key.startswith(KEY_PREFIX):
        start, end = local_day_bounds(date_of_key(key), settings().nem12_tz)
        return {local_day_of(start), local_day_of(end - dt.timedelta(minutes=1))}
    return {local_day_of(dt.datetime.strptime(key[len("raw/") : len("raw/YYYY/MM/DD/HH")], "%Y/%m/%d/%H"))}


def release_late(lake: Lake, until: dt.date, dates: set[dt.date] | None = None) -> list[str]:
    """Move every held file due on or before `until` into raw, as a late delivery would land.

    With `dates`, only files carrying readings of those local days are released (and every
    reference export that is due: it carries no readings).
    """
    released = []
    for obj in lake.list("simulator/held/"):
        arrival = dt.date.fromisoformat(obj.key.split("/")[2])
        key = obj.key.split("/", 3)[3]
        readings = not key.startswith("reference/")
        if arrival > until or (dates is not None and readings and not days_carried(key) & dates):
            continue
        # a correction's readings reached the head-end at 06:00 on its arrival day: it cannot
        # land before then (on S3 it lands when written, so release only days that have come)
        landed = max(dt.datetime.now(dt.UTC).replace(tzinfo=None), dt.datetime.combine(arrival, dt.time(6, 1)))
        lake.write_bytes(key, lake.read_bytes(obj.key), landed_at=landed)
        lake.delete(obj.key)
        released.append(key)
    return released


def _rates_from(args: argparse.Namespace) -> FaultRates:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(FaultRates)}
    return FaultRates(**values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="meter-sim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="write a simulated retailer into the lake")
    gen.add_argument("--meters", type=int, required=True)
    gen.add_argument("--start", type=dt.date.fromisoformat, required=True, help="first local day, YYYY-MM-DD")
    gen.add_argument("--days", type=int, required=True)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--lake", default=None, help="lake root (default: $METER_LAKE)")
    gen.add_argument("--truth", action="store_true", help="also write the expected curated readings")
    gen.add_argument(
        "--nem12", action="store_true", help="a meter data agent reads one group in four and sends NEM12 files"
    )
    defaults = FaultRates()
    for f in dataclasses.fields(FaultRates):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "format_change":
            gen.add_argument(
                flag,
                type=dt.date.fromisoformat,
                default=None,
                help="day the second vendor switches to v2 (default: middle of the range)",
            )
        elif f.name == "register_change":
            gen.add_argument(
                flag,
                type=dt.date.fromisoformat,
                default=None,
                help="day both vendors send the formats with a register, and export readings (default: "
                "the day after the format change)",
            )
        else:
            gen.add_argument(flag, type=type(getattr(defaults, f.name)), default=getattr(defaults, f.name))

    rel = commands.add_parser("release-late", help="deliver held late files due by a date")
    rel.add_argument("--until", type=dt.date.fromisoformat, required=True, help="release files due by this day")
    rel.add_argument(
        "--dates",
        type=lambda v: {dt.date.fromisoformat(d) for d in v.split(",")},
        default=None,
        help="only files with readings of these local days, comma-separated",
    )
    rel.add_argument("--lake", default=None)
    for command in (gen, rel):
        command.add_argument("--quiet", action="store_true", help="one line of what was done, for a person")

    args = parser.parse_args(argv)
    lake = Lake(args.lake or settings().lake)
    if args.command == "generate":
        log = (lambda line: None) if args.quiet else print
        summary = generate(
            lake,
            args.meters,
            args.start,
            args.days,
            args.seed,
            _rates_from(args),
            truth=args.truth,
            nem12=args.nem12,
            log=log,
        )
        if args.quiet:
            print(
                f"simulated {args.meters:,} meters over {args.days} days from {args.start}: {summary['files']:,} "
                f"files, {summary['rows']:,} readings, {sum(summary['faults'].values()):,} faults, "
                f"in {summary['seconds']:.0f} s"
            )
        else:
            print(json.dumps(summary, indent=1))
    else:
        released = release_late(lake, args.until, args.dates)
        print(f"released {len(released)} late files")
        if not args.quiet:
            for key in released:
                print(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
