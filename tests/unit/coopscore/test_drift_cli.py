"""`coopscore monitor drift`: exit codes (0 stable, 3 drift, 2 bad input), JSON output, outputs,
MLflow logging to a temporary SQLite store, Evidently report, and `--on-drift retrain`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import coopscore.cli.monitor as cli_monitor
from coopscore.settings import get_settings
from tests.utils.drift import feature_rows


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def main() -> None:
        """coopscore (test front door)."""

    root.add_typer(cli_monitor.app, name="monitor")
    return root


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("COOPSCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COOPSCORE_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("COOPSCORE_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    reference = tmp_path / "reference.parquet"
    feature_rows(3_000, seed=1).to_parquet(reference)
    stable = tmp_path / "stable.csv"
    feature_rows(1_500, seed=2).to_csv(stable, index=False)
    shifted = feature_rows(1_500, seed=3)
    shifted["meeting_count_90d"] += 3
    drifted = tmp_path / "drifted.parquet"
    shifted.to_parquet(drifted)
    return {"reference": reference, "stable": stable, "drifted": drifted}


def invoke(app: typer.Typer, *args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["monitor", "drift", *args, "--json"])
    payload = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.exit_code, payload


def test_stable_window_exits_0(app, env, files) -> None:
    code, payload = invoke(
        app,
        "--current",
        str(files["stable"]),
        "--reference",
        str(files["reference"]),
        "--no-evidently",
        "--no-mlflow",
    )
    assert code == 0
    assert payload["status"] == "stable"
    assert Path(payload["outputs"]["report"]).is_file()
    assert payload["window"] == f"file {files['stable']}"


def test_drift_exits_3_and_on_drift_retrain_starts_the_job(app, env, files, monkeypatch) -> None:
    started: list[bool] = []

    def fake_start() -> int:
        started.append(True)
        return 4242

    monkeypatch.setattr(cli_monitor, "start_retraining", fake_start)
    code, payload = invoke(
        app,
        "--current",
        str(files["drifted"]),
        "--reference",
        str(files["reference"]),
        "--on-drift",
        "retrain",
        "--no-evidently",
        "--no-mlflow",
    )
    assert code == 3
    assert payload["status"] == "drift" and payload["retrain_pid"] == 4242
    assert started == [True]


def test_retrain_command_is_the_coopscore_module() -> None:
    assert cli_monitor.RETRAIN_COMMAND == ("-m", "coopscore", "retrain")


def test_bad_input_exits_2(app, env, files) -> None:
    code, _ = invoke(app, "--current", str(env / "nope.parquet"), "--reference", str(files["reference"]))
    assert code == 2
    code, _ = invoke(
        app, "--current", str(files["stable"]), "--last", "10", "--reference", str(files["reference"])
    )
    assert code == 2
    code, _ = invoke(app, "--window", "30d", "--reference", str(files["reference"]))  # no decision log yet
    assert code == 2
    code, _ = invoke(
        app, "--current", str(files["stable"]), "--reference", str(files["reference"]), "--segment", "village"
    )
    assert code == 2


def test_full_check_logs_to_mlflow_with_the_evidently_report(app, env, files) -> None:
    from mlflow.tracking import MlflowClient

    code, payload = invoke(app, "--current", str(files["drifted"]), "--reference", str(files["reference"]))
    assert code == 3
    report = Path(payload["outputs"]["report"]).read_text(encoding="utf-8")
    assert "coopscore drift monitoring" in report and "root_metric" in report  # ours, then Evidently
    assert Path(payload["outputs"]["evidently"]).is_file()
    assert payload["evidently"]["column_scores"]["meeting_count_90d"] > 0.25
    client = MlflowClient(tracking_uri=f"sqlite:///{env / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("coopscore-monitoring")
    assert experiment is not None
    run = client.get_run(payload["mlflow_run_id"])
    assert run.data.metrics["status_code"] == 2.0
    assert run.data.metrics["psi.meeting_count_90d"] > 0.25
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "drift")}
    assert {"drift/summary.json", "drift/report.html", "drift/top_features.png"} <= artifacts
