"""`coopscore retrain` end to end on a small simulated world (real simulator, ingestion, feature builder,
temporary MLflow store): the first run registers and judges a model, the second finds no new data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from coopscore.cli_train import register
from coopscore.settings import get_settings
from models import mlflow_io
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
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    try:
        first = runner.invoke(app, ["retrain", "--truth", str(world.world_dir), "--json"])
        assert first.exit_code in (0, 10), first.output
        summary = json.loads(first.stdout)
        assert summary["exit_code"] == first.exit_code
        assert summary["data"]["source"] == "event_log"
        assert summary["data"]["labels"]["labelled"] > 0
        contenders = {row["contender"] for row in summary["comparison"]}
        assert contenders == {"model", "oracle", "feature_ceiling", "scorecard", "bureau"}
        oracle = next(r for r in summary["comparison"] if r["contender"] == "oracle")
        assert 0.6 < oracle["auc"] < 1.0
        # The world has a member-profile table, so the fairness gate judges the decisions too.
        gates = {g["gate"] for g in summary["promotion"]["gates"]}
        assert gates == {"oot_auc", "calibration", "directions", "fairness"}
        directions = next(g for g in summary["promotion"]["gates"] if g["gate"] == "directions")
        assert directions["passed"], directions

        second = runner.invoke(app, ["retrain", "--truth", str(world.world_dir), "--json"])
        assert second.exit_code == 11, second.output
        assert json.loads(second.stdout)["status"] == "no_new_data"
        assert len(mlflow_io.list_versions(uri, "coopscore-pd")) == 1
    finally:
        get_settings.cache_clear()
