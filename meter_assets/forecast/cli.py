"""`meter-forecast`: the load forecast's model and backtest on any load history.

    meter-forecast backtest --csv FILE --time-col C --value-col C [--temp-col C] [--freq 30min]
                            [--test-days 28] [--country GB] [--subdivision VIC] [--tz Europe/London]
                            [--lag-days 2] [--last-day YYYY-MM-DD] [--agg mean|sum]

Reads a CSV of a load history (a whole market's demand, one region, one home), puts it on
the settlement-period grid, and runs the same features, LightGBM quantile models and
rolling-origin backtest as the `load_forecast` asset. Prints the metrics as JSON.

Times without an offset are read as UTC; times with one are converted. `--tz` is the local
time of the calendar features and of the days; `--country` picks the public holidays. A
temperature column, when given, is used as if it had been forecast (real forecasts are
less accurate, so the backtest is then optimistic).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys

FREQ = re.compile(r"^(\d+)\s*(min|m|h)$")


def minutes_of(freq: str) -> int:
    match = FREQ.match(freq.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"--freq: expected e.g. 15min, 30min or 1h, not {freq!r}")
    minutes = int(match.group(1)) * (60 if match.group(2) == "h" else 1)
    if minutes <= 0 or 1440 % minutes:
        raise argparse.ArgumentTypeError(f"--freq: {freq} does not divide a day")
    return minutes


def quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


# The history on the settlement-period grid: each period the mean (or sum) of the
# readings in it, only periods with a value.
SERIES_SQL = """
CREATE OR REPLACE TEMP TABLE series AS
WITH raw AS (
    SELECT {time_utc} AS read_time, CAST({value} AS DOUBLE) AS value, {temp} AS temp
    FROM read_csv($path, header = true)
    WHERE {value} IS NOT NULL
)
SELECT time_bucket(to_minutes(CAST($minutes AS INTEGER)), read_time) AS period_start,
       {agg}(value ORDER BY read_time) AS load, avg(temp ORDER BY read_time) AS temp
FROM raw
GROUP BY 1
ORDER BY 1
"""


def backtest_command(args: argparse.Namespace) -> dict:
    import duckdb

    from meter_assets.forecast import model

    con = duckdb.connect()
    described = con.execute("DESCRIBE SELECT * FROM read_csv($path, header = true)", {"path": args.csv}).fetchall()
    columns = {row[0]: row[1] for row in described}
    for flag, column in (("--time-col", args.time_col), ("--value-col", args.value_col), ("--temp-col", args.temp_col)):
        if column is not None and column not in columns:
            raise SystemExit(f"{flag} {column!r} is not a column of {args.csv} (columns: {', '.join(columns)})")
    time_type = columns[args.time_col]
    if "TIME ZONE" in time_type:
        time_utc = f"timezone('UTC', {quoted(args.time_col)})"
    else:
        time_utc = f"CAST({quoted(args.time_col)} AS TIMESTAMP)"
    temp = f"CAST({quoted(args.temp_col)} AS DOUBLE)" if args.temp_col else "CAST(NULL AS DOUBLE)"
    con.execute(
        SERIES_SQL.format(
            time_utc=time_utc, value=quoted(args.value_col), temp=temp, agg="sum" if args.agg == "sum" else "avg"
        ),
        {"path": args.csv, "minutes": args.freq},
    )
    periods, first, last = con.execute("SELECT count(*), min(period_start), max(period_start) FROM series").fetchone()
    if not periods:
        raise SystemExit(f"{args.csv}: no rows with a value in {args.value_col!r}")
    try:
        spec = model.Spec(
            tz=args.tz, minutes=args.freq, country=args.country, subdivision=args.subdivision, lag_days=args.lag_days
        )
    except ValueError as error:
        raise SystemExit(f"--lag-days: {error}") from None
    model.prepare(con, spec)
    # the newest day with every period present is the backtest's last day, unless one is asked for
    (last_day,) = con.execute(
        "SELECT max(local_date) FROM (SELECT local_date FROM features GROUP BY 1 HAVING count(load) >= $periods - 2)",
        {"periods": 24 * 60 // args.freq},
    ).fetchone()
    if last_day is None:
        raise SystemExit(f"{args.csv}: no whole day of data at {args.freq}-minute periods")
    if args.last_day is not None:
        if args.last_day > last_day:
            raise SystemExit(f"--last-day {args.last_day}: the newest whole day of {args.csv} is {last_day}")
        last_day = args.last_day
    metrics = model.backtest(con, spec, last_day, args.test_days)
    where, params = model.trainable(last_day)
    fitted = model.fit(model.matrix(con, where, params), spec)
    return {
        "csv": args.csv,
        "history_periods": periods,
        "first_period": first.isoformat(),
        "last_period": last.isoformat(),
        "freq_minutes": args.freq,
        "timezone": args.tz,
        "country": args.country,
        "subdivision": args.subdivision,
        "lag_days": args.lag_days,
        "backtest_last_day": last_day.isoformat(),
        **metrics.as_dict(),
        "beats_best_baseline_by_10_percent": metrics.improvement_on_best_baseline >= 0.10,
        "coverage_within_70_90": 0.70 <= metrics.coverage_p10_p90 <= 0.90,
        "feature_importance": model.importances(fitted)[:8],
    }


def main(argv: list[str] | None = None) -> int:
    from meter_assets.config import settings

    parser = argparse.ArgumentParser(
        prog="meter-forecast", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("backtest", help="backtest the day-ahead model on a CSV load history")
    run.add_argument("--csv", required=True)
    run.add_argument("--time-col", required=True)
    run.add_argument("--value-col", required=True)
    run.add_argument("--temp-col", default=None)
    run.add_argument("--freq", type=minutes_of, default=30, help="settlement period, e.g. 30min or 1h (default 30min)")
    run.add_argument("--test-days", type=int, default=28)
    run.add_argument("--country", default="GB", help="public holidays of this country (default GB)")
    run.add_argument("--subdivision", default=None, help="and of this state or nation in it (e.g. VIC in AU)")
    run.add_argument("--tz", default=settings().market_tz, help="local time zone of the days (default METER_MARKET_TZ)")
    run.add_argument(
        "--lag-days",
        type=int,
        default=settings().forecast_lag_days,
        help="days from the newest complete day known at bid time to the day forecast: 2 for meter data "
        "(the default, METER_FORECAST_LAG_DAYS), 1 for a system operator's series published by morning",
    )
    run.add_argument(
        "--last-day", type=dt.date.fromisoformat, default=None, help="the backtest's last day (default the newest)"
    )
    run.add_argument(
        "--agg",
        choices=("mean", "sum"),
        default="mean",
        help="how readings within a period combine: mean for power (MW), sum for energy per reading",
    )
    args = parser.parse_args(argv)
    print(json.dumps(backtest_command(args), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
