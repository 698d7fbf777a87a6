"""Protected columns of a lender's table: banded audit groups, protected inputs flagged, proxies
warned about at training time, and a fingerprint that follows every option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitoring.bands import apply_bands, band_labels
from monitoring.fairness import audit_fairness, model_protected_inputs
from monitoring.fairness_report import write_fairness_audit
from simulator.lender_table import lender_table, write_lender_table
from tests.utils.model_fixtures import fast_config
from training.datasets import DataFingerprint, TrainingSet, table_training_set
from training.fairness_gates import FairnessGate
from training.gates import GateContext
from training.model_card import protected_sentence, render_model_card
from training.pipeline import OOT_SEGMENT_PREFIX, TrainingResult, train_and_evaluate
from training.protected import MAX_UNBANDED_VALUES, PROXY_WARNING_STRENGTH, proxy_warnings
from training.table_inputs import TableInputError

LABEL: dict[str, Any] = {
    "label": "outcome",
    "time": "applied_on",
    "time_format": "%d/%m/%Y",
    "bad_value": "default",
    "good_values": ["repaid"],
}


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_lender_table(tmp_path_factory.mktemp("t") / "loans.csv", 1500, seed=5, gender_proxy=True)


def test_band_labels_are_left_closed_and_readable() -> None:
    assert band_labels((25, 40, 60), whole=True) == ["<25", "25-39", "40-59", "60+"]
    assert band_labels((2.5, 5), whole=False) == ["<2.5", "2.5 to <5", "5+"]
    assert band_labels((25, 40), whole=False) == ["<25", "25 to <40", "40+"]  # 39.5 is not "25-39"
    bands = apply_bands(pd.Series([24, 25, 39, 40, 59, 60, 65, None]), (25, 40, 60))
    assert bands.tolist() == ["<25", "25-39", "25-39", "40-59", "40-59", "60+", "60+", "unknown"]


def test_age_gets_default_bands_and_stays_out_of_the_model(table: Path) -> None:
    ts = table_training_set(table, protected=["gender", "age"], **LABEL)
    assert "age" not in ts.spec.names and "gender" not in ts.spec.names
    assert set(ts.segments["age"]) <= {"<25", "25-39", "40-59", "60+"}
    sizes = ts.segments["age"].value_counts()
    assert sizes.min() >= 30 and len(sizes) == 4  # not one group per age
    assert ts.inputs is not None
    band = ts.inputs.bands["age"]
    assert band.source == "default age bands" and sum(band.counts.values()) == len(ts)
    ages = table_training_set(table, protected=["gender", "age"], **LABEL)
    assert ages.segments.equals(ts.segments)
    assert ts.spec.protected_inputs == [] and ts.spec.extra["protected_audit_only"] == ["gender", "age"]
    assert ts.inputs.to_dict()["roles"]["protected (audits only)"] == ["gender", "age"]


def test_a_protected_input_feeds_the_model_by_value_and_is_recorded(table: Path) -> None:
    ts = table_training_set(table, protected=["gender"], protected_inputs=["age"], **LABEL)
    raw = lender_table(1500, seed=5, gender_proxy=True)
    assert "age" in ts.spec.names and ts.spec.by_name["age"].kind == "numeric"
    assert set(ts.features["age"].dropna()) <= set(raw["age"].astype(float))  # the value, not the band
    assert ts.spec.protected_inputs == ["age"] and ts.spec.extra["protected_audit_only"] == ["gender"]
    assert ts.spec.extra["bands"]["age"]["labels"] == ["<25", "25-39", "40-59", "60+"]
    assert set(ts.segments.columns) == {"gender", "age"}
    assert ts.inputs is not None
    data = ts.inputs.to_dict()
    assert data["protected_inputs"] == ["age"] and data["roles"]["protected (model input)"] == ["age"]
    lines = ts.inputs.protected_lines()
    assert any(line.startswith("WARNING protected AND model inputs") and "age" in line for line in lines)


def test_an_unbanded_numeric_protected_column_is_refused_with_the_option_to_use(table: Path) -> None:
    assert lender_table(1500, seed=5)["monthly_income"].nunique() > MAX_UNBANDED_VALUES
    with pytest.raises(TableInputError) as caught:
        table_training_set(table, protected=["monthly_income"], **LABEL)
    message = str(caught.value)
    assert "protected column 'monthly_income' is numeric" in message
    assert "--band monthly_income:" in message and "\n" not in message
    ts = table_training_set(
        table, protected=["monthly_income"], bands={"monthly_income": (1000, 2000)}, **LABEL
    )
    assert set(ts.segments["monthly_income"]) <= {"<1000", "1000-1999", "2000+", "unknown"}
    assert ts.inputs is not None and ts.inputs.bands["monthly_income"].source == "--band"


def test_a_few_valued_number_is_grouped_as_is(table: Path) -> None:
    ts = table_training_set(table, protected=["late_payments"], **LABEL)
    assert ts.segments["late_payments"].nunique() <= MAX_UNBANDED_VALUES
    assert "1" in set(ts.segments["late_payments"])  # whole numbers without '.0'


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"bands": {"land_mu": (5,)}}, "--band land_mu: not a protected column"),
        ({"protected": ["crop"], "bands": {"crop": (1,)}}, "--band crop: the column is not numeric"),
        ({"protected": ["age"], "protected_inputs": ["age"]}, "both --protected and --protected-input"),
        ({"protected": ["age"], "bands": {"age": (40, 25)}}, "--band age: cuts must be rising"),
        ({"protected_inputs": ["applied_on"]}, "cannot also be the --time column"),
        ({"protected_inputs": ["agee"]}, "--protected-input 'agee' (did you mean 'age'"),
    ],
)
def test_protected_options_that_cannot_work_stop_with_one_line(
    table: Path, options: dict[str, Any], expected: str
) -> None:
    with pytest.raises(TableInputError, match=expected.replace("(", r"\(").replace("+", r"\+")):
        table_training_set(table, **LABEL, **options)


def test_a_birth_year_column_is_banded_by_age_at_application(tmp_path: Path) -> None:
    raw = lender_table(600, seed=2)
    raw["birth_year"] = 2023 - raw["age"]
    path = tmp_path / "loans.csv"
    raw.drop(columns=["age"]).to_csv(path, index=False)
    ts = table_training_set(path, protected=["birth_year"], id_column="application_id", **LABEL)
    assert ts.inputs is not None and "birth year" in ts.inputs.bands["birth_year"].source
    born = raw.set_index("application_id").loc[list(ts.ids), "birth_year"].to_numpy()
    ages = ts.applied_at.dt.year.to_numpy() - born
    assert ts.segments["birth_year"].tolist() == apply_bands(pd.Series(ages), (25, 40, 60)).tolist()
    assert ts.segments["birth_year"].nunique() >= 3


def test_an_input_that_encodes_gender_is_warned_about_not_dropped(table: Path) -> None:
    ts = table_training_set(table, protected=["gender", "age"], **LABEL)
    assert ts.inputs is not None
    warnings = ts.inputs.proxy_warnings
    assert [(w.input, w.attribute) for w in warnings] == [("childcare_leave_days", "gender")]
    warning = warnings[0]
    female = warning.group == "female"
    assert warning.strength >= PROXY_WARNING_STRENGTH and warning.direction == (
        "higher" if female else "lower"
    )
    assert warning.describe == f"{warning.direction} values → gender={warning.group}"
    assert "childcare_leave_days" in ts.spec.names  # a warning, not an exclusion
    assert ts.inputs.to_dict()["proxy_warnings"][0]["input"] == "childcare_leave_days"
    assert any("WARNING proxy: childcare_leave_days" in line for line in ts.inputs.protected_lines())
    plain = table_training_set(
        write_lender_table(table.with_name("plain.csv"), 1500, seed=5), protected=["gender", "age"], **LABEL
    )
    assert plain.inputs is not None and plain.inputs.proxy_warnings == []


def test_an_inverse_proxy_is_strong_with_a_lower_direction() -> None:
    raw = lender_table(1500, seed=5, gender_proxy=True)
    frame = pd.DataFrame({"no_leave": -raw["childcare_leave_days"], "crop": raw["crop"]})
    segments = pd.DataFrame({"gender": raw["gender"].to_numpy()})
    (warning,) = proxy_warnings(frame, ["no_leave", "crop"], segments)
    assert warning.input == "no_leave" and warning.strength > 0.9
    # Women take the leave, so fewer "no_leave" points to them: an AUC under 0.5, a strong proxy.
    expected = "lower" if warning.group == "female" else "higher"
    assert warning.direction == expected and (warning.auc < 0.5) == (expected == "lower")


def test_the_fingerprint_follows_every_option(table: Path) -> None:
    base = table_training_set(table, protected=["gender"], **LABEL).fingerprint
    again = table_training_set(table, protected=["gender"], **LABEL).fingerprint
    assert base == again
    variants: list[dict[str, Any]] = [
        {"protected": ["gender", "age"]},
        {"protected": ["gender"], "protected_inputs": ["age"]},
        {"protected": ["gender", "age"], "bands": {"age": (30, 50)}},
        {"protected": ["gender"], "monotone": {"late_payments": 1}},
        {"protected": ["gender"], "keep": ["branch"]},
        {"protected": ["gender"], "id_column": "application_id"},
    ]
    prints = {base.training_key("c")}
    for options in variants:
        fingerprint = table_training_set(table, **{**LABEL, **options}).fingerprint
        assert fingerprint.checksum == base.checksum and fingerprint.options != base.options
        prints.add(fingerprint.training_key("c"))
    relabel = {**LABEL, "bad_value": "repaid", "good_values": ["default"]}
    prints.add(table_training_set(table, protected=["gender"], **relabel).fingerprint.training_key("c"))
    assert len(prints) == len(variants) + 2
    # The event log's key is what it always was (no options part).
    log = DataFingerprint("event_log", "abc", "2024-01-01", "v1")
    assert "options" not in log.to_dict() and log.training_key("c") == DataFingerprint(
        "event_log", "abc", "2024-01-01", "v1", ""
    ).training_key("c")


@pytest.fixture(scope="module")
def trained(table: Path) -> TrainingResult:
    ts: TrainingSet = table_training_set(table, protected=["gender"], protected_inputs=["age"], **LABEL)
    return train_and_evaluate(
        ts, fast_config(splits=fast_config().splits.model_copy(update={"oot_months": 4}))
    )


def test_the_model_card_says_what_this_run_did_with_protected_columns(trained: TrainingResult) -> None:
    card = render_model_card(trained, model_name="m", version="1", run_id="r")
    assert "gender, age and group membership are not inputs" not in card
    assert "age is protected and a model input (--protected-input)" in card
    assert "gender is protected and not a model input" in card
    assert "childcare_leave_days (→ gender=" in card
    assert "age banded for audits (default age bands)" in card
    assert "gender, age and group membership are not inputs" in protected_sentence(None)


def test_audits_of_a_model_with_a_protected_input_flag_it(trained: TrainingResult, tmp_path: Path) -> None:
    model, frame = trained.model, trained.oot_frame
    segments = {c[len(OOT_SEGMENT_PREFIX) :]: frame[c] for c in frame if c.startswith(OOT_SEGMENT_PREFIX)}
    assert set(segments) == {"gender", "age"}
    assert model_protected_inputs(model, list(segments)) == ["age"]
    pds = model.predict_pd(frame[model.feature_names])
    decisions = pd.DataFrame(
        {
            "pd": pds,
            "decision": np.where(pds < np.median(pds), "approve", "decline"),
            "defaulted": frame["_defaulted"],
        }
    )
    audit = audit_fairness(
        decisions,
        groups=segments,
        min_group_size=20,
        n_boot=0,
        protected_inputs=model_protected_inputs(model),
    )
    stored = write_fairness_audit(audit, tmp_path, chart=False)
    assert stored.payload["protected_inputs"] == ["age"]
    assert (
        stored.payload["warnings"]
        and "age is a protected attribute AND a model input" in stored.payload["warnings"][0]
    )
    assert "⚠ age is a protected attribute AND a model input" in stored.report_path.read_text(
        encoding="utf-8"
    )


def test_the_fairness_gate_of_a_table_model_flags_its_protected_input(trained: TrainingResult) -> None:
    gate = FairnessGate(min_group_size=20)
    result = gate(GateContext(challenger=trained.model, oot=trained.oot_frame))
    assert not result.skipped and result.details["attributes"] == ["gender", "age"]
    assert result.details["protected_inputs"] == ["age"]
    assert "WARNING age: protected AND a model input" in result.reason
