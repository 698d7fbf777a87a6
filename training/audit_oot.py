"""Out-of-time audit inputs: the event log's labelled OOT applications, scored by a model.

It lives in training because the OOT rows come from the training splits; monitoring's audit takes
this function as its `oot` loader, so monitoring never imports training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitoring.audit_inputs import AuditInputs, profile_groups, scored, stored_profiles

if TYPE_CHECKING:
    from coopscore.settings import Settings
    from models.credit_model import CreditModel


def oot_inputs(model: CreditModel, settings: Settings, protected: list[str]) -> AuditInputs:
    """The event log's labelled out-of-time applications, scored by `model`."""
    from features.offline import read_applications
    from training.config import TrainingConfig
    from training.datasets import THIN_FILE_FEATURE
    from training.job import EventLogSource
    from training.splits import time_split

    training_set = EventLogSource(settings.events_dir, settings.tables_dir, settings.ledger_path).load()
    split = time_split(training_set.applied_at, training_set.horizon, TrainingConfig().splits)
    oot = split.masks["oot"]
    features = training_set.features.loc[oot].reset_index(drop=True)
    frame = scored(model, features)
    frame["defaulted"] = training_set.label[oot]
    applications = read_applications(settings.tables_dir).drop_duplicates("application_id", keep="last")
    rows = applications.set_index("application_id").reindex(training_set.ids[oot]).reset_index()
    if THIN_FILE_FEATURE in features:
        rows["has_prior_loan"] = features[THIN_FILE_FEATURE].to_numpy()
    groups = profile_groups(rows, stored_profiles(settings), protected)
    first, last = training_set.applied_at[oot].min(), training_set.applied_at[oot].max()
    return AuditInputs(frame, groups, features, f"oot: {int(oot.sum()):,} applications {first} to {last}")
