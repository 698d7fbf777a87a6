"""What a fairness audit runs on: decisions (PD, decision, outcome, score), group columns and the
columns scanned for proxies, assembled from one of three sources.

- `oot`: the model's own out-of-time rows as stored with its training run, scored by it; groups from
  its protected columns (a table model) or the member-profile table.
- `decision-log`: the served decisions as logged, with outcomes posted to /v1/outcomes (a numeric
  model reference keeps that version's rows); groups from the member-profile table.
- a table file: feature rows with an outcome column scored by a model, or (without a model) a table
  of decisions; group columns from the file (`protected`) or from a member-profile file.

Input a person can fix raises `AuditInputError` with a message naming the option or file to change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from coopscore.settings import Settings
    from models.credit_model import CreditModel


class AuditInputError(ValueError):
    """The audit's input is missing or malformed; the message says what to change."""


@dataclass(frozen=True)
class DecisionColumns:
    """Column names of a table of decisions (used when no model scores the table)."""

    pd_col: str = "pd"
    decision_col: str = "decision"
    approved_col: str | None = None
    label_col: str = "defaulted"
    score_col: str | None = None


@dataclass
class AuditInputs:
    """What one audit runs on: decisions (pd, decision, defaulted, score), groups and features."""

    frame: pd.DataFrame
    groups: pd.DataFrame
    features: pd.DataFrame | None  # columns scanned for proxies (model inputs when a model is given)
    source: str
    pd_col: str = "pd"
    decision_col: str = "decision"
    approved_col: str | None = None
    label_col: str = "defaulted"
    score_col: str | None = "score"
    # What each decision offered (`monitoring.offer_fairness.OFFER_COLUMNS`), aligned with `frame`;
    # None when the source holds no offers.
    offers: pd.DataFrame | None = None


# (model, settings, protected attributes) -> the out-of-time inputs; see `audit_inputs`.
OotInputs = Callable[["CreditModel", "Settings", list[str]], AuditInputs]


def read_table(path: Path) -> pd.DataFrame:
    """A Parquet (file or folder), CSV or JSON (Lines) table."""
    import pandas as pd

    if not path.exists():
        raise AuditInputError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".txt"):
        return pd.read_csv(path)
    if suffix in (".json", ".jsonl"):
        return pd.read_json(path, lines=suffix == ".jsonl")
    raise AuditInputError(f"{path}: expected .parquet, .csv or .json(l)")


def profile_groups(data: pd.DataFrame, profiles: pd.DataFrame, protected: list[str]) -> pd.DataFrame:
    """Group columns per row of `data` (`member_id`, `applied_at`) from the member profiles."""
    from monitoring.fairness import FILE_COLUMN, PROTECTED_GROUP_COLUMNS, protected_groups

    missing = [c for c in ("member_id", "applied_at") if c not in data.columns]
    if missing:
        raise AuditInputError(f"group columns from profiles need {missing} in the data")
    built = protected_groups(profiles, data)
    wanted = protected or [c for c in (*PROTECTED_GROUP_COLUMNS, FILE_COLUMN) if c in built.columns]
    unknown = [c for c in wanted if c not in built.columns]
    if unknown:
        raise AuditInputError(f"unknown group columns {unknown}; built: {list(built.columns)}")
    return built[wanted].reset_index(drop=True)


def table_groups(data: pd.DataFrame, protected: list[str], profiles: Path | None) -> pd.DataFrame:
    """Group columns for a table: from a member-profile file, else the table's `protected` columns
    (a `birth_year` column becomes `age_band` when the table has `applied_at`; a numeric age column
    gets the default age bands; another numeric column with many values is refused)."""
    import pandas as pd

    from monitoring.bands import DEFAULT_AGE_CUTS, MAX_UNBANDED_VALUES, apply_bands, is_age_like
    from monitoring.fairness import age_band

    if profiles is not None:
        return profile_groups(data, read_table(profiles), protected)
    if not protected:
        raise AuditInputError("give --protected COL (one or more) or --profiles FILE")
    out = pd.DataFrame(index=data.index)
    for column in protected:
        if column not in data.columns:
            raise AuditInputError(
                f"--protected column {column!r} is not in the data ({', '.join(map(str, data.columns))})"
            )
        if column == "birth_year" and "applied_at" in data.columns:
            out["age_band"] = age_band(data[column], data["applied_at"])
        elif pd.api.types.is_numeric_dtype(data[column]) and data[column].nunique() > MAX_UNBANDED_VALUES:
            # One group per age is one group per handful of rows: too small to judge.
            if not is_age_like(column):
                raise AuditInputError(
                    f"--protected column {column!r} is numeric with {data[column].nunique():,} distinct "
                    "values: one group per value is too small to judge; write it as bands in the file first"
                )
            out[column] = apply_bands(data[column], DEFAULT_AGE_CUTS)
        else:
            out[column] = data[column]
    return out.reset_index(drop=True)


def scored(model: CreditModel, features: pd.DataFrame) -> pd.DataFrame:
    """PD, policy decision and score of `model` for each row."""
    import pandas as pd

    pds = model.predict_pd(features)
    return pd.DataFrame(
        {
            "pd": pds,
            "decision": [d.outcome for d in model.decisions(features, pds=pds)],
            "score": model.scale.score_from_pd(pds),
        }
    )


def stored_profiles(settings: Settings) -> pd.DataFrame:
    """The member-profile table of the event log."""
    from features.event_log import EventLog

    log = EventLog(settings.events_dir, settings.tables_dir)
    if not log.table_files("member_profiles"):
        raise AuditInputError(
            f"no member_profiles table under {settings.tables_dir}: ingest the profiles first"
        )
    profiles: pd.DataFrame = log.read_table("member_profiles").to_pandas()
    return profiles


def decision_log_inputs(
    model_ref: str | None, model: CreditModel | None, settings: Settings, protected: list[str]
) -> AuditInputs:
    """Served decisions as logged, with outcomes posted to /v1/outcomes.

    A numeric `model_ref` (a version) keeps only the decisions that version made.
    """
    import pandas as pd

    from decisions.base import OFFER_ROW_COLUMNS
    from decisions.factory import decision_log_reader
    from monitoring.sources import current_from_decision_log

    try:
        log = decision_log_reader(settings)
    except FileNotFoundError as error:
        raise AuditInputError(str(error)) from None
    try:
        frame = current_from_decision_log(log.feature_rows)
        offers = log.offer_rows()
        outcomes = log.outcome_rows()
        versions = log.versions_by_application()
    finally:
        log.close()
    if frame.empty:
        raise AuditInputError("the decision log holds no decisions")
    if model_ref is not None and model_ref.isdigit():
        made_by = frame["application_id"].astype(str).map(versions)
        frame = frame[(made_by == model_ref).to_numpy()].reset_index(drop=True)
        if frame.empty:
            raise AuditInputError(f"no logged decision was made by version {model_ref}")
    frame["defaulted"] = frame["application_id"].astype(str).map(outcomes).astype("Float64")
    frame["applied_at"] = frame["created_at"]
    groups = profile_groups(frame, stored_profiles(settings), protected)
    features = frame[model.feature_names] if model is not None else None
    source = (
        f"decision log: {len(frame):,} decisions, {int(frame['defaulted'].notna().sum()):,} with outcomes"
    )
    made = pd.DataFrame(offers, columns=list(OFFER_ROW_COLUMNS)).drop_duplicates("request_id")
    offered = frame[["request_id"]].merge(made, on="request_id", how="left", validate="one_to_one")
    return AuditInputs(frame.astype({"defaulted": "float64"}), groups, features, source, offers=offered)


def file_inputs(
    path: Path,
    model: CreditModel | None,
    protected: list[str],
    profiles: Path | None,
    columns: DecisionColumns,
) -> AuditInputs:
    """A table of decisions (no model) or of feature rows with outcomes (scored by `model`); the
    offers' columns (`OFFER_COLUMNS`), where the table has them, go to the offers' audit."""
    from monitoring.offer_fairness import OFFER_COLUMNS

    try:
        frame = read_table(path).reset_index(drop=True)
    except AuditInputError:
        raise
    except (OSError, ValueError) as error:
        raise AuditInputError(f"cannot read {path}: {error}") from error
    groups = table_groups(frame, protected, profiles)
    label_col = columns.label_col
    offer_columns = [c for c in OFFER_COLUMNS if c in frame.columns]
    offers = frame[offer_columns] if offer_columns else None
    if model is not None:
        missing = [c for c in (*model.feature_names, label_col) if c not in frame.columns]
        if missing:
            raise AuditInputError(f"columns missing from {path}: {missing[:10]}")
        features = frame[model.feature_names]
        rows = scored(model, features)
        rows["defaulted"] = frame[label_col].to_numpy()
        return AuditInputs(rows, groups, features, f"file {path}, scored by the model", offers=offers)
    decision = columns.approved_col or columns.decision_col
    needed = [c for c in (columns.pd_col, label_col, decision, columns.score_col) if c]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise AuditInputError(f"columns missing from {path}: {missing}")
    named = (columns.pd_col, columns.decision_col, columns.approved_col, label_col, columns.score_col)
    used = {*named, *groups.columns, *protected, *offer_columns}
    candidates = [
        c for c in frame.columns if c not in used and c not in ("member_id", "application_id", "applied_at")
    ]
    return AuditInputs(
        frame,
        groups,
        frame[candidates] if candidates else None,
        f"file {path}",
        pd_col=columns.pd_col,
        decision_col=columns.decision_col,
        approved_col=columns.approved_col,
        label_col=label_col,
        score_col=columns.score_col,
        offers=offers,
    )


def audit_inputs(
    data: str,
    *,
    model_ref: str | None,
    model: CreditModel | None,
    settings: Settings,
    protected: list[str],
    profiles: Path | None = None,
    columns: DecisionColumns | None = None,
    oot: OotInputs | None = None,
) -> AuditInputs:
    """The inputs for `data`: "oot", "decision-log" or the path of a table file.

    The out-of-time rows are what training stored with the model, a layer above monitoring: the
    caller passes that loader (`training.audit_oot.oot_inputs`) as `oot`.
    """
    if data == "oot":
        if model is None:
            raise AuditInputError("--data oot needs --model (champion, challenger or a version)")
        if oot is None:
            raise AuditInputError("--data oot is not available here: no out-of-time loader was given")
        return oot(model, settings, protected)
    if data == "decision-log":
        return decision_log_inputs(model_ref, model, settings, protected)
    return file_inputs(Path(data), model, protected, profiles, columns or DecisionColumns())
