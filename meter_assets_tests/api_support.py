"""The usage API under a real uvicorn (with the production limits) against a real PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal

from meter_assets import postgres
from meter_assets.serving.store import refresh_day

FIRST_DAY = dt.date(2025, 3, 1)
DAYS = 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_days(dsn: str, folder, days: int = DAYS, customers=(1, 2, 3)) -> None:
    """Customers 1 to 3 over `days` days; customer 2's use is estimated on even days; customer 3 moves out;
    customer 1 is on a day-ahead tariff, with an average rate each day; customer 2 has solar panels
    and sends some of its use's worth to the grid each day, credited at 0.15."""
    with postgres.connect(dsn) as conn:
        conn.autocommit = True
        for d in range(days):
            day = FIRST_DAY + dt.timedelta(days=d)
            lines = []
            for c in customers:
                if c == 3 and d >= 10:
                    continue
                kwh = Decimal(c * 1000 + d) / 100
                estimated = kwh if c == 2 and d % 2 == 0 else Decimal("0.000")
                rate = f"0.{2000 + d:04d}" if c == 1 else ""
                sent = Decimal(d) / 10 if c == 2 else None
                export = ",," if sent is None else f",{sent:.3f},{-sent * Decimal('0.15'):.2f}"
                lines.append(f"{c},{day},{kwh:.3f},{estimated:.3f},{d % 3},{kwh * Decimal('0.3'):.2f},{rate}{export}\n")
            path = folder / f"{day}.csv"
            path.write_text("".join(lines))
            refresh_day(conn, day, str(path), 90, dt.datetime(2025, 4, 10, 6, 0, tzinfo=dt.UTC))


@contextlib.contextmanager
def running_api(dsn: str):
    """The application under uvicorn, with `meter-api serve`'s limits, on a free loopback port;
    yields its base URL."""
    import uvicorn

    from meter_assets.serving.api import create_app
    from meter_assets.serving.server import limits

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(dsn), host="127.0.0.1", port=port, log_level="warning", **limits())
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def api_with(pg, folder, **variables: str):
    """`running_api` over three days, as the API's role, with these METER_* settings."""
    from meter_assets.config import settings

    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    settings.cache_clear()
    try:
        load_days(pg.pipeline, folder, days=3)
        with running_api(pg.api) as url:
            yield url
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        settings.cache_clear()


def call(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            # decimals are exact JSON numbers: read them as decimals
            return response.status, json.loads(response.read(), parse_float=Decimal)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read(), parse_float=Decimal)


def raw_request(base_url: str, head: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send `head` (request line and headers, byte for byte) and read the whole answer."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    header_block, _, body = rest.partition(b"\r\n\r\n")
    headers = {}
    for line in header_block.split(b"\r\n"):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body
