"""`train` / `retrain` end their human-readable output with the model report's location."""

from __future__ import annotations

import pytest

from coopscore.cli.train import _print_summary
from training.job import JobSummary


def test_the_summary_ends_with_the_report_path(capsys: pytest.CaptureFixture[str]) -> None:
    report = {
        "path": "/data/reports/coopscore/v3/model_report.html",
        "mlflow_artifact": "runs:/r/x",
        "tables": {},
    }
    _print_summary(
        JobSummary("registered", 0, "coopscore", "version 3 registered", version="3", report=report)
    )
    assert "model report: /data/reports/coopscore/v3/model_report.html" in capsys.readouterr().err.replace(
        "\n", ""
    )


def test_without_a_local_copy_the_mlflow_artifact_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    report = {"path": None, "mlflow_artifact": "runs:/abc/report/model_report.html", "tables": {}}
    _print_summary(
        JobSummary("registered", 0, "coopscore", "version 3 registered", version="3", report=report)
    )
    assert "runs:/abc/report/model_report.html" in capsys.readouterr().err.replace("\n", "")


def test_no_report_no_line(capsys: pytest.CaptureFixture[str]) -> None:
    _print_summary(JobSummary("no_new_data", 11, "coopscore", "version 3 was trained"))
    assert "model report" not in capsys.readouterr().err
