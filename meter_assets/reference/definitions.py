"""The reference domain's definitions: the retailer's customers, meters, assignments and tariffs."""

import dagster as dg

from meter_assets.reference.assets import reference_assets


def defs() -> dg.Definitions:
    """Made when the code location loads: the settings are read then, not at import."""
    return dg.Definitions(assets=reference_assets)
