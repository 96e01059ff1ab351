"""Every table in the lake, named once: where it lives, how it is partitioned, which asset writes it.

Assets and readers refer to these objects, never to paths. Each is a Delta Lake table at
`<lake>/<path>/`, partitioned by the local `date` (a `DATE`) or the billing `month`
(`YYYY-MM`), or not at all for a reference dimension.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LakeTable:
    path: str
    partition: str | None  # "date", "month" or None
    asset: str  # the asset whose materialization publishes this table

    def __str__(self) -> str:
        return self.path

    def folder(self, value: str | None) -> str:
        """The partition's folder: `<path>/date=YYYY-MM-DD`, `<path>/month=YYYY-MM`, or the table's."""
        if self.partition is None:
            return self.path
        if not value:
            raise ValueError(f"{self.path} is partitioned by {self.partition}: name a partition")
        return f"{self.path}/{self.partition}={value}"


def _daily(path: str, asset: str) -> LakeTable:
    return LakeTable(path, "date", asset)


def _monthly(path: str, asset: str) -> LakeTable:
    return LakeTable(path, "month", asset)


def _dimension(name: str, asset: str | None = None) -> LakeTable:
    return LakeTable(f"curated/{name}", None, asset or name)


RAW_METER_FILES = _daily("inventory/raw_meter_files", "raw_meter_files")
READS_15MIN = _daily("curated/reads_15min", "reads_15min")
QUARANTINE = _daily("quarantine/reads_15min", "reads_15min_quarantine")
READS_15MIN_EXPORT = _daily("curated/reads_15min_export", "reads_15min_export")
READS_HOURLY = _daily("rollups/reads_hourly", "reads_hourly")
READS_DAILY = _daily("rollups/reads_daily", "reads_daily")
PORTFOLIO_LOAD = _daily("rollups/portfolio_load", "portfolio_load")
FORECAST = _daily("forecasts/load", "load_forecast")
BIDS = _daily("bids", "load_bids")

CUSTOMERS = _dimension("customers")
METERS = _dimension("meters")
METER_ASSIGNMENTS = _dimension("meter_assignments")
CUSTOMER_PLANS = _dimension("customer_plans")
TARIFFS = _dimension("tariffs")
TEMPERATURE = _dimension("temperature")
TEMPERATURE_FORECAST = _dimension("temperature_forecast")
DAY_AHEAD_PRICES = _dimension("day_ahead_prices")
DIMENSIONS = {
    t.path.rsplit("/", 1)[1]: t
    for t in (
        CUSTOMERS,
        CUSTOMER_PLANS,
        METERS,
        METER_ASSIGNMENTS,
        TARIFFS,
        TEMPERATURE,
        TEMPERATURE_FORECAST,
        DAY_AHEAD_PRICES,
    )
}

BILLS_EXPORT = _monthly("billing/bills", "issued_bills")
BILL_LINES_EXPORT = _monthly("billing/bill_lines", "bill_lines")
ADJUSTMENTS_EXPORT = _monthly("billing/bill_adjustments", "bill_adjustments")

# the operations report is one asset made of these tables (and a page beside them)
REPORT_TABLES = {
    name: _daily(f"reports/ops/{name}", "ops_daily_report")
    for name in (
        "summary",
        "region_energy",
        "top_customers",
        "silent_meters",
        "late_files",
        "quarantine_reasons",
        "estimation",
        "most_estimated_meters",
    )
}

ALL = [
    RAW_METER_FILES,
    READS_15MIN,
    QUARANTINE,
    READS_15MIN_EXPORT,
    READS_HOURLY,
    READS_DAILY,
    PORTFOLIO_LOAD,
    FORECAST,
    BIDS,
    *DIMENSIONS.values(),
    BILLS_EXPORT,
    BILL_LINES_EXPORT,
    ADJUSTMENTS_EXPORT,
    *REPORT_TABLES.values(),
]
