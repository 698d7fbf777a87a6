"""The run record of a table training keeps what the table lost: `data/inputs.json` and the model
card's exclusion lines in MLflow, and the run's parameters count the excluded rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models import mlflow_io
from simulator.lender_table import write_lender_table
from training.config import SplitConfig, TrainingConfig
from training.job import train
from training.job_setup import table_source

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


def test_the_run_records_every_exclusion(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow_io.prepare_store(uri)
    source = table_source(
        write_lender_table(tmp_path / "loans.csv", 1200, seed=4),
        label="outcome",
        time_column="applied_on",
        protected=("gender",),
        time_format="%d/%m/%Y",
        bad_value="default",
        good_values=("repaid",),
        label_description="60+ days past due within 12 months",
    )
    config = TrainingConfig(splits=SplitConfig(oot_months=4))
    summary, registered = train(
        source, config=config, tracking_uri=uri, artifact_root=tmp_path / "artifacts", model_name="own"
    )
    assert registered is not None and summary.data["inputs"]["rows_used"] == summary.data["rows"]
    recorded = json.loads(
        mlflow_io.download_run_artifact(
            uri, registered.run_id, "data/inputs.json", tmp_path / "dl"
        ).read_text()
    )
    assert recorded == json.loads(json.dumps(summary.data["inputs"]))
    card = mlflow_io.download_run_artifact(
        uri, registered.run_id, "model_card.md", tmp_path / "card"
    ).read_text()
    assert "column excluded: collections_stage (leakage suspect" in card
    assert "column excluded: branch (constant" in card and "rows excluded: " in card
    assert "missing values: monthly_income" in card
    # The card is written from this run, not the demo world's boilerplate.
    assert "60+ days past due within 12 months (`outcome` = 'default' (bad) vs 'repaid' (good))" in card
    assert "lender's table `loans.csv`" in card and "rural cooperatives" not in card
    assert "monotone constraints from the feature views" not in card and "thin files go to" not in card
    assert "gender is protected and not a model input (audit groups only)" in card
    assert summary.data["inputs"]["label_description"] == "60+ days past due within 12 months"
