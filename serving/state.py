"""What one API process holds: settings, stores, the decision log, metrics and the model in service."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from coopscore.settings import Settings
from decisions.base import DecisionLogWriter
from features.online.base import OnlineStore
from models.pricing import LoadedPricingPolicy, load_pricing_policy
from serving.console.session import SessionSigner
from serving.featureset import FeatureSetMismatchError, feature_set_problem
from serving.metrics import ServiceMetrics
from serving.scoring import Scorer

if TYPE_CHECKING:
    from features.ingest import RecordIngest
    from serving.console.views import ModelPanels
    from serving.programmes import ProgrammeDesk

ScorerLoader = Callable[[Settings], Scorer | None]
log = logging.getLogger("coopscore.serving")


@dataclass
class ServedModel:
    """A loaded scorer and when it went live; requests hold a reference, so a swap drops none."""

    scorer: Scorer
    loaded_at: datetime

    @property
    def model_digest(self) -> str | None:
        """SHA-256 of the verified manifest of every artifact's digest (None for a scorer that has
        none, e.g. a test double): what a decision records to name the exact model bytes."""
        digest = getattr(self.scorer, "model_digest", None)
        return str(digest) if digest else None

    @property
    def signed(self) -> bool:
        """True when the model's signature was verified at load."""
        return bool(getattr(self.scorer, "signed", False))

    @property
    def signing_note(self) -> str | None:
        """Why the model is served unsigned (development without a key), or None."""
        note = getattr(self.scorer, "signing_note", None)
        return str(note) if note else None


class ModelHolder:
    """The champion in service; `reload` loads and verifies a new one before swapping it in.

    With an online store, a champion trained on another feature-set version than the store's live
    vectors never replaces one that can score them (`FeatureSetMismatchError`, the old one stays).
    """

    def __init__(
        self, loader: ScorerLoader, settings: Settings, online_store: OnlineStore | None = None
    ) -> None:
        self._loader = loader
        self._settings = settings
        self._online_store = online_store
        self._lock = threading.Lock()
        self.current: ServedModel | None = None
        self.last_error: str | None = None

    def reload(self) -> tuple[ServedModel | None, ServedModel | None]:
        """Load the current champion; returns (previous, now serving). Failures keep the old one.

        Raises:
            FeatureSetMismatchError: the new champion cannot score the live vectors and the old one
                can (the old one stays).
        """
        with self._lock:
            previous = self.current
            try:
                scorer = self._loader(self._settings)
            except Exception as exc:  # a broken or tampered model must never replace a good one
                self.last_error = f"{type(exc).__name__}: {exc}"
                raise
            if scorer is not None:
                vectors = self._live_feature_set()
                problem = served_problem(scorer, vectors)
                if problem is not None:
                    log.warning(
                        "champion v%s was trained on feature set %s, the online store holds %s: %s",
                        scorer.version,
                        scorer.feature_set_version,
                        vectors,
                        problem,
                    )
                    if previous is not None and served_problem(previous.scorer, vectors) is None:
                        self.last_error = problem
                        raise FeatureSetMismatchError(problem)
                self.current = ServedModel(scorer, datetime.now(UTC))
                self.last_error = None
            return previous, self.current

    def _live_feature_set(self) -> str | None:
        if self._online_store is None:
            return None
        live = self._online_store.live_generation()
        return live.feature_set_version if live is not None else None


def served_problem(scorer: Scorer, vectors_feature_set: str | None) -> str | None:
    """Why `scorer` must not score vectors of `vectors_feature_set` (None: it may)."""
    return feature_set_problem(scorer.version, scorer.feature_set_version, vectors_feature_set)


def _scoring_pool() -> ThreadPoolExecutor:
    # Scoring holds the GIL for most of its ~0.3 ms: a few threads keep the event loop free without
    # a crowd of threads contending for the GIL (which is what anyio's 40-thread pool would bring).
    return ThreadPoolExecutor(max_workers=min(4, (os.cpu_count() or 1) + 1), thread_name_prefix="score")


@dataclass
class AppState:
    """Everything routes need, built once in the lifespan."""

    settings: Settings
    online_store: OnlineStore
    decision_log: DecisionLogWriter
    models: ModelHolder
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    # CPU-bound scoring runs here, off the event loop (one hop per request).
    scoring_pool: ThreadPoolExecutor = field(default_factory=_scoring_pool)
    # POST /v1/events: the key index, DuckDB connection and ledger, kept across requests.
    events: RecordIngest | None = None
    # Interest-subsidy programmes (COOPSCORE_PROGRAMMES), None when the server runs none.
    programmes: ProgrammeDesk | None = None
    # The pricing policy every offer is priced by (validated when the app is built).
    pricing: LoadedPricingPolicy = field(default_factory=load_pricing_policy)
    # Console sessions (serving.console), signed by one secret for the life of the process.
    console_sessions: SessionSigner | None = None
    # The console's champion/challenger panels (model cards and gate results), cached a minute.
    console_models: ModelPanels | None = None
