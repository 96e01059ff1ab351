"""The ingest domain's definitions: the raw file inventory and the sensor that notices late files."""

import dagster as dg

from meter_assets.ingest import assets, sensors


def defs() -> dg.Definitions:
    """Made when the code location loads: the settings are read then, not at import."""
    return dg.Definitions(assets=assets.build(), sensors=sensors.build())
