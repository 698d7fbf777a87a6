"""Materialization: every member's vector as of one instant, into the online store, atomically.

Runs the offline builder itself (one spine row per member, all with the same `as_of`), so online
vectors are computed by exactly the code that builds training sets; then writes them as a new
generation of the online store and switches to it in one step.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from features.catalog import FeatureRegistry, default_registry
from features.offline import DuckDBEngine, build_features, member_spine
from features.online.base import FeatureBatch, OnlineStore


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


def materialize(
    *,
    events_dir: Path,
    tables_dir: Path,
    store: OnlineStore,
    as_of: datetime | None = None,
    member_ids: Sequence[str] | None = None,
    registry: FeatureRegistry | None = None,
    engine: DuckDBEngine | None = None,
    batch_size: int = 25_000,
) -> MaterializeReport:
    """Compute member vectors as of `as_of` (default: now) and swap them into `store` atomically.

    Args:
        events_dir: event log root.
        tables_dir: reference tables root (applications and outcomes, for peer signals).
        store: the online store to refresh.
        as_of: the instant the vectors describe (timezone-aware); default now (UTC).
        member_ids: members to materialize; default every member with a visible event.
        registry: feature declarations (default: `default_registry()`).
        engine: DuckDB adapter for the build.
        batch_size: vectors per `online_write_batch` call.

    Returns:
        The committed generation, its size and the time spent building and writing.
    """
    registry = registry or default_registry()
    engine = engine or DuckDBEngine()
    moment = (as_of or datetime.now(UTC)).astimezone(UTC)
    started = time.perf_counter()
    members = (
        list(member_ids)
        if member_ids is not None
        else engine.list_members(events_dir=events_dir, tables_dir=tables_dir, as_of=moment)
    )
    frame = build_features(
        member_spine(members, moment),
        events_dir=events_dir,
        tables_dir=tables_dir,
        registry=registry,
        engine=engine,
    )
    names = tuple(f.name for f in registry.member_features)
    values = frame[list(names)].to_numpy(dtype=np.float64)
    built = time.perf_counter()
    with store.refresh(feature_names=names, feature_set_version=registry.version, as_of=moment) as refresh:
        for start in range(0, len(members), batch_size):
            store.online_write_batch(
                refresh,
                FeatureBatch(
                    member_ids=members[start : start + batch_size],
                    as_of=moment,
                    feature_names=names,
                    values=values[start : start + batch_size],
                ),
            )
    written = time.perf_counter()
    return MaterializeReport(
        as_of=moment,
        generation=refresh.generation,
        members=len(members),
        feature_set_version=registry.version,
        features=len(names),
        build_seconds=built - started,
        write_seconds=written - built,
    )
