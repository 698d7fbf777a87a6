"""Who asked, through the API on a real model: idempotency keys per client, the caller, model digest
and inputs hash on every decision, and the reviewing key's name on every review."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient

from decisions.base import inputs_hash
from tests.utils.api import Keys

ClientFactory = Callable[..., TestClient]
APPLICATION = {"amount_cny": 8000, "term_months": 12, "purpose": "livestock"}
# The two clients: `make_settings` names the keys "score-only" and "everything" (both may score).
A, B = "score-only", "everything"


def log(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / "data" / "decisions.sqlite")


def post(client: TestClient, key: str, body: dict[str, object], idempotency_key: str) -> dict:
    response = client.post(
        "/v1/score", json=body, headers={"X-API-Key": key, "Idempotency-Key": idempotency_key}
    )
    assert response.status_code == 200, response.text
    return {"replayed": response.headers.get("Idempotent-Replayed") == "true", **response.json()}


def test_two_clients_reusing_a_key_each_get_their_own_decision(
    client: TestClient, keys: Keys, tmp_path: Path
) -> None:
    a_key, b_key = keys.by_scope["score"], keys.all_scopes
    body = {"member_id": "strong", **APPLICATION}
    first_a = post(client, a_key, body, "1")
    first_b = post(client, b_key, body, "1")  # same key, same body: not A's decision
    assert not first_a["replayed"] and not first_b["replayed"]
    assert first_a["request_id"] != first_b["request_id"]
    again_a, again_b = post(client, a_key, body, "1"), post(client, b_key, body, "1")
    assert again_a["replayed"] and again_a["request_id"] == first_a["request_id"]
    assert again_b["replayed"] and again_b["request_id"] == first_b["request_id"]
    # Another body under a key another client used is that client's own new request, not a 422 ...
    other = post(client, b_key, {"member_id": "weak", **APPLICATION}, "2")
    other_a = post(client, a_key, {**body, "amount_cny": 9000}, "2")
    assert not other_a["replayed"] and other_a["request_id"] != other["request_id"]
    # ... while a client reusing its own key with another body still gets the 422.
    refused = client.post(
        "/v1/score",
        json={**body, "amount_cny": 9500},
        headers={"X-API-Key": a_key, "Idempotency-Key": "1"},
    )
    assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "Idempotency-Key"
    rows = log(tmp_path).execute("SELECT idempotency_key, caller FROM decisions ORDER BY 1, 2").fetchall()
    assert rows == [("1", B), ("1", A), ("2", B), ("2", A)]


def test_concurrent_duplicates_from_each_client_make_one_decision_each(
    client: TestClient, keys: Keys, tmp_path: Path
) -> None:
    body = {"member_id": "weak", **APPLICATION}
    senders = [keys.by_scope["score"], keys.all_scopes] * 6
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda key: post(client, key, body, "race"), senders))
    by_client = {
        key: {a["request_id"] for a, k in zip(answers, senders, strict=True) if k == key}
        for key in set(senders)
    }
    assert all(len(ids) == 1 for ids in by_client.values())
    assert len(set.union(*by_client.values())) == 2
    rows = log(tmp_path).execute("SELECT caller FROM decisions WHERE idempotency_key = 'race'").fetchall()
    assert sorted(rows) == [(B,), (A,)]


def test_every_decision_records_its_caller_model_digest_and_inputs_hash(
    client: TestClient, keys: Keys, tmp_path: Path, champion_store: tuple[Path, dict]
) -> None:
    one = client.post(
        "/v1/score", json={"member_id": "strong", **APPLICATION}, headers=keys.header("score")
    ).json()
    items = [{"member_id": m, **APPLICATION} for m in ("strong", "weak")]
    batch = client.post("/v1/score/batch", json={"applications": items}, headers=keys.header()).json()
    rows = {
        r[0]: r[1:]
        for r in log(tmp_path).execute(
            "SELECT request_id, caller, model_digest, inputs_hash, features FROM decisions"
        )
    }
    # The digest is the verified manifest's: what /v1/model names, rebuilt from the artifact bytes.
    digest = client.get("/v1/model", headers=keys.header()).json()["model_digest"]
    assert len(digest) == 64
    assert rows[one["request_id"]][:2] == (A, digest)
    assert [rows[r["request_id"]][0] for r in batch["results"]] == [B, B]
    for _, logged_digest, logged_hash, features in rows.values():
        assert logged_digest == digest and logged_hash == inputs_hash(json.loads(features))
    assert rows[one["request_id"]][2] != rows[batch["results"][1]["request_id"]][2]  # strong != weak


def test_a_review_records_the_reviewing_keys_name(client: TestClient, keys: Keys, tmp_path: Path) -> None:
    decision = client.post(
        "/v1/score", json={"member_id": "weak", **APPLICATION}, headers=keys.header("score")
    ).json()
    review = client.post(
        f"/v1/decisions/{decision['request_id']}/review",
        json={"reviewer": "officer wang", "action": "confirm", "reason": "checked"},
        headers=keys.header("admin"),
    )
    assert review.status_code == 201
    assert review.json()["reviewer"] == "officer wang"
    assert review.json()["reviewed_by_key"] == "admin-only"
    stored = client.get(f"/v1/decisions/{decision['request_id']}", headers=keys.header("read")).json()
    assert stored["reviews"][0]["reviewer"] == "officer wang"
    assert stored["reviews"][0]["reviewed_by_key"] == "admin-only"
    row = log(tmp_path).execute("SELECT reviewer, reviewed_by_key FROM reviews").fetchone()
    assert row == ("officer wang", "admin-only")
    assert keys.by_scope["admin"] not in json.dumps(stored)  # the name, never the key
