"""Offline engine benchmark: DuckDB vs Spark (local mode) on the same training-set build.

The job is the one `coopscore train` runs: every feature of every stored application, each as of its
`applied_at` (point in time), over a synthetic event log in the real storage layout (the generator
of `benchmarks/features.py`). The peer is DuckDB (all cores). Spark runs in local mode with 1 and 2
cores and a few shuffle-partition counts, each configuration in its own process (one JVM), the
session started once and excluded from the timings (reported apart). Medians of `--repeats` runs.

Usage: `python benchmarks/offline_engine.py --events 20000000 --members 100000 --applications 200000`
(`--events` takes a comma list to measure several sizes). `make bench-offline` runs the default.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _keep_package_importable() -> None:
    """`benchmarks/features.py` would shadow the `features` package: drop this folder from the path."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    root = str(HERE.parent)
    if root not in sys.path:
        sys.path.insert(0, root)


def _generator() -> Any:
    """`benchmarks/features.py`, loaded under another name (its synthetic world generator)."""
    spec = importlib.util.spec_from_file_location("bench_feature_world", HERE / "features.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _world(work_dir: Path, events: int, members: int, applications: int) -> Path:
    """The synthetic world for this size, generated once and cached under `work_dir`."""
    root = work_dir / f"world-{events}-{members}-{applications}"
    done = root / ".complete"
    if not done.exists():
        started = time.perf_counter()
        _generator().generate_world(root, members=members, events=events, applications=applications)
        done.touch()
        print(
            f"generated {events:,} events in {time.perf_counter() - started:.0f} s -> {root}", file=sys.stderr
        )
    return root


def _parquet_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "events").rglob("*.parquet"))


# --------------------------------------------------------------------------------------------------
# Workers (one process per engine configuration)
# --------------------------------------------------------------------------------------------------


def worker(options: argparse.Namespace) -> dict[str, Any]:
    """Time `repeats` builds in this process; the engine's start-up is timed apart."""
    from features.offline import (
        DuckDBEngine,
        EngineConfig,
        application_spine,
        build_features,
        read_applications,
    )

    root = Path(options.data_dir)
    spine = application_spine(read_applications(root / "tables"))
    started = time.perf_counter()
    engine: Any
    if options.worker == "spark":
        from features.offline_engines.spark import SparkConfig, SparkEngine

        engine = SparkEngine(
            SparkConfig(
                master=options.master,
                shuffle_partitions=options.partitions,
                conf={"spark.driver.memory": options.driver_memory},
            )
        )
        engine.session()
    else:
        engine = DuckDBEngine(EngineConfig(threads=options.threads, memory_limit=options.memory_limit))
    startup = time.perf_counter() - started
    seconds = []
    rows = 0
    for _ in range(options.repeats):
        began = time.perf_counter()
        frame = build_features(spine, events_dir=root / "events", tables_dir=root / "tables", engine=engine)
        seconds.append(time.perf_counter() - began)
        rows = len(frame)
    engine.close()
    return {"startup": startup, "seconds": seconds, "rows": rows}


def _run_worker(data_dir: Path, repeats: int, *extra: str) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--data-dir", str(data_dir)]
    command += ["--repeats", str(repeats), *extra]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{' '.join(extra)}: {result}", file=sys.stderr, flush=True)  # progress, a row per worker
    return result


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def measure(options: argparse.Namespace) -> list[dict[str, Any]]:
    """Every configuration on every size; one row per (size, engine configuration)."""
    rows: list[dict[str, Any]] = []
    work_dir = Path(options.work_dir)
    for events in [int(e) for e in options.events.split(",")]:
        root = _world(work_dir, events, options.members, options.applications)
        size = {"events": events, "parquet_bytes": _parquet_bytes(root)}
        duck = _run_worker(
            root, options.repeats, "--worker", "duckdb", "--memory-limit", options.memory_limit
        )
        base = statistics.median(duck["seconds"])
        rows.append({**size, "engine": "duckdb", "cores": os.cpu_count(), "partitions": None, **duck})
        for config in options.spark.split(","):
            master, partitions = config.split(":")
            cores = int(master.removeprefix("local[").removesuffix("]"))
            spark = _run_worker(
                root,
                options.repeats,
                "--worker",
                "spark",
                "--master",
                master,
                "--partitions",
                partitions,
                "--driver-memory",
                options.driver_memory,
            )
            rows.append({**size, "engine": "spark", "cores": cores, "partitions": int(partitions), **spark})
        for row in rows:
            if row["events"] == events:
                row["median"] = statistics.median(row["seconds"])
                row["ratio"] = row["median"] / base
    return rows


def render(rows: list[dict[str, Any]], options: argparse.Namespace) -> str:
    """A Markdown table with ratios to DuckDB, and Spark's throughput per core."""
    lines = [
        f"Training-set build: {options.applications:,} applications x every feature, "
        f"{options.members:,} members; medians of {options.repeats} runs (seconds; start-up apart).",
        "",
        "| events | Parquet MB | engine | cores | shuffle partitions | start-up s | median s | runs s "
        "| vs DuckDB | events/s per core |",
        "|---:|---:|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        per_core = r["events"] / r["median"] / (r["cores"] or 1)
        runs = ", ".join(f"{s:.1f}" for s in r["seconds"])
        lines.append(
            f"| {r['events']:,} | {r['parquet_bytes'] / 1e6:,.0f} | {r['engine']} | {r['cores']} "
            f"| {r['partitions'] or '-'} | {r['startup']:.1f} | {r['median']:.1f} | {runs} "
            f"| {r['ratio']:.2f}x | {per_core:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", default="20000000", help="event-log sizes, comma separated")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--applications", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--spark", default="local[1]:4,local[2]:4,local[2]:16", help="Spark configs master:shuffle-partitions"
    )
    parser.add_argument("--memory-limit", default="6GB", help="DuckDB memory limit")
    parser.add_argument("--driver-memory", default="6g", help="Spark driver (= local executor) memory")
    parser.add_argument("--work-dir", default="/tmp/cs-offline-engine")
    parser.add_argument("--out", default="offline-engine-results.json")
    # Worker mode (internal): time one engine configuration in this process.
    parser.add_argument("--worker", choices=["duckdb", "spark"])
    parser.add_argument("--data-dir")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    options = parser.parse_args()
    _keep_package_importable()
    if options.worker:
        print(json.dumps(worker(options)))
        return
    rows = measure(options)
    Path(options.out).write_text(json.dumps(rows, indent=2))
    print(render(rows, options))


if __name__ == "__main__":
    main()
