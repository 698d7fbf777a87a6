"""The champion family (issue 15, item 4): the scorecard served as one-input trees, and the choice
between it and the booster made on paired OOT evidence."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.credit_model import encode_frame
from models.monotone import direction_violations
from simulator.lender_table import write_lender_table
from tests.utils.tables import LENDER_TABLE_OPTIONS
from training.baselines import fit_scorecard
from training.config import TrainingConfig
from training.datasets import table_training_set
from training.fit import fit_credit_model
from training.pipeline import choose_family
from training.splits import time_split


def test_the_scorecard_served_as_trees_reproduces_it_adds_up_and_keeps_the_directions(tmp_path: Path) -> None:
    path = write_lender_table(tmp_path / "lender.csv", 2000)
    ts = table_training_set(
        path, **LENDER_TABLE_OPTIONS, protected=("gender",), monotone={"late_payments": 1}
    )
    config = TrainingConfig(model_family="scorecard")
    split = time_split(ts.applied_at, ts.horizon, config.splits)
    scorecard = fit_scorecard(ts, split)
    model, fit = fit_credit_model(ts, split, config, teacher=scorecard.decision_function)
    frame = ts.features
    # Learned the teacher's log-odds, not the labels: one input per tree, like the booster family.
    teacher = scorecard.decision_function(frame)
    margin = model.booster.predict(encode_frame(model.spec, frame), raw_score=True)
    assert np.corrcoef(teacher, margin)[0, 1] > 0.95
    dump = model.booster.dump_model()["tree_info"]
    assert all(len(_split_features(tree["tree_structure"])) <= 1 for tree in dump)
    # Points add up to the score exactly; the declared direction holds on every row.
    points = model.points(frame.head(200))
    np.testing.assert_allclose(
        points.base_points + points.feature_points.sum(axis=1), model.score(frame.head(200))
    )
    sample = encode_frame(model.spec, frame.head(300))
    assert not direction_violations(lambda x: model.booster.predict(x, raw_score=True), sample, model.spec)
    assert fit.constrained_features == 1


def _split_features(node: dict[str, object]) -> set[object]:
    if "split_feature" not in node:
        return set()
    left, right = node["left_child"], node["right_child"]
    assert isinstance(left, dict) and isinstance(right, dict)
    return {node["split_feature"]} | _split_features(left) | _split_features(right)


def test_auto_keeps_the_booster_on_a_tie_and_takes_the_scorecard_only_when_clearly_better() -> None:
    rng = np.random.default_rng(3)
    risk = rng.normal(size=4000)
    label = (rng.random(4000) < 1 / (1 + np.exp(2.5 - 1.2 * risk))).astype(np.int64)
    sharp = 1 / (1 + np.exp(-risk))
    blurred = 1 / (1 + np.exp(-(risk + rng.normal(scale=1.5, size=4000))))
    config = TrainingConfig()
    tie = choose_family(config, label, {"booster": sharp, "scorecard": sharp + 1e-9 * rng.random(4000)})
    assert tie["chosen"] == "booster" and "not above zero" in tie["why"]
    low, high = tie["auc_difference_95"]
    assert low <= 0 <= high
    better = choose_family(config, label, {"booster": blurred, "scorecard": sharp})
    assert better["chosen"] == "scorecard" and better["auc_difference_95"][0] > 0
    assert better["auc_difference"] > 0 and "above zero: the scorecard family" in better["why"]
    worse = choose_family(config, label, {"booster": sharp, "scorecard": blurred})
    assert worse["chosen"] == "booster"
    configured = choose_family(TrainingConfig(model_family="scorecard"), label, {"scorecard": sharp})
    assert configured == {"chosen": "scorecard", "why": "configured: model_family = scorecard"}
