"""Tick time of the raw arrivals sensor against a year of raw keys at full scale.

    python bench/sensor.py [--days 365] [--groups 20] [--repeat 3]

Fills a lake with one key per collection group and UTC hour for a year (20 groups x 24
hours x 365 days = 175,200 keys, empty objects), then times the recent-window path of a
tick and a tick with the full sweep, on a local S3 API (moto in server mode, 127.0.0.1)
and on a local folder. For S3 it also counts the LIST requests, the cost that carries
over to a real bucket.
"""

import argparse
import datetime as dt
import logging
import os
import socket
import statistics
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(lake, today: dt.date, repeat: int, list_calls=lambda: 0) -> dict:
    from meter_assets.ingest.arrivals import Cursor, find_arrivals

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    def tick(cursor, at):
        calls = list_calls()
        began = time.perf_counter()
        _, cursor = find_arrivals(
            lake,
            cursor,
            now=at,
            today=today,
            window_days=35,
            sweep_every=dt.timedelta(hours=24),
            first_partition=dt.date(2020, 1, 1),
        )
        return time.perf_counter() - began, cursor, list_calls() - calls

    _, cursor, _ = tick(Cursor(), now)
    recent, sweeps = [], []
    for i in range(repeat):
        seconds, cursor, recent_calls = tick(cursor, now + dt.timedelta(minutes=i + 1))
        recent.append(seconds)
    for i in range(repeat):
        seconds, cursor, sweep_calls = tick(cursor, now + dt.timedelta(days=i + 1))
        sweeps.append(seconds)
    return {
        "recent_s": statistics.median(recent),
        "sweep_s": statistics.median(sweeps),
        "recent_list_calls": recent_calls,
        "sweep_list_calls": sweep_calls,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    port = free_port()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
    )
    import boto3
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    from meter_assets.storage import Lake

    today = dt.date.today()
    first = dt.datetime.combine(today - dt.timedelta(days=args.days), dt.time())
    keys = [
        f"{hour:raw/%Y/%m/%d/%H}/alpha-g{g:03d}-{hour:%Y%m%d%H}-b1.csv.gz"
        for hour in (first + dt.timedelta(hours=h) for h in range(args.days * 24))
        for g in range(args.groups)
    ]
    print(f"{len(keys):,} raw keys: {args.days} days x 24 hours x {args.groups} collection groups")

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        client = boto3.client("s3")
        client.create_bucket(Bucket="bench-lake")
        # Filling is set-up, not what is measured: the keys go straight into the server's
        # store (a PUT each over HTTP would take the better part of an hour); every listing
        # timed below goes over HTTP like any S3 client's.
        store = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for key in keys:
            store.put_object("bench-lake", f"lake/{key}", b"", disable_notification=True)
        calls = {"n": 0}
        client.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: calls.__setitem__("n", calls["n"] + 1))
        s3 = measure(Lake("s3://bench-lake/lake", s3_client=client), today, args.repeat, lambda: calls["n"])
    finally:
        server.stop()

    with tempfile.TemporaryDirectory() as root:
        for key in keys:
            path = os.path.join(root, key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "wb").close()
        local = measure(Lake(root), today, args.repeat)

    print(
        f"S3 (moto on loopback): recent-window tick {s3['recent_s']:.2f} s with {s3['recent_list_calls']} LIST "
        f"requests; tick with the full sweep {s3['sweep_s']:.2f} s with {s3['sweep_list_calls']} LIST requests"
    )
    print(
        f"local folder:          recent-window tick {local['recent_s']:.2f} s; "
        f"tick with the full sweep {local['sweep_s']:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
