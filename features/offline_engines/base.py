"""The offline engine interface: run the compiled feature SQL for a spine, list members, write vectors.

An engine owns only what differs between backends: where the event log is read from, how the one
engine-neutral query (`features.offline.compile_feature_sql`) is executed, and where materialized
vectors are written from. Point-in-time semantics live in the query, so every engine agrees.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd
    import pyarrow as pa

    from features.catalog import FeatureRegistry
    from features.online.base import OnlineStore, Refresh

Location = Path | str
"""A local folder, or (for engines that read object storage) a URI such as `s3a://bucket/coopscore/events`."""


class OfflineEngineError(RuntimeError):
    """An engine that cannot run here (missing Java or pyspark, an unreadable URI); one line, actionable."""


@dataclass(frozen=True)
class VectorsWritten:
    """What an engine wrote into a refresh: member count, where the writes ran (driver / executors),
    and seconds spent building and writing (writes overlapping the build count as build)."""

    members: int
    writers: str
    build_seconds: float
    write_seconds: float


class OfflineEngine(ABC):
    """Runs the compiled feature SQL over the Parquet event log."""

    name: str = "offline"

    @abstractmethod
    def member_features(
        self, spine: pd.DataFrame, *, events_dir: Location, tables_dir: Location, registry: FeatureRegistry
    ) -> pa.Table:
        """`spine_row` (the spine's row position) and every member feature, one row per spine row,
        sorted by `spine_row`; int64 counts/flags, float64 elsewhere (null when undefined)."""

    @abstractmethod
    def list_members(self, *, events_dir: Location, tables_dir: Location, as_of: datetime) -> list[str]:
        """Every member with at least one event visible as of `as_of`, sorted."""

    def write_vectors(
        self,
        *,
        events_dir: Location,
        tables_dir: Location,
        as_of: datetime,
        member_ids: Sequence[str] | None,
        registry: FeatureRegistry,
        store: OnlineStore,
        store_url: str | None,
        refresh: Refresh,
        batch_size: int,
    ) -> VectorsWritten:
        """Build every member's vector as of `as_of` and write it into `refresh` (not committed here).

        The default builds in this process and writes from here in batches; an engine with
        executors (Spark) overrides it to write from them, opening the store by `store_url`.
        """
        from features.offline import build_features, member_spine
        from features.online.base import FeatureBatch

        started = time.perf_counter()
        members = (
            list(member_ids)
            if member_ids is not None
            else self.list_members(events_dir=events_dir, tables_dir=tables_dir, as_of=as_of)
        )
        frame = build_features(
            member_spine(members, as_of),
            events_dir=events_dir,
            tables_dir=tables_dir,
            registry=registry,
            engine=self,
        )
        values = frame[list(refresh.feature_names)].to_numpy(dtype=np.float64)
        built = time.perf_counter()
        for start in range(0, len(members), batch_size):
            store.online_write_batch(
                refresh,
                FeatureBatch(
                    member_ids=members[start : start + batch_size],
                    as_of=as_of,
                    feature_names=refresh.feature_names,
                    values=values[start : start + batch_size],
                ),
            )
        return VectorsWritten(
            members=len(members),
            writers="driver",
            build_seconds=built - started,
            write_seconds=time.perf_counter() - built,
        )

    def close(self) -> None:  # noqa: B027 (optional hook; an in-process engine holds nothing)
        """Release what the engine holds (a Spark session it started)."""
