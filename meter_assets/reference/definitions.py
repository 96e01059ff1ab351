"""The reference domain's definitions: the retailer's customers, meters, assignments and tariffs."""

import dagster as dg

from meter_assets.reference.assets import reference_assets

defs = dg.Definitions(assets=reference_assets)
