"""The docs' commands are code: every shell block of README.md and docs/*.md runs here as written,
in a shell from the repository, on a small simulated retailer, or its doc marks it as a synopsis
not to run (`<!-- not run: why -->` on the line before it) and says what runs it instead.

What a block needs that its doc only describes ("with six weeks of days built") is prepared
here first, in process; then the block runs, and what it should have made is looked for."""

import datetime as dt
import glob
import os
import re
import subprocess
from dataclasses import dataclass

import dagster as dg
import duckdb

from meter_assets.definitions import assets
from meter_assets.jobs import REFERENCE
from meter_assets.simulator.cli import generate
from meter_assets.simulator.headend import FaultRates
from meter_assets.simulator.portfolio import write_portfolio_history
from meter_assets.storage import Lake
from meter_assets.tables import BIDS, BILLS_EXPORT, READS_15MIN, READS_DAILY

from .conftest import materialize_days, resources_for
from .daemon_support import REPO, outside_env

NOT_RUN = re.compile(r"<!-- not run: .+ -->")


@dataclass(frozen=True)
class Block:
    doc: str  # relative to the repository
    line: int
    text: str
    marked: bool

    @property
    def first(self) -> str:
        return self.text.splitlines()[0]


def shell_blocks() -> list[Block]:
    found = []
    for path in [os.path.join(REPO, "README.md"), *sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))]:
        lines = open(path).read().splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip() in ("```sh", "```bash", "```shell", "```console"):
                end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
                marked = i > 0 and bool(NOT_RUN.fullmatch(lines[i - 1].strip()))
                found.append(Block(os.path.relpath(path, REPO), i + 1, "\n".join(lines[i + 1 : end]), marked))
                i = end
            i += 1
    return found


def block(doc: str, first: str) -> Block:
    (found,) = [b for b in shell_blocks() if runs(b, (doc, first))]
    return found


def runs(b: Block, key: tuple[str, str]) -> bool:
    return b.doc == key[0] and b.first.startswith(key[1])


# the blocks this module runs: (doc, how its first line begins)
RELEASE_LATE = ("README.md", ".venv/bin/meter-sim release-late --until $(date -u +%F)")
A_DAY = ("docs/operations.md", ".venv/bin/meter-sim generate --meters 200 --start 2024-05-01 --days 7")
FORECAST = ("docs/operations.md", ".venv/bin/dagster job execute -m meter_assets.definitions -j load_forecast_job")
BILLS = ("docs/operations.md", ".venv/bin/dagster job execute -m meter_assets.definitions -j bills_job")
RUN = (RELEASE_LATE, A_DAY, FORECAST, BILLS)


def test_every_shell_block_is_run_here_or_marked_as_not_run():
    blocks = shell_blocks()
    assert len(blocks) >= len(RUN)
    unrun = [f"{b.doc}:{b.line} {b.first}" for b in blocks if not b.marked and not any(runs(b, k) for k in RUN)]
    assert unrun == [], "run these blocks in test_docs.py, or mark them <!-- not run: why --> in their doc"
    marked_but_run = [f"{b.doc}:{b.line}" for b in blocks if b.marked and any(runs(b, k) for k in RUN)]
    assert marked_but_run == []
    assert all(sum(runs(b, key) for b in blocks) == 1 for key in RUN), "each block run here is in its doc once"
    # a block not run here says what runs it instead, or that it is a synopsis
    for doc in {b.doc for b in blocks}:
        for reason in re.findall(r"<!-- not run: (.+?) -->", open(os.path.join(REPO, doc)).read()):
            assert len(reason.split()) >= 3, f"{doc}: say why a block is not run, not {reason!r}"


def run_block(key: tuple[str, str], data_dir: str) -> str:
    """The block in bash (stopping at the first failing command), from the repository, with the
    settings' defaults under `data_dir` and no Dagster instance of the caller's."""
    env = outside_env(METER_DATA_DIR=data_dir)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block(*key).text],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{key[0]}: {key[1]}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


def rows(lake: Lake, table, partition: str) -> int:
    files = lake.files(table, partition)
    return duckdb.sql(f"SELECT count(*) FROM read_parquet({files})").fetchone()[0] if files else 0


def test_a_day_by_hand_then_the_late_files(tmp_path):
    data = str(tmp_path / "data")
    run_block(A_DAY, data)
    lake = Lake(os.path.join(data, "lake"))
    day = "2024-05-03"
    # every meter's every quarter hour of the day, curated (what a gap lacks, estimated)
    assert rows(lake, READS_15MIN, day) == 200 * 96
    assert rows(lake, READS_DAILY, day) == 200
    assert lake.keys(READS_15MIN, "2024-05-04") == [], "only the day asked for"

    # README: the simulator's held-back late files delivered
    held = len(lake.list("raw/"))
    run_block(RELEASE_LATE, data)
    assert len(lake.list("raw/")) > held


def test_the_forecast_by_hand(tmp_path):
    data = str(tmp_path / "data")
    lake = Lake(os.path.join(data, "lake"))
    # six weeks and more of portfolio_load before 20 June, and the weather (two regions: a
    # training and a backtest each, as the portfolio's)
    write_portfolio_history(lake, 200, dt.date(2024, 5, 1), 51, seed=3, log=lambda *_: None, regions=2)
    dg.materialize(assets(*REFERENCE), resources=resources_for(lake.uri("")))
    run_block(FORECAST, data)
    assert rows(lake, BIDS, "2024-06-20") == 48


def test_a_months_bills_by_hand(tmp_path):
    data = str(tmp_path / "data")
    lake = Lake(os.path.join(data, "lake"))
    days = [dt.date(2024, 5, 1) + dt.timedelta(days=d) for d in range(31)]
    clean = FaultRates(late_file=0, resend=0, correction=0, truncated_files=0, malformed=0)
    generate(lake, meters=30, start=days[0], days=len(days), seed=8, rates=clean, log=lambda *_: None)
    # every day of May built: what the bills read
    materialize_days(lake.uri(""), days, only=("raw_meter_files", "reads_15min", "reads_hourly", "reads_daily"))
    run_block(BILLS, data)
    customers = duckdb.sql(f"SELECT count(DISTINCT customer_id) FROM read_csv('{lake.uri('reference/customers.csv')}')")
    exported = rows(lake, BILLS_EXPORT, "2024-05")
    assert 0 < exported <= customers.fetchone()[0]
