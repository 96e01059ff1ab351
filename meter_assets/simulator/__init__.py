"""A simulated retailer and its head-end: reference data, load, files and injected faults."""
