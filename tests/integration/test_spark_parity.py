"""Spark/DuckDB parity: the same compiled feature SQL gives the same vectors on both engines.

One simulated world with late records and duplicates: the simulator's feed faults (re-sent rows,
records months late) go through ingestion as usual, and on top of it re-sent copies of stored events
(later `recorded_at`, a changed amount) are written straight into the Parquet log, so the query's
dedupe step runs on both engines. Every feature of every (member, as-of) and of every application
row is compared: counts and flags exactly, sums and ratios within 1e-9 relative. Materialization
is compared too: Spark writing to SQLite from the driver and to Redis from its executors.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.catalog import default_registry
from features.contracts import EVENT_TYPES
from features.event_log import EventLog
from features.ingest import ingest_paths
from features.ledger import IngestLedger
from features.materialize import materialize
from features.offline import DuckDBEngine, EngineConfig, application_spine, build_features, read_applications
from features.offline_engines.spark import SparkEngine
from features.online.redis import RedisOnlineStore
from features.online.sqlite import SqliteOnlineStore
from simulator.world import SimulationConfig, simulate_world
from tests.utils.feeds import limits

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REGISTRY = default_registry()
DUCKDB = DuckDBEngine(EngineConfig(threads=1, memory_limit="1GB"))
MEMBERS = 160
MONTHS = 14
# Month-ends inside the world, plus one instant mid-day (sub-second as_of, odd time of day).
AS_OF = [datetime(2024, m, 1, tzinfo=UTC) for m in (4, 8, 12)] + [
    datetime(2025, 2, 14, 9, 30, 15, 250_000, tzinfo=UTC)
]


def _resend_copies(events_dir: Path, rng: np.random.Generator) -> int:
    """Write re-sent copies of ~4% of each type's stored events: recorded 1-90 days later, with the
    amount changed, so a copy visible too early or chosen wrongly would change a feature."""
    written = 0
    for event_type in EVENT_TYPES:
        folder = events_dir / f"event_type={event_type}"
        files = sorted(folder.glob("part-*.parquet"))
        if not files:
            continue
        table = pa.concat_tables([pq.read_table(f) for f in files])
        picked = table.take(np.flatnonzero(rng.random(table.num_rows) < 0.04))
        if picked.num_rows == 0:
            continue
        frame = picked.to_pandas()
        frame["recorded_at"] = frame["recorded_at"] + pd.to_timedelta(rng.integers(1, 91, len(frame)), "D")
        if "amount_cny" in frame:
            frame["amount_cny"] = frame["amount_cny"] * 1.5 + 1.0
        copies = pa.Table.from_pandas(frame, schema=table.schema, preserve_index=False)
        pq.write_table(copies, folder / "part-zz-resent-00000.parquet")
        written += copies.num_rows
    return written


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """A simulated world (2x the default duplicate rate, 3x the late rate), ingested, plus re-sent copies."""
    root = tmp_path_factory.mktemp("spark-parity")
    config = SimulationConfig(
        members=MEMBERS,
        months=MONTHS,
        seed=23,
        start=date(2024, 1, 1),
        counties=2,
        coops_per_county=3,
        villages_per_county=4,
        duplicate_rate=0.02,
        late_rate=0.15,
        application_rate=0.04,
    )
    summary = simulate_world(config, root / "world")
    assert summary.duplicates_injected > 0 and summary.late_injected > 0
    data = root / "data"
    log = EventLog(data / "events", data / "tables")
    ledger = IngestLedger(data / "ledger.sqlite")
    try:
        report = ingest_paths([root / "world"], log, ledger, data / "quarantine", limits())
    finally:
        ledger.close()
    assert report.totals()["duplicates"] > 0  # the feed's re-sent rows reached ingestion
    resent = _resend_copies(data / "events", np.random.default_rng(5))
    assert resent > 0
    return data / "events", data / "tables", resent


def _members(events_dir: Path) -> list[str]:
    """Every member with a stored membership event (the simulator's ids), sorted."""
    folder = events_dir / "event_type=membership"
    ids = pa.concat_tables([pq.read_table(f, columns=["member_id"]) for f in folder.glob("part-*.parquet")])
    members = sorted(set(ids["member_id"].to_pylist()))
    assert len(members) >= MEMBERS * 0.9
    return members


def _spine(events_dir: Path, tables_dir: Path) -> pd.DataFrame:
    """Every member at each as-of instant, then every application as of its applied_at."""
    members = _members(events_dir)
    grid = pd.DataFrame(
        [(f"{m}@{t.isoformat()}", m, t) for t in AS_OF for m in members],
        columns=["request_id", "member_id", "as_of"],
    )
    grid["as_of"] = pd.to_datetime(grid["as_of"], utc=True)
    applications = application_spine(read_applications(tables_dir))
    return pd.concat([grid, applications], ignore_index=True)


def _compare(duck: pd.DataFrame, spark: pd.DataFrame) -> list[str]:
    problems = []
    for feature in REGISTRY.features:
        a = duck[feature.name].to_numpy(dtype=np.float64)
        b = spark[feature.name].to_numpy(dtype=np.float64)
        if feature.dtype == "int64":
            same = (a == b) | (np.isnan(a) & np.isnan(b))
        else:
            same = np.isclose(a, b, rtol=1e-9, atol=0.0, equal_nan=True) | (a == b)
        if not same.all():
            rows = np.flatnonzero(~same)[:3]
            problems.append(f"{feature.name}: rows {rows.tolist()} duckdb {a[rows]} spark {b[rows]}")
    return problems


def test_every_feature_of_every_member_and_as_of_equals_duckdb(
    world: tuple[Path, Path, int], spark_session: Any
) -> None:
    events_dir, tables_dir, _ = world
    spine = _spine(events_dir, tables_dir)
    grid_rows = len(spine) - len(read_applications(tables_dir))
    duck = build_features(spine, events_dir=events_dir, tables_dir=tables_dir, engine=DUCKDB)
    spark = build_features(
        spine, events_dir=events_dir, tables_dir=tables_dir, engine=SparkEngine(session=spark_session)
    )
    assert spark["request_id"].tolist() == duck["request_id"].tolist()
    assert list(spark.columns) == list(duck.columns)
    # The world is not trivial: the member x as-of rows hold real activity, not empty vectors.
    grid = duck.iloc[:grid_rows]
    assert (grid["delivery_count_365d"] > 0).mean() > 0.3
    assert grid["delivery_count_365d"].nunique() > 10
    problems = _compare(duck, spark)
    print(
        f"\nparity: {grid_rows // len(AS_OF)} members x {len(AS_OF)} as-of dates + {len(spine) - grid_rows} "
        f"applications = {len(spine)} rows x {len(REGISTRY.features)} features "
        f"= {len(spine) * len(REGISTRY.features):,} values"
    )
    assert not problems, "\n".join(problems)


def test_the_dedupe_step_ran_on_both_engines(world: tuple[Path, Path, int], spark_session: Any) -> None:
    events_dir, tables_dir, _ = world
    con = DUCKDB.connect()
    try:
        DUCKDB.register_sources(con, events_dir=events_dir, tables_dir=tables_dir)
        duck = DUCKDB.event_types_with_duplicates(con)
    finally:
        con.close()
    engine = SparkEngine(session=spark_session)
    engine.register_sources(spark_session, events_dir=events_dir, tables_dir=tables_dir)
    assert engine.event_types_with_duplicates(spark_session) == duck
    assert len(duck) >= 5


def _read_all(store: Any, members: list[str]) -> dict[str, np.ndarray]:
    vectors = store.online_read(members)
    return {
        v.member_id: np.array([v.features[f.name] for f in REGISTRY.member_features]) for v in vectors if v
    }


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_spark_materialization_writes_the_vectors_duckdb_writes(
    world: tuple[Path, Path, int], spark_session: Any, tmp_path: Path, backend: str, request: Any
) -> None:
    events_dir, tables_dir, _ = world
    as_of = AS_OF[-1] + timedelta(days=30)
    duck_store = SqliteOnlineStore(tmp_path / "duckdb.sqlite")
    duck = materialize(
        events_dir=events_dir, tables_dir=tables_dir, store=duck_store, as_of=as_of, engine=DUCKDB
    )
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'spark.sqlite'}"
        spark_store: Any = SqliteOnlineStore(tmp_path / "spark.sqlite")
    else:
        url = request.getfixturevalue("redis_url")
        spark_store = RedisOnlineStore(url)
    spark = materialize(
        events_dir=events_dir,
        tables_dir=tables_dir,
        store=spark_store,
        as_of=as_of,
        engine=SparkEngine(session=spark_session),
        store_url=url,
        batch_size=50,  # several batches per partition
    )
    assert spark.writers == ("executors" if backend == "redis" else "driver")
    assert spark.members == duck.members > 0
    # Every member with a visible event (a member whose join row was quarantined still has others).
    members = DUCKDB.list_members(events_dir=events_dir, tables_dir=tables_dir, as_of=as_of)
    expected, actual = _read_all(duck_store, members), _read_all(spark_store, members)
    assert len(expected) == duck.members
    duck_store.close()
    spark_store.close()
    assert sorted(actual) == sorted(expected)
    for member, values in expected.items():
        assert np.allclose(actual[member], values, rtol=1e-9, atol=0.0, equal_nan=True), member
