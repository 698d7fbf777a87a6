"""Journey: a lender states the bad rate they accept and gets cutoffs chosen for it.

`train --table ... --target-bad-rate 0.08` picks the approve PD on held-out PDs, stores it with the
model and reports what it achieves there and out of time; `--print-config` shows the effective config
(ready to pass back with --config) without training; an impossible target is one line, exit 2.
Needs no session world: its own data folder and MLflow store under tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.journeys.conftest import Cli, journey_env

LABEL = ("--label", "outcome", "--bad-value", "default", "--good-value", "repaid")


def test_cutoffs_from_my_target_bad_rate(tmp_path: Path) -> None:
    cli = Cli(journey_env(tmp_path), tmp_path)
    table = tmp_path / "applications.csv"
    cli.json("simulate-table", "--rows", "2000", "--out", str(table))
    base = ("--table", str(table), "--time", "applied_on", "--time-format", "%d/%m/%Y", *LABEL)
    base += ("--protected", "gender", "--monotone", "late_payments=+1")

    _, printed = cli.json(
        "train", *base, "--target-bad-rate", "0.08", "--review-band", "0.1", "--print-config"
    )
    assert printed["policy"]["mode"] == "target_bad_rate" and printed["target_bad_rate"] == 0.08
    assert printed["policy"]["review_band"] == 0.1 and printed["calibration"]["method"] == "auto"
    done = cli.run("train", *base, "--print-config")  # without --json: the JSON alone on stdout
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["policy"]["mode"] == "target_bad_rate"  # a table's default
    assert "policy.review_band" in done.stderr and "calibration.method" in done.stderr
    config = tmp_path / "config.json"
    config.write_text(json.dumps(printed))
    _, listed = cli.json("models", "list")
    assert listed["versions"] == []  # --print-config trained nothing

    _, summary = cli.json("train", *base, "--config", str(config))
    assert summary["status"] == "registered"
    policy, calibration = summary["metrics"]["policy"], summary["metrics"]["calibration"]
    assert policy["mode"] == "target_bad_rate" and policy["target"] == 0.08 and policy["target_met"]
    slice_ = policy["achieved"]["slice"]
    assert slice_["bad_rate_approved"] <= 0.08 and slice_["approval_rate"] > 0.2
    assert abs(slice_["review_rate"] - 0.1) < 0.02
    assert set(policy["achieved"]["oot"]) >= {"approval_rate", "bad_rate_approved", "rows"}
    assert 0 < policy["approve_max_pd"] < policy["decline_min_pd"] <= 1
    assert calibration["method"] in ("platt", "cross_fitted_platt")
    assert calibration["fitted_on"]["rows"] > 0 and calibration["fitted_on"]["why"]

    _, refused = cli.json("train", *base, "--target-bad-rate", "0.001", expect=2)
    assert refused["status"] == "target_not_met" and "\n" not in refused["message"]
    assert "target bad rate 0.1% among approved cannot be met" in refused["message"]
    assert "the lowest achievable, approving at least 1000 applicants, is " in refused["message"]
    done = cli.run("train", *base, "--target-bad-rate", "0.001")  # the console: one line, no traceback
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"target_not_met: {refused['message']}"

    both = cli.run("train", *base, "--target-bad-rate", "0.08", "--target-approval-rate", "0.5")
    assert both.returncode == 2 and "mutually exclusive" in both.stderr
