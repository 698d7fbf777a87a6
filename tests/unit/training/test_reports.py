"""The analyst tables' arithmetic on hand-made rows, and the model report page of a real small run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tests.utils.model_fixtures import SMALL_FEATURES, fast_config, synthetic_training_set
from training.baselines import WoeScorecard
from training.pipeline import TrainingResult, train_and_evaluate
from training.report_html import REPORT_FILE, SECTIONS, render_report
from training.reports import (
    AnalystReport,
    analyst_report,
    auc_interval,
    candidate_cutoffs,
    cutoff_table,
    decile_table,
    decision_table,
    grade_table,
    importance_table,
    input_psi_table,
    woe_tables,
)


def test_decile_table_counts_capture_and_lift() -> None:
    pd_ = np.linspace(0.9, 0.0, 10)  # row 0 riskiest
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0, 0, 0])
    rows = decile_table(y, pd_, 600 - 100 * pd_, bins=5)
    assert [r["n"] for r in rows] == [2, 2, 2, 2, 2]
    assert [r["bads"] for r in rows] == [2, 1, 0, 0, 0]
    assert rows[0]["bad_rate"] == 1.0 and rows[1]["bad_rate"] == 0.5
    assert rows[0]["capture"] == pytest.approx(2 / 3) and rows[1]["capture"] == 1.0
    assert rows[0]["lift"] == pytest.approx(1.0 / 0.3) and rows[1]["lift"] == pytest.approx(0.5 / 0.3)
    assert rows[1]["cumulative_lift"] == pytest.approx(1.0 / 0.4)
    assert rows[0]["score_min"] == pytest.approx(600 - 90) and rows[0]["score_max"] == pytest.approx(600 - 80)
    assert rows[-1]["capture"] == 1.0 and rows[-1]["lift"] == 0.0


def test_grade_table_flags_a_grade_that_defaults_less_than_the_better_one() -> None:
    grades = ["A"] * 4 + ["B"] * 2 + ["C"] * 5
    y = np.array([0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1])  # A: 1/4, B: 1/2, C: 1/5
    pd_ = np.array([0.1] * 4 + [0.3] * 2 + [0.5] * 5)
    rows = grade_table(y, pd_, grades, ["A", "B", "C", "D"])
    by = {r["grade"]: r for r in rows}
    assert by["A"]["bad_rate"] == 0.25 and by["B"]["bad_rate"] == 0.5 and by["C"]["bad_rate"] == 0.2
    assert [r["breaks_order"] for r in rows] == [False, False, True, False]
    assert by["C"]["calibration_gap"] == pytest.approx(0.5 - 0.2)
    assert by["B"]["share"] == pytest.approx(2 / 11)
    assert by["D"]["n"] == 0  # listed, not judged


def test_grade_order_is_judged_against_the_nearest_non_empty_better_grade() -> None:
    rows = grade_table([0, 1, 1, 0], [0.1] * 4, ["A", "A", "C", "C"], ["A", "B", "C"])
    assert [r["breaks_order"] for r in rows] == [False, False, False]  # C 0.5 == A 0.5: no reversal


def test_auc_interval_brackets_the_auc_and_is_seeded() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 400)
    risk = y * 0.8 + rng.normal(size=400)
    first = auc_interval(y, risk, resamples=200, seed=3)
    assert first == auc_interval(y, risk, resamples=200, seed=3)
    assert first["auc"] == pytest.approx(roc_auc_score(y, risk))
    assert first["low"] < first["auc"] < first["high"]
    # The standard error of an AUC near 0.7 on 400 rows is about 0.025: the interval is ~0.1 wide.
    assert 0.05 < first["high"] - first["low"] < 0.15
    assert first["resamples_used"] == 200


def test_auc_interval_of_a_perfect_ranking_is_one() -> None:
    result = auc_interval([0, 0, 1, 1, 0, 1], [0.1, 0.2, 0.8, 0.9, 0.3, 0.7], resamples=50, seed=0)
    assert result["auc"] == 1.0 and result["low"] == 1.0 and result["high"] == 1.0
    assert result["resamples_used"] <= 50  # one-class resamples are skipped


def test_cutoff_table_approves_at_or_above_the_cutoff() -> None:
    scores = np.array([700.0, 650.0, 600.0, 550.0, 500.0])
    y = np.array([0, 0, 1, 0, 1])
    pd_ = np.array([0.01, 0.02, 0.05, 0.1, 0.3])
    row = cutoff_table(y, pd_, scores, [600.0])[0]
    assert row["approved"] == 3 and row["approval_rate"] == 0.6
    assert row["expected_bad_rate"] == pytest.approx((0.01 + 0.02 + 0.05) / 3)
    assert row["observed_bad_rate"] == pytest.approx(1 / 3)
    assert row["bads_declined_share"] == 0.5
    none = cutoff_table(y, pd_, scores, [800.0])[0]
    assert none["approved"] == 0 and np.isnan(none["observed_bad_rate"])


def test_candidate_cutoffs_hold_the_grade_cuts_highest_first() -> None:
    cuts = candidate_cutoffs(np.arange(500.0, 700.0), [620.0, 590.0, float("-inf")])
    assert 620.0 in cuts and 590.0 in cuts and cuts == sorted(cuts, reverse=True)
    assert min(cuts) >= 500 and max(cuts) <= 700 and len(cuts) <= 11


def test_decision_table_crosses_decisions_with_outcomes() -> None:
    rows = decision_table([0, 1, 0, 1, 1], ["approve", "approve", "review", "decline", "decline"])
    by = {r["decision"]: r for r in rows}
    assert (by["approve"]["goods"], by["approve"]["bads"]) == (1, 1)
    assert (by["review"]["goods"], by["review"]["bads"]) == (1, 0)
    assert (by["decline"]["goods"], by["decline"]["bads"]) == (0, 2)
    assert by["decline"]["share_of_bads"] == pytest.approx(2 / 3) and by["review"]["share"] == 0.2


def test_importance_is_mean_absolute_points_largest_first() -> None:
    rows = importance_table(np.array([[1.0, -0.5], [-3.0, 0.5]]), ["a", "b"])
    assert rows == [
        {"feature": "a", "mean_abs_points": 2.0, "mean_points": -1.0},
        {"feature": "b", "mean_abs_points": 0.5, "mean_points": 0.0},
    ]


def test_input_psi_is_zero_for_the_same_rows_and_flags_a_shift() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(size=2000), "z": rng.normal(size=2000)})
    oot = train.assign(x=train["x"] + 1.5)
    rows = {r["feature"]: r for r in input_psi_table(train, oot, ["x", "z"])}
    assert rows["z"]["psi"] == pytest.approx(0.0, abs=1e-12) and rows["z"]["band"] == "stable"
    assert rows["x"]["band"] == "shift"


def test_woe_points_rebuild_the_scorecard_score() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    x = pd.DataFrame({"signal": rng.normal(size=n), "noise": rng.normal(size=n)})
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.3 * x["signal"] - 2.0)))).astype(np.int64)
    card = WoeScorecard().fit(x, y)
    factor, offset = 20 / np.log(2), 487.1
    tables = woe_tables(card, factor=factor, offset=offset)
    # Each row's score from the scorecard's own log-odds, and from base + the points of its bins.
    woe = np.asarray(card._woe(x))
    coef = card.regression_.coef_.ravel()
    row_points = -factor * coef * woe
    expected = offset - factor * card.decision_function(x)
    assert np.allclose(tables["base_points"] + row_points.sum(axis=1), expected)
    for j, name in enumerate(["signal", "noise"]):
        listed = np.array([b["points"] for b in tables["bins"] if b["feature"] == name and b["count"]])
        assert all(np.isclose(listed, p).any() for p in np.unique(np.round(row_points[:, j], 9)))
    iv = {r["feature"]: r["iv"] for r in tables["iv"]}
    assert iv["signal"] > 0.3 > iv["noise"]
    assert iv["signal"] == pytest.approx(sum(b["iv"] for b in tables["bins"] if b["feature"] == "signal"))
    assert sum(b["count"] for b in tables["bins"] if b["feature"] == "signal") == n
    signal = next(r for r in tables["iv"] if r["feature"] == "signal")
    assert signal["bins"] == sum(1 for b in tables["bins"] if b["feature"] == "signal" and b["count"])


@pytest.fixture(scope="module")
def trained() -> TrainingResult:
    return train_and_evaluate(synthetic_training_set(n=4000, features=SMALL_FEATURES), fast_config())


@pytest.fixture(scope="module")
def report(trained: TrainingResult) -> AnalystReport:
    return analyst_report(trained, resamples=100)


def test_the_report_of_a_run_holds_every_table(trained: TrainingResult, report: AnalystReport) -> None:
    assert report.rows == int(trained.split.masks["oot"].sum()) and report.bads == int(
        trained.oot_label.sum()
    )
    assert sum(r["n"] for r in report.deciles) == report.rows
    assert sum(r["bads"] for r in report.deciles) == report.bads
    assert [r["grade"] for r in report.grades] == [g for g, _ in trained.model.scale.grades]
    assert sum(r["n"] for r in report.decisions) == report.rows
    assert report.auc["auc"] == pytest.approx(trained.evaluation.overall["model"].auc)
    assert report.validation_auc is not None
    assert {r["feature"] for r in report.importance} == set(trained.model.feature_names)
    assert {r["feature"] for r in report.psi} == set(trained.model.feature_names)
    assert report.woe is not None and {r["feature"] for r in report.woe["iv"]} == set(
        trained.model.feature_names
    )
    json.dumps(report.to_dict(), allow_nan=False)


def test_the_report_page_is_self_contained_and_lists_every_section(
    report: AnalystReport, tmp_path: Path
) -> None:
    page = render_report(report, tmp_path, title="coopscore v1", context={"version": "1"})
    assert page.name == REPORT_FILE
    text = page.read_text(encoding="utf-8")
    for anchor, english, chinese in SECTIONS:
        assert f'id="{anchor}"' in text and english in text and chinese in text
    links = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert links and not [link for link in links if not link.startswith(("#", "data:image/png;base64,"))]
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert text.count("data:image/png;base64,") >= 3  # gains, grades, cutoffs


def test_candidate_cutoffs_skip_a_quantile_next_to_a_grade_cut() -> None:
    cuts = candidate_cutoffs(np.full(50, 621.0), [620.0, float("-inf")])
    assert cuts == [620.0]
