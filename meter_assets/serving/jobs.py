"""Serving jobs: refresh the usage page's days without rebuilding their readings."""

import dagster as dg

from meter_assets.jobs import pod, retries

usage_serving_job = dg.define_asset_job(
    "usage_serving_job",
    selection=dg.AssetSelection.assets("usage_serving"),
    description="Refresh one local day of the usage page's table from the published readings and prices.",
    executor_def=dg.in_process_executor,
    # safe: a day's rows are replaced whole in one transaction
    tags={**retries(2), **pod("1", "2Gi", "3Gi")},
)
