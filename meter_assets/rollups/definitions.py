"""The rollups domain's definitions: hourly and daily readings per meter."""

import dagster as dg

from meter_assets.rollups.assets import reads_daily, reads_hourly

defs = dg.Definitions(assets=[reads_hourly, reads_daily])
