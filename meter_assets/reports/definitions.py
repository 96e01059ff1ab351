"""The reports domain's definitions: the daily operations report."""

import dagster as dg

from meter_assets.reports.assets import ops_daily_report

defs = dg.Definitions(assets=[ops_daily_report])
