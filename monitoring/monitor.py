"""One drift check end to end, and what serving reads back.

`run_drift_check` computes the fast path (`monitoring.drift`), the Evidently report, the chart and
the cohort performance, and stores them under `<data_dir>/monitoring/<UTC timestamp>/`. The folder is
written as `.<timestamp>.partial/` and renamed when complete; a check that fails leaves nothing. A
window smaller than the policy's `min_rows` is refused before anything is written
(`InsufficientWindowError`): its PSI could not be told apart from noise.

    summary.json          the JSON summary (written last, by atomic rename: its presence marks a
                          complete check)
    report.html           our summary + performance by cohort, then Evidently's drift report
    evidently.html        Evidently's report alone (score, PD and the most shifted features)
    top_features.png      bar chart of the most shifted features
    reference_profile.json  the reference bins used (to re-score without the reference sample)

then logs the folder to the MLflow monitoring experiment when a tracking URI is given.
`latest_drift_summary` / `latest_drift_report_path` / `latest_drift_gauges` read the newest check.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pandas as pd

from monitoring.drift import DriftPolicy, DriftSummary, compute_drift, drift_gauges, monitored_columns
from monitoring.psi import ReferenceProfile, is_numeric_column

MONITORING_DIR: Final = "monitoring"
SUMMARY_FILE: Final = "summary.json"
REPORT_FILE: Final = "report.html"
EVIDENTLY_FILE: Final = "evidently.html"
CHART_FILE: Final = "top_features.png"
PROFILE_FILE: Final = "reference_profile.json"
EXIT_DRIFT: Final = 3
PARTIAL_SUFFIX: Final = ".partial"


class DriftInputError(ValueError):
    """The two sides of a check cannot be compared as given (the caller can fix the input)."""


class InsufficientWindowError(DriftInputError):
    """The current window is empty or smaller than the alarm rule's `min_rows`."""

    def __init__(self, n_current: int, min_rows: int) -> None:
        self.n_current = n_current
        self.min_rows = min_rows
        found = "no decisions" if n_current == 0 else f"only {n_current} decisions"
        super().__init__(
            f"{found} in the window; a drift check needs at least {min_rows} "
            "(score more applications, or widen --window / --last)"
        )


@dataclass(frozen=True)
class DriftCheck:
    """A stored drift check: the summary and where its outputs are."""

    summary: DriftSummary
    payload: dict[str, Any]
    directory: Path
    report_path: Path
    chart_path: Path
    mlflow_run_id: str | None

    @property
    def exit_code(self) -> int:
        """0 when stable or watch, 3 when drift was found."""
        return EXIT_DRIFT if self.summary.status == "drift" else 0


def monitoring_root(data_dir: Path) -> Path:
    """Folder holding one sub-folder per drift check."""
    return data_dir / MONITORING_DIR


@contextmanager
def _check_dir(data_dir: Path, now: datetime) -> Iterator[tuple[Path, Path]]:
    """(partial folder to write in, final folder name); renamed by the caller, removed on failure."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    final = monitoring_root(data_dir) / stamp
    partial = final.with_name(f".{stamp}{PARTIAL_SUFFIX}")
    partial.mkdir(parents=True, exist_ok=False)
    try:
        yield partial, final
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def evidently_columns(summary: DriftSummary) -> list[str]:
    """The features Evidently's report shows, most shifted first: every one with an alarm, and at
    least the policy's `top_k`. Its plots cost a fraction of a second per column; PSI, band and
    quality of every feature are in the summary already."""
    ranked = summary.top_features(len(summary.features))
    alarmed = [f.name for f in ranked if f.alarm != "none"]
    return list(dict.fromkeys([*alarmed, *(f.name for f in ranked[: summary.policy.top_k])]))


def _write_json_atomic(payload: Mapping[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def run_drift_check(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    data_dir: Path,
    features: Sequence[str] | None = None,
    shared: Collection[str] = (),
    segment: str | None = None,
    policy: DriftPolicy | None = None,
    outcomes: pd.DataFrame | None = None,
    context: Mapping[str, Any] | None = None,
    evidently: bool = True,
    tracking_uri: str | None = None,
    artifact_root: Path | None = None,
    now: datetime | None = None,
) -> DriftCheck:
    """Compare `current` with `reference`, store every output, log to MLflow; see the module doc.

    Args:
        reference: the model version's reference sample (feature rows, `score` / `pd`).
        current: the window's feature rows.
        data_dir: the service's data dir (outputs go to `<data_dir>/monitoring/<timestamp>/`).
        features: monitored features (default: the reference's feature columns).
        shared: features with one value per cooperative or village (see `monitoring.drift`).
        segment: optional segment column (e.g. `county_id`).
        policy: alarm-rule thresholds.
        outcomes: decisions with `applied_at`, `pd`, nullable `defaulted` for the cohort table.
        context: extra JSON fields for the summary (window, reference source, model version).
        evidently: also run Evidently's full report (slow; the fast path never needs it).
        tracking_uri: MLflow tracking URI (None: do not log).
        artifact_root: MLflow artifact root for a new monitoring experiment.
        now: the check's time (default: now, UTC).

    Raises:
        InsufficientWindowError: fewer than `policy.min_rows` current rows (nothing is written).
        DriftInputError: the window carries none of the monitored features.
    """
    from monitoring.performance import cohort_performance
    from monitoring.render import render_top_features_png, write_report_html

    now = now or datetime.now(UTC)
    policy = policy or DriftPolicy()
    if len(current) < policy.min_rows:
        raise InsufficientWindowError(len(current), policy.min_rows)
    columns = list(features) if features is not None else monitored_columns(reference, segment)
    if not any(c in current for c in columns):
        raise DriftInputError(
            f"the window's rows carry none of the {len(columns)} monitored features "
            "(were they scored by another model, or is this the wrong file?)"
        )
    profile = ReferenceProfile.fit(reference, columns, bins=policy.bins)
    summary = compute_drift(
        reference, current, features=columns, segment=segment, policy=policy, profile=profile, shared=shared
    )
    payload = summary.to_dict()
    payload["created_at"] = now.isoformat()
    payload["shared_features"] = sorted(set(shared) & set(columns))
    payload.update(dict(context or {}))
    if outcomes is not None and not outcomes.empty:
        payload["performance"] = cohort_performance(outcomes)
    with _check_dir(data_dir, now) as (directory, final):
        evidently_path: Path | None = None
        if evidently:
            from monitoring.evidently_report import evidently_drift_report

            chosen = evidently_columns(summary)
            numeric = [c for c in chosen if c in reference and is_numeric_column(reference[c])]
            categorical = [c for c in chosen if c not in numeric]
            scored = [c for c in ("score", "pd") if c in reference and c in current]
            evidently_path = directory / EVIDENTLY_FILE
            found = evidently_drift_report(
                reference,
                current,
                numeric=[*scored, *numeric],
                categorical=categorical,
                html_path=evidently_path,
            )
            payload["evidently"] = found.to_dict()
        chart = render_top_features_png(payload["top_features"], directory / CHART_FILE)
        report = write_report_html(
            payload, directory / REPORT_FILE, chart_png=chart, evidently_html=evidently_path
        )
        _write_json_atomic(profile.to_dict(), directory / PROFILE_FILE)
        payload["outputs"] = {
            "directory": str(final),
            "report": str(final / report.name),
            "chart": str(final / chart.name),
            "evidently": None if evidently_path is None else str(final / EVIDENTLY_FILE),
        }
        run_id: str | None = None
        if tracking_uri is not None:
            from monitoring.tracking import log_drift_run

            _write_json_atomic(payload, directory / SUMMARY_FILE)  # logged with the artifacts
            run_id = log_drift_run(
                payload, directory, name=final.name, tracking_uri=tracking_uri, artifact_root=artifact_root
            )
            payload["mlflow_run_id"] = run_id
        _write_json_atomic(payload, directory / SUMMARY_FILE)
        directory.rename(final)
    return DriftCheck(summary, payload, final, final / report.name, final / chart.name, run_id)


def latest_complete_dir(root: Path, marker: str) -> Path | None:
    """The newest time-stamped run folder under `root` whose `marker` file (written last) exists.

    Hidden folders (a check still being written) are never complete.
    """
    if not root.is_dir():
        return None
    done = sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / marker).is_file()
    )
    return done[-1] if done else None


def _latest_dir(data_dir: Path) -> Path | None:
    return latest_complete_dir(monitoring_root(data_dir), SUMMARY_FILE)


def latest_drift_summary(data_dir: Path) -> dict[str, Any] | None:
    """The newest complete drift check's JSON summary, or None before the first check."""
    directory = _latest_dir(data_dir)
    if directory is None:
        return None
    loaded: dict[str, Any] = json.loads((directory / SUMMARY_FILE).read_text(encoding="utf-8"))
    return loaded


def latest_drift_report_path(data_dir: Path) -> Path | None:
    """The newest check's HTML report (ours + Evidently's), or None."""
    directory = _latest_dir(data_dir)
    if directory is None or not (directory / REPORT_FILE).is_file():
        return None
    return directory / REPORT_FILE


def latest_drift_gauges(data_dir: Path) -> dict[str, float]:
    """Feature -> PSI of the newest check (empty before the first): Prometheus-gauge values."""
    summary = latest_drift_summary(data_dir)
    return {} if summary is None else drift_gauges(summary)
