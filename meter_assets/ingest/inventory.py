"""The day's raw files: which exist, which contract each follows, and whether it reads whole."""

from __future__ import annotations

import datetime as dt
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from meter_assets.config import settings
from meter_assets.ingest import nem12
from meter_assets.ingest.contracts import file_format, match_contract
from meter_assets.market_calendar import local_day_of, utc_hours
from meter_assets.storage import Lake, LakeObject

INVENTORY_SCHEMA = pa.schema(
    [
        ("file_key", pa.string()),
        # UTC hour of the readings, from the key; of a NEM12 file, the last hour it carries; else null
        ("hour", pa.timestamp("s")),
        ("size_bytes", pa.int64()),
        ("arrived_at", pa.timestamp("s")),  # when the file landed in raw (UTC)
        ("format", pa.string()),
        ("contract", pa.string()),
        ("status", pa.string()),  # ok, unreadable, unknown_contract, unrecognised_key
        ("reason", pa.string()),
        ("rows", pa.int64()),  # data lines, header excluded; null if unreadable
        ("longest_line_bytes", pa.int64()),  # null if unreadable
    ]
)

INFLATE_STEP = 1 << 20


@dataclass(frozen=True)
class RawFile:
    file_key: str
    hour: dt.datetime | None
    size_bytes: int
    arrived_at: dt.datetime
    format: str | None
    contract: str | None
    status: str
    reason: str | None
    rows: int | None
    longest_line_bytes: int | None = None


# where a head-end file belongs: raw/YYYY/MM/DD/HH/<file>, by the UTC hour of its readings
RAW_KEY = re.compile(r"raw/(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]+")
STRAY_KEY = re.compile(r"raw/(\d{4})/(\d{1,2})/(\d{1,2})/")


def raw_objects(lake: Lake, day: dt.date) -> tuple[list[tuple[dt.datetime, LakeObject]], list[LakeObject]]:
    """Every raw object of the local day, with the UTC hour its key files it under; and the
    objects under the day's UTC date folders (written with or without leading zeros) whose
    keys are not in that layout, so the hour of their readings is unknown."""
    hours = set(utc_hours(day))
    dates = sorted({hour.date() for hour in hours})
    prefixes = [f"raw/{d:%Y/%m/%d}/" for d in dates]
    prefixes += [p for d in dates if (p := f"raw/{d.year}/{d.month}/{d.day}/") not in prefixes]
    filed, unrecognised = [], []
    for obj in lake.list_many(prefixes):
        match = RAW_KEY.fullmatch(obj.key)
        if match:
            hour = dt.datetime(*map(int, match.groups())) if int(match.group(4)) < 24 else None
            if hour in hours:
                filed.append((hour, obj))
                continue
            if hour is not None:
                continue  # a well-filed key of the neighbouring local day
        if stray_day(obj.key) == day:
            unrecognised.append(obj)
    return filed, unrecognised


def stray_day(key: str) -> dt.date | None:
    """The local day a key outside the hour layout is reported on: the one holding most of the
    UTC date folder it is under (written with or without leading zeros); None without one."""
    match = STRAY_KEY.match(key)
    if not match:
        return None
    try:
        return local_day_of(dt.datetime(*map(int, match.groups()), 12))
    except ValueError:  # not a calendar date
        return None


def unrecognised(obj: LakeObject) -> RawFile:
    return RawFile(
        file_key=obj.key,
        hour=None,
        size_bytes=obj.size,
        arrived_at=obj.modified_at,
        format=file_format(obj.key),
        contract=None,
        status="unrecognised_key",
        rows=None,
        reason="unrecognised key: not raw/YYYY/MM/DD/HH/<file>, so the hour of its readings is unknown; not read",
    )


def inspect(lake: Lake, hour: dt.datetime, obj: LakeObject) -> RawFile:
    """Decompress a file once, end to end: its contract, its line count, and any damage."""
    fmt = file_format(obj.key)
    base = dict(file_key=obj.key, hour=hour, size_bytes=obj.size, arrived_at=obj.modified_at, format=fmt)
    if fmt is None:
        return RawFile(
            **base,
            contract=None,
            status="unknown_contract",
            rows=None,
            reason="file name ends in neither .csv.gz nor .jsonl.gz",
        )
    data = lake.read_bytes(obj.key)
    limit = settings().max_raw_file_mb << 20
    try:
        lines, first, longest = _scan(data, limit)
    except zlib.error as exc:
        return RawFile(
            **base,
            contract=None,
            status="unreadable",
            rows=None,
            reason=f"gzip stream is corrupt after {len(data)} bytes: {exc}",
        )
    except InflatedTooLarge:
        return RawFile(
            **base,
            contract=None,
            status="unreadable",
            rows=None,
            reason=f"decompresses to more than {limit >> 20} MiB "
            f"(METER_MAX_RAW_FILE_MB) from {len(data)} bytes: not read",
        )
    except TruncatedStream:
        return RawFile(
            **base,
            contract=None,
            status="unreadable",
            rows=None,
            reason=f"gzip stream ends early: truncated at {len(data)} bytes",
        )
    # a byte-order mark is the writer's, not the header's
    head_line = first.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    contract = match_contract(obj.key, head_line)
    if contract is None:
        return RawFile(
            **base,
            contract=None,
            status="unknown_contract",
            rows=None,
            reason=f"first line matches no known {fmt} contract: {head_line[:200]!r}",
        )
    rows = lines - (1 if contract.format == "csv" else 0)
    return RawFile(**base, contract=contract.name, status="ok", reason=None, rows=rows, longest_line_bytes=longest)


class InflatedTooLarge(Exception):
    """More than `METER_MAX_RAW_FILE_MB` once decompressed."""


class TruncatedStream(Exception):
    """The gzip stream stops before its end."""


def _scan(data: bytes, limit: int) -> tuple[int, bytes, int]:
    """Lines, first line and longest line (bytes) of a gzip file (every member of it), inflated
    a MiB at a time up to `limit` bytes: no file, however far it expands, is ever held whole."""
    lines = _Lines()
    inflated = 0
    pending = data
    while True:
        inflater = zlib.decompressobj(wbits=31)
        while True:
            chunk = inflater.decompress(pending, INFLATE_STEP)
            pending = inflater.unconsumed_tail
            inflated += len(chunk)
            if inflated > limit:
                raise InflatedTooLarge
            lines.feed(chunk)
            if inflater.eof or not (pending or chunk):
                break
        if not inflater.eof:
            raise TruncatedStream
        pending = inflater.unused_data
        if not pending:  # else another gzip member follows
            return lines.total()


class _Lines:
    def __init__(self):
        self.count = self.longest = self.current = 0
        self.first: bytes | None = None
        self.last = b"\n"

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        parts = chunk.split(b"\n")
        if self.first is None:
            self.first = parts[0][:4096]
        if len(parts) == 1:
            self.current += len(chunk)
        else:
            self.longest = max(self.longest, self.current + len(parts[0]), max(map(len, parts[1:-1]), default=0))
            self.current = len(parts[-1])
        self.count += len(parts) - 1
        self.last = chunk[-1:]

    def total(self) -> tuple[int, bytes, int]:
        return self.count + (self.last != b"\n"), self.first or b"", max(self.longest, self.current)


def inventory(lake: Lake, day: dt.date, threads: int = 4) -> list[RawFile]:
    """Inspect every raw file of the day; zlib and network reads release the GIL."""
    objects, strays = raw_objects(lake, day)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        filed = list(pool.map(lambda ho: inspect(lake, *ho), objects))
        return filed + nem12_files(lake, day, pool) + [unrecognised(o) for o in strays]


def nem12_files(lake: Lake, day: dt.date, pool: ThreadPoolExecutor) -> list[RawFile]:
    """The NEM12 files under `raw/nem12/` that carry readings of the local day. Their keys do
    not say which days they carry, so each file is scanned once for its interval dates (the
    scan is kept); a file with no readable date is reported on the day it landed."""
    objects = lake.list(nem12.PREFIX)
    limit = settings().max_raw_file_mb << 20
    scans = pool.map(lambda o: nem12.scan_object(lake, o, limit), objects)
    found = []
    for obj, scanned in zip(objects, scans, strict=True):
        scan = scanned.landed(obj.modified_at)
        days = nem12.reported_days(scan, obj.modified_at, settings().nem12_tz)
        if day not in days:
            continue
        found.append(
            RawFile(
                file_key=obj.key,
                hour=scan.last_hour(settings().nem12_tz),
                size_bytes=obj.size,
                arrived_at=obj.modified_at,
                format=nem12.CONTRACT,
                contract=nem12.CONTRACT if scan.reason is None else None,
                status="ok" if scan.reason is None else "unreadable",
                reason=scan.reason,
                rows=scan.lines if scan.reason is None else None,
                longest_line_bytes=scan.longest_line_bytes if scan.reason is None else None,
            )
        )
    return found


def inventory_table(files: list[RawFile]) -> pa.Table:
    return pa.Table.from_pylist([f.__dict__ for f in files], schema=INVENTORY_SCHEMA)
