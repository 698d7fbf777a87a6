"""Score-scale math: anchor, points to double the odds, inverses, grades, JSON round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.scale import ScoreScale


def test_anchor_and_points_to_double_the_odds() -> None:
    scale = ScoreScale()
    pd_at_anchor = 1 / (1 + 50)  # good:bad 50:1
    assert scale.score_from_pd(pd_at_anchor) == pytest.approx(600.0, abs=1e-9)
    pd_double = 1 / (1 + 100)  # odds doubled -> +20 points
    assert scale.score_from_pd(pd_double) == pytest.approx(620.0, abs=1e-9)
    pd_half = 1 / (1 + 25)
    assert scale.score_from_pd(pd_half) == pytest.approx(580.0, abs=1e-9)


def test_factor_and_offset() -> None:
    scale = ScoreScale(base_score=500, base_odds=20, pdo=40)
    assert scale.factor == pytest.approx(40 / math.log(2))
    assert scale.offset == pytest.approx(500 - 40 / math.log(2) * math.log(20))
    assert scale.score_from_log_odds(0.0) == pytest.approx(scale.offset)  # even odds


@pytest.mark.parametrize("pd_", [1e-4, 0.01, 0.07, 0.3, 0.9])
def test_pd_and_score_are_inverse(pd_: float) -> None:
    scale = ScoreScale()
    assert scale.pd_from_score(scale.score_from_pd(pd_)) == pytest.approx(pd_, rel=1e-9)


def test_score_falls_as_risk_rises() -> None:
    scores = ScoreScale().score_from_pd(np.linspace(0.001, 0.999, 200))
    assert (np.diff(scores) < 0).all()


def test_grades() -> None:
    scale = ScoreScale()
    assert [scale.grade(s) for s in (700, 620, 619.99, 590, 575, 530, 529.9, 100)] == [
        "A",
        "A",
        "B",
        "B",
        "C",
        "D",
        "E",
        "E",
    ]
    assert scale.grades_of([700, 575, 100]) == ["A", "C", "E"]


def test_bad_grades_refused() -> None:
    with pytest.raises(ValueError, match="catch-all"):
        ScoreScale(grades=(("A", 600.0), ("B", 650.0), ("C", -math.inf)))
    with pytest.raises(ValueError, match="catch-all"):
        ScoreScale(grades=(("A", 600.0), ("B", 500.0)))


def test_json_round_trip() -> None:
    scale = ScoreScale(base_score=650, base_odds=30, pdo=25)
    assert ScoreScale.from_dict(scale.to_dict()) == scale
