"""NEM12 as a meter data agent writes it: one file of many registers' days, built as text in
Arrow (no loop over readings)."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from meter_assets.market_calendar import local_day_bounds, local_day_of
from meter_assets.simulator.headend import held_key, text_of
from meter_assets.simulator.retailer import nem12_meter_ids, nmi_of
from meter_assets.storage import Lake


def meter_ids(meter_numbers: np.ndarray, suffix: str = "E1") -> pa.Array:
    """The platform's meter id of each simulated meter's register: `<NMI>-<suffix>`."""
    return pa.array(nem12_meter_ids(meter_numbers, suffix))


def nem12_bytes(
    meter_numbers: np.ndarray,
    dates: list[dt.date],
    wh: np.ndarray,
    interval_minutes: int = 15,
    created: dt.datetime = dt.datetime(2024, 1, 1),
    suffix: str = "E1",
) -> bytes:
    """A NEM12 file: for each meter a `200` record, then a `300` record per date with its Wh
    values (`wh[meter, date, interval]`, all actual), in kWh with three decimals."""
    meters, days, n = wh.shape
    assert n == 1440 // interval_minutes and days == len(dates) and meters == len(meter_numbers)
    nmi = pa.array(nmi_of(meter_numbers))
    channel = pc.binary_join_element_wise(
        "200,",
        nmi,
        f",{suffix},1,{suffix},N1,",
        pc.cast(pa.array(meter_numbers), pa.string()),
        f",kWh,{interval_minutes},",
        "",
    )
    # every value as kWh text, then one line per meter and day
    whole = pc.cast(pa.array(wh.reshape(-1) // 1000), pa.string())
    fraction = pc.utf8_lpad(pc.cast(pa.array(wh.reshape(-1) % 1000), pa.string()), 3, "0")
    values = pc.binary_join_element_wise(whole, ".", fraction, "").to_numpy(zero_copy_only=False).reshape(-1, n)
    update = f"{created:%Y%m%d%H%M%S}"
    day_prefix = pa.array(np.tile([f"300,{d:%Y%m%d}" for d in dates], meters))
    columns = [pa.array(values[:, i]) for i in range(n)]
    day_line = pc.binary_join_element_wise(day_prefix, *columns, f"A,,,{update},", ",")
    # 200 then its days, meter by meter
    lines = pa.concat_arrays([channel, day_line])
    order = np.concatenate(
        [np.arange(meters)[:, None], meters + np.arange(meters * days).reshape(meters, days)], axis=1
    )
    body = lines.take(pa.array(order.reshape(-1)))
    body = pc.binary_join_element_wise(body, "\n", "")
    header = f"100,NEM12,{created:%Y%m%d%H%M},SIMMDP,RETAILER\n".encode()
    return header + text_of(body) + b"900\n"


# --- the meter data agent: a third vendor that reads some collection groups ----------------
NEM12_MALFORMED_VARIANTS = ("not_a_number", "negative")
INTERVAL_CYCLE = np.array([15, 30, 5])  # meter by meter, the interval lengths the agent reads at
ACTUAL, ESTIMATED, NOT_READ = 0, 1, 2
EVENT_METHOD = {ACTUAL: "A", ESTIMATED: "E52", NOT_READ: "N"}


# where the NEM12 contract has agents deliver (any key below it; this agent files by day)
KEY_PREFIX = "raw/nem12/"


def nem12_key(group: int, date: dt.date, batch: str = "b1") -> str:
    return f"{KEY_PREFIX}{date:%Y/%m/%d}/NEM12_SIMMDP_g{group:03d}_{date:%Y%m%d}_{batch}.zip"


def date_of_key(key: str) -> dt.date:
    """The market day a simulated NEM12 file carries, from its key."""
    return dt.datetime.strptime("/".join(key.split("/")[2:5]), "%Y/%m/%d").date()


def zip_bytes(name: str, text: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, text)
    return buffer.getvalue()


def kwh_text(wh: np.ndarray) -> np.ndarray:
    """Whole Wh as kWh text with three decimals, same shape."""
    flat = wh.reshape(-1)
    whole = pc.cast(pa.array(flat // 1000), pa.string())
    fraction = pc.utf8_lpad(pc.cast(pa.array(flat % 1000), pa.string()), 3, "0")
    text = pc.binary_join_element_wise(whole, ".", fraction, "")
    return text.to_numpy(zero_copy_only=False).reshape(wh.shape)


def file_intervals(minutes: int, wh: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A register's quarter hours (Wh and state, rows x quarter hours) as the values of its
    interval length: three 5-minute values that add up to the quarter hour, or half hours."""
    if minutes == 30:
        return wh[:, 0::2] + wh[:, 1::2], np.maximum(state[:, 0::2], state[:, 1::2])
    if minutes == 5:
        third = wh // 3
        return np.stack([third, third, wh - 2 * third], axis=2).reshape(len(wh), -1), np.repeat(state, 3, axis=1)
    return wh, state


def halved(minutes: np.ndarray, wh: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the curated layer makes of half-hour registers: each half hour split in two quarter
    hours, the first rounded half up to the Wh, the second the rest; not read if either was not."""
    wh, state = wh.copy(), state.copy()
    rows = minutes == 30
    total = wh[rows, 0::2] + wh[rows, 1::2]
    first = (total + 1) // 2
    wh[rows, 0::2], wh[rows, 1::2] = first, total - first
    worst = np.maximum(state[rows, 0::2], state[rows, 1::2])
    state[rows, 0::2] = state[rows, 1::2] = worst
    return wh, state


def day_records(
    numbers: np.ndarray,
    minutes: np.ndarray,
    date: dt.date,
    wh: np.ndarray,
    state: np.ndarray,
    damaged: dict[tuple[int, int], str],
    updated: dt.datetime,
) -> tuple[list[str], np.ndarray]:
    """The `200`, `300` and `400` lines of a market day of registers (rows of quarter hours),
    and the line (0-based, among these) of each register's `300` record. `damaged` maps a
    (row, interval of its length) to how that value is spoiled."""
    texts: list[np.ndarray | None] = [None] * len(numbers)
    states: list[np.ndarray | None] = [None] * len(numbers)
    for length in np.unique(minutes):
        rows = np.flatnonzero(minutes == length)
        values, value_state = file_intervals(int(length), np.where(state[rows] == NOT_READ, 0, wh[rows]), state[rows])
        text = kwh_text(values)
        for r, row in enumerate(rows):
            texts[row], states[row] = text[r], value_state[r]
    for (row, interval), variant in damaged.items():
        texts[row] = texts[row].copy()
        texts[row][interval] = "N/A" if variant == "not_a_number" else "-" + texts[row][interval]
    nmis = nmi_of(numbers)
    update = f"{updated:%Y%m%d%H%M%S}"
    lines, day_lines = [], np.zeros(len(numbers), dtype=np.int64)
    for row, number in enumerate(numbers.tolist()):
        variable = bool(states[row].any())
        lines.append(f"200,{nmis[row]},E1,1,E1,N1,{number},kWh,{int(minutes[row])},")
        day_lines[row] = len(lines)
        lines.append(f"300,{date:%Y%m%d},{','.join(texts[row])},{'V' if variable else 'A'},,,{update},")
        if variable:
            # one 400 record per run of intervals of one quality
            edges = np.flatnonzero(np.diff(states[row])) + 1
            for a, b in zip(np.concatenate(([0], edges)), np.concatenate((edges, [len(states[row])])), strict=True):
                lines.append(f"400,{a + 1},{b},{EVENT_METHOD[int(states[row][a])]},,")
    return lines, day_lines


@dataclass
class MarketDay:
    """One market day of every NEM12 register, filled in as the simulated local days pass."""

    date: dt.date
    start: int  # epoch seconds, UTC, of the first quarter hour
    wh: np.ndarray  # registers x quarter hours, as first sent
    state: np.ndarray  # ACTUAL, ESTIMATED or NOT_READ
    damaged: dict[tuple[int, int], str]  # (register, interval of its length) -> variant
    filled: np.ndarray  # quarter hours simulated so far
    late_days: dict[int, int]  # group -> days the file is held back (absent: on time)
    correction_days: dict[int, int]  # group -> days until the corrected file
    corrected: np.ndarray  # registers whose day is corrected
    factor: np.ndarray  # how far each corrected register's values change


class MeterDataAgent:
    """The third vendor: for the collection groups it reads, one NEM12 file per group and market
    day (AEST), sent when that day is over. Its intervals are 15, 30 or 5 minutes by register; a
    head-end estimate is `E52` and an interval not read is `N`, both through `400` records; a
    file can be late, a day of some registers corrected later (a later UpdateDateTime), and a
    value damaged. It keeps the ground truth of its registers in the shape the curated layer
    must end with."""

    def __init__(self, lake: Lake, pop, tz: str, seed: int, rates):
        self.lake, self.tz, self.seed, self.rates = lake, tz, seed, rates
        self.rows = np.flatnonzero(pop.nem12)
        self.numbers = pop.meter_id[self.rows].astype(np.int64)
        self.ids = pop.ids[self.rows]
        self.groups = pop.group[self.rows]
        self.minutes = INTERVAL_CYCLE[np.arange(len(self.rows)) % len(INTERVAL_CYCLE)]
        self.pending: dict[dt.date, MarketDay] = {}
        self.sent = {"files": 0, "bytes": 0, "values": 0}  # what has been written so far

    def __len__(self) -> int:
        return len(self.rows)

    def _market_day(self, date: dt.date) -> MarketDay:
        if date not in self.pending:
            start, end = local_day_bounds(date, self.tz)
            n = int((end - start).total_seconds()) // 900
            rng = np.random.default_rng([self.seed, 12, date.toordinal()])
            late, corrections = {}, {}
            for g in np.unique(self.groups).tolist():
                roll = rng.random(2)
                if roll[0] < self.rates.nem12_late_file:
                    late[g] = int(rng.integers(1, self.rates.late_max_days + 1))
                elif roll[1] < self.rates.nem12_correction:
                    corrections[g] = int(rng.integers(1, 11))
            chosen = np.isin(self.groups, list(corrections)) & (rng.random(len(self)) < self.rates.corrected_meters)
            self.pending[date] = MarketDay(
                date=date,
                start=int(start.replace(tzinfo=dt.UTC).timestamp()),
                wh=np.zeros((len(self), n), dtype=np.int64),
                state=np.full((len(self), n), NOT_READ, dtype=np.int8),
                damaged={},
                filled=np.zeros(n, dtype=bool),
                late_days=late,
                correction_days=corrections,
                corrected=chosen,
                factor=rng.uniform(0.6, 1.4, len(self)),
            )
        return self.pending[date]

    def day(
        self, day: dt.date, wh: np.ndarray, start_s: np.ndarray, estimated: np.ndarray, offline: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """Take a simulated local day of every meter (meters x quarter hours); return the ground
        truth of the agent's registers for it (Wh and ACTUAL/ESTIMATED/NOT_READ, registers x
        quarter hours) and its faults, and send the market days now complete."""
        rng = np.random.default_rng([self.seed, 13, day.toordinal()])
        wh, estimated, offline = wh[self.rows], estimated[self.rows], offline[self.rows]
        state = np.where(offline, NOT_READ, np.where(estimated, ESTIMATED, ACTUAL)).astype(np.int8)
        truth_wh, truth_state = wh.copy(), state.copy()
        faults: list[dict] = []
        local_dates = {
            local_day_of(dt.datetime.fromtimestamp(int(s), dt.UTC).replace(tzinfo=None), self.tz)
            for s in (start_s[0], start_s[-1])
        }
        for date in sorted(local_dates):
            market = self._market_day(date)
            n = market.wh.shape[1]
            cols = np.flatnonzero((start_s >= market.start) & (start_s < market.start + 900 * n))
            slots = (start_s[cols] - market.start) // 900
            market.wh[:, slots], market.state[:, slots] = wh[:, cols], state[:, cols]
            market.filled[slots] = True
            # a corrected day carries every value read, changed; it is what the truth ends with
            fixed = market.corrected[:, None] & (state[:, cols] != NOT_READ)
            changed = np.rint(wh[:, cols] * market.factor[:, None]).astype(np.int64) + 1
            truth_wh[:, cols] = np.where(fixed, changed, truth_wh[:, cols])
            truth_state[:, cols] = np.where(fixed, ACTUAL, truth_state[:, cols])
            # values damaged on the way (not in a day that is corrected later, which resends them)
            hit = (rng.random((len(self), cols.size)) < self.rates.malformed) & ~market.corrected[:, None]
            for r, c in zip(*np.nonzero(hit), strict=True):
                slot, length = int(slots[c]), int(self.minutes[r])
                interval = slot // 2 if length == 30 else slot * 3 if length == 5 else slot
                variant = NEM12_MALFORMED_VARIANTS[int(rng.integers(len(NEM12_MALFORMED_VARIANTS)))]
                market.damaged[(int(r), interval)] = variant
                lost = cols[np.isin(slots, quarters_of(length, interval))]
                truth_state[r, lost] = NOT_READ
        truth_wh, truth_state = halved(self.minutes, truth_wh, truth_state)
        for r, c in zip(*np.nonzero(truth_state == ESTIMATED), strict=True):
            date = local_day_of(dt.datetime.fromtimestamp(int(start_s[c]), dt.UTC).replace(tzinfo=None), self.tz)
            faults.append(
                dict(
                    kind="estimated",
                    file_key=nem12_key(int(self.groups[r]), date),
                    meter_id=self.ids[r],
                    read_at=int(start_s[c]),
                    kwh=int(truth_wh[r, c]),
                )
            )
        for date in [d for d, market in self.pending.items() if market.filled.all()]:
            faults += self._send(date)
        return truth_wh, truth_state, faults

    def finish(self) -> list[dict]:
        """Send the market days the simulated range only partly covers (the rest not read)."""
        return [fault for date in sorted(self.pending) for fault in self._send(date)]

    def _send(self, date: dt.date) -> list[dict]:
        market = self.pending.pop(date)
        n = market.wh.shape[1]
        end = dt.datetime.fromtimestamp(market.start + 900 * n, dt.UTC).replace(tzinfo=None)
        # sent half an hour after the market day ends (a day simulated up to today: now); its
        # UpdateDateTime is in market time
        landed = min(end + dt.timedelta(minutes=30), dt.datetime.now(dt.UTC).replace(tzinfo=None))
        faults: list[dict] = []
        for g in np.unique(self.groups).tolist():
            rows = np.flatnonzero(self.groups == g)
            position = {int(r): i for i, r in enumerate(rows)}
            damaged = {(position[r], i): v for (r, i), v in market.damaged.items() if r in position}
            key = nem12_key(g, date)
            lines, day_lines = day_records(
                self.numbers[rows],
                self.minutes[rows],
                date,
                market.wh[rows],
                market.state[rows],
                damaged,
                self._market_time(landed),
            )
            data = self._file(key, lines, landed)
            self.sent["values"] += int(rows.size * n)
            for (i, interval), variant in damaged.items():
                for q in quarters_of(int(self.minutes[rows[i]]), interval):
                    faults.append(
                        dict(
                            kind="malformed_row",
                            file_key=key,
                            meter_id=self.ids[rows[i]],
                            read_at=market.start + 900 * q,
                            line=int(day_lines[i]) + 2,
                            detail={"variant": variant, "field": f"IntervalValue{interval + 1}"},
                        )
                    )
            if g in market.late_days:
                arrival = date + dt.timedelta(days=market.late_days[g])
                self.lake.write_bytes(held_key(arrival, key), data)
                faults.append(dict(kind="late_file", file_key=key, detail={"arrival_date": arrival.isoformat()}))
            else:
                self.lake.write_bytes(key, data, landed_at=landed)
            if g in market.correction_days:
                faults += self._correct(market, g, rows)
        return faults

    def _correct(self, market: MarketDay, group: int, rows: np.ndarray) -> list[dict]:
        """The day of some registers sent again, every value read changed and actual."""
        rows = rows[market.corrected[rows]]
        if rows.size == 0:
            return []
        arrival = market.date + dt.timedelta(days=market.correction_days[group])
        received = dt.datetime.combine(arrival, dt.time(6))
        wh, state = market.wh[rows], market.state[rows]
        changed = np.rint(wh * market.factor[rows, None]).astype(np.int64) + 1
        changed_state = np.where(state == NOT_READ, NOT_READ, ACTUAL).astype(np.int8)
        key = nem12_key(group, market.date, "c1")
        lines, _ = day_records(
            self.numbers[rows],
            self.minutes[rows],
            market.date,
            changed,
            changed_state,
            {},
            self._market_time(received),
        )
        self.lake.write_bytes(held_key(arrival, key), self._file(key, lines, received))
        minutes = self.minutes[rows]
        before, _ = halved(minutes, wh, state)
        after, after_state = halved(minutes, changed, changed_state)
        faults = []
        for i, q in zip(*np.nonzero(after_state != NOT_READ), strict=True):
            faults.append(
                dict(
                    kind="correction",
                    file_key=key,
                    meter_id=self.ids[rows[i]],
                    read_at=market.start + 900 * int(q),
                    kwh=int(after[i, q]),
                    detail={
                        "original_kwh": f"{before[i, q] / 1000:.3f}",
                        "arrival_date": arrival.isoformat(),
                        "version": 1,
                    },
                )
            )
        return faults

    def _market_time(self, utc: dt.datetime) -> dt.datetime:
        return utc.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(self.tz)).replace(tzinfo=None)

    def _file(self, key: str, lines: list[str], created: dt.datetime) -> bytes:
        text = "\n".join([f"100,NEM12,{self._market_time(created):%Y%m%d%H%M},SIMMDP,RETAILER", *lines, "900"])
        data = zip_bytes(key.rsplit("/", 1)[1].replace(".zip", ".csv"), (text + "\n").encode())
        self.sent["files"] += 1
        self.sent["bytes"] += len(data)
        return data


def quarters_of(minutes: int, interval: int) -> list[int]:
    """The quarter hours (of the market day) an interval of a register's length falls in."""
    if minutes == 30:
        return [2 * interval, 2 * interval + 1]
    return [interval // 3] if minutes == 5 else [interval]
