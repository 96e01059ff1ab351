"""The day's raw files: which exist, which contract each follows, and whether it reads whole."""

from __future__ import annotations

import datetime as dt
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from meter_assets.ingest.contracts import file_format, match_contract
from meter_assets.partitions import raw_hour_prefix, utc_hours
from meter_assets.storage import Lake, LakeObject

INVENTORY_SCHEMA = pa.schema(
    [
        ("file_key", pa.string()),
        ("hour", pa.timestamp("s")),  # UTC hour of the readings, from the key
        ("size_bytes", pa.int64()),
        ("arrived_at", pa.timestamp("s")),  # when the file landed in raw (UTC)
        ("format", pa.string()),
        ("contract", pa.string()),
        ("status", pa.string()),  # ok, unreadable, unknown_contract
        ("reason", pa.string()),
        ("rows", pa.int64()),  # data lines, header excluded; null if unreadable
    ]
)


@dataclass(frozen=True)
class RawFile:
    file_key: str
    hour: dt.datetime
    size_bytes: int
    arrived_at: dt.datetime
    format: str | None
    contract: str | None
    status: str
    reason: str | None
    rows: int | None


def raw_objects(lake: Lake, day: dt.date) -> list[tuple[dt.datetime, LakeObject]]:
    """Every raw object of the local day, with the UTC hour its key files it under."""
    hours = {raw_hour_prefix(hour): hour for hour in utc_hours(day)}
    return [(hours[o.key[: len("raw/YYYY/MM/DD/HH/")]], o) for o in lake.list_many(list(hours))]


def inspect(lake: Lake, hour: dt.datetime, obj: LakeObject) -> RawFile:
    """Decompress a file once, end to end: its contract, its line count, and any damage."""
    fmt = file_format(obj.key)
    base = dict(file_key=obj.key, hour=hour, size_bytes=obj.size, arrived_at=obj.modified_at, format=fmt)
    if fmt is None:
        return RawFile(**base, contract=None, status="unknown_contract", rows=None,
                       reason="file name ends in neither .csv.gz nor .jsonl.gz")
    data = lake.read_bytes(obj.key)
    inflater = zlib.decompressobj(wbits=31)
    lines = 0
    first = b""
    last_byte = b"\n"
    try:
        for offset in range(0, len(data), 1 << 20):
            chunk = inflater.decompress(data[offset : offset + (1 << 20)])
            if not first and chunk:
                first = chunk[: chunk.find(b"\n") if b"\n" in chunk else 4096]
            lines += chunk.count(b"\n")
            last_byte = chunk[-1:] or last_byte
        inflater.flush()
    except zlib.error as exc:
        return RawFile(**base, contract=None, status="unreadable", rows=None,
                       reason=f"gzip stream is corrupt after {len(data)} bytes: {exc}")
    if not inflater.eof:
        return RawFile(**base, contract=None, status="unreadable", rows=None,
                       reason=f"gzip stream ends early: truncated at {len(data)} bytes")
    lines += last_byte != b"\n"
    head_line = first.decode("utf-8", errors="replace").strip()
    contract = match_contract(obj.key, head_line)
    if contract is None:
        return RawFile(**base, contract=None, status="unknown_contract", rows=None,
                       reason=f"first line matches no known {fmt} contract: {head_line[:200]!r}")
    rows = lines - (1 if contract.format == "csv" else 0)
    return RawFile(**base, contract=contract.name, status="ok", reason=None, rows=rows)


def inventory(lake: Lake, day: dt.date, threads: int = 4) -> list[RawFile]:
    """Inspect every raw file of the day; zlib and network reads release the GIL."""
    objects = raw_objects(lake, day)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda ho: inspect(lake, *ho), objects))


def inventory_table(files: list[RawFile]) -> pa.Table:
    return pa.Table.from_pylist([f.__dict__ for f in files], schema=INVENTORY_SCHEMA)
