import datetime as dt
import gzip
import json
import zlib

import numpy as np
import pytest

from meter_assets.config import settings
from meter_assets.ingest import nem12
from meter_assets.simulator.cli import generate, release_late
from meter_assets.simulator.retailer import REGIONS, hourly_temperature, interval_load_kwh, population
from meter_assets.storage import Lake

from .conftest import FAULTY, faults


def _snapshot(root: str) -> dict[str, bytes]:
    lake = Lake(root)
    return {o.key: lake.read_bytes(o.key) for o in lake.list("")}


def test_simulator_is_deterministic(tmp_path):
    first, second = str(tmp_path / "a"), str(tmp_path / "b")
    for root in (first, second):
        generate(
            Lake(root),
            meters=120,
            start=dt.date(2024, 6, 1),
            days=2,
            seed=3,
            rates=FAULTY,
            truth=True,
            log=lambda *_: None,
        )
    a, b = _snapshot(first), _snapshot(second)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    other = str(tmp_path / "c")
    generate(Lake(other), meters=120, start=dt.date(2024, 6, 1), days=2, seed=4, rates=FAULTY, log=lambda *_: None)
    c = _snapshot(other)
    shared = [k for k in a if k.startswith("raw/") and k in c]
    assert shared and any(a[k] != c[k] for k in shared), "another seed must give other readings"


def test_manifest_records_every_fault_kind(generated):
    lake = Lake(generated)
    kinds = {
        "late_file",
        "resend",
        "correction",
        "estimated",
        "missing",
        "clock_drift",
        "malformed_row",
        "truncated_file",
        "format_change",
    }
    found = {kind: faults(generated, kind) for kind in kinds}
    assert {k for k, rows in found.items() if not rows} == set()

    held = {o.key.split("/", 3)[3] for o in lake.list("simulator/held/")}
    for late in found["late_file"]:
        assert late["file_key"] in held, late
        assert not lake.exists(late["file_key"]), "a late file must not be in raw before it arrives"
    for resend in found["resend"]:
        original = json.loads(resend["detail"])["original_key"]
        assert lake.read_bytes(resend["file_key"]) == lake.read_bytes(original)
    for correction in found["correction"]:
        assert correction["file_key"] in held
    (truncated,) = found["truncated_file"]
    data = lake.read_bytes(truncated["file_key"])
    assert len(data) == json.loads(truncated["detail"])["kept_bytes"]
    with pytest.raises((EOFError, zlib.error)):
        gzip.decompress(data)
    run = json.loads(lake.read_bytes("simulator/run.json"))
    assert run["rates"]["late_file"] == FAULTY.late_file and run["meters"] == 300


def test_malformed_rows_are_where_the_manifest_says(generated):
    lake = Lake(generated)
    for fault in faults(generated, "malformed_row"):
        key = fault["file_key"]
        source = (
            lake.read_bytes(key)
            if lake.exists(key)
            else lake.read_bytes(next(o.key for o in lake.list("simulator/held/") if o.key.endswith(key)))
        )
        lines = nem12.unpack(source).decode().split("\n")
        line, detail = lines[fault["line"] - 1], json.loads(fault["detail"])
        if key.startswith(nem12.PREFIX):
            # the day's 300 record, under its register's 200 record, with the value spoiled
            field = int(detail["field"].removeprefix("IntervalValue")) + 1
            value = line.split(",")[field]
            assert line.startswith("300,") and lines[fault["line"] - 2].startswith("200,"), fault
            assert fault["meter_id"].split("-")[0] in lines[fault["line"] - 2], fault
            assert value == "N/A" if detail["variant"] == "not_a_number" else value.startswith("-"), (fault, value)
        else:
            assert str(fault["meter_id"]) in line or detail["variant"] == "cut_short"
    assert any(f["file_key"].startswith(nem12.PREFIX) for f in faults(generated, "malformed_row"))


def test_release_late_moves_due_files_only(generated, tmp_path):
    import shutil

    root = str(tmp_path / "lake")
    shutil.copytree(generated, root)
    lake = Lake(root)
    late = faults(root, "late_file")
    cutoff = min(dt.date.fromisoformat(json.loads(f["detail"])["arrival_date"]) for f in late)
    released = release_late(lake, cutoff)
    due = {f["file_key"] for f in late if json.loads(f["detail"])["arrival_date"] <= cutoff.isoformat()}
    assert due <= set(released)
    assert all(lake.exists(k) for k in released)
    assert release_late(lake, cutoff) == [], "a released file is delivered once"


def test_load_shapes_are_residential():
    pop = population(2000, seed=5)
    day = dt.date(2024, 1, 17)
    temps = hourly_temperature(day, 1, seed=5)
    load, starts = interval_load_kwh(pop, day, settings().tz, temps, seed=5)
    daily = load.sum(axis=1)
    # a winter weekday: typical homes use 7-15 kWh, electric heating far more
    assert 7 < np.median(daily[~pop.heating & ~pop.ev]) < 15
    assert np.median(daily[pop.heating]) > 2 * np.median(daily[~pop.heating & ~pop.ev])
    portfolio = load.sum(axis=0)
    hours = starts.astype("datetime64[h]").astype(int) % 24  # UTC == local in January
    evening = portfolio[(hours >= 17) & (hours < 20)].mean()
    night = portfolio[(hours >= 2) & (hours < 5)].mean()
    assert evening > 1.8 * night
    assert (load >= 0).all() and (load <= 5.5).all()


def test_full_scale_has_twenty_collection_groups_of_10000_meters():
    # about 10,000 meters a file at full scale: 200,000 meters make 20 collection groups
    pop = population(200_000, seed=1)
    assert pop.groups == 20
    assert np.bincount(pop.group).min() == 10_000


def test_a_retailer_in_fewer_regions_has_every_meter_in_them():
    everywhere, two = population(2000, seed=5), population(2000, seed=5, regions=2)
    assert set(everywhere.region.tolist()) == set(range(len(REGIONS)))
    assert set(two.region.tolist()) == {0, 1} and min(np.bincount(two.region)) > 900
    # the same homes, using as much, in fewer places
    assert (two.annual_kwh == everywhere.annual_kwh).all() and (two.meter_id == everywhere.meter_id).all()
    for regions in (0, len(REGIONS) + 1):
        with pytest.raises(ValueError, match=f"regions must be 1 to {len(REGIONS)}, not {regions}"):
            population(10, seed=1, regions=regions)


def test_a_public_holiday_is_lived_like_a_sunday_and_the_days_next_to_it_halfway():
    """Christmas Day 2024 (a Wednesday) has a Sunday's late morning, Christmas Eve (a Tuesday)
    is between that and an ordinary Wednesday's early one: the forecast's holiday features
    are tested against a real effect."""
    pop = population(2000, seed=5)

    def early_to_late_morning(day: dt.date) -> float:
        load, starts = interval_load_kwh(pop, day, settings().tz, hourly_temperature(day, 1, seed=5), seed=5)
        hours = starts.astype("datetime64[h]").astype(int) % 24  # UTC == local in December
        portfolio = load.sum(axis=0)
        return portfolio[hours == 7].mean() / portfolio[hours == 9].mean()

    ordinary, eve, christmas, sunday = (early_to_late_morning(dt.date(2024, 12, d)) for d in (18, 24, 25, 22))
    assert ordinary > 1.1 * eve and eve > 1.1 * christmas
    assert abs(christmas - sunday) < 0.05 * sunday


def test_homes_on_the_dynamic_plan_move_use_toward_cheap_periods_and_keep_their_kwh():
    from meter_assets.simulator.prices import SHIFTED_SHARE, DynamicHomes, day_ahead_prices
    from meter_assets.simulator.reference import tenancies

    start, day = dt.date(2024, 6, 1), dt.date(2024, 6, 3)
    pop = population(3000, 5)
    temperature = hourly_temperature(start, 5, 5)
    prices = day_ahead_prices(start, 30, temperature, 5)
    occupancy = tenancies(pop, start, 5, 5)
    homes = DynamicHomes(pop.meter_id, occupancy, "DYNAMIC", prices)
    held = homes.held(day)
    # about a tenth of the homes not on the EV plan
    assert 0.07 < held.mean() < 0.13
    load, starts = interval_load_kwh(pop, day, settings().tz, temperature, 5)
    shifted = homes.shift(day, load.copy(), starts)
    assert np.array_equal(shifted[~held], load[~held]), "other homes use what they used"
    np.testing.assert_allclose(shifted.sum(axis=1), load.sum(axis=1), rtol=1e-12)
    # the day's price of each quarter hour, from the published series, independently
    by_start = {
        row["period_start"]: float(row["price_per_mwh"]) for row in prices.to_pylist() if row["settlement_date"] == day
    }
    price = np.array(
        [by_start[s.astype(dt.datetime) - dt.timedelta(minutes=s.astype(dt.datetime).minute % 30)] for s in starts]
    )
    paid_before = (load[held] * price).sum() / load[held].sum()
    paid_after = (shifted[held] * price).sum() / shifted[held].sum()
    assert paid_after < paid_before
    # at most the shifted share of a home's use moves
    moved = np.abs(shifted[held] - load[held]).sum(axis=1) / 2
    assert (moved <= SHIFTED_SHARE * load[held].sum(axis=1) + 1e-9).all()


def test_homes_with_panels_use_their_own_generation_first_and_export_the_rest():
    from meter_assets.simulator.prices import sunshine
    from meter_assets.simulator.solar import SolarHomes

    pop = population(3000, 5)
    solar = SolarHomes(pop, 5)
    assert 0.17 < len(solar) / pop.size < 0.23, "a fifth of the homes"
    made = {}
    for day in (dt.date(2024, 6, 21), dt.date(2024, 12, 21)):
        temperature = hourly_temperature(day, 1, 5)
        load, starts = interval_load_kwh(pop, day, settings().tz, temperature, 5)
        made[day] = solar.generation(day, starts)
        imported, exported = solar.net(day, load, starts)
        rows = solar.rows
        # energy balance per quarter hour: what the home draws less what it sends is its load
        # less its generation; a quarter hour is either drawn or sent, never both
        np.testing.assert_allclose(imported[rows] - exported, load[rows] - made[day], atol=1e-12)
        assert (np.minimum(imported[rows], exported) == 0).all() and (exported >= 0).all()
        others = np.setdiff1d(np.arange(pop.size), rows)
        assert np.array_equal(imported[others], load[others]), "homes without panels use what they used"
        # the sun is down at local midnight and up at local noon (UTC starts: BST in June)
        local_hour = [(s.astype(dt.datetime).hour + (1 if day.month == 6 else 0)) % 24 for s in starts]
        assert made[day][:, [h in (0, 1, 2) for h in local_hour]].max() == 0
        assert made[day][:, [h == 12 for h in local_hour]].min() > 0
    # a midwinter day makes a fraction of a midsummer one, and no panel gives more than its rating
    assert made[dt.date(2024, 12, 21)].sum() < 0.4 * made[dt.date(2024, 6, 21)].sum()
    assert (made[dt.date(2024, 6, 21)] * 4 <= solar.kwp[:, None]).all()
    # a sunnier day (the draw the day's prices are made with) makes more
    days = [dt.date(2024, 6, 1) + dt.timedelta(days=d) for d in range(20)]
    totals = []
    for day in days:
        _, starts = interval_load_kwh(pop, day, settings().tz, hourly_temperature(day, 1, 5), 5)
        totals.append(solar.generation(day, starts).sum())
    assert np.corrcoef([sunshine(5, d) for d in days], totals)[0, 1] > 0.8
