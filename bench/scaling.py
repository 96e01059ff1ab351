"""The scaling curve: one day's steps at 50,000 to 400,000 meters, a month's bills at 100,000 and
200,000, time and peak memory each, the growth fitted, and a chart.

    python bench/scaling.py [--meters 50000,100000,200000,400000] [--bill-meters 100000,200000]
                            [--workdir data/bench-scaling] [--chart docs/scaling.svg] [--keep-days]

For each size, the simulator writes two days of head-end files (faults included, late files
released), the day before is built untimed (the report compares with it), then each step of
the day runs through Dagster in a process of its own, so its peak memory (max RSS) is its own:
`raw_meter_files`, `reads_15min` (with its quarantine), the rollups (`reads_hourly`,
`reads_daily`), `usage_serving` (PostgreSQL, embedded) and `ops_daily_report`. For the bills,
a 30-day month of curated readings is written from the load model (bench/fullscale.py) and
`bills` is timed. Each step's growth is fitted as seconds = a * meters^b (least squares on
the logarithms) and extrapolated to 5,000,000 meters. Results go to `<workdir>/scaling.json`
and the chart to `--chart`.
"""

import argparse
import datetime as dt
import json
import math
import os
import shutil
import sys
import time

from fullscale import month_days, prepare_workdir, run_step, step_result, write_readings, write_rollups

HERE = os.path.dirname(os.path.abspath(__file__))
DAY = dt.date(2024, 5, 14)
MONTH = "2024-06"
DAY_STEPS = ("raw_meter_files", "reads_15min", "rollups", "usage_serving", "ops_daily_report")
SELECTIONS = {
    "raw_meter_files": ["raw_meter_files"],
    "reads_15min": ["reads_15min", "reads_15min_quarantine", "reads_15min_export"],
    "rollups": ["reads_hourly", "reads_daily"],
    "usage_serving": ["usage_serving"],
    "ops_daily_report": ["ops_daily_report"],
}
TARGET_METERS = 5_000_000


def step(name: str, lake: str, meters: int) -> dict:
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
    day_before = DAY - dt.timedelta(days=1)
    if name == "simulate":
        summary = generate(Lake(lake), meters, day_before, 2, seed=7, rates=FaultRates(), log=lambda *_: None)
        release_late(Lake(lake), dt.date(2099, 1, 1))
        dg.materialize(reference_assets, resources=resources(lake))
        facts["rows"] = summary["rows"]
    elif name == "day_before":
        chain = list(DAILY_CHAIN[: DAILY_CHAIN.index("reads_daily") + 1])
        dg.materialize(daily_assets(), partition_key=day_before.isoformat(), resources=resources(lake), selection=chain)
    elif name in SELECTIONS:
        result = dg.materialize(
            daily_assets(), partition_key=DAY.isoformat(), resources=resources(lake), selection=SELECTIONS[name]
        )
        key = dg.AssetKey(SELECTIONS[name][-1 if name == "rollups" else 0])
        (event,) = [e.materialization for e in result.get_asset_materialization_events() if e.asset_key == key]
        facts["rows"] = next((event.metadata[k].value for k in ("rows", "readings") if k in event.metadata), None)
    elif name == "month":
        facts["rows"] = write_readings(lake, meters, month_days(MONTH))
        write_rollups(lake, month_days(MONTH))
    elif name == "bills":
        from meter_assets.definitions import assets

        result = dg.materialize(
            assets("bills", "issued_bills"), partition_key=MONTH, resources=resources(lake), selection=["bills"]
        )
        (event,) = [
            e.materialization for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("bills")
        ]
        facts["rows"] = event.metadata["customers"].value if "customers" in event.metadata else None
    else:
        raise ValueError(name)
    return step_result(name, began, facts)


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(a, b) of y = a * x^b, least squares on the logarithms."""
    xs, ys = [math.log(x) for x, _ in points], [math.log(max(y, 1e-3)) for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 1.0
    return math.exp(my - b * mx), b


def chart(results: dict[str, list[dict]], path: str) -> None:
    """Seconds and peak memory against meters, a line per step: an SVG of two panels."""
    colours = ["#1b6ca8", "#d1495b", "#2e933c", "#edae49", "#6a4c93", "#444444"]
    width, height, pad = 460, 320, 56
    xs = sorted({r["meters"] for rows in results.values() for r in rows})
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * width}" height="{height + 40}" '
        'font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
    ]
    for panel, (key, title, unit) in enumerate(
        (("seconds", "time per step", "s"), ("peak_memory_mb", "peak memory per step", "MB"))
    ):
        left = panel * width
        top = max(r[key] for rows in results.values() for r in rows) * 1.1

        def px(meters: int, value: float, left=left, top=top) -> tuple[float, float]:
            x = left + pad + (meters / xs[-1]) * (width - 2 * pad)
            y = height - pad + 20 - (value / top) * (height - 2 * pad)
            return x, y

        x0, y0 = px(0, 0)
        x1, y1 = px(xs[-1], top)
        parts.append(f'<text x="{left + width / 2}" y="16" text-anchor="middle" font-size="13">{title}</text>')
        parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>')
        parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>')
        for meters in xs:
            x, _ = px(meters, 0)
            parts.append(f'<text x="{x}" y="{y0 + 14}" text-anchor="middle">{meters // 1000}k</text>')
        for i in range(5):
            value = top * i / 4
            _, y = px(0, value)
            parts.append(f'<text x="{x0 - 6}" y="{y + 4}" text-anchor="end">{value:,.0f}</text>')
        parts.append(f'<text x="{left + width / 2}" y="{y0 + 30}" text-anchor="middle">meters</text>')
        parts.append(
            f'<text x="{left + 12}" y="{(y0 + y1) / 2}" transform="rotate(-90 {left + 12} '
            f'{(y0 + y1) / 2})" text-anchor="middle">{unit}</text>'
        )
        for i, (name, rows) in enumerate(results.items()):
            colour = colours[i % len(colours)]
            points = " ".join("{:.1f},{:.1f}".format(*px(r["meters"], r[key])) for r in rows)
            parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
            for r in rows:
                parts.append(
                    '<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="{}"/>'.format(*px(r["meters"], r[key]), colour)
                )
            if panel == 0:
                parts.append(f'<text x="{x0 + 10}" y="{y1 + 14 * (i + 1)}" fill="{colour}">{name}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meters", default="50000,100000,200000,400000")
    parser.add_argument("--bill-meters", default="100000,200000")
    parser.add_argument("--workdir", default=os.path.join(os.path.dirname(HERE), "data", "bench-scaling"))
    parser.add_argument("--chart", default=os.path.join(os.path.dirname(HERE), "docs", "scaling.svg"))
    parser.add_argument(
        "--keep-days",
        action="store_true",
        help="keep the figures of the last <workdir>/scaling.json and measure the bills (at --bill-meters) only",
    )
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    workdir = os.path.abspath(args.workdir)

    if args.step:
        print(json.dumps(step(args.step, os.path.join(workdir, "lake"), args.size)))
        return 0

    results: dict[str, list[dict]] = {name: [] for name in DAY_STEPS}
    results["bills (month)"] = []
    plan = [(int(m), DAY_STEPS, ("simulate", "day_before")) for m in args.meters.split(",")]
    if args.keep_days:
        with open(os.path.join(workdir, "scaling.json")) as f:
            measured = json.load(f)["steps"]
        results.update({name: measured[name] for name in DAY_STEPS})
        # the bills at the sizes not measured again are kept too
        rerun = {int(m) for m in args.bill_meters.split(",")}
        results["bills (month)"] = [r for r in measured.get("bills (month)", []) if r["meters"] not in rerun]
        plan = []
    plan += [(int(m), ("bills",), ("month",)) for m in args.bill_meters.split(",")]
    for meters, timed, prepare in plan:
        folder = os.path.join(workdir, f"{meters}")
        # the partitions start with the month billed, or with the day before the day measured
        first_day = month_days(MONTH)[0] if "bills" in timed else DAY - dt.timedelta(days=1)
        env = prepare_workdir(folder, reuse=False, first_day=first_day)
        arguments = ["--size", str(meters), "--workdir", folder]
        for name in prepare:
            r = run_step(__file__, name, arguments, env)
            print(f"{meters:>9,} {name:>18}: {r['seconds']:8.1f} s  peak {r['peak_memory_mb']:>6,} MB (preparing)")
        for name in timed:
            r = run_step(__file__, name, arguments, env)
            key = "bills (month)" if name == "bills" else name
            results[key].append({"meters": meters, **r})
            results[key].sort(key=lambda row: row["meters"])
            print(f"{meters:>9,} {name:>18}: {r['seconds']:8.1f} s  peak {r['peak_memory_mb']:>6,} MB", flush=True)
        shutil.rmtree(folder, ignore_errors=True)

    print(f"\n{'step':>18}  {'time ~ meters^b':>15}  {'memory ~ meters^b':>17}  at {TARGET_METERS:,} meters")
    fits = {}
    for name, rows in results.items():
        if len(rows) < 2:
            continue
        a_t, b_t = fit([(r["meters"], r["seconds"]) for r in rows])
        a_m, b_m = fit([(r["meters"], r["peak_memory_mb"]) for r in rows])
        at_target = (a_t * TARGET_METERS**b_t, a_m * TARGET_METERS**b_m)
        fits[name] = {
            "time_exponent": round(b_t, 2),
            "memory_exponent": round(b_m, 2),
            "seconds_at_target": round(at_target[0]),
            "peak_memory_mb_at_target": round(at_target[1]),
        }
        print(f"{name:>18}  {b_t:15.2f}  {b_m:17.2f}  {at_target[0]:8,.0f} s, {at_target[1]:8,.0f} MB")
    chart(results, args.chart)
    print(f"chart: {args.chart}")
    with open(os.path.join(workdir, "scaling.json"), "w") as f:
        json.dump({"day": DAY.isoformat(), "month": MONTH, "steps": results, "fits": fits}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
