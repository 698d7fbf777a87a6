"""The score API on a real model: trained, registered in a temp MLflow store, loaded and verified."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from features.contracts import PROTECTED_ATTRIBUTES
from serving.schemas import BatchScoreResponse, ScoreResponse
from serving.scoring import applicant_vector
from tests.utils.api import Keys

ClientFactory = Callable[..., TestClient]
APPLICATION = {"amount_cny": 8000, "term_months": 12, "purpose": "livestock"}


def score(client: TestClient, keys: Keys, member: str = "strong", **extra: object) -> dict:
    response = client.post(
        "/v1/score", json={"member_id": member, **APPLICATION, **extra}, headers=keys.header("score")
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_score_returns_a_decision_with_additive_reason_points(client: TestClient, keys: Keys) -> None:
    body = score(client, keys, "weak", explain="all")
    assert 0 < body["pd"] < 1
    assert body["grade"] in {"A", "B", "C", "D", "E"}
    assert body["decision"] in ("approve", "review", "decline")
    assert math.isclose(body["base_points"] + sum(body["group_points"].values()), body["score"], abs_tol=1e-6)
    assert 1 <= len(body["reasons"]) <= 4
    assert all(r["points"] < 0 and r["text_zh"] and r["text_en"] for r in body["reasons"])
    assert body["model_version"] == "1" and body["features_as_of"] is not None
    assert not set(PROTECTED_ATTRIBUTES) & set(str(body).split("'"))


def test_a_strong_applicant_outscores_a_weak_one(client: TestClient, keys: Keys) -> None:
    strong, weak = score(client, keys, "strong"), score(client, keys, "weak")
    assert strong["score"] > weak["score"]
    assert strong["pd"] < weak["pd"]
    assert weak["decision"] != "approve"


def test_every_decision_is_in_the_log_before_the_reply(
    client: TestClient, keys: Keys, tmp_path: Path
) -> None:
    bodies = [score(client, keys) for _ in range(3)]
    con = sqlite3.connect(tmp_path / "data" / "decisions.sqlite")
    logged = {r[0] for r in con.execute("SELECT request_id FROM decisions")}
    assert {b["request_id"] for b in bodies} <= logged


def test_unknown_member_is_404_or_review_on_peer_signals(client: TestClient, keys: Keys) -> None:
    missing = client.post(
        "/v1/score", json={"member_id": "ghost", **APPLICATION}, headers=keys.header("score")
    )
    assert missing.status_code == 404
    assert "allow_new_member" in missing.json()["detail"]
    new = score(client, keys, "ghost", allow_new_member=True)
    assert new["decision"] == "review"
    assert any("new member" in n for n in new["decision_notes"])


def test_idempotency_key_replays_and_refuses_a_different_body(client: TestClient, keys: Keys) -> None:
    headers = {**keys.header("score"), "Idempotency-Key": "loan-42"}
    body = {"member_id": "strong", **APPLICATION}
    first = client.post("/v1/score", json=body, headers=headers)
    again = client.post("/v1/score", json=body, headers=headers)
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    changed = client.post("/v1/score", json={**body, "amount_cny": 9000}, headers=headers)
    assert changed.status_code == 422
    assert changed.json()["detail"][0]["field"] == "Idempotency-Key"


def test_concurrent_duplicates_make_one_decision(client: TestClient, keys: Keys, tmp_path: Path) -> None:
    headers = {**keys.header("score"), "Idempotency-Key": "race-1"}
    body = {"member_id": "weak", **APPLICATION}
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: client.post("/v1/score", json=body, headers=headers), range(8)))
    assert all(r.status_code == 200 for r in responses)
    assert len({r.json()["request_id"] for r in responses}) == 1
    con = sqlite3.connect(tmp_path / "data" / "decisions.sqlite")
    assert con.execute("SELECT count(*) FROM decisions WHERE idempotency_key = 'race-1'").fetchone()[0] == 1


def test_batch_scores_in_order_and_is_capped(
    client: TestClient, keys: Keys, client_factory: ClientFactory
) -> None:
    items = [{"member_id": m, **APPLICATION} for m in ("strong", "weak")]
    response = client.post("/v1/score/batch", json={"applications": items}, headers=keys.header("score"))
    assert response.status_code == 200
    assert [r["member_id"] for r in response.json()["results"]] == ["strong", "weak"]


def test_the_response_is_exactly_the_documented_model(client: TestClient, keys: Keys) -> None:
    # The route encodes its answer once, without pydantic: it must still be `ScoreResponse`'s JSON.
    for extra in ({}, {"explain": "all"}, {"application_id": "loan-7", "applied_at": "2026-03-02T08:00:00Z"}):
        body = score(client, keys, "weak", **extra)
        assert ScoreResponse.model_validate(body).model_dump(mode="json") == body
    new = score(client, keys, "ghost", allow_new_member=True)
    assert ScoreResponse.model_validate(new).model_dump(mode="json") == new


def test_the_reasons_are_the_models_own_reasons(client: TestClient, keys: Keys) -> None:
    # One reason type from model to response: what the route sends is the model's `Reason` as JSON,
    # including null (converted once, by the model) for a feature the member has no record of.
    state = client.app.state.coopscore  # type: ignore[attr-defined]
    scorer = state.models.current.scorer
    names = scorer.feature_names
    nulls = 0
    for member, extra in (("weak", {}), ("ghost", {"allow_new_member": True})):
        body = score(client, keys, member, **extra)
        [vector] = state.online_store.online_read([member])
        row = dict(vector.features) if vector is not None else dict.fromkeys(names, math.nan)
        features = applicant_vector(
            row, amount_cny=APPLICATION["amount_cny"], term_months=APPLICATION["term_months"]
        )
        reasons = scorer.model.assess(features, top_k=4).explanation.reasons
        assert body["reasons"] == [r.model_dump() for r in reasons]
        nulls += sum(v is None for r in body["reasons"] for v in r["features"].values())
    assert nulls, "the new member's missing history shows as null"


def test_batch_scores_all_items_together_as_single_requests_would(
    client: TestClient, keys: Keys, tmp_path: Path
) -> None:
    members = ("strong", "weak", "strong")
    items = [{"member_id": m, **APPLICATION, "explain": "all"} for m in members]
    items.append({"member_id": "ghost", **APPLICATION, "allow_new_member": True})
    response = client.post("/v1/score/batch", json={"applications": items}, headers=keys.header("score"))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert BatchScoreResponse.model_validate(response.json()).model_dump(mode="json") == response.json()
    assert [r["member_id"] for r in results] == [*members, "ghost"]
    assert results[-1]["decision"] == "review"
    for member, result in zip(members, results, strict=False):
        alone = score(client, keys, member, explain="all")
        assert math.isclose(result["pd"], alone["pd"], rel_tol=1e-12)
        assert result["group_points"] == alone["group_points"]
        assert [r["code"] for r in result["reasons"]] == [r["code"] for r in alone["reasons"]]
    con = sqlite3.connect(tmp_path / "data" / "decisions.sqlite")
    logged = {r[0] for r in con.execute("SELECT request_id FROM decisions")}
    assert {r["request_id"] for r in results} <= logged
    before = len(logged)
    unknown = [{"member_id": "strong", **APPLICATION}, {"member_id": "ghost", **APPLICATION}]
    refused = client.post("/v1/score/batch", json={"applications": unknown}, headers=keys.header("score"))
    assert refused.status_code == 404 and "ghost" in refused.json()["detail"]
    assert con.execute("SELECT count(*) FROM decisions").fetchone()[0] == before  # nothing half-logged


def test_model_reload_review_and_readiness(client: TestClient, keys: Keys) -> None:
    model = client.get("/v1/model", headers=keys.header("read")).json()
    assert model["model_version"] == "1" and model["metadata"]["metrics"]
    reload = client.post("/v1/admin/reload", headers=keys.header("admin")).json()
    assert reload == {"previous_version": "1", "model_version": "1", "changed": False}
    assert client.get("/readyz").json()["ready"] is True
    decision = score(client, keys, "weak")
    review = client.post(
        f"/v1/decisions/{decision['request_id']}/review",
        json={
            "reviewer": "officer wang",
            "action": "override",
            "decision": "approve",
            "reason": "collateral seen",
        },
        headers=keys.header("admin"),
    )
    assert review.status_code == 201
    stored = client.get(f"/v1/decisions/{decision['request_id']}", headers=keys.header("read")).json()
    assert stored["decision"] == decision["decision"]
    assert stored["reviews"][0]["final_decision"] == "approve"


def test_an_event_log_model_refuses_inline_features(client: TestClient, keys: Keys, tmp_path: Path) -> None:
    body = {"member_id": "strong", **APPLICATION, "features": {"savings_balance": 100.0}}
    single = client.post("/v1/score", json=body, headers=keys.header("score"))
    assert single.status_code == 422
    [problem] = single.json()["detail"]
    assert problem["field"] == "features"
    assert "inline features are only accepted by table-trained models" in problem["problem"]
    flag = client.post(
        "/v1/score",
        json={"member_id": "strong", **APPLICATION, "allow_out_of_range": True},
        headers=keys.header("score"),
    )
    assert [p["field"] for p in flag.json()["detail"]] == ["allow_out_of_range"]
    items = [{"member_id": "strong", **APPLICATION}, body]
    batch = client.post("/v1/score/batch", json={"applications": items}, headers=keys.header("score"))
    assert batch.status_code == 422
    assert [p["field"] for p in batch.json()["detail"]] == ["applications.1.features"]
    # Nothing was scored or logged for the refused requests.
    con = sqlite3.connect(tmp_path / "data" / "decisions.sqlite")
    assert con.execute("SELECT count(*) FROM decisions").fetchone()[0] == 0


def test_recourse_is_given_on_request_and_logged_with_the_decision(
    client: TestClient, keys: Keys, tmp_path: Path
) -> None:
    assert score(client, keys, "weak")["recourse"] is None  # only on request
    weak = score(client, keys, "weak", recourse=True)
    assert ScoreResponse.model_validate(weak).model_dump(mode="json") == weak
    plan = weak["recourse"]
    assert weak["decision"] != "approve" and plan["status"] in ("found", "out_of_reach")
    assert plan["score"] == pytest.approx(weak["score"], abs=1e-6) and plan["target_score"] > weak["score"]
    assert plan["summary_en"] and plan["summary_zh"]
    assert all(a["causal"] for a in plan["actions"])  # record-only actions are dropped by default
    strong = score(client, keys, "strong", recourse=True)
    assert strong["decision"] != "approve" or strong["recourse"]["status"] == "not_needed"
    ghost = score(client, keys, "ghost", allow_new_member=True, recourse=True)
    assert ghost["recourse"]["status"] == "unavailable" and ghost["recourse"]["notes"]
    con = sqlite3.connect(tmp_path / "data" / "decisions.sqlite")
    stored = con.execute("SELECT response FROM decisions WHERE request_id = ?", (weak["request_id"],))
    assert '"recourse":{"status"' in stored.fetchone()[0]
