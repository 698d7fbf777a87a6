"""Benchmark: `coopscore simulate` and `coopscore ingest` throughput and peak memory.

Each step runs as its own `coopscore` subprocess (as a user runs it), timed by wall clock, with its
peak RSS from wait4(). The peer is the common hand-rolled loader: pandas `read_csv`/`read_parquet` +
`drop_duplicates` + `to_parquet` (no validation, no quarantine, no durability), on one file of the
same feed. Run: `make bench` or `python benchmarks/ingest.py [--events N] [--repeats R]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.feeds import write_feed

PEER = """
import sys, pandas as pd
src, out = sys.argv[1], sys.argv[2]
frame = pd.read_csv(src, dtype=str) if src.endswith(".csv") else pd.read_parquet(src)
frame = frame.drop_duplicates("event_id")
frame.to_parquet(out)
print(len(frame))
"""


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run a command; return wall seconds, peak RSS in MiB and its stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd} failed")
    return seconds, usage.ru_maxrss / 1024, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000_000, help="events per ingest run")
    parser.add_argument("--members", type=int, default=20_000, help="members in the simulated world")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median shown)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write feeds (default: tmp)")
    parser.add_argument(
        "--formats", default="parquet,csv", help="feed formats to ingest, comma-separated (parquet,csv)"
    )
    parser.add_argument("--no-simulate", action="store_true", help="skip the simulate step")
    args = parser.parse_args()
    console = Console(width=150)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="coopscore-bench-"))
    coopscore = [sys.executable, "-m", "coopscore"]
    rows: list[tuple[str, int, list[float], float, str, float | None]] = []

    sim_times, sim_mem, events = [], 0.0, 0
    for _ in range(0 if args.no_simulate else args.repeats):
        world = work / "world"
        seconds, mem, out = run(
            [
                *coopscore,
                "simulate",
                "--members",
                str(args.members),
                "--out",
                str(world),
                "--overwrite",
                "--json",
            ]
        )
        sim_times.append(seconds)
        sim_mem = max(sim_mem, mem)
        events = int(json.loads(out)["events_written"])
    if sim_times:
        rows.append((f"simulate ({args.members:,} members)", events, sim_times, sim_mem, "demo < 60 s", None))

    goals = {"parquet": 1_000_000, "csv": 300_000}
    for fmt in args.formats.split(","):
        goal = goals[fmt]
        feed = work / f"feed-{fmt}"
        if not (feed / "events").exists():
            console.print(f"writing {args.events:,} events as {fmt} ...")
            write_feed(feed, args.events, fmt)
        times, mem = [], 0.0
        for _ in range(args.repeats):
            data = work / "data"
            shutil.rmtree(data, ignore_errors=True)
            env = {**os.environ, "COOPSCORE_DATA_DIR": str(data)}
            seconds, peak, out = run([*coopscore, "ingest", str(feed), "--json"], env)
            times.append(seconds)
            mem = max(mem, peak)
            read = json.loads(out)["totals"]["rows_read"]
        # The peer on one file of the same feed, scaled per event.
        first = sorted((feed / "events").glob(f"*.{fmt}"))[0]
        peer_times = [
            run([sys.executable, "-c", PEER, str(first), str(work / "peer.parquet")])[0]
            for _ in range(args.repeats)
        ]
        first_rows = (
            pq.read_metadata(first).num_rows if fmt == "parquet" else sum(1 for _ in first.open("rb")) - 1
        )
        peer_rate = first_rows / statistics.median(peer_times)
        rows.append((f"ingest {fmt}", read, times, mem, f"≥ {goal:,}/s, < 2 GiB", peer_rate))

    table = Table(title=f"coopscore ingest benchmark (median of {args.repeats}; {os.cpu_count()} cores)")
    for col in (
        "step",
        "events",
        "seconds",
        "events/s",
        "peak RSS MiB",
        "target",
        "peer events/s",
        "ratio vs peer",
    ):
        table.add_column(col, justify="left" if col in ("step", "target") else "right")
    for name, count, times, mem, target, peer in rows:
        median = statistics.median(times)
        rate = count / median
        table.add_row(
            name,
            f"{count:,}",
            f"{median:.1f}",
            f"{rate:,.0f}",
            f"{mem:,.0f}",
            target,
            "" if peer is None else f"{peer:,.0f}",
            "" if peer is None else f"{rate / peer:.2f}×",
        )
    console.print(table)
    console.print(
        "peer = pandas read → drop_duplicates → to_parquet on one feed file (no validation, no fsync)"
    )
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
