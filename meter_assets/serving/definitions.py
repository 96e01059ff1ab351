"""The serving domain's definitions: the usage page's table in PostgreSQL."""

import dagster as dg

from meter_assets.serving import assets


def defs() -> dg.Definitions:
    """Made when the code location loads: the settings are read then, not at import."""
    return dg.Definitions(assets=assets.build())
