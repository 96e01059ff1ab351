"""The ingest domain's definitions: the raw file inventory and the sensor that notices late files."""

import dagster as dg

from meter_assets.ingest.assets import raw_meter_files
from meter_assets.ingest.sensors import raw_arrivals_sensor

defs = dg.Definitions(assets=[raw_meter_files], sensors=[raw_arrivals_sensor])
