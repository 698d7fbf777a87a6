"""The service never scores with a model and online vectors of different feature-set versions.

A stand-in scorer (the `Scorer` protocol) and a real SQLite online store: what is under test is the
guard (readiness, per-request refusal, reload), not the model's PDs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from coopscore.settings import ApiKeyEntry, Settings
from features.online.base import FeatureBatch
from features.online.factory import online_store
from models.spec import ModelSpec
from serving.app import create_app
from serving.auth import hash_key
from serving.featureset import (
    BOTH_FIX,
    MATERIALIZE_FIX,
    RETRAIN_FIX,
    FeatureSetMismatchError,
    code_feature_set,
    feature_set_problem,
)
from serving.scoring import FeatureValues, Scored, Scorer
from serving.state import ModelHolder

KEY = "fsg-test-key-0123456789"
HEADERS = {"X-API-Key": KEY}
NAMES = ("delivery_amount_365d", "savings_balance")
CURRENT = code_feature_set()  # what this code's `features materialize` writes
OLD = "0ld0ld0ld0ld0ld0"  # a feature set of an earlier release
APPLICATION = {"amount_cny": 8000, "term_months": 12, "purpose": "livestock"}


@dataclass
class StubScorer:
    """Answers every applicant the same; records what it was asked to score."""

    version: str
    feature_set_version: str
    name: str = "coopscore-credit"
    metadata: dict[str, Any] = field(default_factory=dict)
    model_card: str | None = None
    feature_names: tuple[str, ...] = NAMES
    table_spec: ModelSpec | None = None
    digest: str = ""
    scored: int = 0

    def score_one(self, features: FeatureValues, *, force_review: str | None = None) -> Scored:
        self.scored += 1
        return Scored(0.05, 700.0, "B", "review" if force_review else "approve", ["ok"], (), 600.0, {})

    def score_many(
        self, rows: Sequence[FeatureValues], *, force_review: Sequence[str | None]
    ) -> list[Scored]:
        return [self.score_one(r, force_review=note) for r, note in zip(rows, force_review, strict=True)]


class Registry:
    """The champion the loader finds: tests change it, then POST /v1/admin/reload."""

    def __init__(self, champion: Scorer | None) -> None:
        self.champion = champion

    def __call__(self, settings: Settings) -> Scorer | None:
        return self.champion


def _settings(tmp_path: Path) -> Settings:
    entry = ApiKeyEntry(name="all", sha256=hash_key(KEY), scopes=("score", "ingest", "read", "admin"))
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path / "data",
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        api_keys=(entry,),
    )


def _materialize(settings: Settings, version: str) -> None:
    """A committed generation of vectors of feature set `version` (as `features materialize`)."""
    with online_store(settings) as store:
        as_of = datetime(2026, 3, 1, tzinfo=UTC)
        values = np.array([[900.0, 120.0], [50.0, 0.0]])
        with store.refresh(feature_names=NAMES, feature_set_version=version, as_of=as_of) as refresh:
            store.online_write_batch(refresh, FeatureBatch(["m1", "m2"], as_of, NAMES, values))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Settings, Registry, TestClient]]:
    settings = _settings(tmp_path)
    registry = Registry(StubScorer("1", OLD))
    _materialize(settings, CURRENT)
    with TestClient(create_app(settings, scorer_loader=registry), raise_server_exceptions=False) as client:
        yield settings, registry, client


def _decisions(settings: Settings) -> int:
    with sqlite3.connect(settings.data_dir / "decisions.sqlite") as con:
        return int(con.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])


# ---- the message ----


def test_no_problem_when_versions_agree_or_nothing_to_compare() -> None:
    assert feature_set_problem("1", CURRENT, CURRENT) is None
    assert feature_set_problem("1", "", CURRENT) is None  # table-trained: exempt
    assert feature_set_problem("1", OLD, None) is None  # empty store / new member: nothing read


def test_the_message_names_the_stale_side_and_what_to_run() -> None:
    stale_model = feature_set_problem("3", OLD, CURRENT)
    stale_vectors = feature_set_problem("3", CURRENT, OLD)
    both = feature_set_problem("3", OLD, "n3wn3wn3wn3wn3wn")
    assert stale_model is not None and stale_model.endswith(RETRAIN_FIX)
    assert stale_vectors is not None and stale_vectors.endswith(MATERIALIZE_FIX)
    assert both is not None and both.endswith(BOTH_FIX)
    for message in (stale_model, stale_vectors, both):
        assert "champion (v3)" in message and "\n" not in message
        assert OLD not in message and CURRENT not in message  # no internals on /readyz


# ---- readiness and scoring ----


def test_a_champion_of_another_feature_set_is_not_ready_and_does_not_score(
    world: tuple[Settings, Registry, TestClient],
) -> None:
    settings, registry, client = world
    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["ready"] is False and body["model_version"] == "1" and body["online_store"] is True
    assert "`coopscore retrain`" in body["detail"] and OLD not in body["detail"]

    one = client.post("/v1/score", json={"member_id": "m1", **APPLICATION}, headers=HEADERS)
    batch = client.post(
        "/v1/score/batch",
        json={"applications": [{"member_id": m, **APPLICATION} for m in ("m1", "m2")]},
        headers=HEADERS,
    )
    assert one.status_code == 503 and batch.status_code == 503
    assert one.json()["detail"] == body["detail"] == batch.json()["detail"]
    champion = registry.champion
    assert isinstance(champion, StubScorer) and champion.scored == 0
    assert _decisions(settings) == 0  # nothing decided, nothing logged


def test_a_matching_champion_is_ready_and_scores(world: tuple[Settings, Registry, TestClient]) -> None:
    _, registry, client = world
    registry.champion = StubScorer("2", CURRENT)
    assert client.post("/v1/admin/reload", headers=HEADERS).status_code == 200
    assert client.get("/readyz").status_code == 200
    scored = client.post("/v1/score", json={"member_id": "m1", **APPLICATION}, headers=HEADERS)
    assert scored.status_code == 200 and scored.json()["feature_set_version"] == CURRENT


def test_a_table_trained_model_is_exempt(world: tuple[Settings, Registry, TestClient]) -> None:
    _, registry, client = world
    registry.champion = StubScorer("2", "")
    assert client.post("/v1/admin/reload", headers=HEADERS).status_code == 200
    assert client.get("/readyz").status_code == 200
    assert (
        client.post("/v1/score", json={"member_id": "m1", **APPLICATION}, headers=HEADERS).status_code == 200
    )


def test_each_request_checks_the_vector_it_read(world: tuple[Settings, Registry, TestClient]) -> None:
    settings, registry, client = world
    registry.champion = StubScorer("2", CURRENT)
    client.post("/v1/admin/reload", headers=HEADERS)
    request = {"member_id": "m1", **APPLICATION}
    assert client.post("/v1/score", json=request, headers=HEADERS).status_code == 200
    # A materialize by an older release switches the live generation under the running server.
    _materialize(settings, OLD)
    refused = client.post("/v1/score", json=request, headers=HEADERS)
    assert refused.status_code == 503
    assert "`coopscore features materialize`" in refused.json()["detail"]
    assert client.get("/readyz").json()["detail"] == refused.json()["detail"]
    # ... and rebuilding the vectors with the current features is enough: no reload needed.
    _materialize(settings, CURRENT)
    assert client.post("/v1/score", json=request, headers=HEADERS).status_code == 200
    assert client.get("/readyz").status_code == 200


def test_a_new_member_has_no_vector_to_compare(world: tuple[Settings, Registry, TestClient]) -> None:
    """Scored on the request alone (no member vector, so no feature semantics involved): review."""
    _, _, client = world
    new = {"member_id": "newcomer", "allow_new_member": True, **APPLICATION}
    response = client.post("/v1/score", json=new, headers=HEADERS)
    assert response.status_code == 200 and response.json()["decision"] == "review"


# ---- reload ----


def test_reload_never_swaps_out_a_champion_that_can_score(
    world: tuple[Settings, Registry, TestClient],
) -> None:
    _, registry, client = world
    registry.champion = StubScorer("2", CURRENT)
    assert client.post("/v1/admin/reload", headers=HEADERS).status_code == 200
    registry.champion = StubScorer("3", OLD)  # someone promoted a version of the old feature set
    refused = client.post("/v1/admin/reload", headers=HEADERS)
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith("the old model stays: the champion (v3)")
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"] == "2"


def test_reload_to_a_champion_that_cannot_score_says_so(
    world: tuple[Settings, Registry, TestClient],
) -> None:
    _, registry, client = world  # serving v1 of the old feature set: not ready already
    registry.champion = StubScorer("3", OLD)
    response = client.post("/v1/admin/reload", headers=HEADERS)
    assert response.status_code == 503 and "`coopscore retrain`" in response.json()["detail"]
    assert client.get("/readyz").json()["model_version"] == "3"


def test_the_holder_keeps_a_model_that_can_score(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _materialize(settings, CURRENT)
    registry = Registry(StubScorer("1", CURRENT))
    with online_store(settings) as store:
        holder = ModelHolder(registry, settings, store)
        holder.reload()
        registry.champion = StubScorer("2", OLD)
        with pytest.raises(FeatureSetMismatchError, match="coopscore retrain"):
            holder.reload()
        assert holder.current is not None and holder.current.scorer.version == "1"
        assert holder.last_error is not None
        # Without a model that can score, the registry's champion is loaded (readiness says why).
        empty = ModelHolder(registry, settings, store)
        _, current = empty.reload()
        assert current is not None and current.scorer.version == "2"
