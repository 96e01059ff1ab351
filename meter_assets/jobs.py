"""Jobs that span domains. They name their assets by key, so a domain's sensor can start or watch
them without importing the domains above it; `definitions.py` resolves the keys."""

import json

import dagster as dg

# How many times a run whose worker died (killed, out of memory, its pod lost) is started again
# (dagster.yaml's `run_retries`; a run its own steps failed is not). Every job says so, and why.
RETRY_TAG = "dagster/max_retries"


def retries(times: int) -> dict[str, str]:
    """A job's tags for `times` retries of a run whose worker died."""
    return {RETRY_TAG: str(times)}


# On Kubernetes (dagster-k8s's run launcher, deploy/helm/values.yaml) each run is a pod of this
# size; other launchers ignore the tag. Sizes follow the full-scale figures (docs/benchmarks.md):
# DuckDB takes both cores and up to METER_DUCKDB_MEMORY_LIMIT (3 GB), Python and Arrow the rest.
POD_TAG = "dagster-k8s/config"


def pod(cpu: str, memory: str, memory_limit: str) -> dict[str, str]:
    """A job's tags for a run pod requesting `cpu` and `memory`, killed above `memory_limit`."""
    resources = {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit}}
    return {POD_TAG: json.dumps({"container_config": {"resources": resources}})}


# Everything daily that a date's raw files feed; a late file rebuilds this chain for its date.
DAILY_CHAIN = (
    "raw_meter_files",
    "reads_15min",
    "reads_15min_quarantine",
    "reads_15min_export",
    "reads_hourly",
    "reads_daily",
    "usage_serving",
    "ops_daily_report",
    "portfolio_load",
)

# The retailer's exports and the weather provider's: reloaded together, not partitioned.
REFERENCE = (
    "customers",
    "customer_plans",
    "meters",
    "meter_assignments",
    "tariffs",
    "day_ahead_prices",
    "temperature",
    "temperature_forecast",
)

daily_readings_job = dg.define_asset_job(
    "daily_readings_job",
    selection=dg.AssetSelection.assets(*DAILY_CHAIN),
    description="Inventory, curate and roll up one local day of meter readings; refresh its usage page data, "
    "its operations report and the portfolio load the forecast learns from.",
    # the steps run one after another anyway; one process saves a start-up per step
    executor_def=dg.in_process_executor,
    # safe: each step replaces its day's partition whole, and a check gates it before it is published
    tags={**retries(2), **pod("2", "4Gi", "6Gi")},
)

reference_job = dg.define_asset_job(
    "reference_job",
    selection=dg.AssetSelection.assets(*REFERENCE),
    description="Reload the reference dimensions, the market's prices and the weather from their exports.",
    # safe: each table is replaced whole from the same exports
    tags={**retries(2), **pod("1", "1Gi", "2Gi")},
)
