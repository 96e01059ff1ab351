"""Real homes' interval readings that package registries ship, for judging estimation.

`eemeter` 4.1.1 (the OpenEEmeter project's, on PyPI) ships three homes' electricity readings
among its samples, `uk-electricity-hdd-only-hourly-sample-0/1/2`: homes in the UK whose
electricity use follows heating degree days (electric heating), with the hourly outdoor
temperature of their area. Sample 0 is hourly from April 2020 to December 2022; samples 1 and
2 are half-hourly from 2012 to 2014, the period and resolution of the Low Carbon London
smart-meter trial. The package says no more of their origin. Its other samples (`il-...`) are
simulated, its documentation says, and are not used.

The wheel is fetched once from the package index (no dependencies installed: only its sample
files are read) and checked against its published SHA-256 before any file in it is trusted.
Readings are kWh per interval starting at the time given (UTC), split evenly into quarter hours.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass

import numpy as np

WHEEL = "eemeter-4.1.1-py3-none-any.whl"
WHEEL_SHA256 = "2b9002d80ba11257764785f6f0e1f29a4f17f897e1cdffa4ac49429e7c2e3578"
SAMPLES = "eemeter/eemeter/samples/"
HOMES = {
    "uk_heated_0": ("uk-electricity-hdd-only-hourly-sample-0.csv.gz", "uk-tempC-sample-0.csv.gz"),
    "uk_heated_1": ("uk-electricity-hdd-only-hourly-sample-1.csv.gz", "uk-tempC-sample-1_2.csv.gz"),
    "uk_heated_2": ("uk-electricity-hdd-only-hourly-sample-2.csv.gz", "uk-tempC-sample-1_2.csv.gz"),
}
Q = np.timedelta64(15, "m")


@dataclass
class Home:
    name: str
    starts: np.ndarray  # UTC quarter-hour starts, datetime64[m], every one from first to last
    wh: np.ndarray  # Wh per quarter hour, -1 where the home has no reading
    hourly_temperature: dict  # UTC hour (datetime64[h]) -> degrees C


def wheel(cache: str) -> str:
    """The eemeter wheel in `cache`, fetched from the package index if it is not there yet."""
    path = os.path.join(cache, WHEEL)
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "eemeter==4.1.1",
                "-d",
                cache,
            ],
            check=True,
        )
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != WHEEL_SHA256:
        raise RuntimeError(f"{path}: SHA-256 {digest}, not the published {WHEEL_SHA256}")
    return path


def _csv(archive: zipfile.ZipFile, name: str) -> list[list[str]]:
    text = gzip.decompress(archive.read(SAMPLES + name)).decode()
    return [line.split(",") for line in io.StringIO(text).read().splitlines()[1:] if line]


def home(name: str, cache: str) -> Home:
    readings, temperatures = HOMES[name]
    with zipfile.ZipFile(wheel(cache)) as archive:
        rows = _csv(archive, readings)
        temps = _csv(archive, temperatures)
    # the first of a repeated interval is kept (samples 1 and 2 repeat some)
    seen = {}
    for start, value in rows:
        t = np.datetime64(start.replace("+00:00", "").replace(" ", "T"), "m")
        seen.setdefault(t, float(value))
    times = np.array(sorted(seen), dtype="datetime64[m]")
    step = int(np.median(np.diff(times)).astype(int))
    quarters = step // 15
    first, last = times[0], times[-1] + np.timedelta64(step, "m")
    starts = np.arange(first, last, Q)
    wh = np.full(len(starts), -1, dtype=np.int64)
    for t in times:
        i = int((t - first) // Q)
        # kWh of the interval in whole Wh, split evenly (the remainder to its first quarters)
        total = round(seen[t] * 1000)
        parts = [total // quarters + (1 if k < total % quarters else 0) for k in range(quarters)]
        wh[i : i + quarters] = parts
    hourly = {np.datetime64(r[1].replace(" ", "T"), "h"): float(r[2]) for r in temps if r[2]}
    return Home(name, starts, wh, hourly)
