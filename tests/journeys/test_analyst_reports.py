"""A credit analyst reads the champion's model report: the path `retrain` printed, the page, its tables.

Uses the session world's `retrain --json` output (no retraining here).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.journeys.conftest import JourneyWorld
from training.report_html import SECTIONS


def test_retrain_points_to_a_model_report_with_every_table(journey_world: JourneyWorld) -> None:
    summary = journey_world.retrain_summary
    report = summary["report"]
    assert report is not None, f"retrain printed no report: {sorted(summary)}"
    page = Path(report["path"])
    assert page.is_file() and page.is_relative_to(journey_world.data_dir.resolve())
    assert f"v{summary['version']}" in page.parts
    assert report["mlflow_artifact"] == f"runs:/{summary['run_id']}/report/model_report.html"

    tables = report["tables"]
    oot = summary["metrics"]
    assert tables["rows"] == oot["oot_rows"] and tables["bads"] == oot["oot_defaults"]
    assert len(tables["deciles"]) == 10 and tables["deciles"][-1]["capture"] == 1.0
    assert sum(row["bads"] for row in tables["deciles"]) == tables["bads"]
    assert [row["grade"] for row in tables["grades"]] == ["A", "B", "C", "D", "E"]
    assert tables["grade_order_breaks"] == [r["grade"] for r in tables["grades"] if r["breaks_order"]]
    auc = tables["auc"]
    assert auc["low"] < auc["auc"] < auc["high"] and auc["resamples"] == 500
    assert abs(auc["auc"] - oot["oot_auc"]) < 1e-9
    assert tables["cutoffs"] and all(0 <= row["approval_rate"] <= 1 for row in tables["cutoffs"])
    assert sum(row["n"] for row in tables["decisions"]) == tables["rows"]
    assert tables["woe"]["iv"] and tables["woe"]["bins"]
    features = {row["feature"] for row in tables["importance"]}
    assert features and features == {row["feature"] for row in tables["psi"]}

    text = page.read_text(encoding="utf-8")
    for anchor, english, chinese in SECTIONS:
        assert f'id="{anchor}"' in text and english in text and chinese in text
    links = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert all(link.startswith(("#", "data:image/png;base64,")) for link in links)
    assert "http://" not in text and "https://" not in text
    assert f"{tables['ks']:.3f}" in text and tables["importance"][0]["feature"] in text

    # The same page is in the MLflow run's artifacts.
    logged = list(
        (journey_world.root / "mlruns").rglob(f"{summary['run_id']}/artifacts/report/model_report.html")
    )
    assert logged, "the model report is not among the MLflow run's artifacts"


def test_models_list_points_to_each_version_report(journey_world: JourneyWorld) -> None:
    summary = journey_world.retrain_summary
    _, listed = journey_world.cli.json("models", "list")
    [version] = [v for v in listed["versions"] if v["version"] == summary["version"]]
    assert version["report"]["path"] == summary["report"]["path"]
    assert version["report"]["mlflow_artifact"] == summary["report"]["mlflow_artifact"]
    shown = journey_world.cli.run("models", "list")
    assert (
        shown.returncode == 0 and f"model report: {summary['report']['path']}" in shown.stdout + shown.stderr
    )


def test_a_credit_committee_sees_approval_at_target_with_its_interval_for_every_contender(
    journey_world: JourneyWorld,
) -> None:
    """Issue 15: the retrain table and the model report carry each contender's approval rate at the
    target bad rate with a 95% interval, so the trade-off between them is visible."""
    summary = journey_world.retrain_summary
    rows = {row["contender"]: row for row in summary["comparison"]}
    # --truth: the oracle and the feature ceiling stand beside the model and the baselines.
    assert {"model", "scorecard", "feature_ceiling", "oracle"} <= set(rows)
    for name, row in rows.items():
        low, high = row["approval_rate_95"]
        assert low <= row["approval_rate"] <= high, (name, row)
        auc_low, auc_high = row["auc_95"]
        assert auc_low <= row["auc"] <= auc_high, (name, row)
    assert summary["metrics"]["target_bad_rate"] == 0.05
    assert rows["oracle"]["approval_rate"] >= rows.get("bureau", rows["oracle"])["approval_rate"]

    tables = summary["report"]["tables"]
    assert tables["target_bad_rate"] == 0.05
    assert [row["contender"] for row in tables["contenders"]] == list(rows)
    text = Path(summary["report"]["path"]).read_text(encoding="utf-8")
    section = text[text.index('id="contenders"') : text.index('id="deciles"')]
    for row in tables["contenders"]:
        low, high = row["approval_rate_95"]
        shown = f"{row['approval_rate']:.1%} [{low:.1%}, {high:.1%}]"
        assert row["label"] in section and shown in section, (row["label"], shown)
    assert "approval at 5% bad [95%]" in section and "可批准比例" in section
