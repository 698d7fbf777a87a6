"""Gates and audits of models trained on a lender's table: real models fitted on generated tables.

The scorecard gate fails a model significantly worse than the WOE scorecard (one fitted on noise
columns with a faint signal) and passes a tie; the fairness gate takes a table model's groups from its stored
protected columns (no member profiles) and says "skipped" when there are none; `audit fairness
--data oot` reads the model's own stored split; `train` on data already trained registers nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from coopscore.settings import Settings
from models.registry import UnknownModelError, check_model_name, load_model
from monitoring.audit_inputs import AuditInputError
from simulator.lender_table import lender_table
from training.audit_oot import oot_inputs
from training.config import TrainingConfig
from training.datasets import TableSource, table_training_set
from training.fairness_gates import FairnessGate
from training.gates import GateContext, ScorecardGate, paired_bootstrap_auc_difference
from training.job import ExitCode, train
from training.pipeline import (
    OOT_ID,
    OOT_LABEL,
    OOT_SCORECARD_PD,
    TrainingResult,
    stored_segments,
    train_and_evaluate,
)

# MLflow 3.17 on SQLAlchemy 2 warns about its own loader options; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

ROWS = 5000
REAL = ["age", "monthly_income", "land_mu", "late_payments", "loan_amount", "crop"]
NOISE = ["noise_a", "noise_b", "noise_c"]
LABEL = {"label": "outcome", "bad_value": "default", "good_values": ("repaid",)}
TIME = {"time": "applied_on", "time_format": "%d/%m/%Y"}


@dataclass(frozen=True)
class Tables:
    """One generated table (real and noise columns), and the models trained on each half."""

    path: Path
    real: TrainingResult  # trained on the real columns, gender protected
    noise: TrainingResult  # trained on the (nearly) noise columns only, gender protected
    unprotected: TrainingResult  # real columns, no --protected (gender left out entirely)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    root = tmp_path_factory.mktemp("table-gates")
    table = lender_table(ROWS, seed=21)
    rng = np.random.default_rng(4)
    for name in NOISE:
        table[name] = rng.normal(size=len(table))
    # A faint signal, so the weak model still ranks risk the right way (a model of pure noise is
    # refused at calibration), yet far below what the real columns give the scorecard.
    table["noise_a"] += 0.4 * (table["outcome"] == "default")
    path = root / "loans.csv"
    table.to_csv(path, index=False)
    config = TrainingConfig()  # the short test config stops a faint-signal model too early to rank
    drop_leak = ("collections_stage",)

    def fit(drop: tuple[str, ...], protected: tuple[str, ...]) -> TrainingResult:
        training_set = table_training_set(
            path, **LABEL, **TIME, protected=protected, drop=(*drop, *drop_leak)
        )
        return train_and_evaluate(training_set, config)

    return Tables(
        path,
        real=fit(tuple(NOISE), ("gender",)),
        noise=fit(tuple(REAL), ("gender",)),
        unprotected=fit((*NOISE, "gender"), ()),
    )


def test_the_stored_oot_rows_carry_the_scorecard_pds_and_the_protected_segments(tables: Tables) -> None:
    frame = tables.real.oot_frame
    np.testing.assert_allclose(frame[OOT_SCORECARD_PD].to_numpy(), tables.real.oot_pds["scorecard"])
    segments = stored_segments(frame)
    assert list(segments.columns) == ["gender"] and set(segments["gender"]) == {"female", "male"}
    assert stored_segments(tables.unprotected.oot_frame).columns.empty


def test_paired_bootstrap_matches_sklearn_on_the_same_resample() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.2).astype(np.int64)
    first = np.round(rng.random(400) + 0.3 * y, 2)  # rounded: ties count one half
    second = rng.random(400)
    differences, dropped = paired_bootstrap_auc_difference(y, first, second, replicates=3, seed=9)
    assert dropped == 0 and len(differences) == 3
    idx = np.random.default_rng(9).integers(0, 400, 400)  # the first replicate's rows
    expected = roc_auc_score(y[idx], first[idx]) - roc_auc_score(y[idx], second[idx])
    assert differences[0] == pytest.approx(expected, abs=1e-12)


def test_scorecard_gate_fails_a_model_clearly_worse_than_the_scorecard(tables: Tables) -> None:
    noise, real = tables.noise.oot_frame, tables.real.oot_frame
    assert noise[OOT_ID].tolist() == real[OOT_ID].tolist()  # same rows, same split
    # The noise model against the scorecard of the real columns, on the same OOT rows.
    oot = noise.assign(**{OOT_SCORECARD_PD: real[OOT_SCORECARD_PD].to_numpy()})
    result = ScorecardGate(replicates=500)(GateContext(challenger=tables.noise.model, oot=oot))
    details = result.details
    assert not result.passed and not result.skipped, result.reason
    assert details["scorecard_auc"] > 0.65 and details["model_auc"] < 0.6
    assert details["ci_high"] < 0 and details["ci_low"] < details["difference"] < details["ci_high"]
    assert "significantly worse" in result.reason and "95% CI" in result.reason
    # A generous margin lets even this model through: the tolerance is in the verdict.
    lenient = ScorecardGate(replicates=500, margin=0.5)(GateContext(challenger=tables.noise.model, oot=oot))
    assert lenient.passed


def test_scorecard_gate_passes_a_tie_and_a_comparable_model(tables: Tables) -> None:
    model = tables.real.model
    oot = tables.real.oot_frame
    tie = oot.assign(**{OOT_SCORECARD_PD: model.predict_pd(oot)})
    result = ScorecardGate(replicates=200)(GateContext(challenger=model, oot=tie))
    assert result.passed and result.details["ci_low"] == result.details["ci_high"] == 0.0
    real = ScorecardGate(replicates=500)(GateContext(challenger=model, oot=oot))
    assert real.passed, real.reason
    assert real.details["model_auc"] == pytest.approx(
        roc_auc_score(oot[OOT_LABEL], model.predict_pd(oot)), abs=1e-9
    )


def test_scorecard_gate_skips_a_version_stored_without_scorecard_pds(tables: Tables) -> None:
    old = tables.real.oot_frame.drop(columns=[OOT_SCORECARD_PD])
    result = ScorecardGate()(GateContext(challenger=tables.real.model, oot=old))
    assert result.skipped and result.passed and OOT_SCORECARD_PD in result.reason


def test_fairness_gate_judges_a_table_model_by_its_protected_columns(tables: Tables) -> None:
    gate = FairnessGate(None, min_group_size=50)  # no member-profile table at all
    result = gate(GateContext(challenger=tables.real.model, oot=tables.real.oot_frame))
    assert not result.skipped and result.details["attributes"] == ["gender"]
    assert result.details["coverage"] == 1.0
    judged = {g.group for g in gate.audits[""].audit.attributes["gender"].groups if g.judged}
    assert judged == {"female", "male"}


def test_fairness_gate_says_skipped_without_protected_columns(tables: Tables) -> None:
    context = GateContext(challenger=tables.unprotected.model, oot=tables.unprotected.oot_frame)
    result = FairnessGate(None)(context)
    assert result.skipped and result.passed and result.reason.startswith("no protected columns")
    assert "without --protected" in result.reason
    # Profile groups that cover none of the table's applications do not count as protected columns.
    profiles = pd.DataFrame({"application_id": ["X1", "X2"], "gender": ["female", "male"]})
    assert FairnessGate(profiles)(context).skipped


def test_audit_oot_reads_the_stored_split_and_train_again_is_no_new_data(
    tables: Tables, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    source = TableSource(tables.path, **LABEL, **TIME, protected=("gender",))
    options = {"config": TrainingConfig(), "tracking_uri": uri, "artifact_root": tmp_path / "artifacts"}
    first, _ = train(source, model_name="own-table", skip_if_trained=True, **options)
    assert first.exit_code == ExitCode.OK and first.version == "1"

    settings = Settings(data_dir=tmp_path / "data", tracking_uri=uri, model_name="other")
    model = load_model("challenger", uri, model_name="own-table")
    inputs = oot_inputs(model, settings, [])
    assert inputs.source.startswith(f"oot: stored split of own-table v1, {first.metrics['oot_rows']:,} ")
    assert len(inputs.frame) == first.metrics["oot_rows"] and list(inputs.groups.columns) == ["gender"]
    assert inputs.frame["defaulted"].sum() == first.metrics["oot_defaults"]
    with pytest.raises(AuditInputError, match=r"--protected \['age'\] not among"):
        oot_inputs(model, settings, ["age"])

    again, _ = train(source, model_name="own-table", skip_if_trained=True, **options)
    assert again.exit_code == ExitCode.NO_NEW_DATA and again.status == "no_new_data"
    assert again.version == "1" and "version 1 was trained" in again.message
    with pytest.raises(UnknownModelError, match=r"no registered model named 'own-tabel'.*'own-table'"):
        check_model_name(uri, "own-tabel")
