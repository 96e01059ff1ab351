"""The run launcher for one machine: Dagster's default (each run a process the code server
starts) that also answers run monitoring's question "is this run's process still alive?".

Dagster's `DefaultRunLauncher` cannot answer it, so a run whose process was killed (kill -9,
the out-of-memory killer, a reboot) stays STARTED and keeps its `lake_compute` pool slots
until an operator steps in. Here the daemon's run monitoring asks every
`run_monitoring.poll_interval_seconds`; a run whose process is gone is marked failed, and the
daemon frees its slots `free_slots_after_run_end_seconds` later (`dagster.yaml`).

The process is the one the code server reported starting for the run (the "Started process
for run (pid: N)" engine event) or, for a run nobody launched (`dagster asset materialize`,
`dagster job execute`: the command's own process runs it), the one its executor reported
running its steps in ("Executing steps in process (pid: N)", or the multiprocess executor's
parent process), on this machine (the launcher is for one machine: a cluster has a launcher
of its own); a process with that number started later is another one (Linux `/proc` tells
when a process started). A run started from a command is judged only once this process has
seen it alive: a command in a container of its own runs where its process cannot be seen.
"""

from __future__ import annotations

import os

import dagster as dg
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus

# engine events that name the process a run lives in: the code server's, when it started the
# run; the executor's, wherever the run was started (a command line runs it in its own process)
RUN_PROCESS_EVENTS = (
    "Started process for run (pid: ",
    "Executing steps in process (pid: ",
    "Executing steps using multiprocess executor: parent process (pid: ",
)
# a process that started this long after the run's was reported is not the run's
PID_REUSE_SLACK_S = 5.0


class LocalRunLauncher(DefaultRunLauncher):
    """Dagster's default launcher, with a run worker health check for run monitoring."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        started = run_process(self._instance, run.run_id)
        if started is None:  # not reported yet: nothing to judge
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no process reported yet")
        pid, reported_at, launched = started
        seen = self.__dict__.setdefault("seen_alive", set())
        if process_alive(pid, reported_at):
            seen.add(run.run_id)
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        if not launched and run.run_id not in seen:
            # started by a command somewhere this process has never seen it run (another
            # container's processes are invisible here): not judged
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"process {pid} was never seen here: not judged")
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the run's process {pid} is gone (killed, or the machine restarted) without ending the run",
        )


def run_process(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float, bool] | None:
    """(pid, when it was reported, whether a code server started it) of the run's process, from
    its engine events."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT).records
    found = None
    launched = False
    for record in records:
        event = record.event_log_entry.dagster_event
        pid = event.engine_event_data.metadata.get("pid")
        if event.message and event.message.startswith(RUN_PROCESS_EVENTS) and pid is not None:
            found = int(pid.value), record.event_log_entry.timestamp
            launched = launched or event.message.startswith(RUN_PROCESS_EVENTS[0])
    return None if found is None else (*found, launched)


def process_alive(pid: int, reported_at: float) -> bool:
    """Whether process `pid` runs (not a zombie) and is the one reported at `reported_at`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, under another user
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, StopIteration, IndexError):  # no /proc: the signal is all there is
        return True
    state, start_ticks = fields[0], int(fields[19])
    started_at = boot + start_ticks / os.sysconf("SC_CLK_TCK")
    return state != "Z" and started_at <= reported_at + PID_REUSE_SLACK_S
