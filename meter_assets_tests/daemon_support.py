"""Dagster's real daemon over a fresh instance configured by the project's dagster.yaml."""

import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
import uuid

import yaml

from meter_assets.config import settings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# seconds between sensor ticks in the daemon tests
INTERVAL_S = 1
# and between the daemon's looks at the run queue (Dagster's default: 5)
DEQUEUE_S = 1
STORAGES = ("run_storage", "event_log_storage", "schedule_storage")


def outside_env(**more: str) -> dict[str, str]:
    """The environment of a person's shell: none of this run's platform or Dagster settings."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("METER_", "DAGSTER_"))}, **more}


def wait_for(condition, timeout: float, what: str, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def dagster_home(tmp_path):
    """A fresh instance configured by the project's dagster.yaml (Dagster's storage in a database
    of its own on the embedded server), and a workspace loading the code location."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = yaml.safe_load(open(os.path.join(REPO, "dagster.yaml")))
    database = f"dagster_{uuid.uuid4().hex}"
    for storage in STORAGES:
        config[storage]["config"] = {**config[storage]["config"], "embedded_database": database}
    config["run_coordinator"]["config"] = {"dequeue_interval_seconds": DEQUEUE_S}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: meter_assets.definitions\n"
        f"      working_directory: {REPO}\n      location_name: meter_assets\n"
    )
    return home, workspace


def daemon_env(home, lake_root: str, first_day: dt.date, **more: str) -> dict[str, str]:
    """The daemon's environment: this instance and lake, a sensor tick every INTERVAL_S, and a
    recent window that reaches back to `first_day`, however long ago it was."""
    today = dt.datetime.now(settings().tz).date()
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "METER_LAKE": lake_root,
        "METER_SENSOR_INTERVAL_SECONDS": str(INTERVAL_S),
        "METER_RECENT_WINDOW_DAYS": str((today - first_day).days + 1),
        # the daemon that retries a run whose worker died looks every second, not every five
        "DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
        **more,
    }


def start_daemon(workspace, env, log) -> subprocess.Popen:
    return subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "dagster-daemon"), "run", "-w", str(workspace)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop(daemon: subprocess.Popen) -> None:
    daemon.terminate()
    daemon.wait(timeout=60)


def sensor_state(instance, name: str):
    """The sensor's state in the instance; None before its first tick."""
    states = [s for s in instance.all_instigator_state() if s.name == name]
    return states[0] if states else None


@contextlib.contextmanager
def sensor_stopped(instance, name: str):
    """The sensor stopped in the instance while the block runs, as an operator stops it in the UI,
    and started again after it: no tick of it is under way or begins inside the block (a delivery
    made there is seen whole by the next tick, where a tick in the middle of it would see half).
    The daemon keeps running: restarting it would load the code location again."""
    from dagster._core.scheduler.instigation import InstigatorStatus, TickStatus

    def stopped():
        state = sensor_state(instance, name)
        if state.status != InstigatorStatus.STOPPED:
            instance.stop_sensor(state.instigator_origin_id, state.selector_id, None)
        return state

    def quiet() -> bool:
        """Stopped, no tick under way, and none begun for two intervals: a tick that began as the
        sensor was stopped may write its state back as running, so it is stopped again."""
        state = stopped()
        ticks = lambda: instance.get_ticks(state.instigator_origin_id, state.selector_id)  # noqa: E731
        before = ticks()
        if before and before[0].status == TickStatus.STARTED:
            return False
        time.sleep(2 * INTERVAL_S)
        after = ticks()
        return len(after) == len(before) and sensor_state(instance, name).status == InstigatorStatus.STOPPED

    wait_for(quiet, 60, f"{name} to stop")
    try:
        yield
    finally:
        state = sensor_state(instance, name)
        instance.update_instigator_state(state.with_status(InstigatorStatus.RUNNING))
