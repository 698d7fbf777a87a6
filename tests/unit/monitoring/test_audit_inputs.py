"""Audit inputs as library calls: tables read by suffix, group columns from the table or from member
profiles, decision tables vs feature rows scored by a model, and errors that name what to change."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from coopscore.settings import Settings
from monitoring.audit_inputs import (
    AuditInputError,
    DecisionColumns,
    audit_inputs,
    file_inputs,
    profile_groups,
    read_table,
    table_groups,
)
from monitoring.audit_job import run_fairness_audit
from monitoring.fairness import FairnessThresholds


class _Decision:
    def __init__(self, outcome: str) -> None:
        self.outcome = outcome


class _Scale:
    def score_from_pd(self, pds: np.ndarray) -> np.ndarray:
        return 600 - 500 * pds


class _Model:
    """The slice of CreditModel the audit inputs use: PD = 1% per unit of `x`."""

    feature_names: ClassVar[list[str]] = ["x"]
    scale = _Scale()

    def predict_pd(self, features: pd.DataFrame) -> np.ndarray:
        return features["x"].to_numpy(dtype=float) / 100

    def decisions(self, features: pd.DataFrame, *, pds: np.ndarray) -> list[_Decision]:
        return [_Decision("approve" if p < 0.1 else "decline") for p in pds]


def _decision_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "member_id": ["m1", "m2", "m3", "m4"],
            "applied_at": pd.to_datetime(["2025-03-01"] * 4, utc=True),
            "pd": [0.05, 0.2, 0.07, 0.3],
            "decision": ["approve", "decline", "approve", "decline"],
            "defaulted": [0.0, 1.0, None, 0.0],
            "gender": ["female", "male", "female", "male"],
            "birth_year": [2001, 1990, 1964, 1950],
            "village": ["v1", "v2", "v1", "v2"],
        }
    )


def test_read_table_by_suffix(tmp_path: Path) -> None:
    frame = _decision_table()[["pd", "decision"]]
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    for name in ("t.csv", "t.parquet", "t.jsonl"):
        assert read_table(tmp_path / name)["decision"].tolist() == frame["decision"].tolist()
    with pytest.raises(AuditInputError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    (tmp_path / "t.xml").write_text("<x/>")
    with pytest.raises(AuditInputError, match=r"expected \.parquet, \.csv or \.json\(l\)"):
        read_table(tmp_path / "t.xml")


def test_table_groups_from_columns_with_age_bands() -> None:
    data = _decision_table()
    groups = table_groups(data, ["gender", "birth_year"], None)
    assert list(groups.columns) == ["gender", "age_band"]
    assert groups["age_band"].tolist() == ["<25", "25-40", "60+", "60+"]
    with pytest.raises(AuditInputError, match="give --protected COL"):
        table_groups(data, [], None)
    with pytest.raises(AuditInputError, match="--protected column 'county' is not in the data"):
        table_groups(data, ["county"], None)


def test_profile_groups_need_member_and_time() -> None:
    profiles = pd.DataFrame(
        {
            "member_id": ["m1", "m2"],
            "gender": ["female", "male"],
            "birth_year": [2001, 1990],
            "returning_youth": [True, False],
            "left_behind_woman": [False, False],
            "county_id": ["c1", "c1"],
        }
    )
    data = _decision_table()
    groups = profile_groups(data, profiles, ["gender"])
    assert groups["gender"].tolist() == ["female", "male", "unknown", "unknown"]
    with pytest.raises(AuditInputError, match=r"need \['applied_at'\]"):
        profile_groups(data.drop(columns="applied_at"), profiles, [])
    with pytest.raises(AuditInputError, match="unknown group columns"):
        profile_groups(data, profiles, ["caste"])


def test_decision_table_keeps_its_columns_and_scans_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    _decision_table().to_csv(path, index=False)
    inputs = file_inputs(path, None, ["gender"], None, DecisionColumns())
    assert inputs.source == f"file {path}" and inputs.score_col is None
    assert inputs.features is not None
    # Not the decision columns, not the groups, not the ids: what is left may be a proxy.
    assert list(inputs.features.columns) == ["birth_year", "village"]
    with pytest.raises(AuditInputError, match="columns missing from"):
        file_inputs(path, None, ["gender"], None, DecisionColumns(approved_col="approved"))


def test_feature_rows_are_scored_by_the_model(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"x": [5.0, 20.0], "defaulted": [0, 1], "gender": ["f", "m"]}).to_parquet(path)
    inputs = file_inputs(path, _Model(), ["gender"], None, DecisionColumns())  # type: ignore[arg-type]
    assert inputs.frame["pd"].tolist() == [0.05, 0.2]
    assert inputs.frame["decision"].tolist() == ["approve", "decline"]
    assert inputs.frame["defaulted"].tolist() == [0, 1]
    assert inputs.features is not None and list(inputs.features.columns) == ["x"]
    with pytest.raises(AuditInputError, match=r"columns missing from .*\['y'\]"):
        file_inputs(path, _Model(), ["gender"], None, DecisionColumns(label_col="y"))  # type: ignore[arg-type]


def test_sources_that_need_a_model_or_a_log(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with pytest.raises(AuditInputError, match="--data oot needs --model"):
        audit_inputs("oot", model_ref=None, model=None, settings=settings, protected=[])
    with pytest.raises(AuditInputError, match="no decision log at"):
        audit_inputs("decision-log", model_ref=None, model=None, settings=settings, protected=[])


def test_run_fairness_audit_stores_the_audit(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 600
    frame = pd.DataFrame(
        {
            "pd": rng.beta(2, 18, n),
            "group": rng.choice(["a", "b"], n),
        }
    )
    frame["defaulted"] = (rng.random(n) < frame["pd"]).astype(float)
    frame["decision"] = np.where(frame["pd"] <= 0.1, "approve", "decline")
    path = tmp_path / "d.parquet"
    frame.to_parquet(path)
    run = run_fairness_audit(
        Settings(data_dir=tmp_path / "data"),
        data=str(path),
        model_ref=None,
        protected=["group"],
        profiles=None,
        columns=DecisionColumns(),
        thresholds=FairnessThresholds(0.8, 0.5, 0.5),
        min_group_size=50,
        n_boot=0,
        seed=0,
    )
    assert run.passed is run.stored.payload["passed"]
    assert run.stored.payload["source"] == f"file {path}"
    assert run.stored.json_path.is_file() and run.stored.directory.parent == tmp_path / "data" / "audits"


def test_a_numeric_age_column_is_banded_and_other_measurements_refused() -> None:
    rng = np.random.default_rng(3)
    data = pd.DataFrame({"age": rng.integers(18, 80, 400), "income": rng.normal(2000, 400, 400)})
    groups = table_groups(data, ["age"], None)
    assert set(groups["age"]) <= {"<25", "25-39", "40-59", "60+"} and groups["age"].nunique() == 4
    assert (groups["age"] == "<25").sum() == (data["age"] < 25).sum()
    with pytest.raises(AuditInputError, match="'income' is numeric with 400 distinct values"):
        table_groups(data, ["income"], None)
    small = pd.DataFrame({"household_size": rng.integers(1, 6, 50)})
    assert table_groups(small, ["household_size"], None)["household_size"].nunique() <= 5  # kept as is
