"""Adapt the registered `CreditModel` to the API's `Scorer`: load the champion, verified, once."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from coopscore.settings import Settings
from models import mlflow_io
from models.credit_model import CreditModel
from models.reasons import Assessment
from models.registry import CHAMPION, CHECKSUM_TAG_PREFIX, MODEL_NAME, load_model
from serving.scoring import FeatureValues, Scored


class CreditModelScorer:
    """A verified `CreditModel` plus what the API shows about it."""

    def __init__(
        self,
        model: CreditModel,
        metadata: dict[str, Any],
        model_card: str | None,
        *,
        digest: str = "",
    ) -> None:
        identity = model.identity
        self.model = model
        self.name = identity.name if identity else MODEL_NAME
        self.version = identity.version if identity else "unregistered"
        self.metadata = metadata
        self.model_card = model_card
        self.feature_names = tuple(model.feature_names)
        # Empty (exempt from the feature-set check) for a table-trained model.
        self.feature_set_version = model.catalog_feature_set
        self.table_spec = model.spec if model.spec.source == "table" else None
        # The SHA-256 of its artifact manifest (`manifest_digest`), logged with every decision.
        self.digest = digest

    def score_one(self, features: FeatureValues, *, force_review: str | None = None) -> Scored:
        """PD, score, grade, decision and top-4 reasons from one booster call."""
        return _scored(self.model.assess(features, top_k=4), force_review)

    def score_many(
        self, rows: Sequence[FeatureValues], *, force_review: Sequence[str | None]
    ) -> list[Scored]:
        """`score_one` for several applicants from one (vectorized) booster call."""
        assessments = self.model.assess_many(rows, top_k=4)
        return [_scored(a, note) for a, note in zip(assessments, force_review, strict=True)]


def _scored(assessment: Assessment, force_review: str | None) -> Scored:
    explanation = assessment.explanation
    decision = assessment.decision.outcome
    notes = [assessment.decision.detail or assessment.decision.reason]
    if force_review is not None:
        # Too little on file to decide automatically: a person looks at it, never an auto-decline.
        decision = "review"
        notes.insert(0, force_review)
    return Scored(
        pd=explanation.pd,
        score=explanation.score,
        grade=explanation.grade,
        decision=decision,
        decision_notes=notes,
        reasons=explanation.reasons,
        base_points=explanation.base_points,
        group_points=dict(explanation.group_points),
    )


def manifest_digest(sha256: Mapping[str, str]) -> str:
    """SHA-256 of the artifact manifest: the canonical JSON (keys sorted, compact) of artifact name ->
    SHA-256 as the registry's `sha256.<artifact>` tags record them, checked when the model loaded.
    One value per model version, which an auditor recomputes from the registry."""
    canonical = json.dumps(dict(sorted(sha256.items())), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_champion(settings: Settings) -> CreditModelScorer | None:
    """The champion from the registry (checksums verified), or None when none is registered yet."""
    try:
        model = load_model(CHAMPION, settings.tracking_uri, model_name=settings.model_name)
    except KeyError:
        return None
    metadata: dict[str, Any] = {"feature_set_version": model.feature_set_version}
    card: str | None = None
    identity = model.identity
    digest = ""
    if identity is not None:
        tags = mlflow_io.get_version(settings.tracking_uri, identity.name, identity.version).tags
        digest = manifest_digest(
            {k[len(CHECKSUM_TAG_PREFIX) :]: v for k, v in tags.items() if k.startswith(CHECKSUM_TAG_PREFIX)}
        )
    if identity is not None and identity.run_id:
        metadata["metrics"] = mlflow_io.run_metrics(settings.tracking_uri, identity.run_id)
        metadata["params"] = mlflow_io.run_params(settings.tracking_uri, identity.run_id)
        with mlflow_io.temp_dir("coopscore-card-") as tmp:
            try:
                path = mlflow_io.download_run_artifact(
                    settings.tracking_uri, identity.run_id, "model_card.md", Path(tmp)
                )
                card = path.read_text(encoding="utf-8")
            except Exception:  # a model without a card still serves; /v1/model says so
                card = None
    return CreditModelScorer(model, metadata, card, digest=digest)
