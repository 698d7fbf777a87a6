"""Training job set-up as library calls: config file plus split overrides, the two data sources, the
gates (the fairness gate without profile groups when there are no member profiles) and the registry
summary of a version."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from coopscore.settings import Settings
from models.mlflow_io import VersionRecord
from training.config import TrainingConfig
from training.fairness_gates import FairnessGate
from training.job import EventLogSource, TableSource
from training.job_setup import (
    event_log_source,
    fairness_gates,
    table_source,
    tag_float,
    training_config,
    version_summary,
)


def test_config_defaults_file_and_overrides(tmp_path: Path) -> None:
    assert training_config(None) == TrainingConfig()
    path = tmp_path / "config.json"
    base = TrainingConfig()
    splits = base.splits.model_copy(update={"oot_months": 4, "label_window_days": 180})
    path.write_text(base.model_copy(update={"splits": splits}).model_dump_json())
    config = training_config(path, calibration_months=3, train_months=12)
    assert config.splits.oot_months == 4 and config.splits.label_window_days == 180  # from the file
    assert config.splits.calibration_months == 3 and config.splits.train_months == 12  # overrides
    assert config.splits.validation_months == base.splits.validation_months


def test_sources(tmp_path: Path) -> None:
    table = table_source(
        tmp_path / "loans.csv", label="bad", time_column="t", protected=("gender",), monotone={"dpd": 1}
    )
    assert isinstance(table, TableSource)
    assert (table.label, table.time, table.protected, table.monotone) == ("bad", "t", ("gender",), {"dpd": 1})
    settings = Settings(data_dir=tmp_path / "data")
    config = training_config(None)
    as_of = pd.Timestamp("2026-01-01", tz="UTC")
    source = event_log_source(settings, config, as_of=as_of, truth=tmp_path / "world")
    assert isinstance(source, EventLogSource)
    assert source.events_dir == settings.events_dir and source.ledger_path == settings.ledger_path
    assert source.as_of == as_of and source.truth_dir == tmp_path / "world"
    assert source.window_days == config.splits.label_window_days


def test_fairness_gate_without_member_profiles_has_no_profile_groups(tmp_path: Path) -> None:
    gates = fairness_gates(Settings(data_dir=tmp_path / "data"), TrainingConfig())
    names = [g.name for g in gates]
    assert names == ["oot_auc", "calibration", "directions", "scorecard", "fairness"]
    fairness = gates[-1]
    assert isinstance(fairness, FairnessGate) and fairness.groups is None  # judges table groups only


def test_version_summary_reads_numeric_tags(tmp_path: Path) -> None:
    version = VersionRecord(
        name="coopscore-pd",
        version="3",
        run_id="r",
        source="s",
        aliases=("champion",),
        tags={"metric.oot_auc": "0.71", "metric.oot_ece": "n/a", "promotion.status": "promoted"},
        created_ms=5,
    )
    assert version_summary(version) == {
        "version": "3",
        "aliases": ["champion"],
        "run_id": "r",
        "created_ms": 5,
        "as_of": None,
        "oot_auc": 0.71,
        "oot_ece": None,
        "oot_thin_auc": None,
        "promotion": "promoted",
        "report": {"path": None, "mlflow_artifact": "runs:/r/report/model_report.html"},
    }
    page = tmp_path / "reports" / "coopscore-pd" / "v3" / "model_report.html"
    page.parent.mkdir(parents=True)
    page.write_text("<html></html>", encoding="utf-8")
    assert version_summary(version, tmp_path)["report"]["path"] == str(page.resolve())
    assert tag_float(None) is None and tag_float("1e-3") == 0.001
