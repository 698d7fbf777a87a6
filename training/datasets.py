"""Training sets: labelled applications with their point-in-time features, segments and fingerprint.

Two sources, one shape (`TrainingSet`):
- the event log (`event_log_training_set`): applications and outcomes from the reference tables,
  features from the views as of each `applied_at`, fingerprinted by the ingest ledger's checksum;
- a lender's own table (`table_training_set`): features already in columns, protected columns
  carried along (banded) for audits and kept out of the model unless named `--protected-input`,
  fingerprinted by the file's SHA-256 and the digest of the options that shaped the set.

Segments (thin/thick file, county, cooperative tenure band, protected columns) are for evaluation
and audits only; county comes from the cooperatives table and never reaches the model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.spec import ModelSpec, spec_for_table, spec_from_registry
from training.labels import LabelReport, data_as_of, label_applications, label_horizon, utc
from training.protected import check_protected_roles, protected_segments, proxy_warnings
from training.table_inputs import (
    Exclusion,
    InputReport,
    TableInputError,
    binary_label,
    missing_values,
    parse_times,
    require_columns,
    screen_columns,
)

if TYPE_CHECKING:
    from features.catalog import FeatureRegistry
    from features.offline_engines.base import OfflineEngine

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# What a traditional lender sees: the application's own fields and the formal/cooperative loan record.
BUREAU_GROUPS: Final = ("repayment", "late_repayment")
BUREAU_FEATURES: Final = ("has_prior_loan", "application_amount_cny", "application_term_months")
THIN_FILE_FEATURE: Final = "has_prior_loan"
TENURE_FEATURE: Final = "coop_tenure_months"
TENURE_BANDS: Final = ((6.0, "<6m"), (12.0, "6-12m"), (24.0, "12-24m"), (np.inf, "24m+"))
RECENT_DAYS: Final = 91  # the drift reference: applications of the quarter before the as-of time


class InsufficientDataError(ValueError):
    """Too few labelled applications (or defaults) to train and evaluate honestly."""


@dataclass(frozen=True)
class DataFingerprint:
    """What the training data was: its source checksum, as-of time and feature-set version, and for
    a table the digest of every option that shapes the training set (label, time, id, protected
    columns and bands, monotone directions, time format, label values, kept columns)."""

    source: str  # "event_log" | "table"
    checksum: str
    as_of: str
    feature_set_version: str
    options: str = ""  # a table: `options_digest` of its options ("" for the event log)

    def training_key(self, config_digest: str) -> str:
        """Same data + same feature set + same options + same config -> same key -> nothing new."""
        parts = [self.source, self.checksum, self.as_of, self.feature_set_version, config_digest]
        if self.options:  # appended only when set: event-log keys stay what they were
            parts.append(self.options)
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {
            "source": self.source,
            "checksum": self.checksum,
            "as_of": self.as_of,
            "feature_set_version": self.feature_set_version,
            **({"options": self.options} if self.options else {}),
        }


def options_digest(options: Mapping[str, Any]) -> str:
    """SHA-256 of a table's options as canonical JSON: any option that changes the set changes it."""
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class RecentApplications:
    """Applications of the last `days` before a training set's as-of time, features in model order."""

    features: pd.DataFrame
    applied_at: pd.Series
    days: int

    def __len__(self) -> int:
        return len(self.features)


@dataclass
class TrainingSet:
    """Labelled applications in `applied_at` order, with features in model column order."""

    features: pd.DataFrame
    label: IntArray
    applied_at: pd.Series
    ids: npt.NDArray[np.object_]
    segments: pd.DataFrame
    spec: ModelSpec
    horizon: pd.Timestamp
    fingerprint: DataFingerprint
    labels: LabelReport | None = None
    bureau_features: list[str] = field(default_factory=list)
    truth_pd: FloatArray | None = None
    thin_segment: str | None = None  # segment column that marks thin files, if any
    # The latest applications (labelled or not) before the as-of time, with the same point-in-time
    # features: what the model meets once deployed, hence the drift monitor's reference sample.
    recent: RecentApplications | None = None
    # A lender's table: rows and columns left out and why, missing values per input.
    inputs: InputReport | None = None

    def __len__(self) -> int:
        return len(self.label)


# --------------------------------------------------------------------------------------------------
# From the event log
# --------------------------------------------------------------------------------------------------


def ledger_checksum(ledger_path: Path) -> str:
    """The ingest ledger's fingerprint of the event log ('' if there is no ledger)."""
    if not ledger_path.exists():
        return ""
    from features.ledger import IngestLedger

    ledger = IngestLedger(ledger_path)
    try:
        return ledger.checksum()
    finally:
        ledger.close()


def files_checksum(*folders: Path) -> str:
    """Fallback fingerprint without a ledger: names and sizes of every stored part file."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob("*.parquet")):
            digest.update(f"{path.relative_to(folder)}\x1f{path.stat().st_size}\x1e".encode())
    return digest.hexdigest()


def read_outcomes(events_dir: Path, tables_dir: Path) -> pd.DataFrame:
    """The stored outcomes table (empty frame with the contract columns if none yet)."""
    from features.event_log import EventLog

    outcomes: pd.DataFrame = EventLog(events_dir, tables_dir).read_table("outcomes").to_pandas()
    return outcomes


def read_cooperative_counties(events_dir: Path, tables_dir: Path) -> dict[str, str]:
    """coop_id -> county_id from the cooperatives table (segments only, never a model input)."""
    from features.event_log import EventLog

    table = EventLog(events_dir, tables_dir).read_table("cooperatives", columns=["coop_id", "county_id"])
    return dict(zip(table["coop_id"].to_pylist(), table["county_id"].to_pylist(), strict=True))


def tenure_band(months: pd.Series) -> pd.Series:
    """Cooperative tenure in bands: <6m, 6-12m, 12-24m, 24m+ (unknown when missing)."""
    values = pd.to_numeric(months, errors="coerce").to_numpy(dtype=np.float64)
    labels = np.full(len(values), "unknown", dtype=object)
    lower = -np.inf
    for upper, label in TENURE_BANDS:
        labels[(values >= lower) & (values < upper)] = label
        lower = upper
    return pd.Series(labels, index=months.index, dtype=object)


def bureau_feature_names(spec: ModelSpec) -> list[str]:
    """Features a traditional lender would see, among those the spec has."""
    return [f.name for f in spec.features if f.reason_group in BUREAU_GROUPS or f.name in BUREAU_FEATURES]


def read_truth_pd(truth_dir: Path, application_ids: Sequence[str]) -> FloatArray:
    """True PDs of the given applications from a simulated world's `truth/applications.parquet`."""
    path = truth_dir / "applications.parquet"
    if not path.exists() and (truth_dir / "truth" / "applications.parquet").exists():
        path = truth_dir / "truth" / "applications.parquet"
    truth = pd.read_parquet(path, columns=["application_id", "true_pd"]).set_index("application_id")
    aligned = truth["true_pd"].reindex(pd.Index(application_ids))
    if aligned.isna().any():
        raise ValueError(f"{int(aligned.isna().sum())} applications have no true PD in {path}")
    return aligned.to_numpy(dtype=np.float64)


def event_log_training_set(
    *,
    events_dir: Path,
    tables_dir: Path,
    ledger_path: Path,
    as_of: pd.Timestamp | None = None,
    window_days: int = 365,
    registry: FeatureRegistry | None = None,
    engine: OfflineEngine | None = None,
    truth_dir: Path | None = None,
    recent_days: int = RECENT_DAYS,
) -> TrainingSet:
    """Labelled applications as of `as_of` (default: the data's latest record) with their features,
    plus the applications of the last `recent_days` before it (labelled or not; see `recent`).

    The labelled rows end a label window (a year) before `as_of`; drift is judged on applications
    scored after `as_of`, so the monitor's reference is the recent ones, not the labelled ones (their
    cumulative counts, peer outcome counts and seasons are a year behind what serving sees).
    """
    from features.catalog import default_registry
    from features.offline import application_spine, build_features, read_applications

    registry = registry or default_registry()
    spec = spec_from_registry(registry)
    applications = read_applications(tables_dir)
    outcomes = read_outcomes(events_dir, tables_dir)
    moment = pd.Timestamp(as_of) if as_of is not None else data_as_of(applications, outcomes)
    if moment.tzinfo is None:
        moment = moment.tz_localize("UTC")
    labelled, report = label_applications(applications, outcomes, as_of=moment, window_days=window_days)
    checksum = ledger_checksum(ledger_path) or files_checksum(events_dir, tables_dir)
    fingerprint = DataFingerprint("event_log", checksum, moment.isoformat(), registry.version)
    if labelled.empty:
        raise InsufficientDataError(f"no labelled applications as of {moment.isoformat()}")
    recent_apps = applications.loc[
        (utc(applications["applied_at"]) >= moment - pd.Timedelta(days=recent_days))
        & (utc(applications["applied_at"]) < moment)
    ]
    # One feature build for both (one scan of the event log): labelled rows first, then recent ones.
    recent_spine = application_spine(recent_apps)
    recent_spine["request_id"] = "recent:" + recent_spine["request_id"].astype(str)
    frame = build_features(
        pd.concat([application_spine(labelled), recent_spine], ignore_index=True),
        events_dir=events_dir,
        tables_dir=tables_dir,
        registry=registry,
        engine=engine,
    )
    features = frame[spec.names].iloc[: len(labelled)].reset_index(drop=True)
    recent = RecentApplications(
        features=frame[spec.names].iloc[len(labelled) :].reset_index(drop=True),
        applied_at=utc(recent_apps["applied_at"]).reset_index(drop=True),
        days=recent_days,
    )
    counties = read_cooperative_counties(events_dir, tables_dir)
    segments = pd.DataFrame(
        {
            "file": np.where(features[THIN_FILE_FEATURE].fillna(0).to_numpy() > 0, "thick", "thin")
            if THIN_FILE_FEATURE in features
            else "unknown",
            "county": labelled["coop_id"].map(counties).fillna("unknown").to_numpy(dtype=object),
            "tenure": tenure_band(features[TENURE_FEATURE]).to_numpy()
            if TENURE_FEATURE in features
            else "unknown",
        }
    )
    ids = labelled["application_id"].to_numpy(dtype=object)
    return TrainingSet(
        features=features,
        label=labelled["defaulted"].to_numpy(dtype=np.int64),
        applied_at=utc(labelled["applied_at"]).reset_index(drop=True),
        ids=ids,
        segments=segments,
        spec=spec,
        horizon=label_horizon(moment, window_days),
        fingerprint=fingerprint,
        labels=report,
        bureau_features=bureau_feature_names(spec),
        truth_pd=read_truth_pd(truth_dir, list(ids)) if truth_dir is not None else None,
        thin_segment="file" if THIN_FILE_FEATURE in features else None,
        recent=recent,
    )


# --------------------------------------------------------------------------------------------------
# From a lender's own table
# --------------------------------------------------------------------------------------------------


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".txt"):
        return pd.read_csv(path, low_memory=False)
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True)
    raise TableInputError(f"{path}: expected .csv, .parquet or .jsonl")


def table_training_set(
    path: Path,
    *,
    label: str,
    time: str,
    id_column: str | None = None,
    protected: Sequence[str] = (),
    monotone: Mapping[str, int] | None = None,
    drop: Sequence[str] = (),
    time_format: str | None = None,
    bad_value: str | None = None,
    good_values: Sequence[str] = (),
    keep: Sequence[str] = (),
    protected_inputs: Sequence[str] = (),
    bands: Mapping[str, Sequence[float]] | None = None,
    label_description: str | None = None,
) -> TrainingSet:
    """A training set from a lender's table: every other column is a feature (text -> categorical),
    unless it is constant, names rows, or leaks the label (see `training.table_inputs`; `keep`
    overrides). Rows without a label or a time are left out; every exclusion is in `inputs`.

    `protected` columns are audit segments only; `protected_inputs` are segments and model inputs
    (recorded in the spec's `extra` and the report, so the model card and audits flag them). Numeric
    protected columns are banded (`bands`, else default age bands; see `training.protected`), and
    inputs that alone predict a protected group are warned about in `inputs.proxy_warnings`.

    Raises `TableInputError` (one actionable line) for a missing column, unparseable or ambiguous
    dates, a label whose bad value is not stated, or protected columns that cannot be grouped.
    """
    bands = dict(bands or {})
    table = _read_table(path)
    require_columns(
        table.columns,
        {
            "--label": [label],
            "--time": [time],
            "--id": [id_column] if id_column else [],
            "--protected": list(protected),
            "--protected-input": list(protected_inputs),
            "--band": list(bands),
            "--monotone": list(monotone or {}),
            "--keep": list(keep),
            "drop": list(drop),
        },
        path.name,
    )
    check_protected_roles(
        label=label,
        time=time,
        id_column=id_column,
        protected=protected,
        protected_inputs=protected_inputs,
        bands=bands,
        drop=drop,
    )
    report = InputReport(
        rows_read=len(table),
        time_format=time_format,
        table_file=path.name,
        label_description=label_description,
    )
    y, report.label_values, label_excluded = binary_label(
        table[label], label, bad_value=bad_value, good_values=good_values
    )
    times = parse_times(table[time], time, time_format)
    report.rows_excluded += label_excluded
    # Rows without a time cannot be placed in an out-of-time split; counted, not guessed.
    no_time = y.notna() & times.isna()
    if no_time.any():
        report.rows_excluded.append(Exclusion("time missing", int(no_time.sum()), time))
    usable = y.notna() & times.notna()
    table, y, times = table.loc[usable], y[usable], times[usable]
    order = np.argsort(times.to_numpy(), kind="stable")
    table, y, times = table.iloc[order], y.iloc[order], times.iloc[order]
    report.rows_used = len(table)
    report.roles = {
        "label": [label],
        "time": [time],
        "id": [id_column] if id_column else [],
        "protected (audits only)": list(protected),
        "protected (model input)": list(protected_inputs),
        "dropped": list(drop),
    }
    excluded = {label, time, *protected, *drop, *([id_column] if id_column else [])}
    candidates = [c for c in table.columns if c not in excluded]
    feature_columns, report.columns_excluded = screen_columns(
        table, y.to_numpy(dtype=np.int64), candidates, keep
    )
    report.kept = [c for c in keep if c in feature_columns]
    unused = [c for c in (monotone or {}) if c not in feature_columns]
    if unused:
        raise TableInputError(
            f"--monotone {', '.join(unused)}: not a model input (excluded above or a label/time/id/"
            "protected column); drop the option or --keep the column"
        )
    if not feature_columns:
        reasons = "; ".join(f"{e.column}: {e.reason}" for e in report.columns_excluded)
        raise TableInputError(f"{path.name}: no input columns left ({reasons or 'none but roles'})")
    report.missing = missing_values(table, feature_columns)
    features = pd.DataFrame(index=range(len(table)))
    categories: dict[str, list[str]] = {}
    for name in feature_columns:
        column = table[name].reset_index(drop=True)
        if column.dtype == bool or pd.api.types.is_numeric_dtype(column):
            features[name] = column.astype(np.float64)
        else:
            text = column.astype("string")
            categories[name] = sorted(text.dropna().unique().tolist())
            features[name] = text.astype(object)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    as_of = pd.Timestamp(times.max())
    all_protected = [*protected, *protected_inputs]
    segments, report.bands = protected_segments(table, all_protected, bands, times)
    report.protected = all_protected
    report.protected_inputs = [c for c in protected_inputs if c in feature_columns]
    report.proxy_warnings = proxy_warnings(table, feature_columns, segments)
    # What scoring checks an applicant's inline values against (serving.inline): ranges and missingness.
    finite = {n: features[n][np.isfinite(features[n])] for n in feature_columns if n not in categories}
    spec = spec_for_table(
        feature_columns,
        categories=categories,
        directions=monotone,
        table_version=digest[:16],
        ranges={n: (float(v.min()), float(v.max())) for n, v in finite.items() if len(v)},
        with_missing=[n for n in feature_columns if features[n].isna().any()],
    )
    spec = replace(
        spec,
        extra={
            **spec.extra,
            "protected_inputs": report.protected_inputs,
            "protected_audit_only": [c for c in all_protected if c not in report.protected_inputs],
            "bands": {name: band.to_dict() for name, band in report.bands.items()},
        },
    )
    options = {
        "label": label,
        "time": time,
        "id": id_column,
        "protected": list(protected),
        "protected_inputs": list(protected_inputs),
        "bands": {k: [float(c) for c in v] for k, v in sorted(bands.items())},
        "monotone": dict(sorted((monotone or {}).items())),
        "drop": list(drop),
        "time_format": time_format,
        "bad_value": bad_value,
        "good_values": list(good_values),
        "keep": list(keep),
    }
    ids = (
        table[id_column].astype(str).to_numpy(dtype=object)
        if id_column
        else np.array([f"row-{i}" for i in order], dtype=object)
    )
    return TrainingSet(
        features=features,
        label=y.to_numpy(dtype=np.int64),
        applied_at=times.reset_index(drop=True),
        ids=ids,
        segments=segments,
        spec=spec,
        horizon=as_of + pd.Timedelta(microseconds=1),
        fingerprint=DataFingerprint(
            "table", digest, as_of.isoformat(), spec.feature_set_version, options_digest(options)
        ),
        labels=None,
        bureau_features=[],
        truth_pd=None,
        thin_segment=None,
        inputs=report,
    )


@dataclass
class TableSource:
    """Training data from a lender's own table (a `training.job.TrainingSource`). It lives here, not
    beside the event-log source, so checking a table imports no model-fitting library."""

    path: Path
    label: str
    time: str
    id_column: str | None = None
    protected: tuple[str, ...] = ()
    monotone: dict[str, int] = field(default_factory=dict)
    time_format: str | None = None
    bad_value: str | None = None
    good_values: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    protected_inputs: tuple[str, ...] = ()
    bands: dict[str, tuple[float, ...]] = field(default_factory=dict)
    label_description: str | None = None
    _loaded: TrainingSet | None = field(default=None, init=False, repr=False)

    def load(self) -> TrainingSet:
        """The table as a training set (read once)."""
        if self._loaded is None:
            self._loaded = table_training_set(
                self.path,
                label=self.label,
                time=self.time,
                id_column=self.id_column,
                protected=self.protected,
                monotone=self.monotone,
                time_format=self.time_format,
                bad_value=self.bad_value,
                good_values=self.good_values,
                keep=self.keep,
                protected_inputs=self.protected_inputs,
                bands=self.bands,
                label_description=self.label_description,
            )
        return self._loaded

    def fingerprint(self) -> DataFingerprint:
        """File SHA-256 + latest time + feature set + the digest of every table option."""
        return self.load().fingerprint


def describe(training_set: TrainingSet) -> dict[str, Any]:
    """Headline counts of a training set."""
    return {
        "rows": len(training_set),
        "defaults": int(training_set.label.sum()),
        "default_rate": float(training_set.label.mean()) if len(training_set) else float("nan"),
        "features": len(training_set.spec.features),
        "first_application": training_set.applied_at.min().isoformat() if len(training_set) else None,
        "last_application": training_set.applied_at.max().isoformat() if len(training_set) else None,
        **({"labels": training_set.labels.to_dict()} if training_set.labels else {}),
        **({"inputs": training_set.inputs.to_dict()} if training_set.inputs else {}),
    }
