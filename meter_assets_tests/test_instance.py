"""Dagster's own state (runs, the event log, schedules and sensors) in PostgreSQL through
dagster-postgres, in a database of its own on the platform's server; the queue and the
retries of runs whose worker died, as dagster.yaml sets them."""

import json
import os
import subprocess
import sys

import dagster as dg
import psycopg
import pytest
import yaml
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from meter_assets import postgres
from meter_assets.definitions import build
from meter_assets.jobs import RETRY_TAG

from .daemon_support import REPO, dagster_home
from .db_support import older_installation

# a run in another process: what a daemon, a webserver or a run worker does with the instance
ONE_RUN = """
import sys
import dagster as dg

@dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2024-05-01"))
def one(context: dg.AssetExecutionContext) -> int:
    context.log.info("counted one")
    return 1

with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    result = dg.materialize([one], instance=instance, partition_key="2024-05-14")
    print(result.run_id, instance.get_run_by_id(result.run_id).status.value)
"""


def _run_elsewhere(home, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", ONE_RUN, str(home)], env=env, capture_output=True, text=True, timeout=180
    )


def _runs_in(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT run_id, status FROM runs").fetchall()


def test_dagster_keeps_its_state_in_a_database_of_its_own(tmp_path):
    home, _ = dagster_home(tmp_path)
    database = yaml.safe_load((home / "dagster.yaml").read_text())["run_storage"]["config"]["embedded_database"]
    done = _run_elsewhere(home)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id, status = done.stdout.split()
    assert status == "SUCCESS"

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        # another process's run, its events and its materialization
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_latest_materialization_event(dg.AssetKey("one")).run_id == run_id
        # SQLAlchemy's URL names its driver; libpq's does not
        url = instance.run_storage.postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    assert [p.name for p in home.rglob("*") if p.suffix in (".db", ".sqlite")] == [], "nothing in SQLite files"

    # the run's logs on stderr, one JSON object a line, each with its run, step and partition
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    (said,) = [entry for entry in logged if entry["message"] == "counted one"]
    assert said["run_id"] == run_id and said["partition"] == "2024-05-14"
    assert said["step"] == "one" and said["level"] == "INFO" and said["time"].endswith("+00:00")
    assert {"STEP_START", "STEP_SUCCESS", "PIPELINE_SUCCESS"} <= {entry.get("event") for entry in logged}

    assert _runs_in(url) == [(run_id, "SUCCESS")]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("meter_dagster", database)
    # the platform's roles do not reach Dagster's database, nor Dagster's role the platform's
    platform = postgres.dsns()
    for dsn in (platform.owner, platform.pipeline, platform.api):
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(make_conninfo(dsn, dbname=database)).close()
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(make_conninfo(url, dbname=conninfo_to_dict(platform.owner)["dbname"])).close()


def test_runs_are_queued_and_only_a_dead_worker_is_retried(tmp_path):
    home, _ = dagster_home(tmp_path)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        # a run its own steps failed (a blocking check, bad data) would fail the same way again
        assert instance.run_retries_retry_on_asset_or_op_failure is False
    jobs = [job for job in build().resolve_all_job_defs() if not job.name.startswith("__")]
    assert {job.name for job in jobs} >= {"daily_readings_job", "issue_bills_job", "load_forecast_job"}
    unsaid = [job.name for job in jobs if not job.tags.get(RETRY_TAG, "").isdigit()]
    assert unsaid == [], f"jobs that do not say how often a dead run is retried: {unsaid}"


def test_a_deployment_names_dagsters_database_and_meter_db_setup_creates_it(tmp_path):
    """Against another server (the embedded one only hosts it here): `METER_DAGSTER_PG_URL`
    names the database, `meter-db setup` creates it and its role, and every process uses it."""
    admin = older_installation(str(tmp_path / "pg"), until=0)
    host = conninfo_to_dict(admin)["host"]
    chosen = {
        f"METER_PG_{role.removeprefix('meter_').upper()}_DSN": make_conninfo(admin, user=role, password=f"{role}-pw")
        for role in postgres.ROLES
    }
    url = f"postgresql://meter_dagster:dagster-pw@/dagster_deployed?host={host}"
    env = {**os.environ, **chosen, "METER_PG_ADMIN_DSN": admin, "METER_DAGSTER_PG_URL": url}
    meter_db = os.path.join(os.path.dirname(sys.executable), "meter-db")
    setup = subprocess.run([meter_db, "setup"], env=env, capture_output=True, text=True, timeout=120)
    assert setup.returncode == 0, setup.stderr[-2000:]

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(open(os.path.join(REPO, "dagster.yaml")).read())
    del env["METER_PG_ADMIN_DSN"]
    done = _run_elsewhere(home, env)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id, status = done.stdout.split()
    assert _runs_in(url) == [(run_id, status)] and status == "SUCCESS"
