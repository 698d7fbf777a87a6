"""Reason codes: score points grouped by reason group, and the zh/en texts a borrower is shown.

Points come from the booster's SHAP contributions (see `models.credit_model`): base points plus the
points of every group add up to the score. The reasons returned are the groups that lowered the
score most, each with the feature values behind it. `Reason` is the one reason type from the model
to the API response: its JSON is exactly a `reasons` item of `/v1/score`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.policy import Decision

FeatureValue = float | str | None


@dataclass(frozen=True, slots=True)
class FeatureContribution:
    """One feature's value and the points it moved the score by: what a reason's sentences are built from."""

    name: str
    value: FeatureValue
    points: float
    description_zh: str
    description_en: str


class Reason(BaseModel):
    """One reason group that moved the score, in words the applicant can read."""

    # The one reason type from the model to the API: `CreditModel` builds it, serving passes it on,
    # and its JSON is the response's `reasons` item (`serving.schemas.ScoreResponse` documents it).
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    points: float = Field(description="score points this group added (negative lowers the score)")
    text_zh: str
    text_en: str
    features: dict[str, FeatureValue] = Field(description="the feature values behind this reason")

    @classmethod
    def of_group(
        cls, code: str, label_zh: str, label_en: str, points: float, features: tuple[FeatureContribution, ...]
    ) -> Reason:
        """The reason for group `code`: its sentences, and the feature values behind it (in the given order).

        `features` come lowest points first, values already JSON-ready (missing as None, not NaN): the
        model converts them once, where it reads the feature vector.
        """
        text_zh, text_en = reason_texts(label_zh, label_en, points, features)
        return cls(
            code=code,
            points=points,
            text_zh=text_zh,
            text_en=text_en,
            features={f.name: f.value for f in features},
        )


@dataclass(frozen=True, slots=True)
class Explanation:
    """Score decomposition of one applicant.

    `score == base_points + math.fsum(group_points.values())` holds by construction; `reasons` are
    the (at most `top_k`) groups with the most negative points, worst first.
    """

    pd: float
    score: float
    grade: str
    base_points: float
    group_points: dict[str, float]
    reasons: tuple[Reason, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "pd": self.pd,
            "score": self.score,
            "grade": self.grade,
            "base_points": self.base_points,
            "group_points": dict(self.group_points),
            "reasons": [r.model_dump() for r in self.reasons],
        }


@dataclass(frozen=True, slots=True)
class Assessment:
    """Everything serving returns for one application: PD, score, grade, decision and reasons."""

    explanation: Explanation
    decision: Decision

    @property
    def pd(self) -> float:
        """Calibrated probability of default."""
        return self.explanation.pd

    @property
    def score(self) -> float:
        """Score on the configured scale."""
        return self.explanation.score

    @property
    def grade(self) -> str:
        """Grade A-E."""
        return self.explanation.grade

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**self.explanation.to_dict(), "decision": self.decision.to_dict()}


def format_value(value: FeatureValue, *, language: str) -> str:
    """A feature value for a borrower-facing sentence (missing -> 'no record' / '无记录')."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "无记录" if language == "zh" else "no record"
    if isinstance(value, str):
        return value
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) < 1 else f"{value:,.1f}"


def reason_texts(
    label_zh: str, label_en: str, points: float, features: tuple[FeatureContribution, ...], *, shown: int = 2
) -> tuple[str, str]:
    """zh and en sentences for a reason: the group, the points lost, and the top feature values."""
    lowering = [f for f in features if f.points < 0][:shown] or list(features[:shown])
    lost = f"{abs(points):.0f}" if abs(points) >= 1 else f"{abs(points):.1f}"
    zh_facts = "；".join(f"{f.description_zh}：{format_value(f.value, language='zh')}" for f in lowering)
    en_facts = "; ".join(f"{f.description_en}: {format_value(f.value, language='en')}" for f in lowering)
    text_zh = f"{label_zh}：使评分降低{lost}分。{zh_facts}。"
    text_en = f"{label_en} lowered the score by {lost} points. {en_facts}."
    return text_zh, text_en
