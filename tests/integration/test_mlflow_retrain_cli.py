"""`coopscore retrain` end to end on a small simulated world (real simulator, ingestion, feature builder,
temporary MLflow store): the first run registers and judges a model, the second finds no new data;
`coopscore audit fairness` then audits the registered model on the OOT slice and on a decision log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coopscore.cli import app
from coopscore.settings import get_settings
from models import mlflow_io
from models.registry import MODEL_NAME
from tests.utils.model_fixtures import small_world

# MLflow 3.17 on SQLAlchemy 2 warns about its own loader options; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


@pytest.mark.slow
def test_retrain_then_no_new_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = small_world(tmp_path, members=5000, months=26, seed=9)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("COOPSCORE_DATA_DIR", str(world.data_dir))
    monkeypatch.setenv("COOPSCORE_TRACKING_URI", uri)
    monkeypatch.setenv("COOPSCORE_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        first = runner.invoke(app, ["retrain", "--truth", str(world.world_dir), "--json"])
        assert first.exit_code in (0, 10), first.output
        summary = json.loads(first.stdout)
        assert summary["exit_code"] == first.exit_code
        assert summary["data"]["source"] == "event_log"
        assert summary["data"]["labels"]["labelled"] > 0
        contenders = {row["contender"] for row in summary["comparison"]}
        # The model's family (auto) stands beside the other family, not chosen.
        other = {"booster": "scorecard_family", "scorecard": "booster_family"}
        chosen = summary["metrics"]["model_family"]["chosen"]
        expected = {"model", "oracle", "feature_ceiling", "scorecard", "bureau", other[chosen]}
        assert contenders == expected
        oracle = next(r for r in summary["comparison"] if r["contender"] == "oracle")
        assert 0.6 < oracle["auc"] < 1.0
        # The world has a member-profile table, so the fairness gate judges the decisions too.
        gates = {g["gate"] for g in summary["promotion"]["gates"]}
        assert gates == {"oot_auc", "calibration", "directions", "scorecard", "fairness"}
        directions = next(g for g in summary["promotion"]["gates"] if g["gate"] == "directions")
        assert directions["passed"], directions

        second = runner.invoke(app, ["retrain", "--truth", str(world.world_dir), "--json"])
        assert second.exit_code == 11, second.output
        assert json.loads(second.stdout)["status"] == "no_new_data"
        assert len(mlflow_io.list_versions(uri, MODEL_NAME)) == 1

        # The gate's audit was stored for the API and logged beside version 1.
        from monitoring.fairness_report import latest_fairness_audit

        stored = latest_fairness_audit(world.data_dir)
        assert stored is not None and stored["model_version"] == "1"
        assert stored["source"] == "promotion gate (OOT)"

        audit_args = ["audit", "fairness", "--model", "1", "--min-group-size", "20", "--n-boot", "0"]
        oot = runner.invoke(app, [*audit_args, "--data", "oot", "--json"])
        assert oot.exit_code in (0, 3), oot.output
        payload = json.loads(oot.stdout)
        assert payload["source"].startswith("oot: ") and payload["model_version"] == "1"
        assert payload["n"] == payload["n_labelled"] == summary["metrics"]["oot_rows"]
        assert {"gender", "left_behind_woman", "age_band", "county", "file"} <= set(payload["attributes"])

        _log_decisions(world, uri, rows=150)
        logged = runner.invoke(app, [*audit_args, "--data", "decision-log", "--json"])
        assert logged.exit_code in (0, 3), logged.output
        payload = json.loads(logged.stdout)
        assert payload["source"] == "decision log: 150 decisions, 100 with outcomes"
        assert payload["n"] == 150 and payload["n_labelled"] == 100
        other = runner.invoke(app, ["audit", "fairness", "--model", "7", "--data", "decision-log"])
        assert other.exit_code == 2 and "cannot load model" in other.output
    finally:
        get_settings.cache_clear()


def _log_decisions(world, uri: str, *, rows: int) -> None:
    """Score `rows` recent applications with version 1 into the decision log, as the API does, and
    post outcomes for the first two thirds."""
    from datetime import UTC, datetime

    from decisions.base import DecisionRecord
    from decisions.factory import decision_log_writer
    from models.registry import load_model
    from training.job import EventLogSource

    model = load_model("1", uri)
    training_set = EventLogSource(world.events_dir, world.tables_dir, world.ledger_path).load()
    log = decision_log_writer(get_settings())
    try:
        outcomes = []
        for i in range(len(training_set) - rows, len(training_set)):
            features = {k: float(v) for k, v in training_set.features.iloc[i].items()}
            assessed = model.assess(features)
            application_id = str(training_set.ids[i])
            record = DecisionRecord(
                request_id=f"req-{i}",
                application_id=application_id,
                member_id=_member(world, application_id),
                created_at=training_set.applied_at.iloc[i].to_pydatetime(),
                model_name=MODEL_NAME,
                model_version="1",
                pd=assessed.pd,
                score=assessed.score,
                grade=assessed.grade,
                decision=assessed.decision.outcome,
                application={},
                features=features,
                reasons=[],
                response={},
                latency_ms=1.0,
            )
            log.submit(record).result(timeout=30)
            if len(outcomes) < rows * 2 // 3:
                outcomes.append((application_id, bool(training_set.label[i]), datetime.now(UTC)))
        log.add_outcomes(outcomes)
    finally:
        log.close()


_MEMBERS: dict[str, str] = {}


def _member(world, application_id: str) -> str:
    if not _MEMBERS:
        from features.offline import read_applications

        apps = read_applications(world.tables_dir)
        _MEMBERS.update(zip(apps["application_id"].astype(str), apps["member_id"].astype(str), strict=True))
    return _MEMBERS[application_id]
