"""The reports domain's definitions: the daily operations report."""

import dagster as dg

from meter_assets.reports import assets


def defs() -> dg.Definitions:
    """Made when the code location loads: the settings are read then, not at import."""
    return dg.Definitions(assets=assets.build())
