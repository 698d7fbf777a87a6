"""Deprecated: the feature declarations moved to `features.catalog`; import from there.

This re-export stays only until the last importers move: `features/offline.py`,
`features/reference.py` and `coopscore/cli_features.py` belong to other branches in flight. Delete
this module when they import `features.catalog`.
"""

from __future__ import annotations

from features.catalog import (
    Condition,
    Feature,
    FeatureRegistry,
    application_features,
    default_registry,
    feature_table_rows,
    render_feature_reference,
)

__all__ = [
    "Condition",
    "Feature",
    "FeatureRegistry",
    "application_features",
    "default_registry",
    "feature_table_rows",
    "render_feature_reference",
]
