"""The online store interface (Feast style): write a refresh in batches, switch to it atomically,
read member vectors by id.

A refresh is a *generation*: writers fill a new generation while readers keep reading the live
one, and `commit_refresh` makes the new generation live in one step, so a reader never sees half a
refresh. Every vector carries its `as_of` and the feature-set version it was computed with.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class MemberVector:
    """One member's features as of a point in time (NaN where a feature is undefined)."""

    member_id: str
    as_of: datetime
    feature_set_version: str
    features: Mapping[str, float]


@dataclass(frozen=True)
class FeatureBatch:
    """Columnar batch of member vectors: one row of `values` per member, columns = feature names."""

    member_ids: Sequence[str]
    as_of: datetime
    feature_names: tuple[str, ...]
    values: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.member_ids), len(self.feature_names)):
            raise ValueError(
                f"values shape {self.values.shape} does not match "
                f"{len(self.member_ids)} members x {len(self.feature_names)} features"
            )
        if self.as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware")


@dataclass(frozen=True)
class Refresh:
    """A generation being written: not visible to readers until committed."""

    generation: int
    feature_names: tuple[str, ...]
    feature_set_version: str
    as_of: datetime


@dataclass(frozen=True)
class GenerationInfo:
    """What the live generation holds."""

    generation: int
    feature_set_version: str
    as_of: datetime
    feature_names: tuple[str, ...]
    member_count: int
    committed_at: datetime


class OnlineStore(ABC):
    """Key-value store of member vectors with atomic, generation-based refreshes."""

    @abstractmethod
    def begin_refresh(
        self, *, feature_names: Sequence[str], feature_set_version: str, as_of: datetime
    ) -> Refresh:
        """Start a new, invisible generation for vectors with these features."""

    @abstractmethod
    def online_write_batch(self, refresh: Refresh, batch: FeatureBatch) -> None:
        """Add a batch of member vectors to a generation being written."""

    @abstractmethod
    def commit_refresh(self, refresh: Refresh) -> GenerationInfo:
        """Make the generation live in one atomic step and retire the previous one."""

    @abstractmethod
    def abort_refresh(self, refresh: Refresh) -> None:
        """Discard a generation that was not committed (the live one is untouched)."""

    @abstractmethod
    def online_read(self, member_ids: Sequence[str]) -> list[MemberVector | None]:
        """The live vector of each member, in order (None for a member with no vector)."""

    @abstractmethod
    def live_generation(self) -> GenerationInfo | None:
        """The live generation, or None before the first refresh."""

    @abstractmethod
    def member_ids(self, limit: int) -> list[str]:
        """Up to `limit` members with a live vector, in no promised order (e.g. for a demo request)."""

    def close(self) -> None:  # noqa: B027 (optional hook; stores without resources need nothing)
        """Release connections."""

    @contextmanager
    def refresh(
        self, *, feature_names: Sequence[str], feature_set_version: str, as_of: datetime
    ) -> Iterator[Refresh]:
        """Context for one refresh: committed on success, aborted if the block raises."""
        refresh = self.begin_refresh(
            feature_names=feature_names, feature_set_version=feature_set_version, as_of=as_of
        )
        try:
            yield refresh
        except BaseException:
            self.abort_refresh(refresh)
            raise
        self.commit_refresh(refresh)

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
