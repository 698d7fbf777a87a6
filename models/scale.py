"""The score scale: points from log-odds, and grades from points.

score = offset + factor * ln(good:bad odds), with factor = PDO / ln 2 and offset chosen so that
`base_score` points sit at `base_odds` good:bad. Default: 600 points at 50:1, 20 points to double the
odds. Because the scale is affine in the log-odds, and the calibrated log-odds are affine in the
booster margin, each feature's margin contribution maps to a fixed number of points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DEFAULT_GRADES: tuple[tuple[str, float], ...] = (
    ("A", 620.0),  # better than 100:1 (PD below ~1.0 %)
    ("B", 590.0),  # 35:1 (PD below ~2.7 %)
    ("C", 560.0),  # 12.5:1 (PD below ~7.4 %)
    ("D", 530.0),  # 4.4:1 (PD below ~18.5 %)
    ("E", -math.inf),
)


@dataclass(frozen=True)
class ScoreScale:
    """Points-to-double-the-odds scale with grade cut-offs (best grade first, minimum score each)."""

    base_score: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0
    grades: tuple[tuple[str, float], ...] = field(default=DEFAULT_GRADES)

    def __post_init__(self) -> None:
        if self.base_odds <= 0 or self.pdo <= 0:
            raise ValueError("base_odds and pdo must be positive")
        cuts = [c for _, c in self.grades]
        if not self.grades or cuts != sorted(cuts, reverse=True) or cuts[-1] != -math.inf:
            raise ValueError("grades must be ordered best first and end with a catch-all (-inf)")

    @property
    def factor(self) -> float:
        """Points per unit of log-odds: PDO / ln 2."""
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        """Score at even odds (1:1)."""
        return self.base_score - self.factor * math.log(self.base_odds)

    def score_from_log_odds(self, default_log_odds: FloatArray | float) -> FloatArray:
        """Score from the log-odds of default (bad:good); higher risk, fewer points."""
        return np.asarray(self.offset - self.factor * np.asarray(default_log_odds, dtype=np.float64))

    def score_from_pd(self, pd_: FloatArray | float) -> FloatArray:
        """Score from a probability of default (clipped away from 0 and 1)."""
        p = np.clip(np.asarray(pd_, dtype=np.float64), 1e-12, 1 - 1e-12)
        return self.score_from_log_odds(np.log(p) - np.log1p(-p))

    def pd_from_score(self, score: FloatArray | float) -> FloatArray:
        """Inverse of `score_from_pd`."""
        log_odds = (self.offset - np.asarray(score, dtype=np.float64)) / self.factor
        return np.asarray(1.0 / (1.0 + np.exp(-log_odds)))

    def grade(self, score: float) -> str:
        """Grade of one score (scalar fast path)."""
        for name, minimum in self.grades:
            if score >= minimum:
                return name
        return self.grades[-1][0]

    def grades_of(self, scores: Sequence[float] | FloatArray) -> list[str]:
        """Grades of many scores."""
        values = np.asarray(scores, dtype=np.float64)
        cuts = np.array([c for _, c in self.grades[:-1]])
        names = [g for g, _ in self.grades]
        # position = number of cut-offs the score falls below
        positions = (values[:, None] < cuts[None, :]).sum(axis=1) if len(cuts) else np.zeros(len(values))
        return [names[int(i)] for i in positions]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (-inf written as null)."""
        return {
            "base_score": self.base_score,
            "base_odds": self.base_odds,
            "pdo": self.pdo,
            "grades": [[g, None if math.isinf(c) else c] for g, c in self.grades],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreScale:
        """Inverse of `to_dict`."""
        grades = tuple((str(g), -math.inf if c is None else float(c)) for g, c in data["grades"])
        return cls(
            base_score=float(data["base_score"]),
            base_odds=float(data["base_odds"]),
            pdo=float(data["pdo"]),
            grades=grades,
        )
