"""The serving domain's definitions: the usage page's table in PostgreSQL."""

import dagster as dg

from meter_assets.serving.assets import usage_serving

defs = dg.Definitions(assets=[usage_serving])
