"""The code location: each domain's definitions (assets with their checks, jobs, schedules, sensors),
the jobs that span domains, the lake's upkeep and the resources, merged in one place."""

import dagster as dg

from meter_assets import maintenance
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

# in the order data flows: a domain imports only the ones before it. Modules, not their `defs`:
# Dagster loads the one `Definitions` object at this module's scope.
DOMAINS = (reference, ingest, curated, rollups, billing, serving, reports, forecast)

defs = dg.Definitions.merge(
    *(domain.defs for domain in DOMAINS),
    maintenance.defs,
    dg.Definitions(jobs=[daily_readings_job, reference_job], resources=resources()),
)

# the daily chain's assets, to materialize a day in process (the demo, tests)
daily_assets = [a for d in DOMAINS for a in d.defs.assets if {k.to_user_string() for k in a.keys} & set(DAILY_CHAIN)]
