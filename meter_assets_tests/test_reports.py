"""The daily operations report, number by number, against the simulator's manifest and ground truth.

Expected values come from the simulator's fault manifest and truth tables, or are computed
here from the curated readings and the reference exports by other code (numpy, Python),
never read back from the report's own intermediate tables.
"""

import datetime as dt
import itertools
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from decimal import Decimal

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from meter_assets.config import settings
from meter_assets.definitions import assets
from meter_assets.ingest import nem12
from meter_assets.market_calendar import local_day_bounds, local_day_of
from meter_assets.reports.assets import page_key
from meter_assets.resources import CheckThresholds
from meter_assets.simulator.cli import days_carried
from meter_assets.storage import Lake
from meter_assets.tables import READS_15MIN, READS_DAILY, REPORT_TABLES

from .conftest import faults, resources_for, spring_days


def report(root: str, day: dt.date) -> dict[str, list[dict]]:
    lake = Lake(root)
    found = {name: lake.files(table, day.isoformat()) for name, table in REPORT_TABLES.items()}
    assert all(found.values()), f"no report for {day}"
    return {name: pq.ParquetDataset(files).read().to_pylist() for name, files in found.items()}


def readings(root: str, day: dt.date) -> dict[str, np.ndarray]:
    table = pq.ParquetDataset(Lake(root).files(READS_15MIN, day.isoformat())).read()
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def reference(root: str, name: str) -> list[dict]:
    import csv

    with open(os.path.join(root, "reference", f"{name}.csv")) as f:
        return list(csv.DictReader(f))


def day_of_key(key: str) -> dt.date:
    return local_day_of(dt.datetime.strptime(key.split("/")[-1].split("-")[2], "%Y%m%d%H"))


def truth(generated: str, day: dt.date) -> list[dict]:
    return pq.read_table(f"{generated}/simulator/truth/date={day.isoformat()}/reads.parquet").to_pylist()


def test_silent_meters_are_the_ones_the_simulator_took_offline_for_the_whole_day(after_release, generated):
    tz = settings().market_tz
    counts = {}
    for day in spring_days():
        start, end = local_day_bounds(day, tz)
        dead_all_day = {
            f["meter_id"]
            for f in faults(after_release, "missing")
            if json.loads(f["detail"])["reason"] == "dead" and f["read_at"] == start and f["read_until"] == end
        }
        silent = report(after_release, day)["silent_meters"]
        assert {m["meter_id"] for m in silent} == dead_all_day
        counts[day] = len(dead_all_day)  # the simulator's count: the next day's report must carry it

        # silent since the end of the meter's last reading in the ground truth
        last = {}
        for earlier in [d for d in spring_days() if d < day]:
            for row in truth(generated, earlier):
                if row["meter_id"] in dead_all_day and row["quality_flag"] != "missing":
                    last[row["meter_id"]] = max(last.get(row["meter_id"], row["read_at"]), row["read_at"])
        for meter in silent:
            if meter["meter_id"] in last:
                ended = last[meter["meter_id"]] + dt.timedelta(minutes=15)
                assert meter["last_reading_at"] == ended
                assert abs(float(meter["silent_hours"]) - (end - ended).total_seconds() / 3600) <= 0.05
            else:
                assert meter["last_reading_at"] is None and meter["silent_hours"] is None
        holders = {
            a["meter_id"]: int(a["customer_id"])
            for a in reference(after_release, "meter_assignments")
            if dt.date.fromisoformat(a["valid_from"]) <= day
            and (not a["valid_to"] or day < dt.date.fromisoformat(a["valid_to"]))
        }
        regions = {m["meter_id"]: m["region"] for m in reference(after_release, "meters")}
        assert [(m["customer_id"], m["region"]) for m in silent] == [
            (holders.get(m["meter_id"]), regions[m["meter_id"]]) for m in silent
        ]
    assert sum(counts.values()) > 0, "the simulated retailer has meters gone silent"

    days = spring_days()
    for before, day in itertools.pairwise(days):
        assert report(after_release, day)["summary"][0]["silent_meters_day_before"] == counts[before]
    assert report(after_release, days[0])["summary"][0]["silent_meters_day_before"] is None


def test_late_files_and_quarantine_are_the_simulators_faults(after_release):
    held = [f["file_key"] for f in faults(after_release, "late_file")]
    corrections = {f["file_key"] for f in faults(after_release, "correction")}
    resends = Counter(json.loads(f["detail"])["original_key"] for f in faults(after_release, "resend"))
    assert held and corrections
    assert any(key.startswith(nem12.PREFIX) for key in held)
    for day in spring_days():
        tables = report(after_release, day)
        late = {f["file_key"] for f in tables["late_files"] if f["carries_date"] == day}
        # a NEM12 file carries two London days, and is late on both
        assert late == {k for k in [*held, *corrections] if day in days_carried(k)}
        assert all(f["hours_late"] > 24 for f in tables["late_files"])

        # every damaged row once per copy of its file (a damaged NEM12 value once, on the day
        # it starts, though a half hour is two quarter hours); the truncated file whole
        expected_rows, nem12_values = 0, set()
        for f in [*faults(after_release, "malformed_row"), *faults(after_release, "malformed_row", "export")]:
            if f["file_key"].startswith(nem12.PREFIX):
                if local_day_of(f["read_at"]) == day:
                    nem12_values.add((f["file_key"], f["line"], f["detail"]))
            elif day_of_key(f["file_key"]) == day:
                expected_rows += 1 + resends[f["file_key"]]
        expected_rows += len(nem12_values)
        expected_files = sum(1 for f in faults(after_release, "truncated_file") if day_of_key(f["file_key"]) == day)
        summary = tables["summary"][0]
        assert (summary["quarantined_rows"], summary["quarantined_files"]) == (expected_rows, expected_files)
        by_scope = defaultdict(int)
        for reason in tables["quarantine_reasons"]:
            by_scope[reason["scope"]] += reason["rows"]
            # grouped with the numbers taken out ("IntervalValue12" and "IntervalValue40" are one field)
            field = re.sub("[0-9]+", "…", reason["example"].split(":")[0])
            assert reason["reason"] and field == reason["reason"].split(":")[0]
        assert (by_scope["row"], by_scope["file"]) == (expected_rows, expected_files)
        assert summary["late_files"] == len(tables["late_files"])


def test_interval_shares_and_arrival_delay(after_release, generated):
    for day in spring_days():
        summary = report(after_release, day)["summary"][0]
        flags = Counter(row["quality_flag"] for row in truth(generated, day))
        # every interval the head-end never delivered is the platform's estimate
        assert (
            summary["actual_intervals"],
            summary["estimated_intervals"],
            summary["platform_estimated_intervals"],
            summary["missing_intervals"],
        ) == (flags["actual"], flags["estimated"] + flags["missing"], flags["missing"], 0)
        assert summary["intervals"] == sum(flags.values())
        assert summary["platform_estimated_share"] == pytest.approx(flags["missing"] / sum(flags.values()))

        r = readings(after_release, day)
        delivered = r["source_file"] != None  # noqa: E711 (element-wise)
        minutes = (r["ingested_at"][delivered] - r["read_at"][delivered]) / np.timedelta64(1, "s") / 60 - 15
        assert summary["delay_p50_minutes"] == pytest.approx(np.quantile(minutes, 0.5))
        assert summary["delay_p95_minutes"] == pytest.approx(np.quantile(minutes, 0.95))
        # on-time files land minutes after their hour: half the readings arrive within the hour
        assert 0 < summary["delay_p50_minutes"] < 60


def test_region_totals_and_top_customers_from_the_readings(after_release):
    regions = {m["meter_id"]: m["region"] for m in reference(after_release, "meters")}
    customers = {int(c["customer_id"]): c for c in reference(after_release, "customers")}
    for day in spring_days():
        holders = {
            a["meter_id"]: int(a["customer_id"])
            for a in reference(after_release, "meter_assignments")
            if dt.date.fromisoformat(a["valid_from"]) <= day
            and (not a["valid_to"] or day < dt.date.fromisoformat(a["valid_to"]))
        }
        r = readings(after_release, day)
        by_meter = defaultdict(Decimal)
        for meter, kwh in zip(r["meter_id"], r["kwh"], strict=True):
            if kwh is not None:
                by_meter[meter] += kwh
        by_region = defaultdict(Decimal)
        by_customer = defaultdict(Decimal)
        for meter, kwh in by_meter.items():
            by_region[regions[meter]] += kwh
            if meter in holders:
                by_customer[holders[meter]] += kwh

        tables = report(after_release, day)
        assert {row["region"]: row["kwh"] for row in tables["region_energy"]} == dict(by_region)
        assert sum(row["kwh"] for row in tables["region_energy"]) == tables["summary"][0]["kwh"]
        ranked = sorted(by_customer.items(), key=lambda item: (-item[1], item[0]))[:100]
        assert [(c["rank"], c["customer_id"], c["kwh"]) for c in tables["top_customers"]] == [
            (i + 1, customer, kwh) for i, (customer, kwh) in enumerate(ranked)
        ]
        assert all(c["region"] == customers[c["customer_id"]]["region"] for c in tables["top_customers"])


def test_change_on_a_week_earlier_and_the_silent_meter_warning(after_release, tmp_path):
    root = str(tmp_path / "lake")
    shutil.copytree(after_release, root)
    lake = Lake(root)
    day = spring_days()[-1]
    week_before = (day - dt.timedelta(days=7)).isoformat()
    # the same weekday a week earlier: this day's rollup with every meter's use halved
    daily = pq.read_table(lake.files(READS_DAILY, day.isoformat())[0])
    halved = [None if v is None else (v / 2).quantize(Decimal("0.001")) for v in daily.column("kwh").to_pylist()]
    earlier = daily.set_column(
        daily.schema.get_field_index("kwh"), "kwh", pa.array(halved, daily.schema.field("kwh").type)
    )
    build = lake.build(READS_DAILY, week_before)
    build.write_parquet("part-0000.parquet", earlier)
    lake.publish(build)

    # not one silent meter allowed, for this run only; the other limits the environment's
    thresholds = CheckThresholds(silent_meters_warn=0)
    strict = {**resources_for(root), "thresholds": thresholds}
    result = dg.materialize(assets("ops_daily_report"), partition_key=day.isoformat(), resources=strict)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["region_totals_reconcile_with_reads_daily"].passed
    silent = report(root, day)["summary"][0]["silent_meters"]
    assert silent > 0 and not checks["silent_meters_below_alert_threshold"].passed
    assert checks["silent_meters_below_alert_threshold"].severity == dg.AssetCheckSeverity.WARN

    regions = {m["meter_id"]: m["region"] for m in reference(root, "meters")}
    before = defaultdict(Decimal)
    for meter, kwh in zip(earlier.column("meter_id").to_pylist(), halved, strict=True):
        before[regions[meter]] += kwh or 0
    for row in report(root, day)["region_energy"]:
        assert row["kwh_week_before"] == before[row["region"]]
        change = 100 * (row["kwh"] - before[row["region"]]) / before[row["region"]]
        assert abs(row["change_pct"] - change) <= Decimal("0.05")
        assert Decimal("99") < row["change_pct"] < Decimal("101"), "use doubled: about +100 %"

    metadata = result.asset_materializations_for_node("ops_daily_report")[0].metadata
    assert "silent meters" in metadata["summary"].value and metadata["page"].value.endswith("report.html")
    assert len(metadata["region_energy"].value.records) == len(report(root, day)["region_energy"])


# The screenshot is decoded by the browser itself: drawn onto a canvas, its pixels counted.
COUNT_INKED_PIXELS = """
const [data, done] = arguments;
const image = new Image();
image.onload = () => {
  const canvas = document.createElement("canvas");
  canvas.width = image.width; canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let inked = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    if (pixels[i] < 200 || pixels[i + 1] < 200 || pixels[i + 2] < 200) inked++;
  }
  done([inked, canvas.width * canvas.height]);
};
image.onerror = () => done([-1, 0]);
image.src = "data:image/png;base64," + data;
"""


def test_the_report_page_opens_from_a_file_with_its_charts_drawn(after_release, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    lake = Lake(after_release)
    day = spring_days()[-1]
    page = lake.uri(page_key(day.isoformat()))
    browser.get(f"file://{page}")
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-date") == day.isoformat()
    regions = report(after_release, day)["region_energy"]
    for chart, bars in (("region-chart", len(regions)), ("quality-chart", 3), ("top-chart", 20)):
        element = browser.find_element(By.ID, chart)
        assert len(element.find_elements(By.CSS_SELECTOR, "rect.bar")) == bars, chart
        inked, pixels = browser.execute_async_script(COUNT_INKED_PIXELS, element.screenshot_as_base64)
        assert pixels > 10_000 and inked > pixels // 50, f"{chart}: {inked} of {pixels} pixels drawn"
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "Silent meters" in text and "Late files" in text and "Top 100 customers" in text


def test_the_estimation_table_counts_flags_and_replacements_apart():
    """Readings a rule flagged and kept, those it replaced, and estimates, counted from crafted rows."""
    import duckdb

    from meter_assets.curated.estimation import METHODS, REPLACING_RULES, RULES
    from meter_assets.reports.ops import ESTIMATION_SQL

    rows = [
        # (estimation_method, validation_rule, kwh, measured_kwh)
        (None, "zero_run", "0.000", None),
        (None, "zero_run", "0.000", None),
        (None, "above_own_maximum", "3.100", None),
        ("linear", "above_connection_limit", "0.300", "7.500"),
        ("like_day", None, "0.250", None),
        ("head-end", None, "0.100", None),
        (None, None, "0.400", None),
    ]
    with duckdb.connect() as con:
        con.execute(
            "CREATE TABLE readings (estimation_method VARCHAR, validation_rule VARCHAR, kwh DECIMAL(12, 3), "
            "measured_kwh DECIMAL(12, 3))"
        )
        con.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", rows)
        con.execute(
            ESTIMATION_SQL,
            {"methods": ["head-end", *METHODS], "rules": list(RULES), "replacing_rules": list(REPLACING_RULES)},
        )
        table = {(k, n): (i, kwh) for k, n, i, kwh in con.execute("SELECT * FROM estimation").fetchall()}
    expected = {("method", m): (0, Decimal("0.000")) for m in ("head-end", *METHODS)}
    expected |= {("flagged", r): (0, Decimal("0.000")) for r in RULES}
    expected |= {("replaced", r): (0, Decimal("0.000")) for r in REPLACING_RULES}
    expected |= {
        ("method", "head-end"): (1, Decimal("0.100")),
        ("method", "linear"): (1, Decimal("0.300")),
        ("method", "like_day"): (1, Decimal("0.250")),
        ("flagged", "zero_run"): (2, Decimal("0.000")),
        ("flagged", "above_own_maximum"): (1, Decimal("3.100")),
        ("replaced", "above_connection_limit"): (1, Decimal("7.500")),
    }
    assert table == expected
