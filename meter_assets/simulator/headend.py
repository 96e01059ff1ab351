"""The simulated head-end: one file per collection group per UTC hour, and its faults.

Every fault it injects is recorded in a ground-truth manifest under `simulator/faults/`,
so tests can prove the platform handled each one without trusting the platform's output.
"""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from meter_assets.ingest.contracts import (
    ALPHA_CSV_V1,
    ALPHA_CSV_V2,
    BETA_JSONL_V1,
    BETA_JSONL_V2,
    BETA_JSONL_V3,
    Contract,
    gzip_bytes,
)
from meter_assets.simulator.retailer import Population, interval_load_kwh, vendor_of_group
from meter_assets.storage import Lake

FAULT_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("file_key", pa.string()),
        ("meter_id", pa.string()),
        ("read_at", pa.timestamp("s")),  # UTC interval start (or span start)
        ("read_until", pa.timestamp("s")),  # UTC end of a span, exclusive
        ("line", pa.int32()),  # 1-based line number in the decompressed file
        ("kwh", pa.decimal128(9, 3)),  # the value the fault concerns
        ("detail", pa.string()),  # JSON
        ("register", pa.string()),  # import or export, for a fault in one reading
    ]
)

# the export registers' truth has the same columns (simulator/truth/date=.../export.parquet)
TRUTH_SCHEMA = pa.schema(
    [
        ("meter_id", pa.string()),
        ("read_at", pa.timestamp("s")),
        ("kwh", pa.decimal128(9, 3)),
        ("quality_flag", pa.string()),
    ]
)


@dataclass(frozen=True)
class FaultRates:
    """How often each fault happens. Shares are per file, meter-day, meter-hour or row."""

    late_file: float = 0.01  # share of files held back and released days later
    late_max_days: int = 7
    resend: float = 0.01  # share of files sent a second time, unchanged
    correction: float = 0.01  # share of files whose values are later corrected
    corrected_meters: float = 0.02  # share of a corrected file's meters that change
    estimated: float = 0.003  # share of meter-hours the head-end estimated
    offline: float = 0.002  # share of meters offline for a while on a day
    offline_intervals: tuple[int, int] = (8, 48)  # how long, in quarter hours (from, to); cut at the day's end
    dead: float = 0.0005  # share of meters whose communications fail for good
    drift: float = 0.002  # share of meters whose clock is minutes off on a day
    malformed: float = 0.00002  # share of rows damaged in transit
    truncated_files: int = 1  # files cut short mid-gzip, over the whole run
    format_change: dt.date | None = None  # the second vendor's v2 format from this day
    # from this day both vendors send the formats with a register, and export readings in them
    register_change: dt.date | None = None
    # the NEM12 agent sends few, large files (one per group and market day): their own shares
    nem12_late_file: float = 0.01
    nem12_correction: float = 0.01
    # share of days whose day-ahead prices are corrected in a later export
    price_correction: float = 0.03


@dataclass
class DayResult:
    files: int = 0
    rows: int = 0
    bytes: int = 0
    faults: dict[str, int] = field(default_factory=dict)


def contract_for(vendor: str, day: dt.date, rates: FaultRates) -> Contract:
    registers = rates.register_change is not None and day >= rates.register_change
    if vendor == "alpha":
        return ALPHA_CSV_V2 if registers else ALPHA_CSV_V1
    if registers:
        return BETA_JSONL_V3
    if rates.format_change is not None and day >= rates.format_change:
        return BETA_JSONL_V2
    return BETA_JSONL_V1


def raw_key(contract: Contract, group: int, hour: dt.datetime, batch: str) -> str:
    return f"{hour:raw/%Y/%m/%d/%H}/{contract.vendor}-g{group:03d}-{hour:%Y%m%d%H}-{batch}{contract.extension}"


def held_key(arrival: dt.date, key: str) -> str:
    return f"simulator/held/{arrival.isoformat()}/{key}"


def _iso(seconds: np.ndarray) -> pa.Array:
    """ISO 8601 UTC strings for epoch seconds, formatting each distinct value once."""
    unique, inverse = np.unique(seconds, return_inverse=True)
    text = np.char.add(np.datetime_as_string(unique.astype("datetime64[s]"), unit="s"), "Z")
    return pa.array(text.tolist(), pa.string()).take(pa.array(inverse.astype(np.int32)))


def kwh_decimal(wh: np.ndarray) -> pa.Array:
    """Whole Wh as an exact decimal(9,3) kWh array (no binary floats on the way)."""
    words = np.zeros((len(wh), 2), dtype=np.int64)
    words[:, 0] = wh
    words[:, 1] = wh.astype(np.int64) >> 63
    return pa.Array.from_buffers(pa.decimal128(9, 3), len(wh), [None, pa.py_buffer(words.tobytes())])


@dataclass
class Rows:
    """Readings of one file, before they become text."""

    meter_id: np.ndarray  # int32
    start: np.ndarray  # int64 epoch seconds by the meter's clock
    true_start: np.ndarray  # int64 epoch seconds, UTC
    wh: np.ndarray  # int64
    estimated: np.ndarray  # bool
    version: np.ndarray  # int8
    meter_clock: np.ndarray  # int64 epoch seconds
    received_at: np.ndarray  # int64 epoch seconds
    export: np.ndarray  # bool: a reading of the export register

    def __len__(self) -> int:
        return len(self.meter_id)

    def take(self, index: np.ndarray) -> Rows:
        return Rows(**{k: v[index] for k, v in self.__dict__.items()})


def render_lines(rows: Rows, contract: Contract) -> pa.Array:
    """Each reading as one line of text in the contract's format, newline included."""
    meter = pc.cast(pa.array(rows.meter_id), pa.string())
    start = _iso(rows.start)
    clock = _iso(rows.meter_clock)
    received = _iso(rows.received_at)
    version = pc.cast(pa.array(rows.version), pa.string())
    codes = pa.array([contract.actual_code, contract.estimated_code]).take(pa.array(rows.estimated.astype(np.int8)))
    energy = pc.cast(kwh_decimal(rows.wh) if contract.energy_unit == "kWh" else pa.array(rows.wh), pa.string())
    registers = pa.array([contract.import_code, contract.export_code]).take(pa.array(rows.export.astype(np.int8)))
    if contract.format == "csv":
        parts = [meter, ",", start, ",", energy, ",", codes, ",", version, ",", clock, ",", received]
        parts += [",", registers, "\n"] if contract.register else ["\n"]
    else:

        def name(n: str) -> str:
            return f'"{n}":'

        meter_json = meter if contract is BETA_JSONL_V1 else pc.binary_join_element_wise('"', meter, '"', "")
        parts = [
            "{" + name(contract.meter_id),
            meter_json,
            "," + name(contract.interval_start) + '"',
            start,
            '",' + name(contract.energy),
            energy,
            "," + name(contract.quality) + '"',
            codes,
            '",' + name(contract.version),
            version,
            "," + name(contract.meter_clock) + '"',
            clock,
            '",' + name(contract.received_at) + '"',
            received,
            *(['",' + name(contract.register) + '"', registers] if contract.register else []),
            '"}\n',
        ]
    return pc.binary_join_element_wise(*parts, "")


def header(contract: Contract) -> bytes:
    return (",".join(contract.fields) + "\n").encode() if contract.format == "csv" else b""


def text_of(lines: pa.Array) -> bytes:
    """The concatenation of a string array's values, straight from its data buffer."""
    lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    if len(lines) == 0:
        return b""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    return lines.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]


REGISTERS = {False: "import", True: "export"}
MALFORMED_VARIANTS = ("not_a_number", "negative", "bad_timestamp", "cut_short", "field_count")


def damage(line: str, contract: Contract, variant: str) -> str:
    """A line as a faulty link or head-end bug would deliver it."""
    if variant == "cut_short":
        return line[: len(line) // 2] + "\n"
    if contract.format == "csv":
        fields = line.rstrip("\n").split(",")
        if variant == "not_a_number":
            fields[2] = "N/A"
        elif variant == "negative":
            fields[2] = "-" + (fields[2] if float(fields[2]) else "0.001")  # -0.000 would be a good zero
        elif variant == "bad_timestamp":
            fields[1] = fields[1].replace("T", "T2")
        elif variant == "field_count":
            fields[2] = fields[2].replace(".", ",")  # a decimal comma splits the field
        return ",".join(fields) + "\n"
    record = json.loads(line)
    if variant == "not_a_number":
        record[contract.energy] = "N/A"
    elif variant == "negative":
        record[contract.energy] = -abs(record[contract.energy]) or -1
    elif variant == "bad_timestamp":
        record[contract.interval_start] = record[contract.interval_start].replace("T", "T2")
    elif variant == "field_count":
        del record[contract.meter_clock]
    return json.dumps(record, separators=(",", ":")) + "\n"


class HeadEnd:
    """Generates one local day of head-end files for a population."""

    def __init__(
        self,
        lake: Lake,
        pop: Population,
        tz,
        seed: int,
        rates: FaultRates,
        temperature: pa.Table,
        dead_at: np.ndarray,
        write_truth: bool,
        agent=None,
        dynamic=None,
        solar=None,
    ):
        self.lake = lake
        self.pop = pop
        self.tz = tz
        self.seed = seed
        self.rates = rates
        self.temperature = temperature
        self.dead_at = dead_at  # epoch seconds from which each meter is silent (int64 max if never)
        self.write_truth = write_truth
        self.truncations_left = rates.truncated_files
        self.agent = agent  # the meter data agent that reads the NEM12 groups, if any
        self.dynamic = dynamic  # the homes on the dynamic plan (prices.DynamicHomes), if any
        self.solar = solar  # the homes with panels (solar.SolarHomes), if any

    def day(self, day: dt.date, last: bool = False) -> DayResult:
        pop, rates = self.pop, self.rates
        rng = np.random.default_rng([self.seed, 4, day.toordinal()])
        load, starts = interval_load_kwh(pop, day, self.tz, self.temperature, self.seed)
        if self.dynamic is not None:
            load = self.dynamic.shift(day, load, starts)
        export_wh = None
        if self.solar is not None and len(self.solar):
            load, export = self.solar.net(day, load, starts)
            export_wh = np.rint(export * 1000).astype(np.int64)
        m, n = load.shape
        start_s = starts.astype(np.int64)
        wh = np.rint(load * 1000).astype(np.int64)
        faults: list[dict] = []

        # intervals never delivered: meters offline for hours, and meters gone silent for good
        offline = start_s[None, :] >= self.dead_at[:, None]
        for i in np.flatnonzero(rng.random(m) < rates.offline):
            first = int(rng.integers(0, n))
            span = int(rng.integers(rates.offline_intervals[0], rates.offline_intervals[1] + 1))
            offline[i, first : first + span] = True
        for i in np.flatnonzero(offline.any(axis=1)):
            edges = np.diff(np.concatenate(([0], offline[i].astype(np.int8), [0])))
            for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
                reason = "dead" if start_s[a] >= self.dead_at[i] else "offline"
                faults.append(
                    dict(
                        kind="missing",
                        meter_id=pop.meter_id[i],
                        read_at=start_s[a],
                        read_until=start_s[b - 1] + 900,
                        detail={"reason": reason},
                    )
                )

        # meter-hours the head-end could not read and filled with its own estimate
        estimated = np.repeat(rng.random((m, n // 4)) < rates.estimated, 4, axis=1) & ~offline
        wh = np.where(estimated, np.rint(wh * rng.uniform(0.7, 1.3, (m, n))).astype(np.int64), wh)
        if export_wh is not None:
            # the head-end estimates both registers of a meter-hour it could not read
            scale = np.random.default_rng([self.seed, 14, day.toordinal()]).uniform(0.7, 1.3, export_wh.shape)
            guess = np.rint(export_wh * scale)
            export_wh = np.where(estimated[self.solar.rows], guess.astype(np.int64), export_wh)

        # clocks minutes off for the whole day; the head-end's receive time stays right
        drift = np.zeros(m, dtype=np.int64)
        drifting = np.flatnonzero((rng.random(m) < rates.drift) & ~pop.nem12)  # NEM12 has no meter clock
        drift[drifting] = rng.choice([-1, 1], drifting.size) * rng.integers(60, 421, drifting.size)
        for i in drifting:
            faults.append(
                dict(
                    kind="clock_drift",
                    meter_id=pop.meter_id[i],
                    read_at=start_s[0],
                    read_until=start_s[-1] + 900,
                    detail={"drift_seconds": int(drift[i])},
                )
            )

        # file-level faults, chosen per file
        groups = pop.groups
        hours = n // 4
        plans = []
        agent_groups = set(pop.group[pop.nem12].tolist())
        for h in range(hours):
            for g in range(groups):
                roll = rng.random(4)
                if g in agent_groups:
                    continue
                plans.append(
                    dict(
                        hour=h,
                        group=g,
                        late=roll[0] < rates.late_file,
                        resend=roll[1] < rates.resend,
                        correct=roll[2] < rates.correction,
                        late_days=int(rng.integers(1, rates.late_max_days + 1)),
                        correction_days=int(rng.integers(1, 11)),
                        seed=int(rng.integers(2**31)),
                    )
                )
        if self.truncations_left > 0:
            candidates = [p for p in plans if not (p["late"] or p["resend"] or p["correct"])]
            victim = candidates[len(candidates) // 2]
            victim["truncate"] = True
            self.truncations_left -= 1

        group_bounds = np.searchsorted(pop.group, np.arange(groups + 1))
        corrections: list[pa.Table] = []
        lost: list[pa.Table] = []

        def build(plan: dict):
            return self._file(day, plan, wh, export_wh, start_s, estimated, offline, drift, group_bounds)

        result = DayResult()
        with ThreadPoolExecutor(max_workers=3) as pool:
            for file_result, file_faults, corrected, unreadable in pool.map(build, plans):
                result.files += file_result.files
                result.rows += file_result.rows
                result.bytes += file_result.bytes
                faults.extend(file_faults)
                corrections += [corrected] if corrected is not None else []
                lost += [unreadable] if unreadable is not None else []

        agent_truth = None
        if self.agent is not None and len(self.agent):
            sent = self.agent.sent.copy()
            *agent_truth, agent_faults = self.agent.day(day, wh, start_s, estimated, offline)
            faults += agent_faults
            faults += self.agent.finish() if last else []
            result.files += self.agent.sent["files"] - sent["files"]
            result.bytes += self.agent.sent["bytes"] - sent["bytes"]
            result.rows += self.agent.sent["values"] - sent["values"]
        if rates.format_change == day:
            faults.append(
                dict(
                    kind="format_change",
                    detail={"vendor": "beta", "from": BETA_JSONL_V1.name, "to": BETA_JSONL_V2.name},
                )
            )
        self._write_faults(day, faults)
        if self.write_truth:
            self._write_truth(day, corrections, lost, wh, start_s, estimated, offline, agent_truth)
            if export_wh is not None and self.rates.register_change is not None and day >= self.rates.register_change:
                self._write_export_truth(day, corrections, lost, export_wh, start_s, estimated, offline)
        for f in faults:
            result.faults[f["kind"]] = result.faults.get(f["kind"], 0) + 1
        return result

    def _file(self, day, plan, wh, export_wh, start_s, estimated, offline, drift, group_bounds):
        pop, rates = self.pop, self.rates
        rng = np.random.default_rng(plan["seed"])
        h, g = plan["hour"], plan["group"]
        hour = dt.datetime.fromtimestamp(int(start_s[4 * h]), dt.UTC).replace(tzinfo=None)
        hour_end = int(start_s[4 * h]) + 3600
        lo, hi = group_bounds[g], group_bounds[g + 1]
        members = np.arange(lo, hi)
        cols = np.arange(4 * h, 4 * h + 4)
        meter_index = np.repeat(members, 4)
        interval_index = np.tile(cols, members.size)
        delivered = ~offline[meter_index, interval_index]
        meter_index, interval_index = meter_index[delivered], interval_index[delivered]
        delay = rng.integers(10, 300, hi - lo)[meter_index - lo]
        received = hour_end + delay
        rows = Rows(
            meter_id=pop.meter_id[meter_index],
            start=start_s[interval_index] + drift[meter_index],
            true_start=start_s[interval_index],
            wh=wh[meter_index, interval_index],
            estimated=estimated[meter_index, interval_index],
            version=np.ones(meter_index.size, dtype=np.int8),
            meter_clock=received + drift[meter_index],
            received_at=received,
            export=np.zeros(meter_index.size, dtype=bool),
        )
        vendor = vendor_of_group(g)
        contract = contract_for(vendor, day, rates)
        if contract.register and export_wh is not None:
            # the export register's readings of the meters with panels, in the same file
            solar_row = self.solar.position[meter_index]
            has = solar_row >= 0
            exports = rows.take(np.flatnonzero(has))
            exports.wh = export_wh[solar_row[has], interval_index[has]]
            exports.export = np.ones(len(exports), dtype=bool)
            rows = Rows(**{k: np.concatenate([v, getattr(exports, k)]) for k, v in rows.__dict__.items()})
        key = raw_key(contract, g, hour, "b1")
        faults: list[dict] = []
        lines = render_lines(rows, contract)

        damaged = np.flatnonzero(rng.random(len(rows)) < rates.malformed)
        if damaged.size:
            replacements = []
            for i in damaged:
                variant = MALFORMED_VARIANTS[int(rng.integers(len(MALFORMED_VARIANTS)))]
                replacements.append(damage(lines[int(i)].as_py(), contract, variant))
                faults.append(
                    dict(
                        kind="malformed_row",
                        file_key=key,
                        meter_id=rows.meter_id[i],
                        read_at=rows.true_start[i],
                        line=int(i) + 1 + (contract.format == "csv"),
                        detail={"variant": variant},
                        register=REGISTERS[rows.export[i]],
                    )
                )
            mask = np.zeros(len(rows), dtype=bool)
            mask[damaged] = True
            lines = pc.replace_with_mask(lines, pa.array(mask), pa.array(replacements, pa.string()))
        data = gzip_bytes(header(contract) + text_of(lines))

        result = DayResult(files=1, rows=len(rows), bytes=len(data))
        if plan.get("truncate"):
            kept = len(data) * 3 // 5
            faults.append(dict(kind="truncated_file", file_key=key, detail={"size": len(data), "kept_bytes": kept}))
            data = data[:kept]
        # an on-time file lands a minute after its last reading reached the head-end (on a
        # local lake; on S3 it lands when written); a held file lands when it is released
        landed = dt.datetime.fromtimestamp(int(received.max()) if len(rows) else hour_end, dt.UTC).replace(tzinfo=None)
        landed += dt.timedelta(minutes=1)
        if plan["late"]:
            arrival = day + dt.timedelta(days=plan["late_days"])
            self.lake.write_bytes(held_key(arrival, key), data)
            faults.append(dict(kind="late_file", file_key=key, detail={"arrival_date": arrival.isoformat()}))
        else:
            self.lake.write_bytes(key, data, landed_at=landed)
        if plan["resend"] and not plan["late"]:
            resent = raw_key(contract, g, hour, "r1")
            self.lake.write_bytes(resent, data, landed_at=landed + dt.timedelta(minutes=10))
            faults.append(dict(kind="resend", file_key=resent, detail={"original_key": key}))
            result.files += 1

        unreadable = rows.take(np.arange(len(rows)) if plan.get("truncate") else damaged)
        lost = pa.table(
            {"meter_id": unreadable.meter_id, "read_at": unreadable.true_start, "export": unreadable.export}
        )
        corrected = None
        if plan["correct"] and not plan["late"] and not plan.get("truncate") and len(rows):
            arrival = day + dt.timedelta(days=plan["correction_days"])
            chosen = np.unique(rows.meter_id)
            chosen = chosen[rng.random(chosen.size) < rates.corrected_meters]
            if chosen.size == 0:
                chosen = np.unique(rows.meter_id)[:1]
            pick = np.flatnonzero(np.isin(rows.meter_id, chosen) & ~np.isin(np.arange(len(rows)), damaged))
            fix = rows.take(pick)
            original = fix.wh.copy()
            fix.wh = np.rint(fix.wh * rng.uniform(0.6, 1.4, len(fix))).astype(np.int64) + 1
            fix.estimated = np.zeros(len(fix), dtype=bool)
            fix.version = np.full(len(fix), 2, dtype=np.int8)
            fix.start = fix.true_start
            fix.received_at = np.full(
                len(fix), int(dt.datetime.combine(arrival, dt.time(6)).replace(tzinfo=dt.UTC).timestamp())
            )
            fix.meter_clock = fix.received_at
            correction_contract = contract_for(vendor, arrival, rates)
            correction_key = raw_key(correction_contract, g, hour, "c1")
            text = header(correction_contract) + text_of(render_lines(fix, correction_contract))
            self.lake.write_bytes(held_key(arrival, correction_key), gzip_bytes(text))
            for i in range(len(fix)):
                faults.append(
                    dict(
                        kind="correction",
                        file_key=correction_key,
                        meter_id=fix.meter_id[i],
                        read_at=fix.true_start[i],
                        kwh=int(fix.wh[i]),
                        register=REGISTERS[fix.export[i]],
                        detail={
                            "original_kwh": f"{original[i] / 1000:.3f}",
                            "arrival_date": arrival.isoformat(),
                            "version": 2,
                        },
                    )
                )
            corrected = pa.table(
                {"meter_id": fix.meter_id, "read_at": fix.true_start, "wh": fix.wh, "export": fix.export}
            )
        for i in np.flatnonzero(rows.estimated):
            faults.append(
                dict(
                    kind="estimated",
                    file_key=key,
                    meter_id=rows.meter_id[i],
                    read_at=rows.true_start[i],
                    kwh=int(rows.wh[i]),
                    register=REGISTERS[rows.export[i]],
                )
            )
        for f in faults:
            f.setdefault("file_key", key)
        return result, faults, corrected, lost

    def _write_faults(self, day: dt.date, faults: list[dict]) -> None:
        def seconds(v):
            return None if v is None else dt.datetime.fromtimestamp(int(v), dt.UTC).replace(tzinfo=None)

        table = pa.table(
            {
                "kind": [f["kind"] for f in faults],
                "file_key": [f.get("file_key") for f in faults],
                "meter_id": [self._meter_id(f.get("meter_id")) for f in faults],
                "read_at": [seconds(f.get("read_at")) for f in faults],
                "read_until": [seconds(f.get("read_until")) for f in faults],
                "line": [f.get("line") for f in faults],
                "kwh": kwh_decimal(np.array([f.get("kwh", 0) or 0 for f in faults], dtype=np.int64)),
                "detail": [json.dumps(f.get("detail", {}), sort_keys=True) for f in faults],
                "register": [f.get("register") for f in faults],
            },
            schema=FAULT_SCHEMA,
        )
        has_kwh = pa.array(["kwh" in f for f in faults], pa.bool_())
        table = table.set_column(
            6, "kwh", pc.if_else(has_kwh, table.column("kwh"), pa.scalar(None, pa.decimal128(9, 3)))
        )
        self._write_parquet(f"simulator/faults/date={day.isoformat()}/faults.parquet", table)

    def _meter_id(self, number) -> str | None:
        """A fault's meter as the platform knows it (the agent's faults name it already)."""
        if number is None or isinstance(number, str):
            return number
        return self.pop.ids[int(number) - int(self.pop.meter_id[0])]

    def _write_truth(self, day, corrections, lost, wh, start_s, estimated, offline, agent_truth) -> None:
        """The readings the curated layer must end with once every late file has arrived."""
        m, n = wh.shape
        read_at = np.tile(start_s, m)
        flat_wh = wh.reshape(-1).copy()
        quality = np.where(offline.reshape(-1), 2, np.where(estimated.reshape(-1), 1, 0)).astype(np.int8)

        def positions(table: pa.Table) -> np.ndarray:
            meters = table.column("meter_id").to_numpy().astype(np.int64) - int(self.pop.meter_id[0])
            slots = (table.column("read_at").to_numpy().astype(np.int64) - int(start_s[0])) // 900
            return meters * n + slots

        if lost:
            quality[positions(_of_register(lost, export=False))] = 2
        if corrections:
            fixes = _of_register(corrections, export=False)
            where = positions(fixes)
            flat_wh[where] = fixes.column("wh").to_numpy()
            quality[where] = 0
        if agent_truth is not None:
            # the agent's registers end as its own truth says (half hours split, its faults)
            rows = (self.agent.rows[:, None] * n + np.arange(n)[None, :]).reshape(-1)
            flat_wh[rows] = agent_truth[0].reshape(-1)
            quality[rows] = agent_truth[1].reshape(-1)
        flags = pa.array(["actual", "estimated", "missing"]).take(pa.array(quality))
        kwh = pc.if_else(pc.equal(pa.array(quality), 2), pa.scalar(None, pa.decimal128(9, 3)), kwh_decimal(flat_wh))
        table = pa.table(
            {
                "meter_id": self.pop.id_array.take(pa.array(np.repeat(np.arange(m, dtype=np.int32), n))),
                "read_at": read_at.astype("datetime64[s]"),
                "kwh": kwh,
                "quality_flag": flags,
            },
            schema=TRUTH_SCHEMA,
        )
        self._write_parquet(f"simulator/truth/date={day.isoformat()}/reads.parquet", table)

    def _write_export_truth(self, day, corrections, lost, export_wh, start_s, estimated, offline) -> None:
        """The export registers' readings the curated layer must end with (every meter with panels
        from the day its export is read)."""
        solar = self.solar
        k, n = export_wh.shape
        flat_wh = export_wh.reshape(-1).copy()
        quality = np.where(
            offline[solar.rows].reshape(-1), 2, np.where(estimated[solar.rows].reshape(-1), 1, 0)
        ).astype(np.int8)

        def positions(table: pa.Table) -> np.ndarray:
            meters = solar.position[table.column("meter_id").to_numpy().astype(np.int64) - int(self.pop.meter_id[0])]
            slots = (table.column("read_at").to_numpy().astype(np.int64) - int(start_s[0])) // 900
            return meters * n + slots

        if lost:
            quality[positions(_of_register(lost, export=True))] = 2
        if corrections:
            fixes = _of_register(corrections, export=True)
            where = positions(fixes)
            flat_wh[where] = fixes.column("wh").to_numpy()
            quality[where] = 0
        # the agent's meters send no export register
        sent = ~np.repeat(self.pop.nem12[solar.rows], n)
        flags = pa.array(["actual", "estimated", "missing"]).take(pa.array(quality[sent]))
        kwh = pc.if_else(
            pc.equal(pa.array(quality[sent]), 2), pa.scalar(None, pa.decimal128(9, 3)), kwh_decimal(flat_wh[sent])
        )
        table = pa.table(
            {
                "meter_id": self.pop.id_array.take(pa.array(np.repeat(solar.rows.astype(np.int32), n)[sent])),
                "read_at": np.tile(start_s, k)[sent].astype("datetime64[s]"),
                "kwh": kwh,
                "quality_flag": flags,
            },
            schema=TRUTH_SCHEMA,
        )
        self._write_parquet(f"simulator/truth/date={day.isoformat()}/export.parquet", table)

    def _write_parquet(self, key: str, table: pa.Table) -> None:
        self.lake.write_parquet(key, table)


def _of_register(tables: list[pa.Table], export: bool) -> pa.Table:
    table = pa.concat_tables(tables)
    return table.filter(pc.equal(table.column("export"), export))


def run_parameters(**kwargs) -> str:
    def default(o):
        if isinstance(o, dt.date):
            return o.isoformat()
        if isinstance(o, FaultRates):
            return asdict(o)
        raise TypeError(o)

    return json.dumps(kwargs, default=default, indent=1, sort_keys=True)
