"""A run whose process is killed mid-step, under Dagster's real daemon: run monitoring fails it,
its pool slot is freed, the run is retried from the failed step, and the next run is not
blocked; nobody steps in."""

import datetime as dt
import os
import signal
import subprocess
import time

import dagster as dg
import psutil
import yaml

from meter_assets.config import settings
from meter_assets.runs import run_process
from meter_assets.simulator.cli import generate, release_late
from meter_assets.simulator.headend import FaultRates
from meter_assets.storage import Lake

from .conftest import materialize_days
from .daemon_support import daemon_env, dagster_home, start_daemon, stop, wait_for

# the project's dagster.yaml, with the monitoring intervals a test can wait for
POLL_S = 2
FREE_AFTER_S = 2


def _runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return [r for r in instance.get_runs() if r.tags.get("meter/trigger", "").startswith("raw_arrivals")]


def _step_started(instance: dg.DagsterInstance, run_id: str, step: str) -> bool:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    return any(r.event_log_entry.step_key == step for r in records)


def _claimed(instance: dg.DagsterInstance) -> list:
    return instance.event_log_storage.get_concurrency_info("lake_compute").claimed_slots


def test_a_killed_run_is_failed_and_frees_its_pool_slot(tmp_path):
    # what dies is a process: the lake's backend does not matter here (a local folder)
    lake_root = str(tmp_path / "lake")
    home, workspace = dagster_home(tmp_path)
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    assert config["run_launcher"]["class"] == "LocalRunLauncher"
    config["run_monitoring"].update(poll_interval_seconds=POLL_S, free_slots_after_run_end_seconds=FREE_AFTER_S)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))

    # the same two days every run: London's 25-hour day (26 October 2025) and the one after it
    days = [dt.date(2025, 10, 26), dt.date(2025, 10, 27)]
    today = dt.datetime.now(settings().tz).date()
    lake = Lake(lake_root)
    # enough meters that curating a day takes seconds, and every file of both days late
    generate(
        lake,
        meters=2000,
        start=days[0],
        days=2,
        seed=31,
        rates=FaultRates(late_file=1.0, late_max_days=1, truncated_files=0, malformed=0.0),
        log=lambda *_: None,
    )
    env = daemon_env(home, lake_root, days[0])
    daemon_log = open(tmp_path / "daemon.log", "w")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        materialize_days(lake_root, [], instance=instance)
        daemon = start_daemon(workspace, env, daemon_log)
        try:
            wait_for(
                lambda: any(
                    s.name == "raw_arrivals_sensor" and getattr(s.instigator_data, "cursor", None)
                    for s in instance.all_instigator_state()
                ),
                120,
                "the sensor's first tick",
            )
            release_late(lake, today, dates={days[0]})
            (run,) = wait_for(lambda: _runs(instance), 120, "the sensor's run")
            deadline = time.monotonic() + 180
            # the step that curates a day (reads_15min and its quarantine) runs for seconds: look often
            while not _step_started(instance, run.run_id, "curated_readings"):
                assert time.monotonic() < deadline, "curated_readings did not start"
                time.sleep(0.1)
            assert _claimed(instance), "the curating step holds a lake_compute slot"
            pid, _, launched = run_process(instance, run.run_id)
            assert launched, "the code server reported starting it"
            # The code server that started the run would report its death itself ("terminated by
            # signal 9"): held still, it cannot, so only the health check can fail the run, as
            # after a reboot or a crash of the code server.
            code_server = psutil.Process(pid).parent()
            code_server.suspend()
            try:
                os.kill(pid, signal.SIGKILL)
                killed_at = time.monotonic()
                failed = wait_for(
                    lambda: (r := instance.get_run_by_id(run.run_id)).is_finished and r,
                    120,
                    "run monitoring to fail the killed run",
                )
            finally:
                code_server.resume()
            seconds_to_failed = time.monotonic() - killed_at
            assert failed.status == dg.DagsterRunStatus.FAILURE
            messages = [
                f"{e.user_message} {e.dagster_event.message if e.dagster_event else ''}"
                for e in (r.event_log_entry for r in instance.get_records_for_run(run.run_id).records)
            ]
            # run monitoring's health check failed it, and says why
            assert any(f"the run's process {pid} is gone" in m for m in messages)
            assert not any("terminated by signal" in m for m in messages)
            wait_for(lambda: not _claimed(instance), 120, "the killed run's pool slot to be freed")
            seconds_to_freed = time.monotonic() - killed_at
            print(f"killed run failed after {seconds_to_failed:.1f} s, its slot freed after {seconds_to_freed:.1f} s")

            # a dead worker is retried (dagster.yaml's run_retries), from the step it died in
            (retry,) = wait_for(
                lambda: [r for r in _runs(instance) if r.tags.get("dagster/parent_run_id") == run.run_id],
                120,
                "the killed run's retry",
            )
            assert retry.tags["dagster/retry_number"] == "1"
            assert retry.tags["dagster/partition"] == run.tags["dagster/partition"]
            retried = wait_for(
                lambda: (r := instance.get_run_by_id(retry.run_id)).is_finished and r, 300, "the retry to finish"
            )
            assert retried.status == dg.DagsterRunStatus.SUCCESS
            assert _step_started(instance, retry.run_id, "curated_readings")
            assert not _step_started(instance, retry.run_id, "raw_meter_files"), "the retry starts where the run died"

            # the next day's late files are built without anyone stepping in
            release_late(lake, today, dates={days[1]})
            nxt = wait_for(
                lambda: [r for r in _runs(instance) if r.run_id not in (run.run_id, retry.run_id)], 120, "the next run"
            )[0]
            done = wait_for(
                lambda: (r := instance.get_run_by_id(nxt.run_id)).is_finished and r, 300, "the next run to finish"
            )
            assert done.status == dg.DagsterRunStatus.SUCCESS
        finally:
            stop(daemon)
            daemon_log.close()


def test_the_health_check_tells_a_live_run_process_from_a_dead_or_reused_one(tmp_path):
    """What run monitoring asks when the code server that started a run is gone too (a reboot,
    a crash): the process the code server reported, as it reports it."""
    from dagster._core.events import EngineEventData
    from dagster._core.launcher.base import WorkerStatus

    from meter_assets.runs import process_alive

    home, _ = dagster_home(tmp_path)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        launcher = instance.run_launcher

        def run_reporting(pid: int | None, message: str = "Started process for run (pid: {pid}).") -> dg.DagsterRun:
            run = instance.create_run_for_job(dg.GraphDefinition(name="nothing").to_job())
            if pid is not None:
                instance.report_engine_event(message.format(pid=pid), run, EngineEventData.in_process(pid))
            return run

        alive = subprocess.Popen(["sleep", "60"])
        dead = subprocess.Popen(["true"])
        dead.wait()
        zombie = subprocess.Popen(["sleep", "60"])
        try:
            statuses = {
                name: launcher.check_run_worker_health(run_reporting(pid)).status
                for name, pid in (("alive", alive.pid), ("dead", dead.pid), ("not yet reported", None))
            }
            # a run started from the command line (`dagster asset materialize`): no code server
            # reported its process, its executor did; judged once it was seen alive here
            killed = subprocess.Popen(["sleep", "60"])
            command_run = run_reporting(killed.pid, "Executing steps in process (pid: {pid})")
            statuses["from the command line, alive"] = launcher.check_run_worker_health(command_run).status
            killed.kill()
            killed.wait()
            statuses["from the command line, killed"] = launcher.check_run_worker_health(command_run).status
            for name, message in (
                ("from a command never seen", "Executing steps in process (pid: {pid})"),
                (
                    "multiprocess, never seen",
                    "Executing steps using multiprocess executor: parent process (pid: {pid})",
                ),
            ):
                statuses[name] = launcher.check_run_worker_health(run_reporting(dead.pid, message)).status
            zombie_run = run_reporting(zombie.pid)
            os.kill(zombie.pid, signal.SIGKILL)
            time.sleep(0.5)  # killed, not yet reaped by its parent (this test)
            statuses["zombie"] = launcher.check_run_worker_health(zombie_run).status
        finally:
            alive.kill()
            alive.wait()
            zombie.wait()
    assert statuses == {
        "alive": WorkerStatus.RUNNING,
        "dead": WorkerStatus.FAILED,
        "not yet reported": WorkerStatus.RUNNING,
        "from the command line, alive": WorkerStatus.RUNNING,
        "from the command line, killed": WorkerStatus.FAILED,
        # another container's process is invisible here: not judged, never failed by mistake
        "from a command never seen": WorkerStatus.RUNNING,
        "multiprocess, never seen": WorkerStatus.RUNNING,
        "zombie": WorkerStatus.FAILED,
    }
    # a number now held by a process that started after the run's was reported is not the run's
    assert process_alive(os.getpid(), time.time()) and not process_alive(os.getpid(), time.time() - 3600)
