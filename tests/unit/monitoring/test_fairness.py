"""Fairness audit metrics vs fairlearn directly, small groups, group columns, proxies, stored reports."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from sklearn.metrics import roc_auc_score

from monitoring.fairness import (
    TOO_SMALL,
    FairnessThresholds,
    age_band,
    audit_fairness,
    protected_groups,
    proxy_scan,
)
from monitoring.fairness_report import latest_fairness_audit, write_fairness_audit


def _decisions(n: int = 900, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b", "c"], n, p=[0.5, 0.4, 0.1])
    pd_ = np.clip(rng.beta(2, 18, n) + np.where(group == "b", 0.03, 0.0), 0, 1)
    defaulted = (rng.random(n) < pd_).astype(float)
    defaulted[rng.random(n) < 0.2] = np.nan  # outcomes not yet observed
    decision = np.where(pd_ <= 0.08, "approve", np.where(pd_ >= 0.2, "decline", "review"))
    return pd.DataFrame(
        {"pd": pd_, "decision": decision, "defaulted": defaulted, "score": 600 - 500 * pd_, "group": group}
    )


def test_metrics_match_fairlearn_computed_directly() -> None:
    frame = _decisions()
    audit = audit_fairness(
        frame, score_col="score", groups={"group": frame["group"]}, min_group_size=50, n_boot=0
    )
    approved = (frame["decision"] == "approve").astype(int)
    selection = MetricFrame(
        metrics=selection_rate, y_true=approved, y_pred=approved, sensitive_features=frame["group"]
    ).by_group
    lab = frame["defaulted"].notna()
    repaid = (1 - frame.loc[lab, "defaulted"]).astype(int)
    outcome = MetricFrame(
        metrics={"tpr": true_positive_rate, "fpr": false_positive_rate},
        y_true=repaid,
        y_pred=approved[lab],
        sensitive_features=frame.loc[lab, "group"],
    ).by_group
    best = selection.max()
    attribute = audit.attributes["group"]
    assert attribute.reference_group == selection.idxmax()
    for name in ("a", "b", "c"):
        g = attribute.group(name)
        rows = frame[lab & (frame["group"] == name)]
        assert g.values["approval_rate"] == pytest.approx(selection[name])
        assert g.values["approval_ratio"] == pytest.approx(selection[name] / best)
        assert g.values["approval_if_repaid"] == pytest.approx(outcome.loc[name, "tpr"])
        assert g.values["approval_if_defaulted"] == pytest.approx(outcome.loc[name, "fpr"])
        assert g.values["auc"] == pytest.approx(roc_auc_score(rows["defaulted"], rows["pd"]))
        assert g.values["calibration_gap"] == pytest.approx(rows["pd"].mean() - rows["defaulted"].mean())
        assert g.values["mean_score"] == pytest.approx(frame.loc[frame["group"] == name, "score"].mean())
        assert g.n_labelled == len(rows)
    tprs = outcome["tpr"]
    assert attribute.equal_opportunity_difference == pytest.approx(tprs.max() - tprs.min())


def test_hand_made_case_and_flags() -> None:
    # a: 10 approved of 20 (0.5); b: 6 of 20 (0.3) -> ratio 0.6 < 0.8
    frame = pd.DataFrame(
        {
            "pd": [0.05] * 40,
            "approved": [True] * 10 + [False] * 10 + [True] * 6 + [False] * 14,
            "defaulted": [0.0] * 40,
        }
    )
    groups = {"gender": pd.Series(["a"] * 20 + ["b"] * 20)}
    audit = audit_fairness(
        frame, approved_col="approved", decision_col=None, groups=groups, min_group_size=10, n_boot=0
    )
    b = audit.attributes["gender"].group("b")
    assert b.values["approval_ratio"] == pytest.approx(0.6)
    assert b.values["approval_if_repaid"] == pytest.approx(0.3)
    assert math.isnan(b.values["approval_if_defaulted"])  # nobody defaulted
    assert b.values["calibration_gap"] == pytest.approx(0.05)
    metrics = {(f.group, f.metric) for f in audit.flags}
    assert ("b", "approval_ratio") in metrics
    assert ("b", "equal_opportunity_difference") in metrics  # 0.5 - 0.3 > 0.05
    assert ("a", "calibration_gap") in metrics  # 5% predicted, 0% observed
    assert not audit.passed
    relaxed = audit_fairness(
        frame,
        approved_col="approved",
        groups=groups,
        min_group_size=10,
        n_boot=0,
        thresholds=FairnessThresholds(0.5, None, None),
    )
    assert relaxed.passed


def test_groups_too_small_are_not_judged() -> None:
    frame = _decisions()
    small = frame["group"] == "c"
    frame.loc[small, "decision"] = "decline"  # nobody in c is approved, but c is too small
    audit = audit_fairness(frame, groups={"group": frame["group"]}, min_group_size=int(small.sum()) + 1)
    c = audit.attributes["group"].group("c")
    assert not c.judged and c.status == TOO_SMALL
    assert c.ci == {}
    assert all(f.group != "c" for f in audit.flags)
    assert ("group", "c", int(small.sum())) in audit.too_small()
    assert audit.to_dict()["attributes"]["group"]["groups"][2]["status"] == TOO_SMALL


def test_bootstrap_intervals_cover_the_estimate() -> None:
    frame = _decisions()
    audit = audit_fairness(frame, groups={"group": frame["group"]}, min_group_size=50, n_boot=100, seed=1)
    for g in audit.attributes["group"].groups:
        for metric in ("approval_rate", "approval_if_repaid", "auc", "approval_ratio"):
            lo, hi = g.ci[metric]
            assert lo <= g.values[metric] + 1e-9 and g.values[metric] <= hi + 1e-9, (g.group, metric)
    again = audit_fairness(frame, groups={"group": frame["group"]}, min_group_size=50, n_boot=100, seed=1)
    assert again.to_dict() == audit.to_dict()


def test_protected_groups_from_profiles() -> None:
    profiles = pd.DataFrame(
        {
            "member_id": ["m1", "m2", "m3", "m4"],
            "gender": ["female", "male", "female", "male"],
            "birth_year": [2001, 1990, 1964, 1950],
            "returning_youth": [True, False, False, False],
            "left_behind_woman": [False, False, True, False],
            "county_id": ["c1", "c1", "c2", "c2"],
        }
    )
    applications = pd.DataFrame(
        {
            "application_id": ["A1", "A2", "A3", "A4", "A5"],
            "member_id": ["m1", "m2", "m3", "m4", "ghost"],
            "applied_at": pd.to_datetime(["2025-03-01"] * 4 + ["2025-03-01"], utc=True),
            "has_prior_loan": [0, 1, 0, 1, 0],
        }
    )
    groups = protected_groups(profiles, applications)
    assert groups["age_band"].tolist() == ["<25", "25-40", "60+", "60+", "unknown"]
    assert groups["gender_x_age_band"].tolist()[0] == "female x <25"
    assert groups["returning_youth"].tolist()[:2] == ["true", "false"]
    assert groups["county"].tolist() == ["c1", "c1", "c2", "c2", "unknown"]
    assert groups["file"].tolist() == ["thin", "thick", "thin", "thick", "thin"]
    assert groups["application_id"].tolist() == ["A1", "A2", "A3", "A4", "A5"]
    bands = age_band(pd.Series([2000, 1985, 1965]), pd.Series(pd.to_datetime(["2025-01-01"] * 3, utc=True)))
    assert bands.tolist() == ["25-40", "40-60", "60+"]  # 25 -> 25-40, 40 -> 40-60, 60 -> 60+


def test_proxy_scan_ranks_the_planted_proxy_first() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    woman = rng.random(n) < 0.4
    features = pd.DataFrame(
        {
            "deliveries": np.where(woman, np.nan, rng.gamma(2, 100, n)),  # recorded under the husband
            "savings": rng.gamma(2, 100, n),
            "crop": rng.choice(["rice", "tea"], n),
        }
    )
    found = proxy_scan(features, {"left_behind_woman": pd.Series(woman)}, top=3)
    assert found[0].feature == "deliveries"
    # Her deliveries are missing (lowest): the raw AUC is near 0, a perfect *inverse* proxy.
    assert found[0].auc < 0.1 and found[0].strength == pytest.approx(1 - found[0].auc)
    assert found[0].direction == "lower" and found[0].describe == "lower values → true"
    assert all(0.5 <= p.strength < 0.6 for p in found[1:])
    crop = next(p for p in found if p.feature == "crop")
    assert crop.direction == "category" and crop.category in ("rice", "tea")
    assert crop.to_dict()["describe"] == f"category {crop.category!r} → true"


def test_proxy_strength_and_direction_are_symmetric() -> None:
    rng = np.random.default_rng(8)
    female = rng.random(3000) < 0.5
    share = np.where(female, rng.normal(1.0, 0.3, 3000), rng.normal(0.0, 0.3, 3000))
    features = pd.DataFrame({"share": share, "inverse": -share})
    found = {p.feature: p for p in proxy_scan(features, {"gender": pd.Series(female)}, min_group_size=50)}
    up, down = found["share"], found["inverse"]
    assert up.auc == pytest.approx(1 - down.auc) and up.strength == pytest.approx(down.strength)
    assert up.strength > 0.95
    assert {up.direction, down.direction} == {"higher", "lower"}
    low = min(up, down, key=lambda p: p.auc).to_dict()  # an AUC near 0: strong, not "no signal"
    assert low["auc"] < 0.05 and low["strength"] > 0.95
    assert low["describe"] == f"lower values → {low['group']}"


def test_report_files_and_latest(tmp_path) -> None:
    frame = _decisions()
    assert latest_fairness_audit(tmp_path) is None
    audit = audit_fairness(frame, groups={"group": frame["group"]}, min_group_size=50, n_boot=20)
    first = write_fairness_audit(audit, tmp_path, now=datetime(2026, 1, 1, tzinfo=UTC))
    stored = write_fairness_audit(
        audit, tmp_path, context={"source": "test"}, now=datetime(2026, 1, 2, tzinfo=UTC)
    )
    assert first.directory.parent == tmp_path / "audits"
    assert stored.chart_path.read_bytes()[:4] == b"\x89PNG"
    assert "Fairness audit" in stored.report_path.read_text(encoding="utf-8")
    latest = latest_fairness_audit(tmp_path)
    assert latest is not None and latest["source"] == "test"
    assert latest == json.loads(stored.json_path.read_text(encoding="utf-8"))


def test_require_ci_keeps_noise_from_flagging_but_not_a_real_gap() -> None:
    rng = np.random.default_rng(4)
    n = 1200
    group = pd.Series(rng.choice(["a", "b"], n))
    pd_ = rng.beta(2, 20, n)
    defaulted = (rng.random(n) < pd_).astype(float)
    fair = pd.DataFrame({"pd": pd_, "approved": rng.random(n) < 0.5, "defaulted": defaulted})
    loose = FairnessThresholds(0.8, 0.01, 0.005)  # tight enough that noise breaks them
    noisy = audit_fairness(fair, approved_col="approved", groups={"g": group}, n_boot=200, thresholds=loose)
    assert noisy.flags
    strict = FairnessThresholds(0.8, 0.01, 0.005, require_ci=True)
    calm = audit_fairness(fair, approved_col="approved", groups={"g": group}, n_boot=200, thresholds=strict)
    assert not calm.flags
    unfair = fair.assign(approved=np.where(group == "b", rng.random(n) < 0.25, rng.random(n) < 0.5))
    gap = audit_fairness(unfair, approved_col="approved", groups={"g": group}, n_boot=200, thresholds=strict)
    assert ("b", "approval_ratio") in {(f.group, f.metric) for f in gap.flags}
    assert ("b", "equal_opportunity_difference") in {(f.group, f.metric) for f in gap.flags}


def test_band_groups_are_listed_in_numeric_order() -> None:
    from monitoring.bands import group_order

    assert sorted(["60+", "25-39", "unknown", "<25", "40-59"], key=group_order) == [
        "<25",
        "25-39",
        "40-59",
        "60+",
        "unknown",
    ]
    assert sorted(["5+", "2.5 to <5", "<2.5"], key=group_order) == ["<2.5", "2.5 to <5", "5+"]
    assert sorted(["male", "female"], key=group_order) == ["female", "male"]
