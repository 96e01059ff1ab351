"""The load forecast's training and backtest, run once per test session for the same inputs.

A module of its own, importing only the model: the forecast trains each series in a process it
spawns, and that process imports this module to find `remembered_run_series` (the test helpers
beside it would bring Dagster and the whole code location, three seconds a process)."""

import concurrent.futures
import fcntl
import hashlib
import os
import pickle

import pyarrow as pa

from meter_assets.forecast import model

# Where the forecast tests keep each series' run, shared by the workers of one test session;
# the environment tells the processes the forecast spawns.
RUNS_DIR = "METER_TEST_FORECAST_RUNS"
_run_series = model.run_series


def _kept(series, spec, newest, day, backtest_days) -> str:
    """Where the run of these inputs is kept."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, series.schema) as writer:
        writer.write_table(series)
    inputs = sink.getvalue().to_pybytes() + repr((spec, newest, day, backtest_days)).encode()
    return os.path.join(os.environ[RUNS_DIR], f"{hashlib.sha256(inputs).hexdigest()}.pickle")


def remembered_run_series(series, spec, newest, day, backtest_days):
    """`model.run_series`, run once per test session for the same inputs (every value of the
    series, the spec, the days). Many tests make the same day's forecast to see what is done
    with it (which bid, which check, what is kept when a step fails); its training and backtest
    are the same for all of them, so only the first pays for them. A test that changes an input
    (a late weather forecast, another day) gets a forecast of its own."""
    path = _kept(series, spec, newest, day, backtest_days)
    # two workers asking for the same run: one computes it, the other waits and reads it
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path):
            with open(path, "rb") as f:
                return pickle.load(f)
        run = _run_series(series, spec, newest, day, backtest_days)
        with open(f"{path}.part", "wb") as f:
            pickle.dump(run, f)
        os.replace(f"{path}.part", path)
    return run


class RememberingPool:
    """The forecast's process pool, which answers a run made before from where it is kept and
    starts its processes only for one that was not: a forecast made again starts none."""

    def __init__(self, *args, **kwargs):
        self._given, self._pool = (args, kwargs), None

    def submit(self, fn, *args):
        path = _kept(*args) if fn is remembered_run_series else None
        if path and os.path.exists(path):
            done = concurrent.futures.Future()
            with open(path, "rb") as f:
                done.set_result(pickle.load(f))
            return done
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(*self._given[0], **self._given[1])
        return self._pool.submit(fn, *args)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown()
