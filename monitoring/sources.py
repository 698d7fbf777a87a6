"""Where the two sides of a drift check come from: the reference sample and the current window.

Reference: the reference sample stored with a model version (a Parquet of feature rows + `score` /
`pd`), read from a path, or from the MLflow registry with `reference_from_registry`.
Current: any Parquet / CSV of feature rows, or the decision log over a window. The decision log is
serving's: it plugs in a reader `(since, until, last) -> rows` (e.g. `DecisionLog.feature_rows`),
so monitoring never imports serving.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pandas as pd

DecisionRowsReader = Callable[[datetime | None, datetime | None, int | None], Iterable[Mapping[str, Any]]]

_WINDOW: Final = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_UNITS: Final = {"h": "hours", "d": "days", "w": "weeks"}
REFERENCE_ARTIFACT_PATTERN: Final = "*reference*.parquet"


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
    """The decision log's feature rows (with `pd`, `score`, `created_at`) over a time range or the
    last N decisions, as one frame; `read_rows` is serving's reader."""
    rows = list(read_rows(since, until, last))
    frame = pd.DataFrame.from_records(rows)
    if "created_at" in frame:
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True, format="ISO8601")
    for column in frame.columns:
        if frame[column].dtype == object and column not in ("created_at",):
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


def reference_from_registry(
    model: str,
    *,
    model_name: str,
    tracking_uri: str,
    download_dir: Path,
) -> pd.DataFrame:
    """The reference sample stored with a registered model version (alias, version or URI).

    Downloads the version's artifacts and reads the one Parquet whose name contains `reference`.
    A thin hook: once `models` exposes its own loader (with the SHA-256 check), call that instead.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=registry_model_uri(model, model_name), dst_path=str(download_dir)
        )
    )
    candidates = sorted(local.rglob(REFERENCE_ARTIFACT_PATTERN))
    if not candidates:
        raise FileNotFoundError(f"model {model!r} of {model_name!r} stores no reference sample Parquet")
    return pd.read_parquet(candidates[0])
