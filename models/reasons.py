"""Reason codes: score points grouped by reason group, and the zh/en texts a borrower is shown.

Points come from the booster's SHAP contributions (see `models.credit_model`): base points plus the
points of every group add up to the score. The reasons returned are the groups that lowered the
score most, each with the feature values behind it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from models.policy import Decision

FeatureValue = float | str | None


@dataclass(frozen=True, slots=True)
class FeatureContribution:
    """One feature's value and the points it moved the score by (negative: lowered it)."""

    name: str
    value: FeatureValue
    points: float
    description_zh: str
    description_en: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "value": self.value,
            "points": self.points,
            "description_zh": self.description_zh,
            "description_en": self.description_en,
        }


@dataclass(frozen=True, slots=True)
class ReasonCode:
    """One reason group's effect on the score, with texts and the features behind it."""

    group: str
    points: float
    label_zh: str
    label_en: str
    text_zh: str
    text_en: str
    features: tuple[FeatureContribution, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "group": self.group,
            "points": self.points,
            "label_zh": self.label_zh,
            "label_en": self.label_en,
            "text_zh": self.text_zh,
            "text_en": self.text_en,
            "features": [f.to_dict() for f in self.features],
        }


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
    reasons: tuple[ReasonCode, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "pd": self.pd,
            "score": self.score,
            "grade": self.grade,
            "base_points": self.base_points,
            "group_points": dict(self.group_points),
            "reasons": [r.to_dict() for r in self.reasons],
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
