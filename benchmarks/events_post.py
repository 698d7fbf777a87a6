"""Benchmark: latency of a small `POST /v1/events` with a large event log already stored.

Builds (or reuses) a log of `--events` events under `--data` with `coopscore ingest` (a typed Parquet
feed written by `benchmarks.feeds`), starts `coopscore serve` on a loopback port with an ingest key, then
sends `--posts` sequential POSTs of `--batch` new events each over HTTP and prints p50/p95/p99 (client
side, wall clock). The old path (every stored event_id loaded per call) is measured with
`--old-checkout DIR`: a checkout of the old code (say `git worktree add --detach DIR <old commit>`),
whose `ingest_records` is called `--old-posts` times in a subprocess on a hard-linked copy of the same
log (so the log used here is not changed), and the ratio of the medians is printed.
Run: `python benchmarks/events_post.py --data /tmp/coopscore-20m [--old-checkout DIR]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.feeds import write_feed
from tests.utils.feeds import VALID_PAYLOADS

# The events a client would push: one of each type in turn, only the fields of its type.
_PAYLOADS = VALID_PAYLOADS

OLD_PATH = """
import json, sys, time, statistics
from datetime import UTC, datetime
from pathlib import Path
from features.event_log import EventLog
from features.ingest import ingest_records
from features.ledger import IngestLedger
from features.validation import Limits
data, posts, batch = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
times = []
for i in range(posts):
    rows = [{**r, "event_id": f"old-{i}-{r['event_id']}"} for r in batch]
    started = time.perf_counter()
    ledger = IngestLedger(data / "ledger.sqlite")
    try:
        ingest_records(rows, "api:bench", EventLog(data / "events", data / "tables"), ledger,
                       data / "quarantine", Limits(5e6, 1e6, datetime.now(UTC), 300))
    finally:
        ledger.close()
    times.append(time.perf_counter() - started)
print(json.dumps(times))
"""


def batch_rows(prefix: str, size: int) -> list[dict[str, str]]:
    """`size` valid events of every type in turn, as a client sends them (no empty fields)."""
    types = list(_PAYLOADS)
    rows = []
    for i in range(size):
        etype = types[i % len(types)]
        rows.append(
            {
                "event_id": f"{prefix}-{i:04d}",
                "event_type": etype,
                "member_id": f"m{i % 997:05d}",
                "coop_id": "c01",
                "event_time": "2025-03-05T08:00:00Z",
                "recorded_at": "2025-03-05T09:00:00Z",
                **_PAYLOADS[etype],
            }
        )
    return rows


def stored_events(data: Path) -> int:
    """Rows in the event log (from Parquet footers)."""
    return sum(pq.read_metadata(p).num_rows for p in (data / "events").glob("event_type=*/part-*.parquet"))


def build_log(data: Path, events: int, env: dict[str, str]) -> None:
    """Ingest a typed Parquet feed of `events` events into `data` (skipped if a log is there)."""
    if (data / "events").exists():
        return
    with tempfile.TemporaryDirectory(prefix="coopscore-feed-") as tmp:
        print(f"writing a {events:,}-event Parquet feed ...", flush=True)
        write_feed(Path(tmp), events, "parquet")
        print("ingesting it (coopscore ingest) ...", flush=True)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "coopscore", "ingest", tmp, "--json"],
            env={**env, "COOPSCORE_DATA_DIR": str(data)},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"ingested in {time.perf_counter() - started:.0f} s", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds."""
    ms = sorted(s * 1000 for s in seconds)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": q[49], "p95": q[94], "p99": q[98], "max": ms[-1]}


def measure_server(data: Path, posts: int, batch: int, env: dict[str, str]) -> tuple[list[float], float]:
    """Start `coopscore serve` on `data`, wait until its key index is loaded, POST `posts` batches.
    Returns the per-POST seconds and how long the first (index-loading) request took."""
    key = secrets.token_urlsafe(24)
    entry = {"name": "bench", "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": ["ingest"]}
    port = _free_port()
    server_env = {**env, "COOPSCORE_DATA_DIR": str(data), "COOPSCORE_API_KEYS": json.dumps([entry])}
    log_path = data.parent / f"{data.name}-serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "coopscore", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=600) as client:
            deadline = time.monotonic() + 300
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited: see {log_path}")
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.2)
            run = secrets.token_hex(4)
            started = time.perf_counter()
            first = client.post("/v1/events", json={"events": batch_rows(f"warm-{run}", batch)})
            first_seconds = time.perf_counter() - started
            first.raise_for_status()
            times = []
            for i in range(posts):
                body = {"events": batch_rows(f"b-{run}-{i}", batch)}
                started = time.perf_counter()
                response = client.post("/v1/events", json=body)
                times.append(time.perf_counter() - started)
                response.raise_for_status()
                result = response.json()
                if result["accepted"] != batch:
                    raise RuntimeError(f"POST {i}: expected {batch} accepted, got {result}")
            # A re-sent batch must come back as duplicates (dedupe against the index, not just stored).
            again = client.post("/v1/events", json={"events": batch_rows(f"b-{run}-0", batch)}).json()
            if again["duplicates"] != batch:
                raise RuntimeError(f"re-sent batch: expected {batch} duplicates, got {again}")
    finally:
        process.terminate()
        process.wait(timeout=60)
    return times, first_seconds


def measure_old(checkout: Path, data: Path, posts: int, batch: int) -> list[float]:
    """The old path's per-call seconds, on a hard-linked copy of `data` (parts are never rewritten)."""
    with tempfile.TemporaryDirectory(prefix="coopscore-old-", dir=data.parent) as tmp:
        copy = Path(tmp) / "data"

        def link_or_copy(src: str, dst: str) -> object:
            if src.endswith(".parquet"):
                os.link(src, dst)
                return dst
            return shutil.copy2(src, dst)

        shutil.copytree(data, copy, copy_function=link_or_copy, ignore=shutil.ignore_patterns("index"))
        out = subprocess.run(
            [sys.executable, "-c", OLD_PATH, str(copy), str(posts), json.dumps(batch_rows("old", batch))],
            cwd=checkout,
            env={**os.environ, "PYTHONPATH": str(checkout)},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    times: list[float] = json.loads(out.strip().splitlines()[-1])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="data dir of the log (built if absent)")
    parser.add_argument("--events", type=int, default=20_000_000, help="events in the log when built")
    parser.add_argument("--posts", type=int, default=300, help="timed POSTs (at least 200 for a p99)")
    parser.add_argument("--batch", type=int, default=100, help="events per POST")
    parser.add_argument("--old-checkout", type=Path, default=None, help="checkout of the old code")
    parser.add_argument("--old-posts", type=int, default=5, help="calls of the old path")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COOPSCORE_")}
    build_log(args.data, args.events, env)
    stored = stored_events(args.data)
    load = os.getloadavg()
    times, first = measure_server(args.data, args.posts, args.batch, env)
    new = percentiles(times)
    print(
        f"log: {stored:,} events stored in {args.data}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"first POST (waits for the key index to load at server start): {first * 1000:,.0f} ms")
    print(
        f"POST /v1/events, {args.batch} new events, {len(times)} sequential over HTTP: "
        + ", ".join(f"{k} {v:,.1f} ms" for k, v in new.items())
        + ("  (target p99 ≤ 50 ms)")
    )
    if args.old_checkout is not None:
        old = measure_old(args.old_checkout, args.data, args.old_posts, args.batch)
        old_p50 = statistics.median(old) * 1000
        print(
            f"old path ({args.old_checkout}, ingest_records in-process, same {stored:,}-event log, "
            f"{len(old)} calls): median {old_p50:,.0f} ms, max {max(old) * 1000:,.0f} ms; "
            f"ratio of medians old/new: {old_p50 / new['p50']:,.0f}×"
        )


if __name__ == "__main__":
    main()
