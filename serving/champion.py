"""Adapt the registered `CreditModel` to the API's `Scorer`: load the champion, verified, once.

Verified means: no pickles, the signature (models.signing) checked over digests recomputed from the
downloaded bytes of every artifact and the model card, and every checksum tag matched. The model
card shown by /v1/model is read from those same checked bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from coopscore.settings import Settings
from models import mlflow_io
from models.credit_model import CreditModel
from models.reasons import Assessment
from models.recourse import NonCausal, RecourseEngine, RecoursePlan
from models.registry import CHAMPION, MODEL_NAME, load_version
from models.signing import Keyring, SignatureCheck
from serving.scoring import FeatureValues, Scored


class CreditModelScorer:
    """A verified `CreditModel` plus what the API shows about it."""

    def __init__(
        self,
        model: CreditModel,
        metadata: dict[str, Any],
        model_card: str | None,
        signature: SignatureCheck | None = None,
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
        # Signed and verified (False: unsigned in development, with `signing_note` saying so).
        self.signed = signature.signed if signature else False
        self.signature_key_id = signature.key_id if signature else None
        self.signing_note = signature.note if signature else None
        # SHA-256 of the manifest of every artifact's digest: names exactly the bytes that score.
        self.model_digest = signature.manifest_sha256 if signature else None
        self.digest = self.model_digest or ""  # `Scorer.digest`: logged with every decision
        self._recourse: RecourseEngine | None = None  # built on the first request for recourse
        self._recourse_lock = threading.Lock()

    def score_one(self, features: FeatureValues, *, force_review: str | None = None) -> Scored:
        """PD, score, grade, decision and top-4 reasons from one booster call."""
        return _scored(self.model.assess(features, top_k=4), force_review)

    def score_many(
        self, rows: Sequence[FeatureValues], *, force_review: Sequence[str | None]
    ) -> list[Scored]:
        """`score_one` for several applicants from one (vectorized) booster call."""
        assessments = self.model.assess_many(rows, top_k=4)
        return [_scored(a, note) for a, note in zip(assessments, force_review, strict=True)]

    def recourse_plan(self, features: FeatureValues, *, non_causal: NonCausal) -> RecoursePlan:
        """Exact recourse over the catalogue's actions (`models.recourse`)."""
        with self._recourse_lock:
            if self._recourse is None:
                self._recourse = RecourseEngine(self.model)
        return self._recourse.plan(features, non_causal=non_causal)


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


def load_champion(settings: Settings) -> CreditModelScorer | None:
    """The champion from the registry (signature and checksums verified), or None when none is
    registered yet.

    Raises:
        ArtifactIntegrityError: a pickle, an altered artifact or model card, or a signature that is
            missing where required (`SignatureError`), made with a key not configured, or wrong.
    """
    keyring = Keyring.from_settings(settings)
    try:
        loaded = load_version(
            CHAMPION, settings.tracking_uri, model_name=settings.model_name, keyring=keyring, with_card=True
        )
    except KeyError:
        return None
    model = loaded.model
    metadata: dict[str, Any] = {"feature_set_version": model.feature_set_version}
    identity = model.identity
    if identity is not None and identity.run_id:
        metadata["metrics"] = mlflow_io.run_metrics(settings.tracking_uri, identity.run_id)
        metadata["params"] = mlflow_io.run_params(settings.tracking_uri, identity.run_id)
    return CreditModelScorer(model, metadata, loaded.model_card, loaded.signature)
