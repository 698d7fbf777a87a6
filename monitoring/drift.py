"""Drift of a current window of feature rows against the model's reference sample: the alarm rule.

Per feature: PSI against the reference bins (`monitoring.psi`), its band, and the data-quality checks
(`monitoring.quality`); the same for the model's `score` and `pd` when both frames carry them; and,
given a segment column (cooperative, county), the PSI of each segment against its own reference rows.

The alarm rule (overall status), chosen so that sampling noise in small windows does not alarm:

- a PSI counts only with enough support: at least `min_rows` current rows AND above the PSI that
  sampling noise alone exceeds once in a thousand windows (`psi_noise_floor`, about
  (1/n + 1/m) x chi2_{bins-1} at 99.9%). With 10 bins that floor is 0.06 for 500 vs 5,000 rows,
  0.28 for 100 vs 5,000: a 100-row window cannot show a supported shift. For a `shared` feature
  (one value per cooperative or village) n and m count distinct values, i.e. groups, not rows;
- **drift** when any monitored feature (or the score / PD) has a supported PSI > 0.25, when any
  feature has a data-quality issue (missing-share jump, rows beyond the reference range, unseen
  categories; each needs at least `quality.min_count` rows), or when a segment with at least
  `min_segment_rows` rows on both sides has a supported PSI > 0.25, or a segment never seen in the
  reference holds at least `quality.min_count` rows and `quality.max_unseen_share` of the window;
- **watch** when the worst supported PSI (feature, score or segment) is in 0.1-0.25;
- **stable** otherwise. A window below `min_rows` is reported `insufficient_data` (status stable).

Features in `policy.ignore` are reported but never alarm (e.g. counters that grow with calendar time).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import pandas as pd

from monitoring.psi import (
    DEFAULT_BINS,
    PSI_SHIFT,
    PSI_WATCH,
    Band,
    FeaturePSI,
    ReferenceProfile,
    feature_psi,
    is_numeric_column,
)
from monitoring.quality import FeatureQuality, QualityRule, quality_checks

Status = Literal["stable", "watch", "drift"]
Alarm = Literal["none", "watch", "drift"]

SCORE_COLUMNS: Final = ("score", "pd")
# Keys, times and decision fields that travel with feature rows but are not model inputs.
NON_FEATURE_COLUMNS: Final = frozenset(
    {
        "request_id",
        "application_id",
        "member_id",
        "coop_id",
        "county_id",
        "village_id",
        "as_of",
        "applied_at",
        "created_at",
        "observed_at",
        "decision",
        "grade",
        "defaulted",
        "model_name",
        "model_version",
        "latency_ms",
        "label",
        "split",
    }
)
_RANK: Final[dict[str, int]] = {"none": 0, "watch": 1, "drift": 2}
_STATUS_RANK: Final[dict[str, int]] = {"stable": 0, "watch": 1, "drift": 2}


@dataclass(frozen=True)
class DriftPolicy:
    """Thresholds of the alarm rule (module docstring); defaults are the credit team's bands."""

    bins: int = DEFAULT_BINS
    watch: float = PSI_WATCH
    shift: float = PSI_SHIFT
    min_rows: int = 200
    noise_quantile: float = 0.999
    min_segment_rows: int = 200
    top_k: int = 10
    quality: QualityRule = field(default_factory=QualityRule)
    ignore: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's (or the score's) PSI, band, support, quality and resulting alarm."""

    name: str
    kind: str
    psi: float
    band: Band
    supported: bool
    noise_floor: float
    alarm: Alarm
    reasons: tuple[str, ...]
    quality: FeatureQuality | None = None
    groups: tuple[int, int] | None = None  # (reference, current) groups of a shared feature

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "kind": self.kind,
            "psi": round(self.psi, 6),
            "band": self.band,
            "supported": self.supported,
            "noise_floor": round(self.noise_floor, 6),
            "groups": None if self.groups is None else list(self.groups),
            "alarm": self.alarm,
            "reasons": list(self.reasons),
            "quality": None if self.quality is None else self.quality.to_dict(),
        }


@dataclass(frozen=True)
class SegmentDrift:
    """Drift inside one segment (e.g. one county) against the same segment's reference rows."""

    column: str
    value: str
    n_reference: int
    n_current: int
    status: Status
    new: bool
    top_features: tuple[tuple[str, float], ...] = ()
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "column": self.column,
            "value": self.value,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "status": self.status,
            "new": self.new,
            "top_features": [{"name": n, "psi": round(p, 6)} for n, p in self.top_features],
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class DriftSummary:
    """Everything one drift check found; `to_dict()` is the JSON summary."""

    status: Status
    reasons: tuple[str, ...]
    n_reference: int
    n_current: int
    insufficient_data: bool
    features: tuple[FeatureDrift, ...]
    scores: tuple[FeatureDrift, ...]
    segments: tuple[SegmentDrift, ...]
    policy: DriftPolicy
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    context: dict[str, Any] = field(default_factory=dict)

    def top_features(self, k: int | None = None) -> list[FeatureDrift]:
        """Most shifted features first: alarm level, then PSI."""
        ranked = sorted(self.features, key=lambda f: (_RANK[f.alarm], f.psi), reverse=True)
        return ranked[: k if k is not None else self.policy.top_k]

    def psi_by_feature(self) -> dict[str, float]:
        """Feature (and score / pd) -> PSI: the values a Prometheus gauge exports."""
        return {f.name: f.psi for f in (*self.features, *self.scores)}

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary: per feature PSI and band, overall status, top shifted features."""
        return {
            "status": self.status,
            "reasons": list(self.reasons),
            "created_at": self.created_at.isoformat(),
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "insufficient_data": self.insufficient_data,
            "top_features": [
                {"name": f.name, "psi": round(f.psi, 6), "band": f.band, "alarm": f.alarm}
                for f in self.top_features()
            ],
            "scores": {f.name: f.to_dict() for f in self.scores},
            "features": {f.name: f.to_dict() for f in self.features},
            "segments": [s.to_dict() for s in self.segments],
            "policy": self.policy.to_dict(),
            **self.context,
        }


def monitored_columns(reference: pd.DataFrame, segment: str | None = None) -> list[str]:
    """Feature columns of a reference sample: everything but keys, times, decisions and score/PD.

    Names with a leading `_` are the model artifacts' own columns (no feature may start with one).
    """
    skip = set(NON_FEATURE_COLUMNS) | set(SCORE_COLUMNS) | ({segment} if segment else set())
    return [
        str(c)
        for c in reference.columns
        if str(c) not in skip
        and not str(c).startswith("_")
        and not pd.api.types.is_datetime64_any_dtype(reference[c].dtype)
    ]


def _judge(
    name: str,
    kind: str,
    measured: FeaturePSI,
    quality: FeatureQuality | None,
    policy: DriftPolicy,
) -> FeatureDrift:
    supported = measured.n_current >= policy.min_rows and measured.psi > measured.noise_floor
    reasons: list[str] = []
    alarm: Alarm = "none"
    if supported and measured.band == "shift":
        alarm = "drift"
        support = f"n={measured.n_current}"
        if measured.groups is not None:
            support += f" in {measured.groups[1]} groups"
        reasons.append(
            f"{name}: PSI {measured.psi:.3f} > {policy.shift} "
            f"({support}, noise floor {measured.noise_floor:.3f})"
        )
    elif supported and measured.band == "watch":
        alarm = "watch"
    if quality is not None and quality.issues:
        alarm = "drift"
        reasons += [_quality_reason(quality, issue) for issue in quality.issues]
    if name in policy.ignore:
        alarm, reasons = "none", []
    return FeatureDrift(
        name,
        kind,
        measured.psi,
        measured.band,
        supported,
        measured.noise_floor,
        alarm,
        tuple(reasons),
        quality,
        measured.groups,
    )


def _quality_reason(quality: FeatureQuality, issue: str) -> str:
    name = quality.name
    if issue == "column_absent":
        return f"{name}: column absent from the current window"
    if issue == "missing_increase":
        return (
            f"{name}: missing share {quality.missing_share_current:.1%} "
            f"vs {quality.missing_share_reference:.1%} in the reference"
        )
    if issue == "out_of_range":
        return (
            f"{name}: {quality.below_range + quality.above_range} rows ({quality.out_of_range_share:.2%}) "
            f"outside the reference range ({quality.below_range} below, {quality.above_range} above)"
        )
    return (
        f"{name}: {quality.unseen} rows ({quality.unseen_share:.2%}) with categories unseen in the reference"
    )


def _score_drift(
    reference: pd.DataFrame, current: pd.DataFrame, policy: DriftPolicy
) -> tuple[FeatureDrift, ...]:
    names = [c for c in SCORE_COLUMNS if c in reference and c in current]
    if not names:
        return ()
    profile = ReferenceProfile.fit(reference, names, bins=policy.bins)
    measured = _psi(profile, current, policy, ())
    return tuple(_judge(n, "score", measured[n], None, policy) for n in names)


def _psi(
    profile: ReferenceProfile, current: pd.DataFrame, policy: DriftPolicy, shared: Collection[str]
) -> dict[str, FeaturePSI]:
    """PSI of every profiled column under the policy's noise, watch and shift settings."""
    return feature_psi(
        profile,
        current,
        noise_quantile=policy.noise_quantile,
        watch=policy.watch,
        shift=policy.shift,
        shared=shared,
    )


def _segment_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    segment: str,
    columns: Sequence[str],
    policy: DriftPolicy,
    shared: Collection[str],
) -> tuple[SegmentDrift, ...]:
    ref_keys = reference[segment].astype(str)
    cur_keys = current[segment].astype(str)
    ref_counts = ref_keys.value_counts()
    results: list[SegmentDrift] = []
    n = len(current)
    rule = policy.quality
    for value, n_cur in cur_keys.value_counts().sort_index().items():
        n_ref = int(ref_counts.get(value, 0))
        key = str(value)
        if n_ref == 0:
            alarm = n_cur >= rule.min_count and n_cur / max(n, 1) >= rule.max_unseen_share
            reason = (
                f"new segment {segment}={key}: {n_cur} rows ({n_cur / max(n, 1):.1%}) unseen in the reference"
            )
            results.append(
                SegmentDrift(
                    segment,
                    key,
                    0,
                    int(n_cur),
                    "drift" if alarm else "stable",
                    True,
                    (),
                    (reason,) if alarm else (),
                )
            )
            continue
        if n_cur < policy.min_segment_rows or n_ref < policy.min_segment_rows:
            results.append(SegmentDrift(segment, key, n_ref, int(n_cur), "stable", False))
            continue
        ref_part = reference.loc[(ref_keys == key).to_numpy()]
        cur_part = current.loc[(cur_keys == key).to_numpy()]
        profile = ReferenceProfile.fit(ref_part, columns, bins=policy.bins)
        measured = _psi(profile, cur_part, policy, shared)
        judged = [_judge(c, "segment", measured[c], None, policy) for c in columns]
        status = _status(max((_RANK[j.alarm] for j in judged), default=0))
        ranked = sorted(judged, key=lambda j: (_RANK[j.alarm], j.psi), reverse=True)[: policy.top_k]
        reasons = tuple(f"segment {segment}={key}: {r}" for j in judged for r in j.reasons)
        results.append(
            SegmentDrift(
                segment,
                key,
                n_ref,
                int(n_cur),
                status,
                False,
                tuple((j.name, j.psi) for j in ranked),
                reasons,
            )
        )
    return tuple(results)


def _status(rank: int) -> Status:
    if rank >= 2:
        return "drift"
    return "watch" if rank == 1 else "stable"


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    features: Sequence[str] | None = None,
    segment: str | None = None,
    policy: DriftPolicy | None = None,
    profile: ReferenceProfile | None = None,
    shared: Collection[str] = (),
) -> DriftSummary:
    """Compare a current window of feature rows with the reference sample (the fast path).

    Args:
        reference: the reference sample (feature rows, optionally `score` / `pd` and a segment column).
        current: the window's feature rows (same columns; extra columns are ignored).
        features: monitored features (default: `monitored_columns(reference, segment)`).
        segment: optional column (e.g. `county_id`) whose values are checked one by one.
        policy: thresholds of the alarm rule.
        profile: reference bins fitted before (skips refitting, e.g. in a long-running server).
        shared: features with one value per cooperative or village (support counted in groups).

    Returns:
        The summary with the overall status and the reasons for it.
    """
    policy = policy or DriftPolicy()
    columns = list(features) if features is not None else monitored_columns(reference, segment)
    if profile is None:
        profile = ReferenceProfile.fit(reference, columns, bins=policy.bins)
    measured = _psi(profile, current, policy, shared)
    quality = quality_checks(profile, current, policy.quality, shared=shared)
    judged = tuple(
        _judge(name, profile.features[name].kind, measured[name], quality[name], policy) for name in columns
    )
    scores = _score_drift(reference, current, policy)
    segments: tuple[SegmentDrift, ...] = ()
    if segment is not None and segment in reference and segment in current:
        numeric = [c for c in columns if c in reference and is_numeric_column(reference[c])]
        segments = _segment_drift(reference, current, segment, numeric or columns, policy, shared)
    reasons = [r for f in (*judged, *scores) for r in f.reasons] + [r for s in segments for r in s.reasons]
    worst = max(
        [_RANK[f.alarm] for f in (*judged, *scores)]
        + [_RANK[s.status] if s.status != "stable" else 0 for s in segments],
        default=0,
    )
    status = _status(worst)
    insufficient = len(current) < policy.min_rows
    if insufficient:
        reasons.append(f"only {len(current)} current rows (< {policy.min_rows}): PSI not supported")
    return DriftSummary(
        status=status,
        reasons=tuple(reasons),
        n_reference=len(reference),
        n_current=len(current),
        insufficient_data=insufficient,
        features=judged,
        scores=scores,
        segments=segments,
        policy=policy,
    )


def drift_gauges(summary: Mapping[str, Any]) -> dict[str, float]:
    """Feature (and score / pd) -> PSI from a stored JSON summary, ready for a Prometheus gauge."""
    gauges = {name: float(item["psi"]) for name, item in summary.get("features", {}).items()}
    gauges.update({name: float(item["psi"]) for name, item in summary.get("scores", {}).items()})
    return gauges
