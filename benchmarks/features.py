"""Feature-store benchmark: offline build, naive reference, materialization and online reads.

Generates a synthetic event log in the real storage layout (numpy, written with the contract
schemas) unless `--data-dir` already holds one, then measures, each phase in a fresh process so its
peak memory is its own:

- the point-in-time offline build of every feature for N applications (DuckDB);
- the naive pandas/Python reference (`features.reference`) on a slice, and the per-application ratio;
- `materialize` of every member's vector into a fresh SQLite online store;
- `online_read` latency for one member, in process (p50 / p99).

Usage: `python benchmarks/features.py [--events 20000000 --applications 200000 --members 100000]`.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

END = datetime(2025, 1, 1, tzinfo=UTC)
SPAN_DAYS = 3 * 365
US_PER_DAY = 86_400 * 1_000_000
# Share of the non-membership events by type (roughly a cooperative bookkeeping export).
EVENT_SHARES = {
    "produce_delivery": 0.20,
    "input_purchase": 0.14,
    "savings_deposit": 0.12,
    "savings_withdrawal": 0.05,
    "loan_disbursement": 0.01,
    "loan_repayment": 0.05,
    "meeting_attendance": 0.10,
    "training_completed": 0.04,
    "mobile_payment": 0.27,
    "green_practice": 0.02,
}
ROWS_PER_PART = 2_000_000


def _keep_package_importable() -> None:
    """This script is named like the `features` package: keep its folder off the import path.

    Run as `python benchmarks/features.py`, Python puts `benchmarks/` first on `sys.path`, where
    this very file would shadow the package; every `features.*` import below is therefore lazy.
    """
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    if "features" in sys.modules and not hasattr(sys.modules["features"], "__path__"):
        del sys.modules["features"]


# --------------------------------------------------------------------------------------------------
# Synthetic world
# --------------------------------------------------------------------------------------------------


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pa.array(numbers).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _choice(rng: np.random.Generator, values: tuple[str, ...] | list[str], n: int) -> pa.Array:
    indices = pa.array(rng.integers(0, len(values), n).astype(np.int32))
    return pa.DictionaryArray.from_arrays(indices, pa.array(values)).cast(pa.string())


def _stamps(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype(np.int64), pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _amounts(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    return np.round(rng.gamma(2.0, scale / 2.0, n), 2)


def _payload(rng: np.random.Generator, event_type: str, n: int, times: np.ndarray) -> dict:
    """Typed payload columns for `n` events of one type."""
    from features.contracts import (
        GREEN_PRACTICES,
        INPUT_CATEGORIES,
        PAYMENT_DIRECTIONS,
        PRODUCE_PRODUCTS,
        QUALITY_GRADES,
        TRAINING_TOPICS,
    )

    due = _stamps(times + 180 * US_PER_DAY)
    loans = _ids("L", rng.integers(0, 10**6, n), 7)
    columns: dict[str, Any] = {
        "produce_delivery": lambda: {
            "product": _choice(rng, PRODUCE_PRODUCTS, n),
            "quantity_kg": _amounts(rng, n, 300.0),
            "amount_cny": _amounts(rng, n, 1500.0),
            "quality_grade": _choice(rng, QUALITY_GRADES, n),
        },
        "input_purchase": lambda: {
            "category": _choice(rng, INPUT_CATEGORIES, n),
            "amount_cny": _amounts(rng, n, 600.0),
            "on_credit": pa.array(rng.random(n) < 0.3),
        },
        "savings_deposit": lambda: {"amount_cny": _amounts(rng, n, 200.0)},
        "savings_withdrawal": lambda: {"amount_cny": _amounts(rng, n, 300.0)},
        "loan_disbursement": lambda: {
            "loan_id": loans,
            "amount_cny": _amounts(rng, n, 5000.0),
            "due_date": due,
        },
        "loan_repayment": lambda: {
            "loan_id": loans,
            "amount_cny": _amounts(rng, n, 800.0),
            "due_date": due,
            "days_late": pa.array(
                np.where(rng.random(n) < 0.85, 0, rng.integers(1, 120, n)).astype(np.int32)
            ),
        },
        "meeting_attendance": dict,
        "training_completed": lambda: {"topic": _choice(rng, TRAINING_TOPICS, n)},
        "mobile_payment": lambda: {
            "direction": _choice(rng, PAYMENT_DIRECTIONS, n),
            "amount_cny": _amounts(rng, n, 150.0),
        },
        "green_practice": lambda: {
            "practice": _choice(rng, GREEN_PRACTICES, n),
            "verified": pa.array(rng.random(n) < 0.6),
        },
    }
    result: dict = columns[event_type]()
    return result


def _write_parts(folder: Path, table: pa.Table) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, max(table.num_rows, 1), ROWS_PER_PART)):
        part = table.slice(start, ROWS_PER_PART)
        pq.write_table(part, folder / f"part-{i:05d}.parquet", row_group_size=500_000)


def generate_world(root: Path, *, members: int, events: int, applications: int, seed: int = 7) -> None:
    """Write a synthetic event log and applications/outcomes under `root/events`, `root/tables`."""
    from features.contracts import (
        APPLICATION_CONTRACT,
        EVENT_CONTRACTS,
        EVENT_PAYLOADS,
        LOAN_PURPOSES,
        MEMBERSHIP_ROLES,
        OUTCOME_CONTRACT,
    )

    rng = np.random.default_rng(seed)
    end_us = int(END.timestamp() * 1_000_000)
    start_us = end_us - SPAN_DAYS * US_PER_DAY
    # Members join during the first two years; everything they do happens after joining.
    join_us = start_us + rng.integers(0, 2 * 365 * US_PER_DAY, members)
    member_coop = rng.integers(0, max(members // 200, 1), members)
    member_village = rng.integers(0, max(members // 50, 1), members)
    member_ids = _ids("m", np.arange(members), 7)
    coop_ids = _ids("c", member_coop, 5)

    def common(kind: str, who: np.ndarray, times: np.ndarray, offset: int) -> dict[str, Any]:
        n = len(who)
        late = rng.random(n) < 0.05
        lag = np.where(late, rng.integers(US_PER_DAY, 90 * US_PER_DAY, n), rng.integers(0, US_PER_DAY, n))
        return {
            "event_id": _ids(f"ev-{kind[:4]}-", np.arange(offset, offset + n), 12),
            "member_id": pc.take(member_ids, pa.array(who)),
            "coop_id": pc.take(coop_ids, pa.array(who)),
            "event_type": pa.array([kind] * n) if n < 1000 else _choice(rng, (kind,), n),
            "event_time": _stamps(times),
            "recorded_at": _stamps(times + lag),
        }

    events_dir = root / "events"
    membership = {
        **common("membership", np.arange(members), join_us, 0),
        "action": _choice(rng, ("join",), members),
        "role": pa.array(np.array(MEMBERSHIP_ROLES)[(rng.random(members) < 0.05).astype(int)]),
        "village_id": _ids("v", member_village, 6),
    }
    schema = EVENT_CONTRACTS["membership"].arrow_schema()
    _write_parts(events_dir / "event_type=membership", pa.table(membership, schema=schema))
    remaining = events - members
    for kind, share in EVENT_SHARES.items():
        n = int(remaining * share)
        who = rng.integers(0, members, n)
        times = join_us[who] + (rng.random(n) * (end_us - join_us[who])).astype(np.int64)
        columns = {**common(kind, who, times, 0), **_payload(rng, kind, n, times)}
        names = EVENT_CONTRACTS[kind].names
        assert set(names) == set(columns), (kind, set(names) ^ set(columns))
        table = pa.table({c: columns[c] for c in names}, schema=EVENT_CONTRACTS[kind].arrow_schema())
        _write_parts(events_dir / f"event_type={kind}", table)
        del table, columns
    assert set(EVENT_SHARES) | {"membership"} == set(EVENT_PAYLOADS)

    who = rng.integers(0, members, applications)
    applied = join_us[who] + 30 * US_PER_DAY
    applied = applied + (rng.random(applications) * (end_us - applied)).astype(np.int64)
    apps = pa.table(
        {
            "application_id": _ids("app-", np.arange(applications), 9),
            "member_id": pc.take(member_ids, pa.array(who)),
            "coop_id": pc.take(coop_ids, pa.array(who)),
            "applied_at": _stamps(applied),
            "amount_cny": np.round(rng.gamma(2.0, 4000.0, applications), -1),
            "term_months": pa.array(rng.choice([6, 12, 18, 24], applications).astype(np.int32)),
            "purpose": _choice(rng, LOAN_PURPOSES, applications),
        },
        schema=APPLICATION_CONTRACT.arrow_schema(),
    )
    _write_parts(root / "tables" / "applications", apps)
    observed = applied + 365 * US_PER_DAY + rng.integers(0, 30 * US_PER_DAY, applications)
    known = np.flatnonzero(observed < end_us)
    outcomes = pa.table(
        {
            "application_id": pc.take(apps["application_id"], pa.array(known)),
            "defaulted": pa.array(rng.random(len(known)) < 0.08),
            "observed_at": _stamps(observed[known]),
        },
        schema=OUTCOME_CONTRACT.arrow_schema(),
    )
    _write_parts(root / "tables" / "outcomes", outcomes)


# --------------------------------------------------------------------------------------------------
# Phases (each runs in a fresh process)
# --------------------------------------------------------------------------------------------------


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _engine(args: dict[str, Any], *, force_dedupe: bool = False) -> Any:
    from features.contracts import EVENT_TYPES
    from features.offline import DuckDBEngine, EngineConfig

    class AlwaysDedupe(DuckDBEngine):
        """Takes the exact dedupe path for every type, as if each one had duplicate ids."""

        @staticmethod
        def event_types_with_duplicates(con: Any, event_types: Any = EVENT_TYPES) -> set[str]:
            return set(event_types)

    engine_type = AlwaysDedupe if force_dedupe else DuckDBEngine
    return engine_type(EngineConfig(threads=args["threads"], memory_limit=args["memory_limit"]))


def _build(args: dict[str, Any], *, force_dedupe: bool) -> dict[str, float]:
    from features.offline import application_spine, build_features, read_applications

    root = Path(args["data_dir"])
    spine = application_spine(read_applications(root / "tables"))
    started = time.perf_counter()
    frame = build_features(
        spine,
        events_dir=root / "events",
        tables_dir=root / "tables",
        engine=_engine(args, force_dedupe=force_dedupe),
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": float(len(frame)),
        "features": float(frame.shape[1] - 3),
        "peak_mib": _peak_mib(),
    }


def phase_build(args: dict[str, Any]) -> dict[str, float]:
    """Offline build of every feature for every application."""
    return _build(args, force_dedupe=False)


def phase_build_dedupe(args: dict[str, Any]) -> dict[str, float]:
    """The same build on the exact dedupe path (what a log with duplicate ids costs)."""
    return _build(args, force_dedupe=True)


def phase_reference(args: dict[str, Any]) -> dict[str, float]:
    """The naive reference on a slice of applications."""
    from features.offline import application_spine, read_applications
    from features.reference import reference_features

    root = Path(args["data_dir"])
    spine = application_spine(read_applications(root / "tables"))
    sample = spine.sample(n=min(args["reference_slice"], len(spine)), random_state=1)
    started = time.perf_counter()
    reference_features(sample, events_dir=root / "events", tables_dir=root / "tables", member_scoped=True)
    return {"seconds": time.perf_counter() - started, "rows": float(len(sample))}


def phase_materialize(args: dict[str, Any]) -> dict[str, float]:
    """Materialize every member's vector into a fresh SQLite store."""
    from features.materialize import materialize
    from features.online.sqlite import SqliteOnlineStore

    root = Path(args["data_dir"])
    store_path = Path(args["store_path"])
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_path}{suffix}").unlink(missing_ok=True)
    store = SqliteOnlineStore(store_path)
    started = time.perf_counter()
    report = materialize(
        events_dir=root / "events",
        tables_dir=root / "tables",
        store=store,
        as_of=END,
        engine=_engine(args),
    )
    seconds = time.perf_counter() - started
    store.close()
    return {"seconds": seconds, "rows": float(report.members), "peak_mib": _peak_mib()}


def phase_online(args: dict[str, Any]) -> dict[str, float]:
    """Single-member `online_read` latency, in process, over random members."""
    from features.online.sqlite import SqliteOnlineStore

    store = SqliteOnlineStore(Path(args["store_path"]))
    rng = np.random.default_rng(3)
    members = [f"m{i:07d}" for i in rng.integers(0, args["members"], args["reads"])]
    for member in members[:1000]:  # warm the page cache and statement cache
        store.online_read([member])
    samples = []
    for member in members:
        started = time.perf_counter_ns()
        vector = store.online_read([member])[0]
        samples.append(time.perf_counter_ns() - started)
        assert vector is not None
    store.close()
    micros = np.array(samples) / 1000
    return {
        "p50_us": float(np.percentile(micros, 50)),
        "p99_us": float(np.percentile(micros, 99)),
        "reads": float(len(samples)),
    }


PHASES: dict[str, Callable[[dict[str, Any]], dict[str, float]]] = {
    "build": phase_build,
    "build_dedupe": phase_build_dedupe,
    "reference": phase_reference,
    "materialize": phase_materialize,
    "online": phase_online,
}


def _child(name: str, args: dict[str, Any], queue: Any) -> None:
    _keep_package_importable()
    queue.put(PHASES[name](args))


def run_phase(name: str, args: dict[str, Any]) -> dict[str, float]:
    """Run one phase in a fresh spawned process (so peak memory is the phase's own)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_child, args=(name, args, queue))
    process.start()
    result: dict[str, float] = queue.get()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"phase {name} failed with exit code {process.exitcode}")
    return result


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    """Parse options, make or reuse the data, run each phase a few times, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="reuse/keep the synthetic world here")
    parser.add_argument("--members", type=int, default=100_000, help="members in the world")
    parser.add_argument("--events", type=int, default=20_000_000, help="events in the log")
    parser.add_argument("--applications", type=int, default=200_000, help="applications")
    parser.add_argument("--runs", type=int, default=3, help="runs per phase (median reported)")
    parser.add_argument("--reference-slice", type=int, default=200, help="apps for the oracle")
    parser.add_argument("--reads", type=int, default=20_000, help="online reads timed")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (all cores)")
    parser.add_argument("--memory-limit", default="3GB", help="DuckDB memory limit")
    parser.add_argument(
        "--phases",
        default="build,reference,materialize,online",
        help="comma-separated phases: build, build_dedupe, reference, materialize, online",
    )
    options = parser.parse_args()
    _keep_package_importable()

    from rich.console import Console

    console = Console(width=120)
    scratch = Path(tempfile.mkdtemp(prefix="coopscore-bench-"))
    data_dir = options.data_dir or scratch / "world"
    try:
        if not (data_dir / "events").exists():
            started = time.perf_counter()
            generate_world(
                data_dir,
                members=options.members,
                events=options.events,
                applications=options.applications,
            )
            console.print(f"generated world in {time.perf_counter() - started:.1f} s: {data_dir}")
        args = {
            "data_dir": str(data_dir),
            "store_path": str(scratch / "online.sqlite"),
            "threads": options.threads,
            "memory_limit": options.memory_limit,
            "reference_slice": options.reference_slice,
            "members": options.members,
            "reads": options.reads,
        }
        phases = options.phases.split(",")
        load_before = os.getloadavg()[0]
        results = {p: [run_phase(p, args) for _ in range(options.runs)] for p in phases}
        _print(console, results, options)
        # The machine may be shared: a load above the core count means the timings are inflated.
        console.print(
            f"{os.cpu_count()} cores; 1-minute load average {load_before:.2f} before, "
            f"{os.getloadavg()[0]:.2f} after"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _print(console: Any, results: dict[str, list[dict[str, float]]], options: Any) -> None:
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"feature store, {options.events:,} events, median of {options.runs} runs",
        box=box.MARKDOWN,
    )
    for column in ("measure", "value", "target", "note"):
        table.add_column(column)
    if "build" in results:
        runs = results["build"]
        seconds, rows = _median(runs, "seconds"), _median(runs, "rows")
        table.add_row("offline build", f"{seconds:.2f} s", "≤ 20 s", f"{rows:,.0f} applications")
        table.add_row("offline build rate", f"{rows / seconds:,.0f} apps/s", "", "")
        table.add_row(
            "offline build peak RSS",
            f"{max(r['peak_mib'] for r in runs):,.0f} MiB",
            "< 4096 MiB",
            f"{_median(runs, 'features'):.0f} features",
        )
    if "build_dedupe" in results:
        runs = results["build_dedupe"]
        table.add_row(
            "offline build, dedupe path forced",
            f"{_median(runs, 'seconds'):.2f} s",
            "",
            f"as if every type had duplicate ids; peak {max(r['peak_mib'] for r in runs):,.0f} MiB",
        )
    if "reference" in results:
        ref = results["reference"]
        ref_per_app = _median(ref, "seconds") / _median(ref, "rows")
        table.add_row(
            "naive reference",
            f"{ref_per_app * 1000:.1f} ms/app",
            "",
            f"slice of {_median(ref, 'rows'):.0f} apps",
        )
        if "build" in results:
            build_per_app = _median(results["build"], "seconds") / _median(results["build"], "rows")
            table.add_row("reference / build per app", f"{ref_per_app / build_per_app:,.0f}×", "", "")
    if "materialize" in results:
        runs = results["materialize"]
        table.add_row(
            "materialize",
            f"{_median(runs, 'seconds'):.2f} s",
            "≤ 15 s",
            f"{_median(runs, 'rows'):,.0f} members; peak {max(r['peak_mib'] for r in runs):,.0f} MiB",
        )
    if "online" in results:
        runs = results["online"]
        table.add_row(
            "online read p50",
            f"{_median(runs, 'p50_us'):.1f} µs",
            "≤ 100 µs",
            f"{_median(runs, 'reads'):,.0f} single-member reads",
        )
        table.add_row("online read p99", f"{_median(runs, 'p99_us'):.1f} µs", "", "")
    console.print(table)


if __name__ == "__main__":
    main()
