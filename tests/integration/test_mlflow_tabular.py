"""`coopscore train --table`: a lender's own CSV, trained, evaluated, registered; protected columns
excluded from the model and kept for audits; then `promote` and `models list` through the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from coopscore.cli import app as coopscore_app
from coopscore.settings import get_settings
from models import mlflow_io
from models.registry import CHALLENGER, load_model
from tests.utils.model_fixtures import write_lender_table
from training.datasets import table_training_set

# MLflow 3.17 on SQLAlchemy 2 warns about its own loader options; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

MODEL = "lender-pd"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[typer.Typer, str]]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("COOPSCORE_TRACKING_URI", uri)
    monkeypatch.setenv("COOPSCORE_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("COOPSCORE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield coopscore_app, uri
    get_settings.cache_clear()


def test_table_training_set_reads_categoricals_and_keeps_protected_out(tmp_path: Path) -> None:
    table = write_lender_table(tmp_path / "loans.csv", n=600)
    training_set = table_training_set(
        table, label="bad", time="applied_on", id_column="loan_ref", protected=["gender"]
    )
    names = training_set.spec.names
    assert (
        "gender" not in names and "bad" not in names and "applied_on" not in names and "loan_ref" not in names
    )
    assert training_set.spec.by_name["crop"].kind == "categorical"
    assert training_set.spec.by_name["crop"].categories == ("hogs", "maize", "rice", "tea")
    assert list(training_set.segments.columns) == ["gender"]
    assert not any(f.direction for f in training_set.spec.features)  # no declared directions
    assert training_set.applied_at.is_monotonic_increasing


def test_train_on_a_lenders_table_then_promote(cli, tmp_path: Path) -> None:
    app, uri = cli
    table = write_lender_table(tmp_path / "loans.csv")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "train",
            "--table", str(table),
            "--label", "bad",
            "--time", "applied_on",
            "--id", "loan_ref",
            "--protected", "gender",
            "--monotone", "late_payments=+1",
            "--oot-months", "4",
            "--calibration-months", "3",
            "--validation-months", "3",
            "--model-name", MODEL,
            "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "registered" and summary["version"] == "1"
    assert summary["data"]["source"] == "table"
    contenders = {row["contender"] for row in summary["comparison"]}
    # No bureau view, no oracle for a lender's table; the family not chosen stands beside the model.
    other = {"booster": "scorecard_family", "scorecard": "booster_family"}
    assert contenders == {"model", "scorecard", other[summary["metrics"]["model_family"]["chosen"]]}
    # The analyst report of a table model: beside the data, with the categorical input's WOE bins.
    page = Path(summary["report"]["path"])
    assert page.is_file() and page.is_relative_to((tmp_path / "data").resolve())
    assert "crop" in {b["feature"] for b in summary["report"]["tables"]["woe"]["bins"]}
    model = load_model(CHALLENGER, uri, model_name=MODEL)
    assert "gender" not in model.feature_names
    assert model.spec.by_name["crop"].kind == "categorical"
    assert model.spec.by_name["late_payments"].direction == 1
    # a text category and a missing income score fine, one applicant at a time
    applicant = {
        "monthly_income": None,
        "years_farming": 12,
        "late_payments": 0,
        "loan_amount": 8000,
        "crop": "tea",
    }
    assessment = model.assess(applicant)
    assert assessment.grade in {"A", "B", "C", "D", "E"}
    assert assessment.explanation.group_points.keys() == set(model.feature_names)
    metrics = mlflow_io.run_metrics(uri, summary["run_id"])
    assert {"segment.gender.female.model.auc", "segment.gender.male.model.auc"} <= set(metrics)

    promoted = runner.invoke(app, ["promote", "--model-name", MODEL, "--json"])
    payload = json.loads(promoted.stdout)
    assert promoted.exit_code in (0, 10), promoted.output
    assert payload["exit_code"] == promoted.exit_code
    gates = {g["gate"]: g for g in payload["gates"]}
    assert gates.keys() == {"oot_auc", "calibration", "directions", "scorecard", "fairness"}
    # The fairness gate judges the table's own protected column; no member-profile table needed.
    assert not gates["fairness"]["skipped"] and gates["fairness"]["details"]["attributes"] == ["gender"]
    scorecard = gates["scorecard"]["details"]
    assert scorecard["ci_low"] <= scorecard["difference"] <= scorecard["ci_high"]

    listed = runner.invoke(app, ["models", "list", "--model-name", MODEL, "--json"])
    assert listed.exit_code == 0
    versions = json.loads(listed.stdout)["versions"]
    assert [v["version"] for v in versions] == ["1"]


def test_usage_errors(cli, tmp_path: Path) -> None:
    app, _ = cli
    runner = CliRunner()
    table = write_lender_table(tmp_path / "loans.csv", n=300)
    missing = runner.invoke(app, ["train", "--table", str(table), "--json"])
    assert missing.exit_code == 2
    forced = runner.invoke(app, ["promote", "--force", "--json"])
    assert forced.exit_code == 2
    nothing = runner.invoke(app, ["promote", "--model-name", "nothing-here", "--json"])
    assert nothing.exit_code == 2  # a name nobody registered: a typo, not "nothing to promote"
    refused = json.loads(nothing.stdout)
    assert refused["status"] == "bad_input"
    assert "no registered model named 'nothing-here'" in refused["message"]
    too_small = runner.invoke(
        app, ["train", "--table", str(table), "--label", "bad", "--time", "applied_on", "--json"]
    )
    assert too_small.exit_code == 12, too_small.output
    assert json.loads(too_small.stdout)["status"] == "insufficient_data"
