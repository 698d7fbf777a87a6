"""What a training job is set up from: its config (file plus split overrides), its data source (the
event log or a lender's table), the gates (with the fairness gate), and a readable
summary of each registered version.

The `coopscore train / retrain / promote / models list` commands call these, so the same set-up
serves any other caller (a scheduler, a notebook).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from coopscore.settings import Settings
    from features.offline_engines.base import OfflineEngine
    from models.mlflow_io import VersionRecord
    from training.config import TrainingConfig
    from training.datasets import TableSource
    from training.gates import Gate
    from training.job import TrainingSource


def training_config(
    path: Path | None,
    *,
    oot_months: int | None = None,
    calibration_months: int | None = None,
    validation_months: int | None = None,
    train_months: int | None = None,
    target_bad_rate: float | None = None,
    target_approval_rate: float | None = None,
    review_band: float | None = None,
    source: str | None = None,
) -> TrainingConfig:
    """The TrainingConfig in `path` (JSON, or YAML for .yaml/.yml; the defaults without one) with
    the given split windows and policy target.

    A target sets the policy mode (`--target-bad-rate` also sets the top-level `target_bad_rate`,
    which the OOT approval-rate metric uses too). With `source` ("event_log" or "table"), policy mode
    `auto` is made concrete, so the config printed is the one that trains.
    """
    from training.config import PolicyConfig, SplitConfig, TrainingConfig

    config = _read_config(path) if path else TrainingConfig()
    overrides = {
        k: v
        for k, v in {
            "oot_months": oot_months,
            "calibration_months": calibration_months,
            "validation_months": validation_months,
            "train_months": train_months,
        }.items()
        if v is not None
    }
    if overrides:
        splits = SplitConfig.model_validate({**config.splits.model_dump(), **overrides})
        config = config.model_copy(update={"splits": splits})
    if target_bad_rate is not None and target_approval_rate is not None:
        raise ValueError("--target-bad-rate and --target-approval-rate are mutually exclusive")
    policy: dict[str, Any] = {}
    if target_bad_rate is not None:
        policy = {"mode": "target_bad_rate", "target_approval_rate": None}
        config = TrainingConfig.model_validate({**config.model_dump(), "target_bad_rate": target_bad_rate})
    if target_approval_rate is not None:
        policy = {"mode": "target_approval_rate", "target_approval_rate": target_approval_rate}
    if review_band is not None:
        policy["review_band"] = review_band
    if policy:
        merged = PolicyConfig.model_validate({**config.policy.model_dump(), **policy})
        config = config.model_copy(update={"policy": merged})
    if source is not None:
        config = config.model_copy(update={"policy": config.policy.resolved(source)})
    return config


def _read_config(path: Path) -> TrainingConfig:
    """A TrainingConfig file: JSON, or YAML by its suffix (pyyaml is in the lock already)."""
    from training.config import TrainingConfig

    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        return TrainingConfig.model_validate(yaml.safe_load(text) or {})
    return TrainingConfig.model_validate_json(text)


def table_source(
    table: Path,
    *,
    label: str,
    time_column: str,
    id_column: str | None = None,
    protected: tuple[str, ...] = (),
    monotone: Mapping[str, int] | None = None,
    time_format: str | None = None,
    bad_value: str | None = None,
    good_values: tuple[str, ...] = (),
    keep: tuple[str, ...] = (),
    protected_inputs: tuple[str, ...] = (),
    bands: Mapping[str, tuple[float, ...]] | None = None,
    label_description: str | None = None,
) -> TableSource:
    """Training data from a lender's own table (CSV / Parquet); see `training.table_inputs` for
    what is checked and left out."""
    from training.datasets import TableSource

    return TableSource(
        table,
        label=label,
        time=time_column,
        id_column=id_column,
        protected=protected,
        monotone=dict(monotone or {}),
        time_format=time_format,
        bad_value=bad_value,
        good_values=good_values,
        keep=keep,
        protected_inputs=protected_inputs,
        bands=dict(bands or {}),
        label_description=label_description,
    )


def event_log_source(
    settings: Settings,
    config: TrainingConfig,
    *,
    as_of: pd.Timestamp | None = None,
    truth: Path | None = None,
    engine: OfflineEngine | None = None,
) -> TrainingSource:
    """Training data from the event log, labelled over the config's label window; features built by
    `engine` (default: the configured one, `COOPSCORE_OFFLINE_ENGINE`)."""
    from features.offline_engines.factory import offline_engine
    from training.job import EventLogSource

    return EventLogSource(
        events_dir=settings.events_dir,
        tables_dir=settings.tables_dir,
        ledger_path=settings.ledger_path,
        as_of=as_of,
        window_days=config.splits.label_window_days,
        truth_dir=truth,  # a world folder or its truth folder (training reads it, for the oracle only)
        engine=engine or offline_engine(settings),
    )


def fairness_gates(settings: Settings, config: TrainingConfig) -> list[Gate]:
    """The default gates plus the fairness gate. Its groups: a table-trained model's own protected
    (`_segment_*`) columns, else the restricted member-profile table; with neither, the gate reports
    itself skipped ("no protected columns"). Protected attributes never enter training."""
    from features.event_log import EventLog
    from features.offline import read_applications
    from monitoring.fairness import FairnessThresholds, protected_groups
    from training.fairness_gates import FairnessGate
    from training.gates import default_gates

    log = EventLog(settings.events_dir, settings.tables_dir)
    groups = None
    if log.table_files("member_profiles"):
        profiles = log.read_table("member_profiles").to_pandas()
        groups = protected_groups(profiles, read_applications(settings.tables_dir))
    fair = config.gates.fairness
    gate = FairnessGate(
        groups,
        thresholds=FairnessThresholds(
            fair.min_approval_ratio,
            fair.max_equal_opportunity_difference,
            fair.max_calibration_gap,
            require_ci=fair.require_ci,
        ),
        min_group_size=fair.min_group_size,
        n_boot=fair.n_boot,
    )
    return [*default_gates(config.gates), gate]


def tag_float(text: str | None) -> float | None:
    """A numeric registry tag as a float (None when absent or not a number)."""
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def version_summary(version: VersionRecord, data_dir: Path | None = None) -> dict[str, Any]:
    """One registered version: aliases, data date, OOT metrics, promotion status, and where its model
    report is (the local copy under `data_dir` when it exists, and the MLflow artifact)."""
    from training.report_html import REPORT_FILE

    page = (
        None
        if data_dir is None
        else data_dir / "reports" / version.name / f"v{version.version}" / REPORT_FILE
    )
    return {
        "version": version.version,
        "aliases": list(version.aliases),
        "run_id": version.run_id,
        "created_ms": version.created_ms,
        "as_of": version.tags.get("coopscore.as_of"),
        "oot_auc": tag_float(version.tags.get("metric.oot_auc")),
        "oot_ece": tag_float(version.tags.get("metric.oot_ece")),
        "oot_thin_auc": tag_float(version.tags.get("metric.oot_thin_auc")),
        "promotion": version.tags.get("promotion.status"),
        "report": {
            "path": str(page.resolve()) if page is not None and page.is_file() else None,
            "mlflow_artifact": f"runs:/{version.run_id}/report/{REPORT_FILE}",
        },
    }
