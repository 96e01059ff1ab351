"""Head-end file contracts: each vendor format, versioned, as the files carry it.

A file is matched to a contract by its extension and its header (CSV) or the field names
of its first record (JSON Lines). A file that matches none is quarantined whole.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Contract:
    name: str
    vendor: str
    format: str  # "csv" or "jsonl"
    meter_id: str
    interval_start: str  # interval start by the meter's own clock, ISO 8601 UTC
    energy: str
    energy_unit: str  # "kWh" or "Wh"
    quality: str
    actual_code: str
    estimated_code: str
    version: str
    meter_clock: str  # the meter's clock when it sent the record
    received_at: str  # the head-end's (trusted) clock when it received the record
    # a meter id exactly as the vendor writes one (a regular expression on the whole text)
    meter_id_pattern: str = "[1-9][0-9]{0,9}"
    # JSON Lines: the fields that are JSON numbers (the rest are strings)
    json_numbers: tuple[str, ...] = ()
    # the register a reading is of, where the contract names it (the last field): its codes
    # for energy taken from the grid (import) and sent to it (export); without one, import
    register: str | None = None
    import_code: str | None = None
    export_code: str | None = None

    @property
    def roles(self) -> tuple[tuple[str, str], ...]:
        """Each field's role and the name the contract gives it, in the order a record has them."""
        roles = (
            ("meter_id", self.meter_id),
            ("interval_start", self.interval_start),
            ("energy", self.energy),
            ("quality", self.quality),
            ("version", self.version),
            ("meter_clock", self.meter_clock),
            ("received_at", self.received_at),
        )
        return roles + ((("register", self.register),) if self.register else ())

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.roles)

    @property
    def extension(self) -> str:
        return f".{self.format}.gz"


ALPHA_CSV_V1 = Contract(
    name="alpha-csv-v1",
    vendor="alpha",
    format="csv",
    meter_id="meter_id",
    interval_start="interval_start",
    energy="kwh",
    energy_unit="kWh",
    quality="quality",
    actual_code="A",
    estimated_code="E",
    version="version",
    meter_clock="meter_clock",
    received_at="received_at",
)

BETA_JSONL_V1 = Contract(
    name="beta-jsonl-v1",
    vendor="beta",
    format="jsonl",
    meter_id="meterId",
    interval_start="start",
    energy="kwh",
    energy_unit="kWh",
    quality="status",
    actual_code="OK",
    estimated_code="EST",
    version="rev",
    meter_clock="deviceClock",
    received_at="headendTime",
    json_numbers=("meterId", "kwh", "rev"),
)

# The vendor's 2.0 firmware renamed every field and reports energy in whole Wh.
BETA_JSONL_V2 = Contract(
    name="beta-jsonl-v2",
    vendor="beta",
    format="jsonl",
    meter_id="device",
    interval_start="intervalStart",
    energy="energyWh",
    energy_unit="Wh",
    quality="qual",
    actual_code="measured",
    estimated_code="estimated",
    version="revision",
    meter_clock="clock",
    received_at="receivedAt",
    json_numbers=("energyWh", "revision"),
)

# Version 2 adds the register: a home with solar panels has an export register beside its
# import one, and both come in the same files.
ALPHA_CSV_V2 = replace(
    ALPHA_CSV_V1, name="alpha-csv-v2", register="register", import_code="import", export_code="export"
)

# Firmware 2.1 adds the flow direction in the metering standards' words: energy delivered to
# the premises, or received from it.
BETA_JSONL_V3 = replace(
    BETA_JSONL_V2,
    name="beta-jsonl-v3",
    register="flowDirection",
    import_code="delivered",
    export_code="received",
)

CONTRACTS: tuple[Contract, ...] = (ALPHA_CSV_V1, ALPHA_CSV_V2, BETA_JSONL_V1, BETA_JSONL_V2, BETA_JSONL_V3)
BY_NAME = {c.name: c for c in CONTRACTS}


def file_format(key: str) -> str | None:
    for fmt in ("csv", "jsonl"):
        if key.endswith(f".{fmt}.gz"):
            return fmt
    return None


def first_line(data_head: bytes) -> str:
    """The first line of a gzip stream, from its first bytes only."""
    text = zlib.decompressobj(wbits=31).decompress(data_head, 64 * 1024)
    return text.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()


def match_contract(key: str, head_line: str) -> Contract | None:
    """The contract a file follows, judged by its extension and first line, or None."""
    fmt = file_format(key)
    for contract in CONTRACTS:
        if contract.format != fmt:
            continue
        if fmt == "csv" and [h.strip().strip('"') for h in head_line.split(",")] == list(contract.fields):
            return contract
        if fmt == "jsonl":
            try:
                record = json.loads(head_line)
            except (ValueError, RecursionError):  # a first line of deeply nested arrays is not a record
                return None
            if isinstance(record, dict) and set(record) == set(contract.fields):
                return contract
    return None


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)
