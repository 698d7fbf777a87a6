"""The feature catalog: every model input declared once, with its meaning, window, direction and reason group.

A `Feature` (`features.catalog.schema`) is pure data: what to aggregate (source event types, column,
filter, window) and what it means (risk direction, reason-code group, zh/en description). The
declarations live one module per reason group in `features.catalog.groups`, and
`features.catalog.registry.default_registry` puts them in their one fixed order. The offline builder
(`features.offline`) compiles them to engine-neutral SQL, the naive oracle (`features.reference`)
interprets them in plain Python, training turns `direction` into monotone constraints, and the reason
codes use `reason_group`. Application-time features (amount, term, amount relative to delivery income)
are computed by the one shared function `application_features` (`features.catalog.request`), offline
and at request time alike; `features.catalog.docs` renders the reference in `docs/features.md`.

Feature code never reads member profiles: declarations may only name event types and the
`applications` / `outcomes` tables, and validation rejects any protected column.
"""

from __future__ import annotations

from features.catalog.docs import feature_table_rows, render_feature_reference
from features.catalog.registry import REASON_GROUPS, default_registry
from features.catalog.request import FloatArray, application_features, application_features_for_request
from features.catalog.schema import (
    DERIVED_AGGREGATIONS,
    EVENT_AGGREGATIONS,
    FEATURE_SEMANTICS_VERSION,
    MULTI_SOURCE_AGGREGATIONS,
    NUMERIC_COLUMN_AGGREGATIONS,
    PEER_AGGREGATIONS,
    REFERENCE_TABLE_SOURCES,
    REQUEST_SOURCE,
    VILLAGE_COLUMN,
    WINDOW_DAYS,
    Aggregation,
    Condition,
    ConditionOp,
    Direction,
    DType,
    Entity,
    Feature,
    FeatureRegistry,
    ReasonGroup,
)

__all__ = [
    "DERIVED_AGGREGATIONS",
    "EVENT_AGGREGATIONS",
    "FEATURE_SEMANTICS_VERSION",
    "MULTI_SOURCE_AGGREGATIONS",
    "NUMERIC_COLUMN_AGGREGATIONS",
    "PEER_AGGREGATIONS",
    "REASON_GROUPS",
    "REFERENCE_TABLE_SOURCES",
    "REQUEST_SOURCE",
    "VILLAGE_COLUMN",
    "WINDOW_DAYS",
    "Aggregation",
    "Condition",
    "ConditionOp",
    "DType",
    "Direction",
    "Entity",
    "Feature",
    "FeatureRegistry",
    "FloatArray",
    "ReasonGroup",
    "application_features",
    "application_features_for_request",
    "default_registry",
    "feature_table_rows",
    "render_feature_reference",
]
