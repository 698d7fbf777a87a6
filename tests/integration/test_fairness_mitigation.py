"""The retraining job on a proxy-trap training set: the fairness gate refuses the first challenger,
the mitigation names the proxy feature, refits without it, and the refit passes and is promoted.

Real LightGBM, real MLflow (a temporary SQLite store), the real gates; only the data is synthetic:
a `TrainingSource` whose "women" have no deliveries on record (filed under someone else's name)
while their repayment is drawn exactly like everyone else's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models import mlflow_io
from models.registry import CHAMPION
from monitoring.fairness import FairnessThresholds, audit_fairness
from monitoring.fairness_report import latest_fairness_audit
from tests.utils.model_fixtures import SMALL_FEATURES, fast_config, synthetic_training_set
from training.datasets import DataFingerprint, TrainingSet
from training.fairness_gates import FairnessGate
from training.fairness_mitigation import find_proxy_features
from training.fit import fit_credit_model
from training.gates import default_gates
from training.job import ExitCode, retrain
from training.splits import time_split

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

MODEL = "coopscore-pd-fairness"
PROXIES = ["delivery_amount_365d", "delivery_months_365d"]


def _trap(n: int = 8000, seed: int = 13) -> tuple[TrainingSet, pd.DataFrame]:
    """A training set where 40% of applicants ('women') have no deliveries on record. On 8,000
    synthetic applicants the gap it opens, and what is left after dropping the proxies, sit near the
    thresholds: this seed was checked to open the gap and to let the refit pass (seeds 3-15 with the
    additive booster: 13 and 14 do both)."""
    training_set = synthetic_training_set(n=n, seed=seed, features=SMALL_FEATURES)
    woman = np.random.default_rng(seed + 10).random(n) < 0.4
    features = training_set.features.copy()
    features.loc[woman, PROXIES] = 0.0
    fingerprint = DataFingerprint("synthetic", f"trap-{seed}-{n}", training_set.fingerprint.as_of, "v")
    trapped = replace(training_set, features=features, fingerprint=fingerprint)
    groups = pd.DataFrame(
        {"application_id": training_set.ids, "left_behind_woman": np.where(woman, "true", "false")}
    )
    return trapped, groups


@dataclass(frozen=True)
class TrapSource:
    """A `training.job.TrainingSource` over the proxy-trap set."""

    training_set: TrainingSet

    def load(self) -> TrainingSet:
        return self.training_set

    def fingerprint(self) -> DataFingerprint:
        return self.training_set.fingerprint


def test_find_proxy_features_names_the_undercounted_feature_only() -> None:
    training_set, groups = _trap()
    config = fast_config()
    split = time_split(training_set.applied_at, training_set.horizon, config.splits)
    model, _ = fit_credit_model(training_set, split, config)
    oot = split.masks["oot"]
    x = training_set.features.loc[oot].reset_index(drop=True)
    pds = model.predict_pd(x)
    frame = pd.DataFrame(
        {"pd": pds, "decision": [d.outcome for d in model.decisions(x, pds=pds)], "defaulted": 0}
    ).assign(defaulted=training_set.label[oot])
    labels = {"left_behind_woman": groups.loc[oot, "left_behind_woman"].reset_index(drop=True)}
    audit = audit_fairness(frame, groups=labels, n_boot=0, thresholds=FairnessThresholds())
    assert audit.flags, "the trap must open a gap"
    proxies = find_proxy_features(model, x, labels, audit.flags)
    assert sorted(p.feature for p in proxies) == sorted(PROXIES)
    assert proxies[0].group == "true" and proxies[0].points_gap < -1 and proxies[0].auc < 0.4
    # no flag, nothing to name
    assert find_proxy_features(model, x, labels, []) == []


@pytest.mark.slow
def test_retrain_mitigates_a_failed_fairness_gate_and_promotes_the_refit(tmp_path: Path) -> None:
    training_set, groups = _trap()
    uri, artifacts = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts"
    config = fast_config()
    gate = FairnessGate(groups, thresholds=FairnessThresholds(), n_boot=0)
    summary = retrain(
        TrapSource(training_set),
        config=config,
        tracking_uri=uri,
        artifact_root=artifacts,
        model_name=MODEL,
        gates=[*default_gates(config.gates), gate],
        mitigation="drop-proxies",
        data_dir=tmp_path / "data",
    )
    report = summary.mitigation
    assert report is not None, summary.to_dict()
    first = {g["gate"]: g for g in report["first_promotion"]["gates"]}
    assert not first["fairness"]["passed"] and "left_behind_woman=true" in first["fairness"]["reason"]
    assert all(g["passed"] for name, g in first.items() if name != "fairness")
    assert sorted(report["dropped"]) == sorted(PROXIES)
    assert len(report["rounds"]) == 1 and report["rounds"][0]["fairness_passed"]
    assert report["auc_cost"] == pytest.approx(report["auc_before"] - report["auc_after"])
    assert abs(report["auc_cost"]) < 0.05
    assert report["threshold_optimizer"][0]["name"] == "baseline"
    assert report["threshold_optimizer"][1]["name"].startswith("ThresholdOptimizer")
    # the refit passes every gate and becomes champion; the unfair one never did
    assert summary.exit_code == ExitCode.PROMOTED, summary.message
    assert summary.version == "2" and mlflow_io.get_version(uri, MODEL, CHAMPION).version == "2"
    tags = mlflow_io.get_version(uri, MODEL, "2").tags
    assert tags["coopscore.mitigation_of"] == "1"
    assert sorted(tags["coopscore.dropped_features"].split(",")) == sorted(PROXIES)
    assert mlflow_io.get_version(uri, MODEL, "1").tags["promotion.status"] == "kept"
    # both audits are stored for the API and logged beside their model versions
    latest = latest_fairness_audit(tmp_path / "data")
    assert latest is not None and latest["model_version"] == "2" and latest["passed"]
    for version, passed in (("1", False), ("2", True)):
        run_id = mlflow_io.get_version(uri, MODEL, version).run_id
        local = mlflow_io.download_run_artifact(uri, run_id, "fairness", tmp_path / f"v{version}")
        assert json.loads((local / "audit.json").read_text())["passed"] is passed
        assert (local / "report.html").exists()
    # the failed version's report explains its gap: the proxies and the points they cost
    explained = json.loads((tmp_path / "v1" / "fairness" / "audit.json").read_text())["explanations"]
    assert {p["feature"] for p in explained["left_behind_woman"]["proxies"][:2]} == set(PROXIES), explained
    points = explained["left_behind_woman"]["reason_group_points"]
    assert points["true"]["deliveries"] < points["false"]["deliveries"]
