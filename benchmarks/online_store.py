"""Online store benchmark (issue 18, item 2): Redis against the SQLite store, over loopback.

For each store, with the real feature catalog's width and `--members` synthetic vectors:

- materialization write throughput (vectors per second: begin, `online_write_batch` in batches of
  25,000 as `coopscore features materialize` does, commit), one fresh generation per run;
- `online_read` latency for one member and for a batch of 100 members, in process, from a single
  client thread (p50 and p99 of `--reads` calls per run);
- for Redis, the bare PING round trip: the floor any Redis read pays on this machine.

Every figure is the median over `--repeats` runs; the table gives Redis / SQLite ratios (SQLite is
the named peer, the default store). Issue target: Redis single-member read p50 <= 0.3 ms.

Usage: `python benchmarks/online_store.py [--members 100000 --reads 2000 --repeats 5
--redis-url redis://127.0.0.1:6379/15 --out online-store-results.json]` (`make bench-online`).
Redis keys are written under a fresh prefix and deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

AS_OF = datetime(2025, 1, 1, tzinfo=UTC)
WRITE_BATCH = 25_000  # what features.materialize writes per call


def _keep_package_importable() -> None:
    """`python benchmarks/x.py` puts `benchmarks/` first on sys.path, where `benchmarks/features.py`
    would shadow the `features` package: drop that folder from the path before importing it."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    if "features" in sys.modules and not hasattr(sys.modules["features"], "__path__"):
        del sys.modules["features"]


def _vectors(members: int, width: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.gamma(2.0, 50.0, size=(members, width))
    values[rng.random((members, width)) < 0.1] = np.nan  # undefined features, as in real vectors
    return [f"M{i:07d}" for i in range(members)], values


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _write(store: Any, ids: list[str], values: np.ndarray, names: tuple[str, ...]) -> float:
    """One materialization into a fresh generation; vectors per second."""
    from features.online.base import FeatureBatch

    started = time.perf_counter()
    with store.refresh(feature_names=names, feature_set_version="bench", as_of=AS_OF) as refresh:
        for start in range(0, len(ids), WRITE_BATCH):
            store.online_write_batch(
                refresh,
                FeatureBatch(
                    member_ids=ids[start : start + WRITE_BATCH],
                    as_of=AS_OF,
                    feature_names=names,
                    values=values[start : start + WRITE_BATCH],
                ),
            )
    return len(ids) / (time.perf_counter() - started)


def _read_latency(
    read: Callable[[list[str]], object], ids: list[str], size: int, reads: int, seed: int
) -> list[int]:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ids), size=(reads, size))
    for row in picks[: max(reads // 10, 10)]:  # warm caches and connections
        read([ids[i] for i in row])
    samples: list[int] = []
    for row in picks:
        asked = [ids[i] for i in row]
        started = time.perf_counter_ns()
        read(asked)
        samples.append(time.perf_counter_ns() - started)
    return samples


def _measure(
    store: Any, ids: list[str], values: np.ndarray, names: tuple[str, ...], args: argparse.Namespace
) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {
        k: [] for k in ("write_per_s", "single_p50", "single_p99", "batch_p50", "batch_p99")
    }
    for run in range(args.repeats):
        runs["write_per_s"].append(_write(store, ids, values, names))
        found = store.online_read(ids[:3])
        assert all(v is not None for v in found), "a written member was not read back"
        p50, p99 = _percentiles(_read_latency(store.online_read, ids, 1, args.reads, seed=run))
        runs["single_p50"].append(p50)
        runs["single_p99"].append(p99)
        p50, p99 = _percentiles(
            _read_latency(store.online_read, ids, 100, max(args.reads // 4, 50), seed=run)
        )
        runs["batch_p50"].append(p50)
        runs["batch_p99"].append(p99)
    return runs


def _ping(store: Any, reads: int, repeats: int) -> list[float]:
    medians = []
    for _ in range(repeats):
        samples = []
        for _ in range(reads):
            started = time.perf_counter_ns()
            store.client.ping()
            samples.append(time.perf_counter_ns() - started)
        medians.append(_percentiles(samples)[0])
    return medians


ROWS = (
    ("single_p50", "read 1 member, p50 (ms)", "{:.3f}"),
    ("single_p99", "read 1 member, p99 (ms)", "{:.3f}"),
    ("batch_p50", "read 100 members, p50 (ms)", "{:.3f}"),
    ("batch_p99", "read 100 members, p99 (ms)", "{:.3f}"),
    ("write_per_s", "materialize, vectors/s", "{:,.0f}"),
)


def _table(results: dict[str, Any]) -> str:
    lines = [
        "| measure | SQLite (peer) | Redis | Redis / SQLite |",
        "|---|---:|---:|---:|",
    ]
    for key, label, fmt in ROWS:
        sqlite, redis_ = results["sqlite"][key], results["redis"][key]
        lines.append(f"| {label} | {fmt.format(sqlite)} | {fmt.format(redis_)} | {redis_ / sqlite:.2f}x |")
    lines.append(f"| Redis PING round trip, p50 (ms) | | {results['redis_ping_p50']:.3f} | |")
    return "\n".join(lines)


def main() -> None:
    """Run both stores, print the table, write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000, help="vectors written per materialization")
    parser.add_argument(
        "--reads", type=int, default=2_000, help="single-member reads per run (batches: a quarter)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per store; figures are medians of runs")
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/15", help="Redis to use (keys under a fresh prefix)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("online-store-results.json"), help="JSON results file"
    )
    args = parser.parse_args()

    _keep_package_importable()
    from features.catalog import default_registry
    from features.online.redis import RedisOnlineStore
    from features.online.sqlite import SqliteOnlineStore

    names = tuple(default_registry().names)
    ids, values = _vectors(args.members, len(names), seed=1)
    prefix = f"coopscore-bench:{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in args.redis_url else "?"
    # retired_ttl=60: each run's previous generation expires within the benchmark's minutes.
    redis_store = RedisOnlineStore(f"{args.redis_url}{separator}prefix={prefix}&retired_ttl=60")
    raw: dict[str, dict[str, list[float]]] = {}
    try:
        redis_store.ping()
        with (
            tempfile.TemporaryDirectory(prefix="cs-online-bench-") as tmp,
            SqliteOnlineStore(Path(tmp) / "online.sqlite") as sqlite_store,
        ):
            print(
                f"SQLite: {args.members:,} members x {len(names)} features, {args.repeats} runs",
                file=sys.stderr,
            )
            raw["sqlite"] = _measure(sqlite_store, ids, values, names, args)
        print(
            f"Redis:  {args.members:,} members x {len(names)} features, {args.repeats} runs", file=sys.stderr
        )
        raw["redis"] = _measure(redis_store, ids, values, names, args)
        ping = _ping(redis_store, args.reads, args.repeats)
    finally:
        keys = list(redis_store.client.scan_iter(match=f"{prefix}:*", count=5_000))
        for start in range(0, len(keys), 10_000):
            redis_store.client.unlink(*keys[start : start + 10_000])
        redis_store.close()

    results: dict[str, Any] = {
        "members": args.members,
        "features": len(names),
        "reads": args.reads,
        "repeats": args.repeats,
        "redis_url": args.redis_url,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": raw,
        "redis_ping_p50": statistics.median(ping),
    }
    for store, runs in raw.items():
        results[store] = {key: statistics.median(samples) for key, samples in runs.items()}
    target_met = results["redis"]["single_p50"] <= 0.3
    results["target_redis_single_p50_ms"] = 0.3
    results["target_met"] = target_met
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(_table(results))
    print(
        f"\nRedis single-member read p50 {results['redis']['single_p50']:.3f} ms: target <= 0.3 ms "
        f"{'met' if target_met else 'NOT met'}. Results: {args.out}"
    )


if __name__ == "__main__":
    main()
