"""Tick time of the raw arrivals sensor against a year of raw keys at full scale.

    python bench/sensor.py [--days 365] [--groups 20]

Fills a bucket on a local S3 API (moto in server mode, 127.0.0.1) with one key per
collection group and UTC hour for a year (20 groups x 24 hours x 365 days = 175,200 keys,
empty objects), then times the recent-window path of a tick and the full sweep.
"""

import argparse
import datetime as dt
import os
import socket
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    port = free_port()
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1")
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    from meter_assets.ingest.arrivals import Cursor, find_arrivals
    from meter_assets.storage import Lake

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        client = boto3.client("s3")
        client.create_bucket(Bucket="bench-lake")
        today = dt.date.today()
        first = dt.datetime.combine(today - dt.timedelta(days=args.days), dt.time())
        keys = [
            f"lake/{hour:raw/%Y/%m/%d/%H}/alpha-g{g:03d}-{hour:%Y%m%d%H}-b1.csv.gz"
            for hour in (first + dt.timedelta(hours=h) for h in range(args.days * 24))
            for g in range(args.groups)
        ]
        began = time.perf_counter()
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda k: client.put_object(Bucket="bench-lake", Key=k, Body=b""), keys))
        print(f"filled the bucket with {len(keys):,} raw keys in {time.perf_counter() - began:.0f} s")

        lake = Lake("s3://bench-lake/lake", s3_client=client)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)

        def tick(cursor: Cursor, at: dt.datetime) -> tuple[float, Cursor, int]:
            t = time.perf_counter()
            arrivals, cursor = find_arrivals(lake, cursor, now=at, today=today, window_days=35,
                                             sweep_every=dt.timedelta(hours=24), first_partition=dt.date(2020, 1, 1))
            return time.perf_counter() - t, cursor, len(arrivals)

        _, cursor, _ = tick(Cursor(), now)
        recent = []
        for i in range(args.repeat):
            seconds, cursor, found = tick(cursor, now + dt.timedelta(minutes=i + 1))
            recent.append(seconds)
        sweeps = []
        for i in range(args.repeat):
            seconds, cursor, found = tick(cursor, now + dt.timedelta(days=i + 1))
            sweeps.append(seconds)
        print(f"recent-window tick (35 days, {35 * 24 * args.groups:,} keys listed): "
              f"median {statistics.median(recent):.2f} s over {args.repeat}")
        print(f"tick with the full sweep ({len(keys):,} keys listed): median {statistics.median(sweeps):.2f} s "
              f"over {args.repeat}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
