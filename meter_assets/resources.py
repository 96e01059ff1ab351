"""Resources shared by every domain: the lake and an in-process DuckDB per step."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_duckdb import DuckDBResource
from pydantic import Field

from meter_assets.config import settings
from meter_assets.storage import Lake


def s3_resource() -> S3Resource:
    """Dagster's S3 resource, configured by the standard AWS variables (`AWS_ENDPOINT_URL`, ...)."""
    return S3Resource(endpoint_url=settings().aws_endpoint_url, region_name=settings().aws_region)


class LakeResource(dg.ConfigurableResource):
    """The lake root (`METER_LAKE`): a local folder or `s3://bucket/prefix`."""

    root: str
    s3: S3Resource

    def lake(self) -> Lake:
        return Lake(self.root, s3_client=self.s3.get_client() if self.root.startswith("s3://") else None)


@dataclass(frozen=True)
class Limits:
    quarantine_max_rate: float
    missing_warn_share: float
    silent_meters_warn: int


class CheckThresholds(dg.ConfigurableResource):
    """The limits the daily data-quality checks hold a day to. Shown with the resources in Dagster's
    UI and changeable for one run in the launchpad (say, for a day an operator knows is damaged);
    a limit left unset is the environment's (`METER_QUARANTINE_MAX_RATE`, `METER_MISSING_WARN_SHARE`,
    `METER_SILENT_METERS_WARN`)."""

    quarantine_max_rate: float | None = Field(
        None, ge=0, le=1, description="quarantined rows / rows read above which a day's readings are not published"
    )
    missing_warn_share: float | None = Field(None, ge=0, le=1, description="share of missing quarter hours that warns")
    silent_meters_warn: int | None = Field(
        None, ge=0, description="meters with no reading all day above which the operations report warns"
    )

    @classmethod
    def from_settings(cls) -> CheckThresholds:
        limits = cls().limits()
        return cls(**vars(limits))

    def limits(self) -> Limits:
        s = settings()
        return Limits(
            quarantine_max_rate=s.quarantine_max_rate if self.quarantine_max_rate is None else self.quarantine_max_rate,
            missing_warn_share=s.missing_warn_share if self.missing_warn_share is None else self.missing_warn_share,
            silent_meters_warn=s.silent_meters_warn if self.silent_meters_warn is None else self.silent_meters_warn,
        )


class PostgresResource(dg.ConfigurableResource):
    """The platform's PostgreSQL as the pipeline's role: `dsn`, else `METER_PG_PIPELINE_DSN`,
    else the embedded server's (schema migrated by the owner's role first)."""

    dsn: str | None = None

    @contextmanager
    def connect(self):
        from meter_assets import postgres

        with postgres.connect(self.dsn) as conn:
            yield conn


@contextmanager
def lake_duckdb(duckdb: DuckDBResource, lake: Lake):
    """A step's DuckDB connection, able to read and write the lake's URIs."""
    with duckdb.get_connection() as con:
        lake.configure_duckdb(con)
        yield con


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
    os.makedirs(spill, exist_ok=True)
    return DuckDBResource(
        database=":memory:",
        connection_config={
            "threads": s.duckdb_threads,
            "memory_limit": s.duckdb_memory_limit,
            "preserve_insertion_order": False,
            "temp_directory": spill,
        },
    )


def resources(root: str | None = None) -> dict:
    """Every resource the code location uses; `root` overrides `METER_LAKE`."""
    s3 = s3_resource()
    return {
        "lake": LakeResource(root=root or settings().lake, s3=s3),
        "duckdb": duckdb_resource(),
        "postgres": PostgresResource(),
        "thresholds": CheckThresholds.from_settings(),
    }
