"""An applicant's feature values sent inline, checked against a table-trained model's stored spec.

A model trained on a lender's table (`coopscore train --table`) reads no online vectors: the caller
sends the applicant's values for the table's columns in `features`. They are checked against what
training saw (`models.spec.FeatureSpec`): every column present, numbers for numeric columns and text
for categorical ones, known categories, null only where training had missing values, and numbers
inside the training range. A tree model given a value beyond that range scores it as the edge of the
range, which a credit decision must not do silently: such a value is refused (422) unless the caller
sends `allow_out_of_range=true`, and then the application is scored and sent to review with a note.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from models.spec import FeatureSpec, ModelSpec

TABLE_ONLY: Final = "inline features are only accepted by table-trained models"
ALLOW_WITHOUT_FEATURES: Final = "only applies to inline features (table-trained models)"
MAX_LISTED_LEVELS: Final = 12  # categories listed in a problem; more are counted, not listed

InlineValue = float | int | str | bool | None
ModelValue = float | str | None


@dataclass(frozen=True)
class InlineApplicant:
    """Checked values ready for the model (numbers as float, categories as their level, missing as
    None), and the values outside the training range that were let through (each one a note)."""

    features: dict[str, ModelValue]
    outside_range: tuple[str, ...] = ()

    def review_note(self) -> str | None:
        """Why a person must look at this decision, or None when every value is inside the range."""
        if not self.outside_range:
            return None
        return "outside the range seen in training, the model scores these as the range's edge: " + "; ".join(
            self.outside_range
        )


def problem(field: str, text: str, kind: str) -> dict[str, str]:
    """One `FieldProblem` (field, problem, type) as the 422 body lists it."""
    return {"field": field, "problem": text, "type": kind}


def table_features_required(spec: ModelSpec, prefix: str) -> dict[str, str]:
    """The problem of a request to a table-trained model that sends no `features`."""
    names = ", ".join(spec.names)
    return problem(
        prefix,
        f"required: this model was trained on a table and scores the applicant's values sent here "
        f"(its columns: {names}); it reads no online vectors",
        "missing",
    )


def check_inline(
    spec: ModelSpec, values: Mapping[str, InlineValue], *, allow_out_of_range: bool, prefix: str = "features"
) -> tuple[InlineApplicant | None, list[dict[str, str]]]:
    """The checked applicant, or None and every problem (fields named `<prefix>.<column>`)."""
    problems: list[dict[str, str]] = []
    checked: dict[str, ModelValue] = {}
    outside: list[str] = []
    by_name = spec.by_name
    for name in values:
        if name not in by_name:
            close = difflib.get_close_matches(name, spec.names, n=1)
            hint = (
                f" (did you mean {close[0]!r}?)"
                if close
                else f"; the model's columns: {', '.join(spec.names)}"
            )
            problems.append(
                problem(
                    f"{prefix}.{name}", f"unknown field: not a column of this model{hint}", "unknown_field"
                )
            )
    for feature in spec.features:
        field = f"{prefix}.{feature.name}"
        if feature.name not in values:
            problems.append(problem(field, _absent(feature), "missing"))
            continue
        value, trouble = _check_value(feature, values[feature.name])
        if trouble is not None:
            problems.append(problem(field, trouble[0], trouble[1]))
            continue
        checked[feature.name] = value
        if isinstance(value, float) and feature.value_range is not None:
            low, high = feature.value_range
            if not low <= value <= high:
                span = f"{_number(low)} to {_number(high)}"
                if allow_out_of_range:
                    outside.append(f"{feature.name}={_number(value)} (training range {span})")
                else:
                    problems.append(
                        problem(
                            field,
                            f"{_number(value)} is outside the range seen in training ({span}); the model "
                            "would score it as the range's edge: check the value, or send "
                            "allow_out_of_range=true to score it anyway (the decision is then review)",
                            "out_of_training_range",
                        )
                    )
    if problems:
        return None, problems
    return InlineApplicant(checked, tuple(outside)), []


def _absent(feature: FeatureSpec) -> str:
    if feature.missing_seen is False:
        return "required: send the applicant's value (this column had no missing values in training)"
    return "required: send the applicant's value, or null when it is unknown"


def _check_value(feature: FeatureSpec, value: InlineValue) -> tuple[ModelValue, tuple[str, str] | None]:
    """The value as the model reads it, or the problem (text, type)."""
    if value is None:
        if feature.missing_seen is False:
            return None, (
                "null is not accepted: this column had no missing values in training, so the model "
                "has never scored a missing one; send the applicant's value",
                "missing_not_seen_in_training",
            )
        return None, None
    if feature.kind == "categorical":
        if not isinstance(value, str):
            return None, (f"expected text (one of the categories), got {_json_type(value)}", "wrong_type")
        if value not in feature.categories:
            return None, (f"unknown category {value!r}: {_levels(feature.categories)}", "unknown_category")
        return value, None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None, (f"expected a number, got {_json_type(value)}", "wrong_type")
    number = float(value)
    if not math.isfinite(number):
        return None, ("expected a finite number", "wrong_type")
    return number, None


def _levels(categories: tuple[str, ...]) -> str:
    if len(categories) <= MAX_LISTED_LEVELS:
        return "expected one of " + ", ".join(repr(c) for c in categories)
    return f"expected one of the {len(categories)} categories seen in training"


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "text"
    return "a number"


def _number(value: float) -> str:
    """A value as people write it: 12000 rather than 12000.0."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:g}"


def inline_applicant(
    spec: ModelSpec | None,
    features: Mapping[str, InlineValue] | None,
    *,
    allow_out_of_range: bool,
    prefix: str = "",
) -> tuple[InlineApplicant | None, list[dict[str, str]]]:
    """One request's inline values for the served model (`spec` None: an event-log model, which
    refuses them); fields are named under `prefix` (e.g. `applications.3.` in a batch)."""
    if spec is None:
        problems = []
        if features is not None:
            problems.append(
                problem(
                    f"{prefix}features",
                    f"{TABLE_ONLY}; the model in service scores the member's online vector: drop `features`",
                    "not_a_table_model",
                )
            )
        if allow_out_of_range:
            problems.append(
                problem(f"{prefix}allow_out_of_range", ALLOW_WITHOUT_FEATURES, "not_a_table_model")
            )
        return None, problems
    if features is None:
        return None, [table_features_required(spec, f"{prefix}features")]
    return check_inline(spec, features, allow_out_of_range=allow_out_of_range, prefix=f"{prefix}features")
