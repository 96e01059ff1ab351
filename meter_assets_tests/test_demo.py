"""`make demo` as a person runs it, on a small retailer: the UI and the API answer, the terminal
reads as lines for a person (no JSON logs, no repeated library warnings), and Ctrl-C stops
Dagster, the API and the embedded PostgreSQL."""

import datetime as dt
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request

from .api_support import free_port
from .daemon_support import REPO, outside_env, wait_for

DAYS = 3


def ready(lines: list[str]) -> bool:
    return any(line.startswith("Demo ready.") for line in lines)


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except OSError:
        return None


def test_make_demo_serves_the_ui_and_api_and_ctrl_c_stops_everything(tmp_path):
    data = tmp_path / "data"
    ui, api = free_port(), free_port()
    env = outside_env()
    demo = subprocess.Popen(
        ["make", "demo", f"DATA={data}", "DEMO_METERS=30", f"DEMO_DAYS={DAYS}"]
        + [f"DEMO_UI_PORT={ui}", f"DEMO_API_PORT={api}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # as from a terminal: Ctrl-C is not ignored (a test runner's worker may ignore it)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(demo.stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: ready(lines) or demo.poll() is not None, 400, "the demo")
        assert demo.poll() is None, "".join(lines[-40:])
        status, _ = wait_for(lambda: _get(f"http://127.0.0.1:{ui}/server_info"), 120, "Dagster's UI")
        assert status == 200
        status, body = _get(f"http://127.0.0.1:{api}/healthz")
        yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        assert status == 200 and json.loads(body)["newest_day"] >= (yesterday - dt.timedelta(days=1)).isoformat()
        assert any(line.startswith("Your usage page, as a demo customer") for line in lines)
    finally:
        # Ctrl-C at the terminal: every process of the demo gets SIGINT
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(120)
        finally:
            if demo.poll() is None:
                os.killpg(demo.pid, signal.SIGKILL)
        reader.join(10)

    text = "".join(lines)
    materialized = [line for line in lines if ": materialized in " in line]
    assert len(materialized) == DAYS, text[-3000:]
    # lines for a person: no JSON run logs, no library warning repeated per day
    assert not [line for line in lines if line.lstrip().startswith('{"')], text[-3000:]
    warnings = [line for line in lines if "Warning:" in line]
    assert len(warnings) == len(set(warnings)) and len(lines) < 40, text[-3000:]
    # stopped by the last process that left it, or else by `meter-db stop` on the way out
    assert not (data / "postgres" / "postmaster.pid").exists(), "the embedded PostgreSQL still runs"
    servers = subprocess.run(["pgrep", "-f", f"postgres -D {data}"], capture_output=True, text=True).stdout
    assert servers == ""
    time.sleep(1)
    assert _get(f"http://127.0.0.1:{ui}/server_info") is None and _get(f"http://127.0.0.1:{api}/healthz") is None
