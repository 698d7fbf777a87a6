"""One drift check as a job: load the current window and the reference sample, run and store the check.

`coopscore monitor drift` parses its options, calls `run_drift_job` and prints the result. The current
window is the decision log over a time span (`window`) or its last N decisions (`last`), or a file of
feature rows (`current`); the reference is the sample stored with a registered model version (alias
`champion` by default), or a file. Problems a person can fix raise `DriftJobError` with the exit code
the command ends with: 2 for bad input, 5 for a window too small to judge (nothing is written then).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from coopscore.names import CHAMPION

if TYPE_CHECKING:
    import pandas as pd

    from coopscore.settings import Settings
    from monitoring.sources import Reference

EXIT_BAD_INPUT: Final = 2
EXIT_TOO_FEW_ROWS: Final = 5


class DriftJobError(Exception):
    """A problem with the job's input that the user can fix; carries its exit code and JSON details."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT, **details: Any) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.details = details


def load_current(
    settings: Settings, window: str | None, last: int | None, current: Path | None
) -> tuple[pd.DataFrame, str, dict[str, int]]:
    """(current rows, window label, application_id -> observed default for the window's decisions)."""
    from monitoring.sources import current_from_decision_log, parse_window, read_feature_rows

    if sum(x is not None for x in (window, last, current)) > 1:
        raise DriftJobError("give one of --window, --last, --current")
    if current is not None:
        return read_feature_rows(current), f"file {current}", {}
    from decisions.factory import decision_log_reader

    try:
        decision_log = decision_log_reader(settings)
    except FileNotFoundError as error:
        raise DriftJobError(f"{error}: score applications first, or pass --current FILE") from None
    try:
        if last is not None:
            frame = current_from_decision_log(decision_log.feature_rows, last=last)
            label = f"last {last} decisions"
        else:
            span = parse_window(window or "30d")
            since = datetime.now(UTC) - span
            frame = current_from_decision_log(decision_log.feature_rows, since=since)
            label = f"decisions since {since.isoformat(timespec='seconds')} ({window or '30d'})"
        return frame, label, decision_log.outcome_rows()
    finally:
        decision_log.close()


def load_reference(
    settings: Settings, reference: Path | None, model: str | None, model_name: str | None = None
) -> Reference:
    """The reference sample from a file, or the one stored with a registered model (default champion)
    of `model_name` (default: the settings')."""
    from models.registry import ArtifactIntegrityError, UnknownModelError, check_model_name
    from models.signing import Keyring
    from monitoring.sources import reference_from_file, reference_from_registry

    if reference is not None and (model is not None or model_name is not None):
        raise DriftJobError(f"give --reference or {'--model' if model else '--model-name'}, not both")
    if reference is not None:
        return reference_from_file(reference)
    alias = model or CHAMPION
    name = model_name or settings.model_name
    try:  # the sample is checked against the signed manifest, like the model serving loads
        keyring = Keyring.from_settings(settings)
    except ValueError as exc:  # an unreadable or too short signing key
        raise DriftJobError(str(exc)) from exc
    try:
        if not alias.startswith("models:/"):
            check_model_name(settings.tracking_uri, name)
        return reference_from_registry(
            alias, model_name=name, tracking_uri=settings.tracking_uri, keyring=keyring
        )
    except UnknownModelError as exc:
        raise DriftJobError(str(exc)) from exc
    except KeyError as exc:
        raise DriftJobError(
            f"no model {name}@{alias} in {settings.tracking_uri}: "
            "train and promote one (`coopscore retrain`), or pass --reference FILE"
        ) from exc
    except ArtifactIntegrityError as exc:
        raise DriftJobError(f"model {name}@{alias}: {exc}") from exc


def performance_rows(current: pd.DataFrame, outcomes: dict[str, int]) -> pd.DataFrame | None:
    """The window's decisions (time, PD) with their observed default where one was posted."""
    if not outcomes or "application_id" not in current or "created_at" not in current:
        return None
    import pandas as pd

    rows = current[["application_id", "created_at", "pd"]].copy()
    rows["defaulted"] = rows["application_id"].map(outcomes).astype("boolean")
    if rows["defaulted"].notna().sum() == 0:
        return None
    return pd.DataFrame({"applied_at": rows["created_at"], "pd": rows["pd"], "defaulted": rows["defaulted"]})


def run_drift_job(
    settings: Settings,
    *,
    window: str | None,
    last: int | None,
    current: Path | None,
    reference: Path | None,
    model: str | None,
    min_rows: int,
    match_days: int,
    segment: str | None,
    outcomes: Path | None,
    evidently: bool,
    mlflow: bool,
    model_name: str | None = None,
) -> tuple[dict[str, Any], int]:
    """Load both sides, run and store the check; returns (JSON summary, exit code 0 or 3)."""
    from monitoring.drift import DriftPolicy
    from monitoring.monitor import DriftInputError, InsufficientWindowError, run_drift_check
    from monitoring.sources import match_reference_to_window, read_feature_rows

    policy = replace(DriftPolicy(), min_rows=min_rows)
    try:
        current_rows, window_label, posted = load_current(settings, window, last, current)
        if len(current_rows) < policy.min_rows:  # before the reference download: fail fast
            raise InsufficientWindowError(len(current_rows), policy.min_rows)
        ref = load_reference(settings, reference, model, model_name)
        policy = replace(policy, ignore=(*policy.ignore, *ref.growing))
        ref, matched = match_reference_to_window(
            ref, current_rows.get("features_as_of"), days=match_days, min_rows=policy.min_rows
        )
        outcome_rows = (
            read_feature_rows(outcomes) if outcomes is not None else performance_rows(current_rows, posted)
        )
    except InsufficientWindowError as exc:
        raise DriftJobError(
            str(exc), EXIT_TOO_FEW_ROWS, n_current=exc.n_current, min_rows=exc.min_rows
        ) from exc
    except (FileNotFoundError, ValueError) as exc:
        raise DriftJobError(str(exc)) from exc
    if segment is not None and (segment not in ref.rows or segment not in current_rows):
        raise DriftJobError(f"segment column {segment!r} must be in both the reference and the current rows")
    try:
        check = run_drift_check(
            ref.rows,
            current_rows,
            data_dir=settings.data_dir,
            features=ref.features,
            shared=ref.shared,
            segment=segment,
            policy=policy,
            outcomes=outcome_rows,
            context={
                "window": window_label,
                "reference": ref.label,
                "reference_period": ref.period(),
                "reference_match": matched,
                "model": model or (CHAMPION if reference is None else None),
                "model_name": model_name or settings.model_name if reference is None else None,
                "model_version": ref.model_version,
            },
            evidently=evidently,
            tracking_uri=settings.tracking_uri if mlflow else None,
            artifact_root=settings.artifact_root,
        )
    except InsufficientWindowError as exc:
        raise DriftJobError(
            str(exc), EXIT_TOO_FEW_ROWS, n_current=exc.n_current, min_rows=exc.min_rows
        ) from exc
    except DriftInputError as exc:
        raise DriftJobError(str(exc)) from exc
    return check.payload, check.exit_code
