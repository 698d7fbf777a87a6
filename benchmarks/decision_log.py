"""Benchmark: decision-log write throughput, PostgreSQL against SQLite (the named peer), concurrency 8.

Each run opens a fresh log (a new SQLite file in `--work-dir`; a new schema on the PostgreSQL server,
dropped after) and has `--concurrency` threads each append decisions in a closed loop, every append
waiting until its row is durable (as a /v1/score request waits before its 200): SQLite WAL with
synchronous=FULL, PostgreSQL with synchronous_commit=on. Both logs group-commit what is waiting.
A record is the size the server writes (40 features, 4 reasons, a ~1.5 KB response). `--writers 2`
splits the threads over two writers in separate processes, as `serve --workers 2` or two replicas
do. The table shows medians over `--runs` runs of rows/s, and p50/p95 milliseconds per append, with
the ratio of each row's throughput to SQLite's in the same configuration.
Run: `python benchmarks/decision_log.py [--writes 3000] [--runs 5] [--concurrency 8] [--writers 1,2]
[--postgres postgresql://postgres@127.0.0.1:5432/test]`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from decisions.base import DecisionLogWriter, DecisionRecord

console = Console(stderr=True)
FEATURES = 40


def decision(n: int, writer: int) -> DecisionRecord:
    """A decision the size the server logs (features, reasons and a full response)."""
    request_id = f"{writer:04x}{n:028x}{uuid.uuid4().hex[:4]}"
    reasons = [
        {"code": f"R{k}", "points": -4.5 + k, "text_en": "few deliveries recorded", "text_zh": "交售记录少"}
        for k in range(4)
    ]
    features: dict[str, float | str | None] = {f"feature_{k:02d}": k * 1.25 for k in range(FEATURES)}
    response: dict[str, Any] = {
        "request_id": request_id,
        "member_id": f"M{n:07d}",
        "pd": 0.0412,
        "score": 642.5,
        "grade": "B",
        "decision": "approve",
        "reasons": reasons,
        "feature_set_version": "fs-2026-11",
        "features_as_of": "2026-11-30T00:00:00+00:00",
        "offer": {"limit_cny": 8000.0, "annual_rate": 0.0925, "principal_cny": 8000.0, "term_months": 12},
        "points": {f"feature_{k:02d}": -0.5 + k / 40 for k in range(FEATURES // 2)},
    }
    return DecisionRecord(
        request_id=request_id,
        application_id=f"A{writer}-{n}",
        member_id=f"M{n:07d}",
        created_at=datetime.now(UTC),
        model_name="coopscore-pd",
        model_version="7",
        pd=0.0412,
        score=642.5,
        grade="B",
        decision="approve",
        application={"amount_cny": 8000, "term_months": 12, "purpose": "livestock"},
        features=features,
        reasons=reasons,
        response=response,
        latency_ms=3.2,
        idempotency_key=f"key-{request_id}",
        body_sha256="ab" * 32,
        caller="bench",
        model_digest="cd" * 32,
        offer=response["offer"],
        pricing_policy_version="2026-11",
        pricing_policy_digest="ef" * 32,
    )


def open_writer(target: str) -> DecisionLogWriter:
    """The backend's writer: a PostgreSQL URL, else a SQLite file."""
    if target.startswith("postgresql://"):
        from decisions.postgres import PostgresDecisionLogWriter

        return PostgresDecisionLogWriter(target)
    from decisions.sqlite import SqliteDecisionLogWriter

    return SqliteDecisionLogWriter(Path(target))


def drive(target: str, writer_no: int, threads: int, writes: int, start: Any, out: Any) -> None:
    """One writer with `threads` closed-loop clients, `writes` appends in all (after 50 to warm up):
    puts (seconds from the start signal to the last durable append, latencies in ms, commits) on `out`."""
    log = open_writer(target)
    for n in range(50):
        log.submit(decision(10_000_000 + n, writer_no)).result(timeout=60)
    warm_commits = int(getattr(log, "commits", 0))
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(writes))

    def client() -> None:
        mine: list[float] = []
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                break
            record = decision(n, writer_no)
            began = time.perf_counter()
            log.submit(record).result(timeout=60)
            mine.append((time.perf_counter() - began) * 1000)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    commits = int(getattr(log, "commits", 0)) - warm_commits
    log.close()
    out.put((elapsed, latencies, commits))


def run(target: str, writers: int, concurrency: int, writes: int) -> tuple[float, float, float, float]:
    """(rows/s, p50 ms, p95 ms, rows per commit) of one run: `writers` processes share the threads
    and the writes."""
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(writers + 1), context.Queue()
    share = concurrency // writers
    procs = [
        context.Process(target=drive, args=(target, w, share, writes // writers, start, out))
        for w in range(writers)
    ]
    for proc in procs:
        proc.start()
    start.wait()  # every writer opened and warmed up: go
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    elapsed = max(r[0] for r in results)
    latencies = sorted(x for r in results for x in r[1])
    commits = sum(r[2] for r in results)
    return (
        len(latencies) / elapsed,
        statistics.median(latencies),
        latencies[int(0.95 * (len(latencies) - 1))],
        len(latencies) / max(commits, 1),
    )


def fresh_schema(dsn: str) -> tuple[str, str]:
    """A URL on a new schema of `dsn`'s database, and the schema's name (dropped by `drop_schema`)."""
    schema = f"cs_bench_{uuid.uuid4().hex[:10]}"
    joiner = "&" if "?" in dsn else "?"
    return f"{dsn}{joiner}schema={schema}", schema


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=3000, help="durable appends per run")
    parser.add_argument("--runs", type=int, default=5, help="runs per configuration (medians shown)")
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop clients in all")
    parser.add_argument("--writers", default="1,2", help="writer processes to try, e.g. 1,2")
    parser.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1:5432/test", help="PostgreSQL DSN (trust auth)"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="where the SQLite files go (default: a temp dir)"
    )
    args = parser.parse_args()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="cs-decision-log-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[tuple[str, int], list[tuple[float, float, float, float]]] = {}
    for writers in [int(w) for w in args.writers.split(",")]:
        for run_no in range(args.runs):
            for backend in ("sqlite", "postgresql"):
                if backend == "sqlite":
                    path = work / f"d-{writers}-{run_no}.sqlite"
                    outcome = run(str(path), writers, args.concurrency, args.writes)
                    for leftover in work.glob(f"{path.name}*"):
                        leftover.unlink()
                else:
                    url, schema = fresh_schema(args.postgres)
                    try:
                        outcome = run(url, writers, args.concurrency, args.writes)
                    finally:
                        drop_schema(args.postgres, schema)
                results.setdefault((backend, writers), []).append(outcome)
                console.print(
                    f"{backend:10} writers={writers} run {run_no + 1}/{args.runs}: {outcome[0]:,.0f} rows/s, "
                    f"p50 {outcome[1]:.2f} ms, p95 {outcome[2]:.2f} ms, {outcome[3]:.1f} rows/commit",
                    highlight=False,
                )

    table = Table(
        title=f"decision-log writes: concurrency {args.concurrency}, {args.writes} durable appends a run, "
        f"medians of {args.runs} runs"
    )
    columns = ("backend", "writer processes", "rows/s", "p50 ms", "p95 ms", "rows/commit", "rows/s vs SQLite")
    for column in columns:
        table.add_column(column, justify="left" if column == "backend" else "right")
    for (backend, writers), runs in results.items():
        rate = statistics.median(r[0] for r in runs)
        peer = statistics.median(r[0] for r in results[("sqlite", writers)])
        table.add_row(
            "SQLite (WAL, FULL)" if backend == "sqlite" else "PostgreSQL 15",
            str(writers),
            f"{rate:,.0f}",
            f"{statistics.median(r[1] for r in runs):.2f}",
            f"{statistics.median(r[2] for r in runs):.2f}",
            f"{statistics.median(r[3] for r in runs):.1f}",
            f"{rate / peer:.2f}x",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
