"""Where the two sides of a drift check come from: the reference sample and the current window.

Reference: the reference sample stored with a model version (a Parquet of feature rows + `_pd` /
`_score` / `_applied_at`), read from the registry with `reference_from_registry` (the model's own
verified loader) or from a file, and renamed to the decision log's column names (`monitor_columns`).
Current: any Parquet / CSV of feature rows, or the decision log over a window: callers plug in a
reader `(since, until, last) -> rows` (e.g. `DecisionLogReader.feature_rows` from
`decisions.factory.decision_log_reader`), so this module depends on no backend.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pandas as pd

if TYPE_CHECKING:
    from models.signing import Keyring

DecisionRowsReader = Callable[[datetime | None, datetime | None, int | None], Iterable[Mapping[str, Any]]]

_WINDOW: Final = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_UNITS: Final = {"h": "hours", "d": "days", "w": "weeks"}
# When a decision was made, and when the online store computed the vector it was made on.
TIME_COLUMNS: Final = ("created_at", "features_as_of")
MATCH_DAYS: Final = 45
# Identifiers stay text even when every one of them happens to be digits.
ID_COLUMNS: Final = ("request_id", "application_id", "member_id")


def parse_window(text: str) -> timedelta:
    """`30d`, `12h`, `2w` -> a timedelta."""
    match = _WINDOW.match(text)
    if match is None or int(match[1]) <= 0:
        raise ValueError(f"window must look like 30d, 12h or 2w, got {text!r}")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def read_feature_rows(path: Path) -> pd.DataFrame:
    """Feature rows from a Parquet file or folder, or a CSV file."""
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".txt"):
        return pd.read_csv(path)
    raise ValueError(f"{path}: expected a .parquet or .csv file")


def current_from_decision_log(
    read_rows: DecisionRowsReader,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    last: int | None = None,
) -> pd.DataFrame:
    """The decision log's feature rows (with `pd`, `score`, `created_at`, `features_as_of`) over a
    time range or the last N decisions, as one frame; `read_rows` is serving's reader."""
    rows = list(read_rows(since, until, last))
    frame = pd.DataFrame.from_records(rows)
    for column in TIME_COLUMNS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    for column in frame.columns:
        if frame[column].dtype == object and column not in (*TIME_COLUMNS, *ID_COLUMNS):
            converted = pd.to_numeric(frame[column], errors="coerce")
            if converted.notna().sum() == frame[column].notna().sum():
                frame[column] = converted  # JSON numbers (None -> NaN) back to float columns
    return frame


def registry_model_uri(model: str, model_name: str) -> str:
    """`champion` -> `models:/<name>@champion`; `3` -> `models:/<name>/3`; a `models:/` URI as is."""
    if model.startswith("models:/"):
        return model
    if model.isdigit():
        return f"models:/{model_name}/{model}"
    return f"models:/{model_name}@{model}"


@dataclass(frozen=True)
class Reference:
    """A model version's reference sample in the monitor's column names, and what to compare.

    `rows` holds the model's features plus `pd`, `score` and `applied_at` (the decision log's names);
    `features` are the model's inputs in model order; `shared` those of them whose value every
    member of a cooperative or village shares (judged by their number of groups, not rows);
    `growing` those that only grow with calendar time (reported, never alarm: any window after the
    reference quarter sits above it).
    """

    rows: pd.DataFrame
    features: tuple[str, ...]
    shared: tuple[str, ...]
    label: str
    model_version: str | None = None
    growing: tuple[str, ...] = ()

    def period(self) -> dict[str, str] | None:
        """First and last application time of the reference rows (None when not recorded)."""
        if "applied_at" not in self.rows or self.rows["applied_at"].isna().all():
            return None
        times = pd.to_datetime(self.rows["applied_at"], utc=True)
        return {"start": times.min().isoformat(), "end": times.max().isoformat()}


def monitor_columns(stored: pd.DataFrame) -> pd.DataFrame:
    """A stored reference sample with the artifact's columns (`_pd`, `_score`, `_applied_at`) renamed
    to the decision log's (`pd`, `score`, `applied_at`), so both sides of a check share names."""
    from models.artifacts import REFERENCE_APPLIED_AT, REFERENCE_PD, REFERENCE_SCORE

    renames = {REFERENCE_PD: "pd", REFERENCE_SCORE: "score", REFERENCE_APPLIED_AT: "applied_at"}
    return stored.rename(columns={k: v for k, v in renames.items() if k in stored.columns})


def shared_features(names: Iterable[str]) -> tuple[str, ...]:
    """The features among `names` that the feature registry computes per cooperative or village."""
    from features.catalog import default_registry

    by_name = default_registry().by_name
    return tuple(n for n in names if n in by_name and by_name[n].entity != "member")


def growing_features(names: Iterable[str]) -> tuple[str, ...]:
    """The features among `names` that only grow with calendar time: a cooperative's or village's
    count of outcomes known so far (every group's count rises as the year-old loans resolve)."""
    from features.catalog import default_registry

    by_name = default_registry().by_name
    return tuple(n for n in names if n in by_name and by_name[n].aggregation == "peer_outcome_count")


def reference_from_registry(
    model: str, *, model_name: str, tracking_uri: str, keyring: Keyring | None = None
) -> Reference:
    """The reference sample stored with a registered model version (alias, version or `models:/` URI).

    Read through the model registry's own loader, so the sample's SHA-256 is checked like every
    other artifact (and, with `keyring`, against the signed manifest), and the monitored features
    are exactly the model's inputs.

    Raises:
        KeyError: no such alias or version.
        models.registry.ArtifactIntegrityError: an artifact is missing or altered.
    """
    from models.registry import load_model_with_reference

    name, selector = model_name, model
    if model.startswith("models:/"):
        target = model.removeprefix("models:/")
        name, _, selector = target.partition("@") if "@" in target else target.partition("/")
    loaded, stored = load_model_with_reference(selector, tracking_uri, model_name=name, keyring=keyring)
    names = tuple(loaded.feature_names)
    version = loaded.identity.version if loaded.identity is not None else None
    label = f"model {name}@{selector}" + (f" (version {version})" if version and version != selector else "")
    return Reference(
        rows=monitor_columns(stored),
        features=names,
        shared=shared_features(names),
        label=label,
        model_version=version,
        growing=growing_features(names),
    )


def reference_from_file(path: Path) -> Reference:
    """A reference sample from a file: every column but keys, times and score / PD is monitored."""
    from monitoring.drift import monitored_columns

    rows = monitor_columns(read_feature_rows(path))
    names = tuple(monitored_columns(rows))
    return Reference(
        rows=rows,
        features=names,
        shared=shared_features(names),
        label=f"file {path}",
        growing=growing_features(names),
    )


def match_reference_to_window(
    reference: Reference, as_of: pd.Series | None, *, days: int = MATCH_DAYS, min_rows: int = 200
) -> tuple[Reference, dict[str, Any] | None]:
    """The reference rows applied within `days` of the window's vector times (`features_as_of`).

    Why: served vectors are computed at materialization instants, reference rows at each
    application's time across a quarter. Seasonal windows (a 90-day delivery total) move within a
    quarter, so one materialization compared with the whole quarter differs by season alone. Rows
    near the window's instants compare like with like; a window spread over the quarter keeps the
    whole of it. With fewer than `min_rows` such rows (a window after the reference quarter) the
    `min_rows` rows nearest in time are used. `days=0`, or no vector times: the reference unchanged.

    Returns the (possibly narrowed) reference and a JSON description of the match (None if none).
    """
    if days <= 0 or as_of is None or as_of.isna().all() or "applied_at" not in reference.rows:
        return reference, None
    applied = pd.to_datetime(reference.rows["applied_at"], utc=True)
    times = pd.to_datetime(as_of.dropna(), utc=True)
    first, last = times.min(), times.max()
    span = pd.Timedelta(days=days)
    near = ((applied >= first - span) & (applied <= last + span)).to_numpy()
    if near.sum() < min_rows:
        # Seconds outside the window's span (at most one of the two terms is positive).
        before = (first - applied).dt.total_seconds().clip(lower=0)
        after = (applied - last).dt.total_seconds().clip(lower=0)
        near = (before + after).rank(method="first").to_numpy() <= min_rows
    if near.all():
        return reference, {"days": days, "rows": len(applied), "narrowed": False}
    rows = reference.rows.loc[near].reset_index(drop=True)
    matched = pd.to_datetime(rows["applied_at"], utc=True)
    description = {
        "days": days,
        "rows": len(rows),
        "narrowed": True,
        "window_as_of": {"first": first.isoformat(), "last": last.isoformat()},
        "applied": {"first": matched.min().isoformat(), "last": matched.max().isoformat()},
    }
    return replace(reference, rows=rows), description
