"""Never score with a model and online vectors of different feature-set versions.

A model trained on the feature catalog records the catalog's feature-set version (a hash of what the
features mean); every online vector carries the version it was computed with. A model fed vectors of
another version computes PDs from features whose meaning changed under it: silently wrong answers.
So the service is not ready, and refuses to score, while the two differ. Table-trained models read no
catalog vectors and carry no catalog version (empty): they are exempt.

The message is one line that says what to run and never shows the version hashes (it is also the
unauthenticated `/readyz` detail); the hashes go to the server log.
"""

from __future__ import annotations

from functools import cache

from features.catalog import default_registry

RETRAIN_FIX = (
    "train one on the current features with `coopscore retrain` (or `coopscore promote` a version "
    "trained on them), then POST /v1/admin/reload"
)
MATERIALIZE_FIX = "rebuild the vectors with the current features: `coopscore features materialize`"
BOTH_FIX = (
    "run `coopscore features materialize`, then `coopscore retrain` (or `coopscore promote` a version "
    "trained on those features) and POST /v1/admin/reload"
)


class FeatureSetMismatchError(RuntimeError):
    """The champion cannot score the online store's vectors: they are of another feature set."""


@cache
def code_feature_set() -> str:
    """The feature-set version this code computes (what `coopscore features materialize` writes)."""
    return default_registry().version


def feature_set_problem(
    model_version: str, model_feature_set: str, vectors_feature_set: str | None
) -> str | None:
    """Why model `model_version` must not score vectors of `vectors_feature_set`, or None if it may.

    `model_feature_set` is empty for a model exempt from the check (table-trained); None vectors
    (an empty store, a new member) have nothing to compare.
    """
    if not model_feature_set or vectors_feature_set is None or model_feature_set == vectors_feature_set:
        return None
    # Say which side is stale: the one that differs from what this code computes.
    current = code_feature_set()
    if vectors_feature_set == current:
        fix = RETRAIN_FIX
    elif model_feature_set == current:
        fix = MATERIALIZE_FIX
    else:
        fix = BOTH_FIX
    return (
        f"the champion (v{model_version}) was trained on another feature-set version than the "
        f"online store's vectors, so it cannot score them: {fix}"
    )
