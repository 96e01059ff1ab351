"""Reference dimensions from the retailer's exports under `reference/`."""

import datetime as dt
from collections.abc import Callable

import dagster as dg
import pyarrow as pa
from dagster_duckdb import DuckDBResource

from meter_assets.gates import audit_and_publish
from meter_assets.market_calendar import settlement_period_starts
from meter_assets.resources import LakeResource, lake_duckdb
from meter_assets.sql import literal, parquet, typed_csv
from meter_assets.storage import Build, Lake, Publication
from meter_assets.tables import DAY_AHEAD_PRICES, DIMENSIONS

# the keys an export holds twice: how many, and the first few
DUPLICATE_KEYS_SQL = """
SELECT count(*), list(key ORDER BY key)[1:3]
FROM (SELECT concat_ws(' ', {keys}) AS key FROM {source} GROUP BY ALL HAVING count(*) > 1)
"""
ROWS_SQL = "SELECT count(*) FROM {source}"
COPY_SORTED_SQL = "COPY (SELECT * FROM {source} ORDER BY {keys}) TO {target} (FORMAT parquet)"

# Each export's columns and types: the contract a real retailer's exports follow.
CONTRACTS: dict[str, dict[str, str]] = {
    "customers": {
        "customer_id": "INTEGER",
        "account_name": "VARCHAR",
        "region": "VARCHAR",
        "plan_id": "VARCHAR",
        "joined_on": "DATE",
    },
    "meters": {
        "meter_id": "VARCHAR",
        "region": "VARCHAR",
        "collection_group": "INTEGER",
        "head_end": "VARCHAR",
        "installed_on": "DATE",
        "removed_on": "DATE",
        # heating, ev or ordinary: whose profile a meter with no history of its own is estimated from
        "load_class": "VARCHAR",
        # version 2: the local date from which the meter's export register is read (a home with
        # solar panels); empty for a meter that only imports
        "export_from": "DATE",
    },
    "meter_assignments": {
        "meter_id": "VARCHAR",
        "customer_id": "INTEGER",
        "valid_from": "DATE",
        "valid_to": "DATE",
    },
    # the plan a customer was on from which local day (type 2, `valid_to` exclusive, empty while
    # current); a day no row covers is on the customers export's `plan_id`
    "customer_plans": {
        "customer_id": "INTEGER",
        "plan_id": "VARCHAR",
        "valid_from": "DATE",
        "valid_to": "DATE",
    },
    # version 2: `direction` (import, or export for what a home sends to the grid) and `pricing`
    # (fixed at `unit_rate`, or day_ahead: each settlement period's day-ahead price per kWh
    # times `price_multiplier`, plus `price_adder`, at most `price_cap`)
    "tariffs": {
        "tariff_id": "INTEGER",
        "plan_id": "VARCHAR",
        "plan_name": "VARCHAR",
        "direction": "VARCHAR",
        "band": "VARCHAR",
        "band_start": "VARCHAR",
        "band_end": "VARCHAR",
        "pricing": "VARCHAR",
        "unit_rate": "DECIMAL(10, 4)",
        "price_multiplier": "DECIMAL(6, 4)",
        "price_adder": "DECIMAL(10, 4)",
        "price_cap": "DECIMAL(10, 4)",
        "standing_charge": "DECIMAL(10, 4)",
        "currency": "VARCHAR",
        "valid_from": "DATE",
        "valid_to": "DATE",
        "is_current": "BOOLEAN",
    },
    # weather, from the simulator or any provider's drop: observed hourly temperature per
    # region, and forecasts of it (all times UTC)
    "temperature": {
        "region": "VARCHAR",
        "observed_at": "TIMESTAMP",
        "temperature_c": "DOUBLE",
    },
    "temperature_forecast": {
        "region": "VARCHAR",
        "issued_at": "TIMESTAMP",
        "valid_at": "TIMESTAMP",
        "temperature_c": "DOUBLE",
    },
    # the day-ahead market's price of each settlement period of a local day (1 to 46, 48 or
    # 50, in time order), in the currency's major unit per MWh; negative when the market paid
    # to take power
    "day_ahead_prices": {
        "settlement_date": "DATE",
        "settlement_period": "INTEGER",
        "period_start": "TIMESTAMP",
        "price_per_mwh": "DECIMAL(10, 2)",
        "currency": "VARCHAR",
        "published_at": "TIMESTAMP",
    },
}

# Earlier versions of a contract, still read: the columns a later version added take these
# values (tariffs version 1 had import at fixed rates only).
EARLIER_CONTRACTS: dict[str, list[tuple[list[str], dict[str, str]]]] = {
    "meters": [([c for c in CONTRACTS["meters"] if c != "export_from"], {})],
    "tariffs": [
        (
            [c for c in CONTRACTS["tariffs"] if not c.startswith("price_") and c not in ("direction", "pricing")],
            {"direction": "'import'", "pricing": "'fixed'"},
        )
    ],
}

KEYS = {
    "customers": ["customer_id"],
    "meters": ["meter_id"],
    "meter_assignments": ["meter_id", "valid_from"],
    "customer_plans": ["customer_id", "valid_from"],
    "tariffs": ["tariff_id"],
    "temperature": ["region", "observed_at"],
    "temperature_forecast": ["region", "valid_at", "issued_at"],
    "day_ahead_prices": ["settlement_date", "settlement_period"],
}


def load_reference(lake: Lake, con, name: str) -> Publication:
    """Validate one export against its contract and publish it as a Delta table."""
    return lake.publish(build_reference(lake, con, name), {"source": f"reference/{name}.csv"})


def build_reference(lake: Lake, con, name: str) -> Build:
    """Validate one export against its contract and write it as an unpublished build."""
    key = f"reference/{name}.csv"
    if not lake.exists(key):
        raise FileNotFoundError(f"reference export {key} is missing from the lake at {lake.root}")
    columns = CONTRACTS[name]
    header = lake.read_bytes(key).split(b"\n", 1)[0].decode().strip().split(",")
    if header == list(columns):
        source = typed_csv(lake.uri(key), columns, dateformat="%Y-%m-%d")
    else:
        source = _earlier_contract(lake, key, name, header)
    keys = ", ".join(KEYS[name])
    duplicates, first = con.execute(DUPLICATE_KEYS_SQL.format(keys=keys, source=source)).fetchone()
    if duplicates:
        raise ValueError(f"{key}: {duplicates} keys ({keys}) appear more than once, the first: {', '.join(first)}")
    build = lake.build(DIMENSIONS[name])
    con.execute(COPY_SORTED_SQL.format(source=source, keys=keys, target=literal(build.uri("part-0000.parquet"))))
    return build


def _earlier_contract(lake: Lake, key: str, name: str, header: list[str]) -> str:
    """The export read under an earlier version of its contract, as the current version's columns."""
    columns = CONTRACTS[name]
    for earlier, added in EARLIER_CONTRACTS.get(name, []):
        if header == earlier:
            typed = typed_csv(lake.uri(key), {c: columns[c] for c in earlier}, dateformat="%Y-%m-%d")
            select = ", ".join(
                c if c in earlier else f"CAST({added.get(c, 'NULL')} AS {t}) AS {c}" for c, t in columns.items()
            )
            return f"(SELECT {select} FROM {typed})"
    versions = " or ".join(str(v) for v in [list(columns), *(e for e, _ in EARLIER_CONTRACTS.get(name, []))])
    raise ValueError(f"{key}: columns {header} do not match the contract {versions}")


def problems_check(
    name: str, problems: int, listed: list[dict] | None, what: str, describe: Callable[[dict], str]
) -> dg.AssetCheckResult:
    """A check that passes with no problems, else names how many (`what`) and the first three."""
    return dg.AssetCheckResult(
        check_name=name,
        passed=problems == 0,
        metadata={"problems": problems, "first_problems": dg.MetadataValue.json(listed or [])},
        description=None
        if problems == 0
        else f"{problems} {what}; the first: " + "; ".join(describe(p) for p in (listed or [])[:3]),
    )


def _reference_asset(name: str, description: str):
    @dg.asset(name=name, group_name="reference", description=description, kinds={"duckdb", "delta"})
    def _asset(lake: LakeResource, duckdb: DuckDBResource) -> dg.MaterializeResult:
        store = lake.lake()
        with lake_duckdb(duckdb, store) as con:
            published = load_reference(store, con, name)
        return dg.MaterializeResult(
            metadata={"rows": published.rows, "source": f"reference/{name}.csv", **published.metadata()}
        )

    return _asset


customers = _reference_asset(
    "customers", "Customer accounts with region and tariff plan, for bills and the usage page."
)
meters = _reference_asset("meters", "Every installed meter with its region and head-end, so a silent meter is noticed.")
# Two rows of one meter whose days meet (valid_to is exclusive; empty is open-ended), or a row
# that ends before it starts: either would give one meter-day to two customers, or none. The
# same for a customer's plans (`key` customer_id, `held` plan_id): one day on two plans.
OVERLAPS_SQL = """
WITH rows AS (
    SELECT {key} AS key, {held} AS held, valid_from, coalesce(valid_to, DATE '9999-12-31') AS valid_to,
           row_number() OVER (ORDER BY {key}, valid_from, {held}) AS n
    FROM {source}
),
conflicts AS (
    SELECT a.key, [a.held, b.held] AS held,
           greatest(a.valid_from, b.valid_from) AS first_day,
           least(a.valid_to, b.valid_to) - 1 AS last_day
    FROM rows AS a
    JOIN rows AS b ON a.key = b.key AND a.n < b.n
     AND a.valid_from < b.valid_to AND b.valid_from < a.valid_to
    WHERE a.valid_from < a.valid_to AND b.valid_from < b.valid_to
    UNION ALL
    SELECT key, [held], valid_from, valid_to - 1 FROM rows WHERE valid_to <= valid_from
)
SELECT count(*),
       list({{'{key}': key, '{helds}': held, 'first_day': CAST(first_day AS VARCHAR),
              'last_day': CASE WHEN last_day >= DATE '9999-12-30' THEN 'open' ELSE CAST(last_day AS VARCHAR) END}}
            ORDER BY key, first_day)[1:10]
FROM conflicts
"""


@dg.asset(
    name="meter_assignments",
    group_name="reference",
    kinds={"duckdb", "delta"},
    output_required=False,
    check_specs=[dg.AssetCheckSpec("no_meter_day_held_twice", asset="meter_assignments", blocking=True)],
)
def meter_assignments(context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource):
    """Which customer each meter belonged to on which days, so usage goes to the right bill and
    no customer ever sees another home's meter."""
    store = lake.lake()
    with lake_duckdb(duckdb, store) as con:
        build = build_reference(store, con, "meter_assignments")
        written = parquet(build.uri("part-0000.parquet"))
        conflicts, first = con.execute(
            OVERLAPS_SQL.format(source=written, key="meter_id", held="customer_id", helds="customers")
        ).fetchone()
        rows = con.execute(ROWS_SQL.format(source=written)).fetchone()[0]
    check = dg.AssetCheckResult(
        check_name="no_meter_day_held_twice",
        passed=conflicts == 0,
        metadata={
            "conflicts": conflicts,
            # meter, customers and the days they both hold it
            "first_conflicts": dg.MetadataValue.json(first or []),
        },
        description=None
        if conflicts == 0
        else (
            f"{conflicts} assignment(s) give a meter-day to two customers or to none; the first: "
            + "; ".join(
                f"meter {c['meter_id']} customers {c['customers']} {c['first_day']} to {c['last_day']}"
                for c in (first or [])[:3]
            )
        ),
    )
    gate = audit_and_publish(context, store, [build], [check])
    yield from gate.results({"meter_assignments": {"rows": rows, "source": "reference/meter_assignments.csv"}})


@dg.asset(
    name="customer_plans",
    group_name="reference",
    kinds={"duckdb", "delta"},
    output_required=False,
    check_specs=[dg.AssetCheckSpec("one_plan_a_day", asset="customer_plans", blocking=True)],
)
def customer_plans(context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource):
    """Which plan each customer was on from which day, so a customer who changes plan mid-month
    is billed each day at the plan of that day."""
    store = lake.lake()
    with lake_duckdb(duckdb, store) as con:
        build = build_reference(store, con, "customer_plans")
        written = parquet(build.uri("part-0000.parquet"))
        conflicts, listed = con.execute(
            OVERLAPS_SQL.format(source=written, key="customer_id", held="plan_id", helds="plans")
        ).fetchone()
        rows = con.execute(ROWS_SQL.format(source=written)).fetchone()[0]
    check = problems_check(
        "one_plan_a_day",
        conflicts,
        listed,
        "customer plan row(s) that put a day on two plans, or end before they start",
        lambda c: f"customer {c['customer_id']} plans {c['plans']} {c['first_day']} to {c['last_day']}",
    )
    gate = audit_and_publish(context, store, [build], [check])
    yield from gate.results({"customer_plans": {"rows": rows, "source": "reference/customer_plans.csv"}})


# Rows whose price cannot be read one way only: what each row must state, by its pricing
UNCLEAR_PRICES_SQL = """
WITH problems AS (
    SELECT tariff_id, plan_id, CASE
        WHEN direction IS NULL OR direction NOT IN ('import', 'export') THEN 'direction is not import or export'
        WHEN pricing IS NULL OR pricing NOT IN ('fixed', 'day_ahead') THEN 'pricing is not fixed or day_ahead'
        WHEN pricing = 'fixed' AND unit_rate IS NULL THEN 'a fixed price with no unit_rate'
        WHEN pricing = 'fixed' AND coalesce(price_multiplier, price_adder, price_cap) IS NOT NULL
            THEN 'a fixed price with a day-ahead term (price_multiplier, price_adder or price_cap)'
        WHEN pricing = 'day_ahead' AND price_multiplier IS NULL THEN 'a day_ahead price with no price_multiplier'
        WHEN pricing = 'day_ahead' AND unit_rate IS NOT NULL THEN 'a day_ahead price with a unit_rate as well'
        WHEN direction = 'import' AND standing_charge IS NULL THEN 'an import row with no standing_charge'
        WHEN direction = 'export' AND standing_charge IS NOT NULL
            THEN 'an export row with a standing_charge (a standing charge is for supply: import rows)'
    END AS problem
    FROM {source}
)
SELECT count(*), list({{'tariff_id': tariff_id, 'plan_id': plan_id, 'problem': problem}} ORDER BY tariff_id)[1:10]
FROM problems
WHERE problem IS NOT NULL
"""


@dg.asset(
    name="tariffs",
    group_name="reference",
    kinds={"duckdb", "delta"},
    output_required=False,
    check_specs=[dg.AssetCheckSpec("every_row_states_its_price", asset="tariffs", blocking=True)],
)
def tariffs(context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource):
    """Tariff history (type 2) with time-of-use bands, fixed or day-ahead prices, import and
    export, so each interval is priced right."""
    store = lake.lake()
    with lake_duckdb(duckdb, store) as con:
        build = build_reference(store, con, "tariffs")
        written = parquet(build.uri("part-0000.parquet"))
        problems, listed = con.execute(UNCLEAR_PRICES_SQL.format(source=written)).fetchone()
        rows = con.execute(ROWS_SQL.format(source=written)).fetchone()[0]
    check = problems_check(
        "every_row_states_its_price",
        problems,
        listed,
        "tariff row(s) whose price is unclear",
        lambda p: f"tariff {p['tariff_id']} (plan {p['plan_id']}): {p['problem']}",
    )
    gate = audit_and_publish(context, store, [build], [check])
    yield from gate.results({"tariffs": {"rows": rows, "source": "reference/tariffs.csv"}})


# Each published day's settlement periods against the market's calendar (`expected`: every
# period of every local day from the first published to the last): a period with no price, one
# the day does not have, or one whose start is not the period's
PERIODS_SQL = """
WITH problems AS (
    SELECT expected.settlement_date, expected.settlement_period, 'no price' AS problem
    FROM expected ANTI JOIN {source} AS prices USING (settlement_date, settlement_period)
    UNION ALL
    SELECT settlement_date, settlement_period, 'not a settlement period of the day'
    FROM {source} AS prices ANTI JOIN expected USING (settlement_date, settlement_period)
    UNION ALL
    SELECT settlement_date, settlement_period, 'starts at ' || strftime(prices.period_start, '%Y-%m-%d %H:%M')
                                               || ' UTC, not ' || strftime(expected.period_start, '%Y-%m-%d %H:%M')
    FROM {source} AS prices JOIN expected USING (settlement_date, settlement_period)
    WHERE prices.period_start IS DISTINCT FROM expected.period_start
    UNION ALL
    SELECT settlement_date, settlement_period, 'no price given' FROM {source} WHERE price_per_mwh IS NULL
)
SELECT count(*),
       list({{'settlement_date': CAST(settlement_date AS VARCHAR), 'settlement_period': settlement_period,
              'problem': problem}} ORDER BY settlement_date, settlement_period)[1:10]
FROM problems
"""
PRICE_SPAN_SQL = "SELECT min(settlement_date), max(settlement_date), count(*) FROM {source}"
# The days already published whose prices this export changes (or no longer gives): what was
# priced from them must be priced again. A day published for the first time changes nothing.
REPRICED_DAYS_SQL = """
SELECT DISTINCT CAST(published.settlement_date AS VARCHAR) AS day
FROM {published} AS published
LEFT JOIN {source} AS export USING (settlement_date, settlement_period)
WHERE export.price_per_mwh IS DISTINCT FROM published.price_per_mwh
ORDER BY day
"""


def expected_periods(first: dt.date, last: dt.date) -> pa.Table:
    """Every settlement period of the market's local days from `first` to `last`."""
    dates, periods, starts = [], [], []
    for d in range((last - first).days + 1):
        day = first + dt.timedelta(days=d)
        day_starts = settlement_period_starts(day)
        dates += [day] * len(day_starts)
        periods += list(range(1, len(day_starts) + 1))
        starts += day_starts
    return pa.table(
        {
            "settlement_date": pa.array(dates, pa.date32()),
            "settlement_period": pa.array(periods, pa.int32()),
            "period_start": pa.array(starts, pa.timestamp("us")),
        }
    )


@dg.asset(
    name="day_ahead_prices",
    group_name="reference",
    kinds={"duckdb", "delta"},
    output_required=False,
    check_specs=[dg.AssetCheckSpec("one_price_per_settlement_period", asset="day_ahead_prices", blocking=True)],
)
def day_ahead_prices(context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource):
    """The day-ahead market's price of every settlement period, which a dynamic tariff charges:
    published only when every day it covers has each of its periods once."""
    store = lake.lake()
    with lake_duckdb(duckdb, store) as con:
        build = build_reference(store, con, "day_ahead_prices")
        written = parquet(build.uri("part-0000.parquet"))
        first, last, rows = con.execute(PRICE_SPAN_SQL.format(source=written)).fetchone()
        problems, listed = 0, []
        if rows:
            con.register("expected", expected_periods(first, last))
            problems, listed = con.execute(PERIODS_SQL.format(source=written)).fetchone()
        published = store.files(DAY_AHEAD_PRICES)
        repriced = (
            [
                day
                for (day,) in con.execute(
                    REPRICED_DAYS_SQL.format(published=parquet(published), source=written)
                ).fetchall()
            ]
            if published
            else []
        )
    check = problems_check(
        "one_price_per_settlement_period",
        problems,
        listed,
        "settlement period(s) wrong",
        lambda p: f"{p['settlement_date']} period {p['settlement_period']}: {p['problem']}",
    )
    gate = audit_and_publish(context, store, [build], [check])
    span = {"first_day": str(first), "last_day": str(last)} if rows else {}
    if repriced and gate.passed:
        context.log.info(f"prices changed on {len(repriced)} day(s) already published: {', '.join(repriced[:10])}")
    yield from gate.results(
        {
            "day_ahead_prices": {
                "rows": rows,
                "source": "reference/day_ahead_prices.csv",
                **span,
                # what `repriced_days_sensor` prices again
                "repriced_days": dg.MetadataValue.json(repriced),
            }
        }
    )


reference_assets = [customers, customer_plans, meters, meter_assignments, tariffs, day_ahead_prices]
