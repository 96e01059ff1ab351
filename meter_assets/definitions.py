"""The code location: each domain's definitions (assets with their checks, jobs, schedules, sensors),
the jobs that span domains, the lake's upkeep and the resources, merged in one place.

Nothing here reads the environment at import: Dagster calls `defs` when it loads the code
location, and a test calls `build()` after setting what it needs."""

import dagster as dg

from meter_assets import freshness, maintenance
from meter_assets.billing import definitions as billing
from meter_assets.curated import definitions as curated
from meter_assets.forecast import definitions as forecast
from meter_assets.ingest import definitions as ingest
from meter_assets.jobs import DAILY_CHAIN, daily_readings_job, reference_job
from meter_assets.reference import definitions as reference
from meter_assets.reports import definitions as reports
from meter_assets.resources import resources
from meter_assets.rollups import definitions as rollups
from meter_assets.serving import definitions as serving

# in the order data flows: a domain imports only the ones before it
DOMAINS = (reference, ingest, curated, rollups, billing, serving, reports, forecast)


def build() -> dg.Definitions:
    """Every domain's definitions merged, with the cross-domain jobs and the resources."""
    return dg.Definitions.merge(
        *(domain.defs() for domain in DOMAINS),
        maintenance.defs(),
        freshness.defs(),
        # Every job's steps in its run's process unless it says otherwise: a run is a pod sized
        # for its steps, which are small or one after another, and a process per step would pay
        # a start-up of the code location each (the reference tables: 16 s instead of 5 s)
        dg.Definitions(
            jobs=[daily_readings_job, reference_job], resources=resources(), executor=dg.in_process_executor
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build()


def assets(*keys: str) -> list[dg.AssetsDefinition]:
    """The assets that write these keys (a multi-asset once), to materialize in process."""
    wanted = set(keys)
    found = [a for a in build().assets if {k.to_user_string() for k in a.keys} & wanted]
    missing = wanted - {k.to_user_string() for a in found for k in a.keys}
    if missing:
        raise KeyError(f"no asset writes {sorted(missing)}")
    return found


def daily_assets() -> list[dg.AssetsDefinition]:
    """The daily chain's assets, to materialize a day in process (the demo, tests, benchmarks)."""
    return assets(*DAILY_CHAIN)
