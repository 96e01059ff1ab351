"""Reference dimensions from the retailer's exports under `reference/`."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from meter_assets.gates import audit_and_publish
from meter_assets.resources import LakeResource, lake_duckdb
from meter_assets.sql import literal, parquet, typed_csv
from meter_assets.storage import Build, Lake, Publication
from meter_assets.tables import DIMENSIONS

DUPLICATE_KEYS_SQL = "SELECT count(*) FROM (SELECT {keys} FROM {source} GROUP BY ALL HAVING count(*) > 1)"
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
    },
    "meter_assignments": {
        "meter_id": "VARCHAR",
        "customer_id": "INTEGER",
        "valid_from": "DATE",
        "valid_to": "DATE",
    },
    "tariffs": {
        "tariff_id": "INTEGER",
        "plan_id": "VARCHAR",
        "plan_name": "VARCHAR",
        "band": "VARCHAR",
        "band_start": "VARCHAR",
        "band_end": "VARCHAR",
        "unit_rate": "DECIMAL(10, 4)",
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
}

KEYS = {
    "customers": ["customer_id"],
    "meters": ["meter_id"],
    "meter_assignments": ["meter_id", "valid_from"],
    "tariffs": ["tariff_id"],
    "temperature": ["region", "observed_at"],
    "temperature_forecast": ["region", "valid_at", "issued_at"],
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
    if header != list(columns):
        raise ValueError(f"{key}: columns {header} do not match the contract {list(columns)}")
    source = typed_csv(lake.uri(key), columns, dateformat="%Y-%m-%d")
    keys = ", ".join(KEYS[name])
    duplicates = con.execute(DUPLICATE_KEYS_SQL.format(keys=keys, source=source)).fetchone()[0]
    if duplicates:
        raise ValueError(f"{key}: {duplicates} keys ({keys}) appear more than once")
    build = lake.build(DIMENSIONS[name])
    con.execute(COPY_SORTED_SQL.format(source=source, keys=keys, target=literal(build.uri("part-0000.parquet"))))
    return build


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
# that ends before it starts: either would give one meter-day to two customers, or none.
OVERLAPS_SQL = """
WITH rows AS (
    SELECT meter_id, customer_id, valid_from, coalesce(valid_to, DATE '9999-12-31') AS valid_to,
           row_number() OVER (ORDER BY meter_id, valid_from, customer_id) AS n
    FROM {source}
),
conflicts AS (
    SELECT a.meter_id, [a.customer_id, b.customer_id] AS customers,
           greatest(a.valid_from, b.valid_from) AS first_day,
           least(a.valid_to, b.valid_to) - 1 AS last_day
    FROM rows AS a
    JOIN rows AS b ON a.meter_id = b.meter_id AND a.n < b.n
     AND a.valid_from < b.valid_to AND b.valid_from < a.valid_to
    WHERE a.valid_from < a.valid_to AND b.valid_from < b.valid_to
    UNION ALL
    SELECT meter_id, [customer_id], valid_from, valid_to - 1 FROM rows WHERE valid_to <= valid_from
)
SELECT count(*),
       list({{'meter_id': meter_id, 'customers': customers, 'first_day': CAST(first_day AS VARCHAR),
              'last_day': CASE WHEN last_day >= DATE '9999-12-30' THEN 'open' ELSE CAST(last_day AS VARCHAR) END}}
            ORDER BY meter_id, first_day)[1:10]
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
        conflicts, first = con.execute(OVERLAPS_SQL.format(source=written)).fetchone()
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


tariffs = _reference_asset(
    "tariffs", "Tariff history (type 2) with time-of-use bands, so each interval is priced right."
)

reference_assets = [customers, meters, meter_assignments, tariffs]
