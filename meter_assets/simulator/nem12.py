"""NEM12 as a meter data agent writes it: one file of many registers' days, built as text in
Arrow (no loop over readings)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from meter_assets.simulator.headend import text_of


def nmi_of(meter_numbers: np.ndarray) -> pa.Array:
    """A 10-character NMI for each simulated meter number: `Q` and nine digits."""
    return pc.binary_join_element_wise("Q", pc.utf8_lpad(pc.cast(pa.array(meter_numbers), pa.string()), 9, "0"), "")


def meter_ids(meter_numbers: np.ndarray, suffix: str = "E1") -> pa.Array:
    """The platform's meter id of each simulated meter's register: `<NMI>-<suffix>`."""
    return pc.binary_join_element_wise(nmi_of(meter_numbers), f"-{suffix}", "")


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
    nmi = nmi_of(meter_numbers)
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
