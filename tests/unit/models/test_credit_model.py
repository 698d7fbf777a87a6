"""The CreditModel: exact additivity of points, reason grouping, texts, policy, storage round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from models.calibration import PlattCalibration, fit_platt
from models.credit_model import CreditModel
from models.policy import DecisionPolicy, EvidenceRule, default_evidence_rule
from tests.utils.model_fixtures import fast_config, synthetic_training_set
from training.fit import fit_credit_model
from training.splits import time_split


@pytest.fixture(scope="module")
def fitted() -> tuple[CreditModel, object]:
    training_set = synthetic_training_set(n=3000, seed=11)
    config = fast_config()
    split = time_split(training_set.applied_at, training_set.horizon, config.splits)
    model, _ = fit_credit_model(training_set, split, config)
    return model, training_set


@pytest.fixture(scope="module")
def rows(fitted: tuple[CreditModel, object]) -> list[dict[str, float]]:
    _, training_set = fitted
    frame = training_set.features.head(40)  # type: ignore[attr-defined]
    return frame.to_dict("records")  # type: ignore[no-any-return]


def test_base_plus_group_points_equals_the_score_exactly(fitted, rows) -> None:
    model, _ = fitted
    for row in rows:
        explanation = model.explain(row, top_k=4)
        total = explanation.base_points + math.fsum(explanation.group_points.values())
        assert total == explanation.score  # exact, by construction
        # and it is the score the scale gives the calibrated PD (up to float rounding)
        assert explanation.score == pytest.approx(float(model.score(row)[0]), abs=1e-9)
        assert explanation.pd == pytest.approx(float(model.predict_pd(row)[0]), rel=1e-9)
        assert explanation.grade == model.scale.grade(explanation.score)


def test_feature_points_add_up_in_batch(fitted) -> None:
    model, training_set = fitted
    frame = training_set.features.head(200)
    breakdown = model.points(frame)
    np.testing.assert_allclose(breakdown.score, model.score(frame), rtol=0, atol=1e-9)


def test_group_points_are_the_sum_of_their_features(fitted, rows) -> None:
    model, _ = fitted
    row = rows[0]
    feature_points = model.points(row).feature_points[0]
    explanation = model.explain(row)
    for group, points in explanation.group_points.items():
        members = [i for i, f in enumerate(model.spec.features) if f.reason_group == group]
        assert points == pytest.approx(feature_points[members].sum(), abs=1e-12)
    assert set(explanation.group_points) == {g.name for g in model.spec.reason_groups}


def test_reasons_are_the_groups_that_lowered_the_score_most(fitted, rows) -> None:
    model, _ = fitted
    for row in rows:
        explanation = model.explain(row, top_k=4)
        points_row = model.points(row).feature_points[0].tolist()
        feature_points = dict(zip(model.feature_names, points_row, strict=True))
        negative = sorted(p for p in explanation.group_points.values() if p < 0)
        assert [r.points for r in explanation.reasons] == negative[:4]
        for reason in explanation.reasons:
            group = model.spec.group(reason.code)
            assert reason.points < 0
            assert group.label_zh in reason.text_zh and group.label_en in reason.text_en
            assert reason.features, "a reason names the feature values behind it"
            assert all(model.spec.by_name[name].reason_group == reason.code for name in reason.features)
            points = [feature_points[name] for name in reason.features]
            assert math.fsum(points) == pytest.approx(reason.points, abs=1e-9)
            assert points == sorted(points), "the feature that lowered the score most comes first"
            worst = model.spec.by_name[next(iter(reason.features))]
            assert worst.description_en in reason.text_en and worst.description_zh in reason.text_zh


def test_reason_shows_the_applicants_values(fitted, rows) -> None:
    model, _ = fitted
    row = dict(rows[1])
    explanation = model.explain(row)
    for reason in explanation.reasons:
        for name, value in reason.features.items():
            expected = row[name]
            if expected is None or (isinstance(expected, float) and math.isnan(expected)):
                assert value is None
            else:
                assert value == pytest.approx(float(expected))


def test_reasons_are_json_ready_with_missing_values_as_null(fitted, rows) -> None:
    # The model converts NaN to None once; nothing downstream converts again, so its JSON must be valid.
    model, _ = fitted
    missing = 0
    blank = dict.fromkeys(model.feature_names, math.nan)  # a member with no record at all
    for row in [*rows, blank]:
        for reason in model.explain(row).reasons:
            payload = reason.model_dump()
            assert list(payload) == ["code", "points", "text_zh", "text_en", "features"]
            json.dumps(payload, allow_nan=False)
            missing += sum(value is None for value in reason.features.values())
    assert missing, "the blank member's reasons show missing values"


def test_top_k(fitted, rows) -> None:
    model, _ = fitted
    assert len(model.explain(rows[2], top_k=2).reasons) <= 2
    assert model.explain(rows[2], top_k=0).reasons == ()


def test_missing_feature_is_an_error_unless_passed_as_missing(fitted, rows) -> None:
    model, _ = fitted
    row = dict(rows[0])
    del row["savings_balance"]
    with pytest.raises(KeyError, match="savings_balance"):
        model.explain(row)
    row["savings_balance"] = None
    assert math.isfinite(model.explain(row).score)


def test_explanation_json(fitted, rows) -> None:
    model, _ = fitted
    assessment = model.assess(rows[0])
    payload = assessment.to_dict()
    assert {"pd", "score", "grade", "base_points", "group_points", "reasons", "decision"} <= set(payload)
    assert payload["reasons"] == [r.model_dump() for r in assessment.explanation.reasons]
    assert payload["decision"]["outcome"] in ("approve", "review", "decline")


def test_save_and_load_give_identical_scores(fitted, tmp_path: Path) -> None:
    model, training_set = fitted
    model.save(tmp_path)
    assert not list(tmp_path.glob("*.pkl"))
    loaded = CreditModel.load(tmp_path)
    frame = training_set.features.head(300)
    np.testing.assert_array_equal(loaded.score(frame), model.score(frame))
    np.testing.assert_array_equal(loaded.contributions(frame), model.contributions(frame))
    assert loaded.spec == model.spec and loaded.calibration == model.calibration
    assert loaded.policy == model.policy and loaded.scale == model.scale


def test_thin_file_goes_to_review_never_decline() -> None:
    policy = DecisionPolicy(approve_max_pd=0.05, decline_min_pd=0.25, evidence=default_evidence_rule())
    thin = {"event_count_365d": 3, "history_months": 1, "has_prior_loan": 0}
    assert policy.decide(0.9, thin).outcome == "review"
    assert policy.decide(0.9, thin).reason == "thin_file"
    assert policy.decide(0.01, thin).outcome == "review"
    missing = {"event_count_365d": None, "history_months": float("nan"), "has_prior_loan": None}
    assert policy.decide(0.9, missing).outcome == "review"
    # a prior loan is evidence enough; a long record too
    assert policy.decide(0.9, {**thin, "has_prior_loan": 1}).outcome == "decline"
    assert policy.decide(0.9, {"event_count_365d": 40, "history_months": 12}).outcome == "decline"
    assert policy.decide(0.02, {"event_count_365d": 40, "history_months": 12}).outcome == "approve"
    assert policy.decide(0.10, {"event_count_365d": 40, "history_months": 12}).outcome == "review"


def test_model_policy_reads_only_features_it_has(fitted) -> None:
    model, _ = fitted
    assert set(model.policy.evidence.features) <= set(model.feature_names)
    assert EvidenceRule().shortfalls({}) == []


def test_platt_fit_recovers_a_known_map() -> None:
    rng = np.random.default_rng(0)
    margin = rng.normal(-2, 1, 200_000)
    true = PlattCalibration(slope=0.8, intercept=-0.4)
    y = rng.random(len(margin)) < true.pd(margin)
    fitted_map = fit_platt(margin, y)
    assert fitted_map.slope == pytest.approx(0.8, abs=0.03)
    assert fitted_map.intercept == pytest.approx(-0.4, abs=0.06)


def test_platt_refuses_a_backwards_margin_unless_a_baseline() -> None:
    rng = np.random.default_rng(1)
    margin = rng.normal(0, 1, 5000)
    y = rng.random(5000) < 1 / (1 + np.exp(2 + 1.5 * margin))  # risk falls as margin rises
    with pytest.raises(ValueError, match="backwards"):
        fit_platt(margin, y)
    flat = fit_platt(margin, y, allow_uninformative=True)
    assert flat.pd(np.array([-3.0, 3.0])) == pytest.approx([y.mean(), y.mean()], abs=1e-6)


def test_single_applicant_path_avoids_pandas(fitted, rows, monkeypatch) -> None:
    """Speed is measured by benchmarks; here: one applicant never goes through the DataFrame path."""
    import models.credit_model as credit_model

    model, _ = fitted

    def refuse(*args, **kwargs):
        raise AssertionError("the per-applicant path must not build a DataFrame matrix")

    monkeypatch.setattr(credit_model, "encode_frame", refuse)
    assessment = model.assess(rows[0])
    assert math.isfinite(assessment.score)
    assert model.predict_pd(rows[0]).shape == (1,)
