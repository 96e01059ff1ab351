"""Smart-meter data platform of an electricity retailer, as a Dagster code location."""
