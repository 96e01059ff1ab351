"""The forecast tests' retailer: 120 days of a 1,000-meter portfolio's load and weather, and
the published forecast of the whole portfolio."""

import concurrent.futures
import datetime as dt
import fcntl
import hashlib
import os
import pickle

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from meter_assets.forecast import model
from meter_assets.forecast.assets import weather
from meter_assets.reference.assets import reference_assets
from meter_assets.simulator.portfolio import write_portfolio_history
from meter_assets.storage import Lake
from meter_assets.tables import FORECAST

from .conftest import resources_for

START = dt.date(2024, 1, 1)
DAYS = 120
METERS = 1000
# days of actual load after the history that forecasts are judged against: a forecast made on
# D reads the portfolio's load up to D - 1 only, so D + 1 is held back from it
HELD_BACK = 7


def write_history(tmp_path_factory) -> str:
    """120 days of a 1,000-meter portfolio's load and weather, straight from the load model, and
    the week after them as the actuals held back from the forecasts."""
    root = str(tmp_path_factory.mktemp("forecast") / "lake")
    write_portfolio_history(Lake(root), METERS, START, DAYS + 1 + HELD_BACK, seed=3, log=lambda *_: None)
    dg.materialize([*reference_assets, weather], resources=resources_for(root))
    return root


def portfolio_forecast(root: str, day: dt.date) -> list[dict]:
    """The published forecast of the whole portfolio (the regions' rows beside it left out)."""
    rows = pq.read_table(Lake(root).files(FORECAST, day.isoformat())[0]).to_pylist()
    return [r for r in rows if r["series"] == "portfolio"]


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
