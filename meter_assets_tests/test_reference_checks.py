"""The reference exports' gates: an assignments export that gives one meter-day to two customers
(or a row that ends before it starts) is refused by a blocking check that names the meter, the
customers and the days, and the version published before stays."""

import datetime as dt
import shutil

import dagster as dg
import pytest

from meter_assets.reference.assets import reference_assets
from meter_assets.storage import Lake
from meter_assets.tables import METER_ASSIGNMENTS

from .conftest import query, resources_for


@pytest.fixture(scope="module")
def lake(generated, tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("reference") / "lake")
    shutil.copytree(f"{generated}/reference", f"{root}/reference")
    assert dg.materialize(reference_assets, resources=resources_for(root)).success
    return root


def published(root: str) -> list[tuple]:
    files = Lake(root).files(METER_ASSIGNMENTS)
    return query(f"SELECT * FROM read_parquet({files!r}) ORDER BY ALL")


def test_an_overlapping_assignment_is_refused_by_name_and_the_old_version_stays(lake):
    before = published(lake)
    original = Lake(lake).read_bytes("reference/meter_assignments.csv").decode()
    first_meter, first_customer = original.splitlines()[1].split(",")[:2]
    # another customer holds the first meter for two days while its own holder still does; and
    # a row that ends before it starts
    bad = f"{first_meter},999999,2024-03-30,2024-04-01\n{first_meter},999998,2024-05-01,2024-04-01\n"
    Lake(lake).write_bytes("reference/meter_assignments.csv", (original + bad).encode())
    try:
        result = dg.materialize(reference_assets, resources=resources_for(lake), raise_on_error=False)
    finally:
        Lake(lake).write_bytes("reference/meter_assignments.csv", original.encode())
    assert not result.success
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "no_meter_day_held_twice"]
    assert not check.passed and check.metadata["conflicts"].value == 2
    conflicts = check.metadata["first_conflicts"].value
    assert {
        "meter_id": first_meter,
        "customers": [int(first_customer), 999999],
        "first_day": "2024-03-30",
        "last_day": "2024-03-31",
    } in conflicts
    assert {"meter_id": first_meter, "customers": [999998], "first_day": "2024-05-01", "last_day": "2024-03-31"} in (
        conflicts
    )
    assert published(lake) == before, "the version published before stays"
    assert dt.date(2024, 3, 30) not in {row[2] for row in before if row[1] == 999999}
