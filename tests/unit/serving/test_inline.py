"""Inline feature values checked against a table model's stored spec: each bad field named, with why."""

from __future__ import annotations

from typing import Any

import pytest

from models.spec import ModelSpec, spec_for_table
from serving.inline import MAX_LISTED_LEVELS, TABLE_ONLY, check_inline, inline_applicant

GOOD: dict[str, Any] = {"age": 41, "monthly_income": 2300.5, "crop": "tea", "land_mu": None}


@pytest.fixture
def spec() -> ModelSpec:
    return spec_for_table(
        ["age", "monthly_income", "crop", "land_mu"],
        categories={"crop": ["hogs", "maize", "rice", "tea"]},
        ranges={"age": (22, 65), "monthly_income": (300, 9000), "land_mu": (0.2, 40)},
        with_missing=["monthly_income", "land_mu"],
    )


def problems_of(spec: ModelSpec, values: dict[str, Any], **kwargs: Any) -> dict[str, tuple[str, str]]:
    applicant, problems = check_inline(spec, values, allow_out_of_range=kwargs.get("allow", False))
    assert applicant is None and problems
    return {p["field"]: (p["type"], p["problem"]) for p in problems}


def test_good_values_come_out_as_the_model_reads_them(spec: ModelSpec) -> None:
    applicant, problems = check_inline(spec, GOOD, allow_out_of_range=False)
    assert problems == [] and applicant is not None
    assert applicant.features == {"age": 41.0, "monthly_income": 2300.5, "crop": "tea", "land_mu": None}
    assert isinstance(applicant.features["age"], float)
    assert applicant.review_note() is None


def test_every_bad_field_is_named_at_once(spec: ModelSpec) -> None:
    found = problems_of(spec, {"age": "41", "monthly_incme": 2300, "crop": "coffee", "land_mu": True})
    assert found["features.age"][0] == "wrong_type" and "got text" in found["features.age"][1]
    assert found["features.monthly_incme"][0] == "unknown_field"
    assert "did you mean 'monthly_income'" in found["features.monthly_incme"][1]
    assert found["features.monthly_income"][0] == "missing"  # the misspelt one is absent
    assert found["features.crop"] == ("unknown_category", "unknown category 'coffee': expected one of "
                                      "'hogs', 'maize', 'rice', 'tea'")  # fmt: skip
    assert found["features.land_mu"][0] == "wrong_type" and "a boolean" in found["features.land_mu"][1]
    assert len(found) == 5


def test_a_number_for_a_category_and_text_for_a_number_are_wrong_types(spec: ModelSpec) -> None:
    found = problems_of(spec, {**GOOD, "crop": 3, "monthly_income": "2,300"})
    assert found["features.crop"][0] == "wrong_type" and "got a number" in found["features.crop"][1]
    assert found["features.monthly_income"][0] == "wrong_type"
    assert problems_of(spec, {**GOOD, "age": float("nan")})["features.age"][0] == "wrong_type"


def test_null_only_where_training_had_missing_values(spec: ModelSpec) -> None:
    found = problems_of(spec, {**GOOD, "age": None, "crop": None})
    assert set(found) == {"features.age", "features.crop"}
    assert all(kind == "missing_not_seen_in_training" for kind, _ in found.values())
    absent = problems_of(spec, {k: v for k, v in GOOD.items() if k != "land_mu"})
    assert absent == {
        "features.land_mu": ("missing", "required: send the applicant's value, or null when it is unknown")
    }
    # A spec from before missingness was recorded cannot tell: null is accepted there.
    old = spec_for_table(["age"], ranges={"age": (22, 65)})
    applicant, problems = check_inline(old, {"age": None}, allow_out_of_range=False)
    assert applicant is not None and applicant.features == {"age": None} and not problems


def test_outside_the_training_range_is_refused_unless_allowed_and_then_reviewed(spec: ModelSpec) -> None:
    values = {**GOOD, "age": 70, "monthly_income": 299.5}
    found = problems_of(spec, values)
    assert found["features.age"][0] == "out_of_training_range"
    assert "70 is outside the range seen in training (22 to 65)" in found["features.age"][1]
    assert "299.5 is outside the range seen in training (300 to 9000)" in found["features.monthly_income"][1]
    assert "allow_out_of_range=true" in found["features.age"][1]
    # Edges are inside.
    applicant, _ = check_inline(spec, {**GOOD, "age": 22, "monthly_income": 9000}, allow_out_of_range=False)
    assert applicant is not None and applicant.review_note() is None
    applicant, problems = check_inline(spec, values, allow_out_of_range=True)
    assert not problems and applicant is not None
    assert applicant.features["age"] == 70.0
    note = applicant.review_note()
    assert note is not None and "age=70 (training range 22 to 65)" in note
    assert "monthly_income=299.5 (training range 300 to 9000)" in note
    # Allowing out-of-range values lets nothing else through.
    assert set(problems_of(spec, {**values, "crop": "coffee"}, allow=True)) == {"features.crop"}


def test_many_levels_are_counted_not_listed() -> None:
    levels = [f"village-{i:02d}" for i in range(MAX_LISTED_LEVELS + 1)]
    spec = spec_for_table(["village"], categories={"village": levels}, with_missing=[])
    found = problems_of(spec, {"village": "elsewhere"})
    assert found["features.village"][1] == (
        f"unknown category 'elsewhere': expected one of the {len(levels)} categories seen in training"
    )


def test_which_model_takes_inline_values(spec: ModelSpec) -> None:
    # An event-log model (no table spec) refuses them, and the flag that only applies to them.
    _, problems = inline_applicant(None, GOOD, allow_out_of_range=True, prefix="applications.2.")
    assert [p["field"] for p in problems] == ["applications.2.features", "applications.2.allow_out_of_range"]
    assert TABLE_ONLY in problems[0]["problem"]
    assert inline_applicant(None, None, allow_out_of_range=False) == (None, [])
    # A table model requires them, and names its columns.
    _, problems = inline_applicant(spec, None, allow_out_of_range=False)
    assert (
        problems[0]["field"] == "features" and "age, monthly_income, crop, land_mu" in problems[0]["problem"]
    )
