"""The curated domain's definitions: one reading per meter and quarter hour, and its quarantine."""

import dagster as dg

from meter_assets.curated.assets import curated_readings

defs = dg.Definitions(assets=[curated_readings])
