"""The rollups domain's definitions: hourly and daily readings per meter."""

import dagster as dg

from meter_assets.rollups import assets


def defs() -> dg.Definitions:
    """Made when the code location loads: the settings are read then, not at import."""
    return dg.Definitions(assets=assets.build())
