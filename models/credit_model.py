"""The credit model as one object: LightGBM booster + Platt calibration + score scale + feature spec.

    margin  m = phi_0 + sum_j phi_j            (phi = LightGBM `pred_contrib`, = SHAP TreeExplainer)
    log-odds of default = a * m + b            (Platt, a > 0)
    score   = offset - factor * (a * m + b)
            = [offset - factor * (b + a * phi_0)] + sum_j (-factor * a * phi_j)
            =  base points                      + feature points

so base points plus the points of all features (hence of all reason groups) equal the score. The
per-applicant path (`explain`, `assess`, and `predict_pd`/`score` on a mapping) uses numpy only:
serving calls it in process for every request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from models.calibration import PlattCalibration
from models.policy import Decision, DecisionPolicy
from models.reasons import Assessment, Explanation, FeatureContribution, Reason
from models.scale import ScoreScale
from models.spec import ModelSpec

if TYPE_CHECKING:
    import lightgbm as lgb
    import pandas as pd

FloatArray = npt.NDArray[np.float64]
FeatureRow = Mapping[str, Any]

BOOSTER_FILE: Final = "booster.txt"
CALIBRATION_FILE: Final = "calibration.json"
SCALE_FILE: Final = "scale.json"
POLICY_FILE: Final = "policy.json"
SPEC_FILE: Final = "feature_spec.json"
MODEL_FILES: Final = (BOOSTER_FILE, CALIBRATION_FILE, SCALE_FILE, POLICY_FILE, SPEC_FILE)


@dataclass(frozen=True)
class ModelIdentity:
    """Where a loaded model came from in the registry."""

    name: str
    version: str
    run_id: str = ""
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "aliases": list(self.aliases),
        }


@dataclass(frozen=True)
class PointsBreakdown:
    """Score decomposition of many rows: `score = base_points + feature_points.sum(axis=1)`."""

    base_points: FloatArray  # (rows,)
    feature_points: FloatArray  # (rows, features), spec column order

    @property
    def score(self) -> FloatArray:
        """Scores reassembled from the points."""
        return np.asarray(self.base_points + self.feature_points.sum(axis=1))


class CreditModel:
    """Calibrated, explainable PD model; pickle-free on disk (`save` / `load`)."""

    def __init__(
        self,
        booster: lgb.Booster,
        spec: ModelSpec,
        calibration: PlattCalibration,
        scale: ScoreScale | None = None,
        policy: DecisionPolicy | None = None,
        identity: ModelIdentity | None = None,
    ) -> None:
        if booster.num_feature() != len(spec.features):
            raise ValueError(f"booster has {booster.num_feature()} features, spec has {len(spec.features)}")
        self.booster = booster
        self.spec = spec
        self.calibration = calibration
        self.scale = scale or ScoreScale()
        policy = policy or DecisionPolicy()
        # The thin-file rule can only read features this model has.
        self.policy = DecisionPolicy(
            approve_max_pd=policy.approve_max_pd,
            decline_min_pd=policy.decline_min_pd,
            evidence=policy.evidence.restricted_to(set(spec.names)),
            selection=policy.selection,
        )
        self.identity = identity
        # Precomputed for the per-row path.
        self._names = spec.names
        self._index = spec.index
        self._width = len(self._names)
        self._categorical = {
            f.name: {level: float(code) for code, level in enumerate(f.categories)}
            for f in spec.features
            if f.kind == "categorical"
        }
        group_names = [g.name for g in spec.reason_groups]
        self._group_names = group_names
        group_of = {name: i for i, name in enumerate(group_names)}
        self._group_ids = np.array([group_of[f.reason_group] for f in spec.features], dtype=np.int64)
        self._group_members = [np.flatnonzero(self._group_ids == g) for g in range(len(group_names))]
        self._group_member_lists = [members.tolist() for members in self._group_members]
        self._points_per_margin = -self.scale.factor * calibration.slope

    # ---- identity ----

    @property
    def feature_names(self) -> list[str]:
        """Input names in model column order."""
        return list(self._names)

    @property
    def feature_set_version(self) -> str:
        """Feature-set version the model was trained on (empty for table-trained models)."""
        return self.spec.feature_set_version

    @property
    def catalog_feature_set(self) -> str:
        """The feature-catalog version whose online vectors this model scores; empty for a model
        trained on a table (its `feature_set_version` is the table's checksum, not a catalog's)."""
        return self.spec.feature_set_version if self.spec.source == "feature_views" else ""

    # ---- inputs ----

    def vector(self, row: FeatureRow, *, strict: bool = True) -> FloatArray:
        """One applicant's features (name -> value; None/NaN missing) as a 1 x n float matrix.

        With `strict`, a feature absent from `row` is an error (a feature-set mismatch must fail
        loudly); pass it explicitly as None to mean "missing".
        """
        out = np.empty((1, self._width), dtype=np.float64)
        values = out[0]
        categorical = self._categorical
        for i, name in enumerate(self._names):
            if name in row:
                value = row[name]
            elif strict:
                raise KeyError(f"feature {name!r} missing from the applicant's features")
            else:
                value = None
            if name in categorical:
                values[i] = categorical[name].get(str(value), math.nan) if value is not None else math.nan
            else:
                values[i] = math.nan if value is None else float(value)
        return out

    def matrix(self, features: Any) -> FloatArray:
        """Model matrix from a mapping (one row), a DataFrame (named columns) or a 2-D array."""
        if isinstance(features, Mapping):
            return self.vector(features)
        if hasattr(features, "columns"):
            return self._frame_matrix(features)
        array = np.asarray(features, dtype=np.float64)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self._width:
            raise ValueError(f"expected a (rows, {self._width}) matrix, got {array.shape}")
        return array

    def _frame_matrix(self, frame: pd.DataFrame) -> FloatArray:
        return encode_frame(self.spec, frame)

    # ---- predictions ----

    def _predict(self, x: FloatArray, *, contrib: bool) -> FloatArray:
        # One thread for a handful of rows: OpenMP start-up costs more than it saves.
        threads = 1 if len(x) <= 64 else 0
        if contrib:
            out = self.booster.predict(x, pred_contrib=True, num_threads=threads)
        else:
            out = self.booster.predict(x, raw_score=True, num_threads=threads)
        return np.asarray(out, dtype=np.float64)

    def margin(self, features: Any) -> FloatArray:
        """Raw booster margin (uncalibrated log-odds of default)."""
        x = self.matrix(features)
        return self._predict(x, contrib=False)

    def predict_pd(self, features: Any) -> FloatArray:
        """Calibrated probability of default per row."""
        return self.calibration.pd(self.margin(features))

    def score(self, features: Any) -> FloatArray:
        """Score per row (higher is safer)."""
        return self.scale.score_from_log_odds(self.calibration.log_odds(self.margin(features)))

    def grades(self, features: Any) -> list[str]:
        """Grade per row."""
        return self.scale.grades_of(self.score(features))

    def contributions(self, features: Any) -> FloatArray:
        """Margin SHAP contributions per row: (rows, features + 1), the last column the expected value."""
        x = self.matrix(features)
        return self._predict(x, contrib=True)

    def points(self, features: Any) -> PointsBreakdown:
        """Score points of every feature, and the base points, per row."""
        return self._points_from_contrib(self.contributions(features))

    def _points_from_contrib(self, contrib: FloatArray) -> PointsBreakdown:
        a, b = self.calibration.slope, self.calibration.intercept
        factor, offset = self.scale.factor, self.scale.offset
        base = offset - factor * (b + a * contrib[:, -1])
        return PointsBreakdown(
            base_points=np.asarray(base), feature_points=contrib[:, :-1] * self._points_per_margin
        )

    def group_points(self, features: Any) -> tuple[FloatArray, list[str]]:
        """Points per reason group per row (rows, groups), and the group names."""
        breakdown = self.points(features)
        out = np.zeros((breakdown.feature_points.shape[0], len(self._group_names)))
        for g, members in enumerate(self._group_members):
            out[:, g] = breakdown.feature_points[:, members].sum(axis=1)
        return out, list(self._group_names)

    # ---- one applicant ----

    def explain(self, features: FeatureRow, top_k: int = 4) -> Explanation:
        """PD, score, grade and the score decomposed by reason group, with the top lowering reasons."""
        x = self.vector(features)
        contrib = np.asarray(self.booster.predict(x, pred_contrib=True, num_threads=1), dtype=np.float64)
        return self._explanation(x[0], contrib, top_k)

    def explain_many(self, rows: Sequence[FeatureRow], top_k: int = 4) -> list[Explanation]:
        """`explain` for several applicants from one booster call (what a batch request uses)."""
        if not rows:
            return []
        x = np.concatenate([self.vector(row) for row in rows])
        contrib = self._predict(x, contrib=True)
        return [self._explanation(x[i], contrib[i : i + 1], top_k) for i in range(len(rows))]

    def _explanation(self, x: FloatArray, contrib: FloatArray, top_k: int) -> Explanation:
        breakdown = self._points_from_contrib(contrib)
        feature_points = breakdown.feature_points[0]
        base = float(breakdown.base_points[0])
        points = feature_points.tolist()
        group_points = {
            name: math.fsum([points[j] for j in members])
            for name, members in zip(self._group_names, self._group_member_lists, strict=True)
        }
        score = base + math.fsum(group_points.values())
        log_odds = (self.scale.offset - score) / self.scale.factor
        pd_ = 1.0 / (1.0 + math.exp(-log_odds))
        lowering = sorted((p, g) for g, p in group_points.items() if p < 0)[: max(top_k, 0)]
        values = x.tolist()
        reasons = tuple(self._reason(group, p, values, points) for p, group in lowering)
        return Explanation(
            pd=pd_,
            score=score,
            grade=self.scale.grade(score),
            base_points=base,
            group_points=group_points,
            reasons=reasons,
        )

    def _reason(self, group: str, points: float, x: list[float], feature_points: list[float]) -> Reason:
        spec = self.spec.group(group)
        members = self._group_member_lists[self._group_names.index(group)]
        ordered = sorted(members, key=lambda j: feature_points[j])
        contributions = tuple(
            FeatureContribution(
                name=self._names[j],
                value=self._display_value(j, x[j]),
                points=feature_points[j],
                description_zh=self.spec.features[j].description_zh,
                description_en=self.spec.features[j].description_en,
            )
            for j in ordered
            if feature_points[j] != 0.0
        )
        return Reason.of_group(group, spec.label_zh, spec.label_en, points, contributions)

    def _display_value(self, j: int, value: float) -> float | str | None:
        """A feature value as the applicant sees it: the category's name, or None when missing.

        The one NaN -> None conversion of a reason's values: serving passes them on unchanged.
        """
        if math.isnan(value):
            return None
        feature = self.spec.features[j]
        if feature.kind == "categorical":
            code = int(value)
            return feature.categories[code] if 0 <= code < len(feature.categories) else None
        return value

    def decide(self, features: FeatureRow, pd_: float | None = None) -> Decision:
        """The policy's decision for one applicant (computes the PD unless given)."""
        if pd_ is None:
            pd_ = float(self.predict_pd(features)[0])
        return self.policy.decide(pd_, {n: features.get(n) for n in self.policy.evidence.features})

    def assess(self, features: FeatureRow, top_k: int = 4) -> Assessment:
        """PD, score, grade, decision and reasons for one applicant, from one booster call."""
        explanation = self.explain(features, top_k=top_k)
        return Assessment(explanation=explanation, decision=self.decide(features, explanation.pd))

    def assess_many(self, rows: Sequence[FeatureRow], top_k: int = 4) -> list[Assessment]:
        """`assess` for several applicants from one booster call."""
        explanations = self.explain_many(rows, top_k=top_k)
        return [
            Assessment(explanation=e, decision=self.decide(row, e.pd))
            for row, e in zip(rows, explanations, strict=True)
        ]

    def decisions(self, features: Any, pds: Sequence[float] | FloatArray | None = None) -> list[Decision]:
        """Policy decisions for many rows (a DataFrame or a list of mappings)."""
        if isinstance(features, Mapping):
            return [self.decide(features)]
        values = self.predict_pd(features) if pds is None else np.asarray(pds, dtype=np.float64)
        rows: list[Mapping[str, Any]]
        if hasattr(features, "columns"):
            evidence = [n for n in self.policy.evidence.features if n in features.columns]
            rows = features[evidence].to_dict("records") if evidence else [{}] * len(values)
        else:
            rows = list(features)
        return [self.policy.decide(float(p), row) for p, row in zip(values, rows, strict=True)]

    # ---- storage (pickle-free) ----

    def save(self, directory: Path) -> list[Path]:
        """Write booster (LightGBM text) and calibration / scale / policy / spec (JSON)."""
        directory.mkdir(parents=True, exist_ok=True)
        texts = {
            BOOSTER_FILE: self.booster.model_to_string(),
            CALIBRATION_FILE: _json(self.calibration.to_dict()),
            SCALE_FILE: _json(self.scale.to_dict()),
            POLICY_FILE: _json(self.policy.to_dict()),
            SPEC_FILE: self.spec.to_json(),
        }
        paths = []
        for name, text in texts.items():
            path = directory / name
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        return paths

    @classmethod
    def load(cls, directory: Path, identity: ModelIdentity | None = None) -> CreditModel:
        """Read a model written by `save` (no code is executed from the files)."""
        import lightgbm as lgb

        def read_json(name: str) -> dict[str, Any]:
            data: dict[str, Any] = json.loads((directory / name).read_text(encoding="utf-8"))
            return data

        booster = lgb.Booster(model_str=(directory / BOOSTER_FILE).read_text(encoding="utf-8"))
        return cls(
            booster=booster,
            spec=ModelSpec.from_dict(read_json(SPEC_FILE)),
            calibration=PlattCalibration.from_dict(read_json(CALIBRATION_FILE)),
            scale=ScoreScale.from_dict(read_json(SCALE_FILE)),
            policy=DecisionPolicy.from_dict(read_json(POLICY_FILE)),
            identity=identity,
        )


def encode_frame(spec: ModelSpec, frame: pd.DataFrame) -> FloatArray:
    """Model matrix of a frame with the spec's columns: numbers as float64, categories as level codes.

    Unknown categories and unparseable numbers become NaN (LightGBM's missing value).
    """
    import pandas as pd

    missing = [n for n in spec.names if n not in frame.columns]
    if missing:
        raise KeyError(f"features missing from the frame: {missing}")
    out = np.empty((len(frame), len(spec.features)), dtype=np.float64)
    for i, feature in enumerate(spec.features):
        column = frame[feature.name]
        if feature.kind == "categorical":
            codes = pd.Categorical(column.astype("string"), categories=list(feature.categories)).codes
            out[:, i] = np.where(codes < 0, np.nan, codes.astype(np.float64))
        else:
            out[:, i] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True)
