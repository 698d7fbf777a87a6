"""Out-of-time audit inputs: a registered model's own stored OOT rows, scored by that model.

Every training run stores the OOT rows it was judged on (`evaluation/oot.parquet`: features, outcome,
id, time, segments), so the audit sees exactly the model's own split, whatever data and config it was
trained with, and never re-splits the event log with default settings. Groups: for a model trained on
a table, its `--protected` columns (the stored `_segment_*` columns); for a model trained on the event
log, the member-profile table joined by application id.

It lives in training because it reads what training stored; monitoring's audit takes `oot_inputs` as
its `oot` loader, so monitoring never imports training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitoring.audit_inputs import AuditInputError, AuditInputs, profile_groups, scored, stored_profiles

if TYPE_CHECKING:
    import pandas as pd

    from coopscore.settings import Settings
    from models.credit_model import CreditModel


def stored_oot_frame(model: CreditModel, settings: Settings) -> pd.DataFrame:
    """The OOT rows stored with `model`'s training run (AuditInputError when there are none)."""
    from mlflow.exceptions import MlflowException

    from training.pipeline import OOT_ID, OOT_LABEL
    from training.tracking import OOT_ARTIFACT, read_oot_frame

    identity = model.identity
    if identity is None or not identity.run_id:
        raise AuditInputError("--data oot needs a registered model: its OOT rows are stored with its run")
    name = f"{identity.name} v{identity.version}"
    try:
        frame = read_oot_frame(settings.tracking_uri, identity.run_id)
    except (OSError, MlflowException) as error:
        raise AuditInputError(
            f"{name} has no stored OOT split ({OOT_ARTIFACT} of run {identity.run_id}): {error}"
        ) from error
    missing = [c for c in (*model.feature_names, OOT_LABEL, OOT_ID) if c not in frame.columns]
    if missing:
        raise AuditInputError(f"{name}: the stored OOT split lacks columns {missing[:10]}")
    return frame


def oot_inputs(model: CreditModel, settings: Settings, protected: list[str]) -> AuditInputs:
    """`model`'s stored out-of-time rows, scored by it, with their protected groups."""
    import pandas as pd

    from training.pipeline import OOT_APPLIED_AT, OOT_LABEL

    frame = stored_oot_frame(model, settings)
    features = frame[model.feature_names]
    rows = scored(model, features)
    rows["defaulted"] = frame[OOT_LABEL].to_numpy()
    if model.catalog_feature_set:
        groups = _profile_groups(frame, features, settings, protected)
    else:
        groups = _table_groups(model, frame, protected)
    identity = model.identity
    assert identity is not None  # stored_oot_frame checked it
    period = ""
    if OOT_APPLIED_AT in frame.columns and len(frame):
        applied = pd.to_datetime(frame[OOT_APPLIED_AT], utc=True)
        period = f", {applied.min():%Y-%m-%d} to {applied.max():%Y-%m-%d}"
    source = f"oot: stored split of {identity.name} v{identity.version}, {len(frame):,} applications{period}"
    return AuditInputs(rows, groups, features, source)


def _table_groups(model: CreditModel, frame: pd.DataFrame, protected: list[str]) -> pd.DataFrame:
    """A table model's protected columns, as stored with its OOT rows (`--protected` picks some)."""
    from training.pipeline import stored_segments

    segments = stored_segments(frame)
    identity = model.identity
    name = f"{identity.name} v{identity.version}" if identity else "the model"
    if not len(segments.columns):
        raise AuditInputError(
            f"{name} was trained on a table without --protected: its OOT split has no protected "
            "columns; retrain with --protected COL, or audit a FILE with --protected COL"
        )
    unknown = [c for c in protected if c not in segments.columns]
    if unknown:
        raise AuditInputError(
            f"--protected {unknown} not among the protected columns {name} was trained with: "
            f"{list(segments.columns)}"
        )
    return segments[protected or list(segments.columns)]


def _profile_groups(
    frame: pd.DataFrame, features: pd.DataFrame, settings: Settings, protected: list[str]
) -> pd.DataFrame:
    """Member-profile groups of an event-log model's OOT rows (member and time from the applications
    table, thin/thick file from the model's `has_prior_loan`)."""
    from features.offline import read_applications
    from training.datasets import THIN_FILE_FEATURE
    from training.pipeline import OOT_ID

    applications = read_applications(settings.tables_dir).drop_duplicates("application_id", keep="last")
    applications["application_id"] = applications["application_id"].astype(str)
    ids = frame[OOT_ID].astype(str).to_numpy()
    rows = applications.set_index("application_id").reindex(ids).reset_index()
    if THIN_FILE_FEATURE in features:
        rows["has_prior_loan"] = features[THIN_FILE_FEATURE].to_numpy()
    return profile_groups(rows, stored_profiles(settings), protected)
