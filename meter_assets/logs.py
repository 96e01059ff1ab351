"""Structured logs: a JSON object a line, each naming the run, job, step and partition it belongs
to, for a log collector (Loki, CloudWatch, Elasticsearch) to index and an operator to filter by
day. `dagster.yaml`'s `python_logs` sends Dagster's run logs (what steps log through
`context.log`, and Dagster's own events) through `JsonFormatter` to the process's stderr, which
is the container's log."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from typing import TextIO


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON: time (UTC), level, message, and Dagster's context."""

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        tags = meta.get("job_tags") or {}
        event = meta.get("dagster_event")
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": meta.get("orig_message") or record.getMessage(),
            "run_id": meta.get("run_id"),
            "job": meta.get("job_name"),
            "step": meta.get("step_key"),
            "partition": tags.get("dagster/partition"),
            "event": event.event_type_value if event is not None else None,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps({k: v for k, v in entry.items() if v is not None}, default=str)


_process_stderr: TextIO | None = None


def process_stderr() -> TextIO:
    """The process's stderr as it was before any step captured it, opened once per process."""
    global _process_stderr
    if _process_stderr is None:
        try:
            _process_stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8")
        except OSError:
            _process_stderr = sys.stderr
    return _process_stderr


class ProcessStderrHandler(logging.StreamHandler):
    """Log lines to the process's own stderr, past Dagster's capture of a step's output.

    While a step runs, Dagster points file descriptor 2 at the step's compute log file and
    mirrors the file back with `tail -F`, which is stopped when the step ends and can drop the
    step's last lines (its STEP_SUCCESS among them). The handler writes to a copy of the
    descriptor taken before any capture, so every line reaches the container's log.
    """

    def __init__(self) -> None:
        super().__init__(process_stderr())
