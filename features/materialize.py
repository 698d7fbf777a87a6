"""Materialization: every member's vector as of one instant, into the online store, atomically.

Runs the offline builder itself (one spine row per member, all with the same `as_of`), so online
vectors are computed by exactly the code that builds training sets; then writes them as a new
generation of the online store and switches to it in one step. The engine decides where the writes
run: DuckDB writes from this process; Spark writes from its executors, one store client per partition.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from features.catalog import FeatureRegistry, default_registry
from features.offline import DuckDBEngine
from features.offline_engines.base import Location, OfflineEngine
from features.online.base import OnlineStore


@dataclass(frozen=True)
class MaterializeReport:
    """What a materialization wrote, and how long it took."""

    as_of: datetime
    generation: int
    members: int
    feature_set_version: str
    features: int
    build_seconds: float
    write_seconds: float
    engine: str = "duckdb"
    writers: str = "driver"


def materialize(
    *,
    events_dir: Location | Path,
    tables_dir: Location | Path,
    store: OnlineStore,
    as_of: datetime | None = None,
    member_ids: Sequence[str] | None = None,
    registry: FeatureRegistry | None = None,
    engine: OfflineEngine | None = None,
    batch_size: int = 25_000,
    store_url: str | None = None,
) -> MaterializeReport:
    """Compute member vectors as of `as_of` (default: now) and swap them into `store` atomically.

    Args:
        events_dir: event log root.
        tables_dir: reference tables root (applications and outcomes, for peer signals).
        store: the online store to refresh.
        as_of: the instant the vectors describe (timezone-aware); default now (UTC).
        member_ids: members to materialize; default every member with a visible event.
        registry: feature declarations (default: `default_registry()`).
        engine: offline engine for the build (default: DuckDB in process).
        batch_size: vectors per `online_write_batch` call.
        store_url: the store's URL (`COOPSCORE_ONLINE_STORE`), for engines whose executors open
            their own client to it; None: writes go through `store` from this process.

    Returns:
        The committed generation, its size and the time spent building and writing (with Spark
        writing from executors, build and write overlap and count as build).
    """
    registry = registry or default_registry()
    engine = engine or DuckDBEngine()
    moment = (as_of or datetime.now(UTC)).astimezone(UTC)
    names = tuple(f.name for f in registry.member_features)
    with store.refresh(feature_names=names, feature_set_version=registry.version, as_of=moment) as refresh:
        written = engine.write_vectors(
            events_dir=events_dir,
            tables_dir=tables_dir,
            as_of=moment,
            member_ids=member_ids,
            registry=registry,
            store=store,
            store_url=store_url,
            refresh=refresh,
            batch_size=batch_size,
        )
        committing = time.perf_counter()
    committed = time.perf_counter()
    return MaterializeReport(
        as_of=moment,
        generation=refresh.generation,
        members=written.members,
        feature_set_version=registry.version,
        features=len(names),
        build_seconds=written.build_seconds,
        write_seconds=written.write_seconds + (committed - committing),
        engine=engine.name,
        writers=written.writers,
    )
