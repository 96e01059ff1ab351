"""Reference dimensions from the retailer's exports under `reference/`."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from meter_assets.resources import LakeResource, lake_duckdb
from meter_assets.sql import literal, typed_csv
from meter_assets.storage import Lake, Publication
from meter_assets.tables import DIMENSIONS

DUPLICATE_KEYS_SQL = "SELECT count(*) FROM (SELECT {keys} FROM {source} GROUP BY ALL HAVING count(*) > 1)"
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
    return lake.publish(build, {"source": key})


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
meter_assignments = _reference_asset(
    "meter_assignments", "Which customer each meter belonged to on which days, so usage goes to the right bill."
)
tariffs = _reference_asset(
    "tariffs", "Tariff history (type 2) with time-of-use bands, so each interval is priced right."
)

reference_assets = [customers, meters, meter_assignments, tariffs]
