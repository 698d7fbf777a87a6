"""Behavioural tests of the credit model: directions, golden applicants, protected-attribute invariance.

Directions and golden applicants use a model fitted on a synthetic training set (seconds); the
invariance test simulates and ingests a small real world, perturbs every protected attribute in the
member-profile table, rebuilds the training set and refits: nothing may change.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.catalog import default_registry
from features.contracts import MEMBER_PROFILE_CONTRACT, PROTECTED_ATTRIBUTES
from tests.utils.model_fixtures import (
    fast_config,
    golden_applicant,
    small_world,
    synthetic_training_set,
)
from training.datasets import event_log_training_set
from training.fit import fit_credit_model
from training.gates import DirectionGate, GateContext
from training.pipeline import OOT_LABEL
from training.splits import time_split


@pytest.fixture(scope="module")
def trained():
    training_set = synthetic_training_set(n=10_000, seed=7)
    config = fast_config()
    split = time_split(training_set.applied_at, training_set.horizon, config.splits)
    model, _ = fit_credit_model(training_set, split, config)
    return model, training_set, split


def test_every_declared_direction_holds(trained) -> None:
    model, training_set, split = trained
    oot = training_set.features.loc[split.masks["oot"]].assign(**{OOT_LABEL: 0})
    result = DirectionGate(rows=150, grid=15)(GateContext(challenger=model, oot=oot))
    assert result.passed, result.details["violations"]
    assert result.details["checked"] == sum(1 for f in default_registry().features if f.direction)


@pytest.mark.parametrize(
    ("feature", "safer_when_higher"),
    [
        ("repayment_late_count_365d", False),
        ("repayment_on_time_share_lifetime", True),
        ("savings_balance", True),
        ("delivery_months_365d", True),
        ("application_amount_cny", False),
    ],
)
def test_named_features_move_the_score_the_declared_way(
    trained, feature: str, safer_when_higher: bool
) -> None:
    model, training_set, _ = trained
    rows = training_set.features[training_set.features["has_prior_loan"] == 1].head(30)
    values = np.quantile(training_set.features[feature].dropna(), np.linspace(0, 1, 9))
    for _, row in rows.iterrows():
        scores = []
        for value in values:
            applicant = row.to_dict()
            applicant[feature] = float(value)
            scores.append(float(model.score(applicant)[0]))
        steps = np.diff(scores)
        assert (steps >= -1e-9).all() if safer_when_higher else (steps <= 1e-9).all()


def test_golden_applicants_land_in_the_expected_grades(trained) -> None:
    model, training_set, _ = trained
    strong = model.assess(golden_applicant(training_set, strong=True))
    weak = model.assess(golden_applicant(training_set, strong=False))
    assert strong.grade in ("A", "B"), strong.to_dict()
    assert weak.grade in ("D", "E"), weak.to_dict()
    assert strong.score - weak.score > 60
    assert strong.decision.outcome == "approve"
    assert weak.decision.outcome in ("decline", "review")
    assert weak.explanation.reasons, "a weak applicant is told why"
    assert all(r.points < 0 for r in weak.explanation.reasons)


def test_a_thin_file_is_never_declined_automatically(trained) -> None:
    model, training_set, _ = trained
    applicant = golden_applicant(training_set, strong=False)
    applicant.update(has_prior_loan=0, event_count_365d=2, history_months=1)
    assessment = model.assess(applicant)
    assert assessment.decision.outcome == "review"
    assert assessment.decision.reason == "thin_file"


def _perturb_profiles(tables_dir: Path) -> int:
    """Flip every protected attribute of every member; return how many members were changed."""
    folder = tables_dir / "member_profiles"
    frame = pd.concat([pd.read_parquet(p) for p in sorted(folder.glob("part-*.parquet"))])
    counties = sorted(frame["county_id"].unique())
    frame["gender"] = frame["gender"].map({"female": "male", "male": "female"})
    frame["birth_year"] = (frame["birth_year"] - 17).clip(lower=1920)
    frame["returning_youth"] = ~frame["returning_youth"]
    frame["left_behind_woman"] = ~frame["left_behind_woman"]
    frame["county_id"] = frame["county_id"].map(dict(zip(counties, counties[1:] + counties[:1], strict=True)))
    for path in folder.glob("part-*.parquet"):
        path.unlink()
    table = pa.Table.from_pandas(frame[MEMBER_PROFILE_CONTRACT.names], preserve_index=False)
    pq.write_table(table.cast(MEMBER_PROFILE_CONTRACT.arrow_schema()), folder / "part-00000.parquet")
    return len(frame)


def test_protected_attributes_change_nothing(tmp_path: Path) -> None:
    """Perturb gender, age, group flags and county in the profiles; features and model are identical."""
    world = small_world(tmp_path, members=4000, months=26, seed=5)
    config = fast_config()

    def build_and_fit():
        training_set = event_log_training_set(
            events_dir=world.events_dir, tables_dir=world.tables_dir, ledger_path=world.ledger_path
        )
        split = time_split(training_set.applied_at, training_set.horizon, config.splits)
        model, _ = fit_credit_model(training_set, split, config)
        return training_set, model

    before_set, before_model = build_and_fit()
    assert not set(PROTECTED_ATTRIBUTES) & set(before_model.feature_names)
    changed = _perturb_profiles(world.tables_dir)
    assert changed == 4000
    after_set, after_model = build_and_fit()

    pd.testing.assert_frame_equal(before_set.features, after_set.features)
    np.testing.assert_array_equal(before_set.label, after_set.label)
    assert before_model.booster.model_to_string() == after_model.booster.model_to_string()
    assert before_model.calibration == after_model.calibration
    np.testing.assert_array_equal(
        before_model.score(before_set.features), after_model.score(after_set.features)
    )
    assert math.isfinite(float(after_model.score(after_set.features.iloc[0].to_dict())[0]))
