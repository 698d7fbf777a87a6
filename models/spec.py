"""The model's feature spec: which columns it reads, in which order, and what each one means.

A `ModelSpec` is the part of the feature declarations a fitted model needs at scoring time (name,
type, declared risk direction, reason group and zh/en texts), frozen into the model artifact as JSON
so that a stored model never depends on the feature code that was current when it was trained.
It is built from the feature views (`spec_from_registry`) or from a lender's own table
(`spec_for_table`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from features.catalog import FeatureRegistry

SPEC_SCHEMA_VERSION: Final = 1

FeatureKind = Literal["numeric", "categorical"]
SpecSource = Literal["feature_views", "table"]


@dataclass(frozen=True)
class ReasonGroupSpec:
    """A reason-code group: related features that explain a decision together."""

    name: str
    label_zh: str
    label_en: str


@dataclass(frozen=True)
class FeatureSpec:
    """One model input.

    `direction` is the declared effect of a larger value on default risk (+1 raises it, -1 lowers
    it, 0 unconstrained); it becomes the LightGBM monotone constraint. `categories` lists the levels
    of a categorical input in code order (code = position).

    For a table input, what training saw, so that values sent at scoring time can be checked against
    it: `value_range` is the (min, max) of a numeric input, `missing_seen` whether any value was
    missing. Both are None when unknown (a catalog feature, or a spec written before they existed).
    """

    name: str
    kind: FeatureKind = "numeric"
    direction: int = 0
    reason_group: str = ""
    description_zh: str = ""
    description_en: str = ""
    categories: tuple[str, ...] = ()
    value_range: tuple[float, float] | None = None
    missing_seen: bool | None = None

    def __post_init__(self) -> None:
        if self.direction not in (-1, 0, 1):
            raise ValueError(f"feature {self.name!r}: direction must be -1, 0 or 1")
        if self.kind == "categorical" and self.direction != 0:
            raise ValueError(f"feature {self.name!r}: a categorical input cannot be monotone")
        if self.value_range is not None:
            if self.kind != "numeric":
                raise ValueError(f"feature {self.name!r}: only a numeric input has a value range")
            low, high = self.value_range
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ValueError(
                    f"feature {self.name!r}: value range {self.value_range} is not finite min <= max"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; the training-time facts only when known (older readers ignore them)."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "direction": self.direction,
            "reason_group": self.reason_group,
            "description_zh": self.description_zh,
            "description_en": self.description_en,
            "categories": list(self.categories),
        }
        if self.value_range is not None:
            out["value_range"] = list(self.value_range)
        if self.missing_seen is not None:
            out["missing_seen"] = self.missing_seen
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Inverse of `to_dict`; a spec written before ranges existed loads with them unknown."""
        value_range = data.get("value_range")
        missing_seen = data.get("missing_seen")
        return cls(
            name=str(data["name"]),
            kind=data.get("kind", "numeric"),
            direction=int(data.get("direction", 0)),
            reason_group=str(data.get("reason_group", "")),
            description_zh=str(data.get("description_zh", "")),
            description_en=str(data.get("description_en", "")),
            categories=tuple(str(c) for c in data.get("categories", ())),
            value_range=(float(value_range[0]), float(value_range[1])) if value_range is not None else None,
            missing_seen=bool(missing_seen) if missing_seen is not None else None,
        )


@dataclass(frozen=True)
class ModelSpec:
    """The ordered model inputs, their reason groups, and where they came from."""

    features: tuple[FeatureSpec, ...]
    reason_groups: tuple[ReasonGroupSpec, ...]
    source: SpecSource = "feature_views"
    feature_set_version: str = ""
    schema_version: int = SPEC_SCHEMA_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        groups = {g.name for g in self.reason_groups}
        unknown = sorted({f.reason_group for f in self.features} - groups)
        if unknown:
            raise ValueError(f"features name unknown reason groups: {unknown}")

    @cached_property
    def names(self) -> list[str]:
        """Feature names in model column order."""
        return [f.name for f in self.features]

    @cached_property
    def index(self) -> dict[str, int]:
        """Feature name -> column position."""
        return {name: i for i, name in enumerate(self.names)}

    @cached_property
    def by_name(self) -> dict[str, FeatureSpec]:
        """Features keyed by name."""
        return {f.name: f for f in self.features}

    @property
    def monotone_constraints(self) -> list[int]:
        """LightGBM `monotone_constraints`, in column order."""
        return [f.direction for f in self.features]

    @property
    def constrained(self) -> list[FeatureSpec]:
        """Features with a declared direction."""
        return [f for f in self.features if f.direction != 0]

    @property
    def categorical_indices(self) -> list[int]:
        """Column positions of categorical inputs (LightGBM `categorical_feature`)."""
        return [i for i, f in enumerate(self.features) if f.kind == "categorical"]

    def group(self, name: str) -> ReasonGroupSpec:
        """The reason group called `name`."""
        for group in self.reason_groups:
            if group.name == name:
                return group
        raise KeyError(name)

    def subset(self, names: Iterable[str]) -> ModelSpec:
        """The same spec restricted to `names` (kept in this spec's order); e.g. a bureau-only model."""
        wanted = set(names)
        missing = sorted(wanted - set(self.names))
        if missing:
            raise KeyError(f"not in the spec: {missing}")
        features = tuple(f for f in self.features if f.name in wanted)
        used = {f.reason_group for f in features}
        return ModelSpec(
            features=features,
            reason_groups=tuple(g for g in self.reason_groups if g.name in used),
            source=self.source,
            feature_set_version=self.feature_set_version,
            extra=dict(self.extra),
        )

    # ---- JSON ----

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the `feature_spec.json` artifact)."""
        return {
            "schema_version": self.schema_version,
            "source": self.source,
            "feature_set_version": self.feature_set_version,
            "reason_groups": [
                {"name": g.name, "label_zh": g.label_zh, "label_en": g.label_en} for g in self.reason_groups
            ],
            "features": [f.to_dict() for f in self.features],
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Inverse of `to_dict`; refuses a newer schema than this code understands."""
        version = int(data.get("schema_version", 0))
        if version > SPEC_SCHEMA_VERSION:
            raise ValueError(f"feature spec schema {version} is newer than {SPEC_SCHEMA_VERSION}")
        return cls(
            features=tuple(FeatureSpec.from_dict(f) for f in data["features"]),
            reason_groups=tuple(
                ReasonGroupSpec(str(g["name"]), str(g["label_zh"]), str(g["label_en"]))
                for g in data["reason_groups"]
            ),
            source=data.get("source", "feature_views"),
            feature_set_version=str(data.get("feature_set_version", "")),
            schema_version=version,
            extra=dict(data.get("extra", {})),
        )

    def to_json(self) -> str:
        """Canonical JSON text."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1, sort_keys=True)


def spec_from_registry(registry: FeatureRegistry) -> ModelSpec:
    """Spec of every declared feature, in registry order, with its declared direction and group."""
    features = tuple(
        FeatureSpec(
            name=f.name,
            kind="numeric",
            direction=int(f.direction),
            reason_group=f.reason_group,
            description_zh=f.description_zh,
            description_en=f.description_en,
        )
        for f in registry.features
    )
    used = {f.reason_group for f in features}
    groups = tuple(
        ReasonGroupSpec(g.name, g.label_zh, g.label_en) for g in registry.reason_groups if g.name in used
    )
    return ModelSpec(
        features=features,
        reason_groups=groups,
        source="feature_views",
        feature_set_version=registry.version,
    )


def spec_for_table(
    columns: Sequence[str],
    *,
    categories: Mapping[str, Sequence[str]] | None = None,
    directions: Mapping[str, int] | None = None,
    table_version: str = "",
    ranges: Mapping[str, tuple[float, float]] | None = None,
    with_missing: Collection[str] | None = None,
) -> ModelSpec:
    """Spec for a lender's own table: each column is its own reason group, labelled by its name.

    Columns in `categories` are categorical (levels in code order); `directions` optionally gives
    monotone constraints (none are assumed: a table carries no declared directions). `ranges` gives
    the (min, max) seen in training of numeric columns, `with_missing` the columns that had missing
    values (given, every other column had none); scoring checks inline values against both.
    """
    categories = categories or {}
    directions = directions or {}
    ranges = ranges or {}
    for option, named in (
        ("directions", directions),
        ("ranges", ranges),
        ("with_missing", with_missing or ()),
    ):
        unknown = sorted(set(named) - set(columns))
        if unknown:
            raise KeyError(f"{option} for unknown columns: {unknown}")
    missing = set(with_missing) if with_missing is not None else None
    features = tuple(
        FeatureSpec(
            name=name,
            kind="categorical" if name in categories else "numeric",
            direction=int(directions.get(name, 0)),
            reason_group=name,
            description_zh=name,
            description_en=name,
            categories=tuple(str(c) for c in categories.get(name, ())),
            value_range=_range(ranges.get(name)),
            missing_seen=None if missing is None else name in missing,
        )
        for name in columns
    )
    groups = tuple(ReasonGroupSpec(name, name, name) for name in columns)
    return ModelSpec(
        features=features, reason_groups=groups, source="table", feature_set_version=table_version
    )


def _range(value: tuple[float, float] | None) -> tuple[float, float] | None:
    return (float(value[0]), float(value[1])) if value is not None else None
