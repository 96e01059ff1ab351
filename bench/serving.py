"""Full-scale benchmark of the usage serving table, the API and the page.

    python bench/serving.py --meters 200000 [--end 2024-06-30] [--workdir data/bench-serving] [--reuse]

Ninety days of curated readings for 200,000 meters (bench/fullscale.py) and their
rollups, then, each step in its own process:

- `backfill`: `usage_serving` materialized for all 90 days from an empty table, in date
  order, through Dagster's executor (each day priced in DuckDB, then COPYed into
  PostgreSQL): 18 M rows;
- `refresh`: the newest day materialized again (what a late file, or tomorrow, costs);
- `api`: `meter-api serve` in its own process, and `wrk` (Debian's package) in another
  driving `GET /api/v1/me/usage?days=90` for random customers over 50 connections on
  loopback for 30 s: latency percentiles and throughput;
- `page`: the page loaded in headless Chromium (Debian's) for a customer with 90 days,
  ten times: time from navigation to the chart drawn.

Results are also written to `<workdir>/serving.json`.
"""

import datetime as dt
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import psycopg
from fullscale import bench_parser, prepare_workdir, run_steps, step_result, write_readings, write_rollups

DAYS = 90

WRK_SCRIPT = r"""
local tokens = {}
for line in io.lines(os.getenv("METER_BENCH_TOKENS")) do tokens[#tokens + 1] = line end
request = function()
  return wrk.format("GET", "/api/v1/me/usage?days=90", {["Authorization"] = "Bearer " .. tokens[math.random(#tokens)]})
end
done = function(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.3f, "p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, '
    .. '"socket_errors": %d, "non_2xx": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""


def days_ending(end: dt.date) -> list[dt.date]:
    return [end - dt.timedelta(days=DAYS - 1 - d) for d in range(DAYS)]


def materialize_serving(lake: str, days: list[dt.date]) -> dict:
    import dagster as dg

    from meter_assets.definitions import assets
    from meter_assets.resources import resources

    compute = load = 0.0
    rows = 0
    for day in days:
        result = dg.materialize(assets("usage_serving"), partition_key=day.isoformat(), resources=resources(lake))
        metadata = result.asset_materializations_for_node("usage_serving")[0].metadata
        compute += metadata["compute_seconds"].value
        load += metadata["load_seconds"].value
        rows += metadata["rows"].value
    return {"rows": rows, "compute_seconds": round(compute, 2), "load_seconds": round(load, 2)}


def settle() -> float:
    """What autovacuum and the checkpointer do within minutes of a bulk load, done at once:
    statistics and the visibility map of the new rows, and their pages written out."""
    from psycopg.conninfo import make_conninfo

    from meter_assets import postgres
    from meter_assets.config import settings

    # VACUUM is the owner's; CHECKPOINT the embedded server's superuser's
    owner = postgres.dsns().of("meter_owner")
    with open(os.path.join(settings().data_dir, "postgres", "meter_roles.json")) as f:
        superuser = make_conninfo(owner, user="postgres", password=json.load(f)["postgres"])
    began = time.perf_counter()
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) serving.daily_usage")
    with psycopg.connect(superuser, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    return round(time.perf_counter() - began, 2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_api(port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "meter-api"), "serve", "--port", str(port)]
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return server
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.2)


def customers_with_days(count: int) -> list[int]:
    from meter_assets import postgres

    with postgres.connect() as conn:
        ids = [c for (c,) in conn.execute("SELECT DISTINCT customer_id FROM serving.bill_estimates")]
    return random.Random(7).sample(ids, min(count, len(ids)))


def api_load(workdir: str) -> dict:
    from meter_assets.serving.auth import mint

    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    port = free_port()
    tokens = os.path.join(workdir, "tokens.txt")
    with open(tokens, "w") as f:
        f.writelines(f"{mint(c)}\n" for c in customers_with_days(5000))
    script = os.path.join(workdir, "usage.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT)
    server = start_api(port)
    try:
        out = subprocess.run(
            [wrk, "-t1", "-c50", "-d30s", "--latency", "-s", script, f"http://127.0.0.1:{port}"],
            env={**os.environ, "METER_BENCH_TOKENS": tokens},
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])
    result["requests_per_second"] = round(result["requests"] / result["seconds"])
    return result


def page_load(workdir: str) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from meter_assets.serving.auth import mint

    port = free_port()
    server = start_api(port)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(dir=workdir)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    loads = []
    try:
        for customer in customers_with_days(10):
            driver.get(f"http://127.0.0.1:{port}/?days=90#token={mint(customer)}")
            WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
            loads.append(int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready-ms")))
            driver.get("about:blank")
    finally:
        driver.quit()
        server.terminate()
        server.wait(timeout=30)
    return {"loads_ms": loads, "median_ms": statistics.median(loads), "max_ms": max(loads)}


def step(name: str, lake: str, workdir: str, meters: int, end: dt.date) -> dict:
    days = days_ending(end)
    began = time.perf_counter()
    facts: dict = {}
    if name == "readings":
        facts["rows"] = write_readings(lake, meters, days)
        write_rollups(lake, days)
    elif name == "backfill":
        facts = materialize_serving(lake, days)
        facts["settle_seconds"] = settle()
    elif name == "refresh":
        # the same day three times: a late file's rebuild, then the same again, as steady state
        runs = []
        for _ in range(3):
            began_run = time.perf_counter()
            runs.append({**materialize_serving(lake, days[-1:]), "seconds": round(time.perf_counter() - began_run, 2)})
        facts = {
            **runs[0],
            "runs_seconds": [r["seconds"] for r in runs],
            "runs_load_seconds": [r["load_seconds"] for r in runs],
        }
    elif name == "api":
        facts = api_load(workdir)
    elif name == "page":
        facts = page_load(workdir)
    else:
        raise ValueError(name)
    return step_result(name, began, facts)


def main() -> int:
    parser = bench_parser(__doc__, "bench-serving")
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2024, 6, 30))
    args = parser.parse_args()
    workdir = os.path.abspath(args.workdir)
    lake = os.path.join(workdir, "lake")
    if args.step:
        print(json.dumps(step(args.step, lake, workdir, args.meters, args.end)))
        return 0

    steps = ["backfill", "refresh", "api", "page"] if args.reuse else ["readings", "backfill", "refresh", "api", "page"]
    env = prepare_workdir(workdir, args.reuse, days_ending(args.end)[0])
    results = {
        r["step"]: r
        for r in run_steps(
            __file__, steps, ["--meters", str(args.meters), "--end", args.end.isoformat(), "--workdir", workdir], env
        )
    }
    backfill, refresh, api, page = (results[k] for k in ("backfill", "refresh", "api", "page"))
    print(
        f"from-scratch load of {DAYS} days ({backfill['rows']:,} rows): {backfill['seconds']:.1f} s, of which "
        f"{backfill['load_seconds']:.1f} s in PostgreSQL"
    )
    print(
        f"one day's refresh: {refresh['runs_seconds'][0]:.1f} s, then {refresh['runs_seconds'][1]:.1f} s and "
        f"{refresh['runs_seconds'][2]:.1f} s (target: under 10 s)"
    )
    print(
        f"API at 50 connections: p50 {api['p50_ms']:.1f} ms, p95 {api['p95_ms']:.1f} ms, p99 {api['p99_ms']:.1f} ms "
        f"(target: p99 under 50 ms), {api['requests_per_second']:,} requests/s"
    )
    print(f"page load to chart drawn: median {page['median_ms']} ms, max {page['max_ms']} ms (target: under 2,000 ms)")
    with open(os.path.join(workdir, "serving.json"), "w") as f:
        json.dump({"meters": args.meters, "end": args.end.isoformat(), "steps": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
