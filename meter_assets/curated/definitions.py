"""The curated domain's definitions: one reading per meter and quarter hour, and its quarantine."""

import dagster as dg

from meter_assets.curated import assets


def defs() -> dg.Definitions:
    """Made when the code location loads: the settings are read then, not at import."""
    return dg.Definitions(assets=assets.build())
