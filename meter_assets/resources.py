"""Resources shared by every domain: the lake and an in-process DuckDB per step."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

import dagster as dg
from dagster_duckdb import DuckDBResource

from meter_assets.config import settings
from meter_assets.storage import Lake


class LakeResource(dg.ConfigurableResource):
    """The lake root (`METER_LAKE`): a local folder, or an object store URI."""

    root: str

    def lake(self) -> Lake:
        return Lake(self.root)


@contextmanager
def scratch_dir():
    """A local folder for one step's intermediate files, removed when the step ends."""
    base = os.path.join(settings().data_dir, "scratch")
    os.makedirs(base, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base) as path:
        yield path


def duckdb_resource() -> DuckDBResource:
    """A fresh in-memory DuckDB for each step: no shared database file, no write lock to fight."""
    s = settings()
    spill = os.path.abspath(os.path.join(s.data_dir, "scratch", "duckdb-spill"))
    return DuckDBResource(
        database=":memory:",
        connection_config={
            "threads": s.duckdb_threads,
            "memory_limit": s.duckdb_memory_limit,
            "preserve_insertion_order": False,
            "temp_directory": spill,
        },
    )


def resources() -> dict:
    return {"lake": LakeResource(root=settings().lake), "duckdb": duckdb_resource()}
