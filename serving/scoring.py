"""What the API needs from a model, and the feature vector it hands over for one applicant.

`Scorer` is the narrow interface the routes call; `serving.champion` adapts the registered
`CreditModel` to it. Feature vectors are the member's online vector plus the request-time
application features, computed by the same `application_features` function training used; or, for a
model trained on a lender's table, the applicant's values sent inline (`serving.inline`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from features.catalog.request import application_features, application_features_for_request
from models.reasons import Reason
from models.recourse import NonCausal, RecoursePlan
from models.spec import ModelSpec

# Feature name -> value: numbers (NaN or None when missing); a categorical table column's level as text.
FeatureValues = Mapping[str, float | str | None]


@dataclass(frozen=True)
class Scored:
    """A model's answer for one applicant."""

    pd: float
    score: float
    grade: str
    decision: str
    decision_notes: list[str]
    reasons: tuple[Reason, ...]  # as the model built them (NaN already None)
    base_points: float
    group_points: dict[str, float] = field(default_factory=dict)


class Scorer(Protocol):
    """A loaded, verified model that scores one applicant in process."""

    name: str
    version: str
    metadata: dict[str, Any]
    model_card: str | None
    feature_names: tuple[str, ...]
    # The catalog feature-set version of the vectors it can score; empty when exempt (table-trained).
    feature_set_version: str
    # A table-trained model's spec: it scores the applicant's inline values, checked against this.
    # None for a model of the event log (it scores online vectors and refuses inline values).
    table_spec: ModelSpec | None
    # What identifies its artifacts (logged with each decision); empty when unknown.
    digest: str

    def score_one(self, features: FeatureValues, *, force_review: str | None = None) -> Scored:
        """Score one feature vector; `force_review` sends it to review with that note."""
        ...

    def score_many(
        self, rows: Sequence[FeatureValues], *, force_review: Sequence[str | None]
    ) -> list[Scored]:
        """`score_one` for several vectors at once (one model call); `force_review` per row."""
        ...

    def recourse_plan(self, features: FeatureValues, *, non_causal: NonCausal) -> RecoursePlan:
        """The cheapest actions that turn this applicant's decision into an approval (or why none
        does); raises `RecourseUnavailableError` for a model that cannot give recourse."""
        ...


def applicant_vector(
    member_features: Mapping[str, float], *, amount_cny: float, term_months: int
) -> dict[str, float]:
    """The member's vector plus the request-time application features (one shared definition)."""
    return {
        **member_features,
        **application_features_for_request(member_features, amount_cny=amount_cny, term_months=term_months),
    }


def applicant_vectors(
    member_features: Sequence[Mapping[str, float]], *, amount_cny: Sequence[float], term_months: Sequence[int]
) -> list[dict[str, float]]:
    """`applicant_vector` for many applications: the same `application_features`, run on columns."""
    if not member_features:
        return []
    columns = {
        name: np.array([m[name] for m in member_features], dtype=np.float64)
        for name in ("delivery_amount_365d", "savings_balance")
    }
    derived = application_features(
        columns,
        amount_cny=np.asarray(amount_cny, dtype=np.float64),
        term_months=np.asarray(term_months, dtype=np.float64),
    )
    lists = {name: values.tolist() for name, values in derived.items()}
    return [
        {**member, **{name: values[i] for name, values in lists.items()}}
        for i, member in enumerate(member_features)
    ]


def json_safe(features: Mapping[str, float]) -> dict[str, float | None]:
    """NaN (no evidence) becomes null in JSON."""
    return {
        k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
        for k, v in features.items()
    }
