"""The score API on a model trained on a lender's own table: the applicant's values come inline,
checked against the model's stored spec; the online store is never read."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coopscore.settings import Settings
from models.credit_model import CreditModel
from serving.champion import CreditModelScorer
from serving.schemas import ScoreResponse
from simulator.lender_table import write_lender_table
from tests.utils.api import Keys
from tests.utils.model_fixtures import fast_config
from tests.utils.tables import LENDER_TABLE_OPTIONS
from training.datasets import TableSource
from training.fit import fit_credit_model
from training.splits import time_split

ClientFactory = Callable[..., TestClient]
APPLICATION = {"member_id": "APP-7", "amount_cny": 12000, "term_months": 12, "purpose": "farm_inputs"}
RISKY = {
    "age": 30,
    "monthly_income": 900,
    "land_mu": 1.5,
    "late_payments": 6,
    "loan_amount": 40000,
    "crop": "hogs",
}
SAFE = {
    "age": 50,
    "monthly_income": 6000,
    "land_mu": 12.0,
    "late_payments": 0,
    "loan_amount": 5000,
    "crop": "tea",
}


@pytest.fixture(scope="module")
def table_model(tmp_path_factory: pytest.TempPathFactory) -> CreditModel:
    """A real model fitted on a generated lender table (as `coopscore train --table` fits it)."""
    path = write_lender_table(tmp_path_factory.mktemp("table") / "applications.csv", rows=3000, seed=8)
    source = TableSource(path, **LENDER_TABLE_OPTIONS, id_column="application_id", protected=("gender",))
    training_set = source.load()
    config = fast_config()
    model, _ = fit_credit_model(
        training_set, time_split(training_set.applied_at, training_set.horizon, config.splits), config
    )
    assert model.spec.source == "table"
    return model


@pytest.fixture
def client(table_model: CreditModel, client_factory: ClientFactory) -> TestClient:
    def loader(_: Settings) -> CreditModelScorer:
        return CreditModelScorer(table_model, {}, None)

    return client_factory(loader)


def post(client: TestClient, keys: Keys, features: Any, path: str = "/v1/score", **extra: Any) -> Any:
    body = {**APPLICATION, **extra} if features is None else {**APPLICATION, "features": features, **extra}
    return client.post(path, json=body, headers=keys.header("score"))


def fields(response: Any) -> dict[str, str | None]:
    assert response.status_code == 422, response.text
    return {p["field"]: p.get("type") for p in response.json()["detail"]}


def test_inline_values_are_scored_with_reasons_named_by_the_tables_columns(
    client: TestClient, keys: Keys, table_model: CreditModel, tmp_path: Path
) -> None:
    risky = post(client, keys, RISKY, explain="all")
    assert risky.status_code == 200, risky.text
    body = risky.json()
    assert ScoreResponse.model_validate(body).model_dump(mode="json") == body
    assert body["member_id"] == "APP-7" and body["features_as_of"] is None
    columns = set(RISKY)
    assert set(body["group_points"]) == columns
    assert body["reasons"] and {r["code"] for r in body["reasons"]} <= columns
    for reason in body["reasons"]:
        assert set(reason["features"]) == {reason["code"]}  # each column is its own reason
        assert reason["features"][reason["code"]] == RISKY[reason["code"]]
        assert reason["code"] in reason["text_en"] and reason["code"] in reason["text_zh"]
    safe = post(client, keys, SAFE).json()
    assert safe["score"] > body["score"] and safe["pd"] < body["pd"]
    # The same values scored by the model directly: the API adds nothing and drops nothing.
    assert body["pd"] == pytest.approx(float(table_model.predict_pd(RISKY)[0]), abs=1e-9)

    con = sqlite3.connect(tmp_path / "data" / "decisions.sqlite")
    features, application = con.execute(
        "SELECT features, application FROM decisions WHERE request_id = ?", (body["request_id"],)
    ).fetchone()
    assert json.loads(features) == {k: float(v) if k != "crop" else v for k, v in RISKY.items()}
    logged_application = json.loads(application)
    assert logged_application["member_id"] == "APP-7" and "features" not in logged_application


def test_the_online_store_is_not_needed(client: TestClient, keys: Keys) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["online_store"] is False
    assert "trained on a table" in ready.json()["detail"]
    # An applicant no store has heard of is scored on the values sent (not 404, not review).
    assert post(client, keys, SAFE, member_id="nobody-on-file").status_code == 200


def test_bad_values_are_422_naming_each_field(client: TestClient, keys: Keys) -> None:
    assert fields(post(client, keys, None)) == {"features": "missing"}
    assert fields(post(client, keys, {**SAFE, "village": "Xinzhuang"})) == {
        "features.village": "unknown_field"
    }
    bad = post(
        client, keys, {**SAFE, "crop": "coffee", "age": True, "loan_amount": "5000", "late_payments": 400}
    )
    assert fields(bad) == {
        "features.crop": "unknown_category",
        "features.age": "wrong_type",
        "features.loan_amount": "wrong_type",
        "features.late_payments": "out_of_training_range",
    }
    problems = {p["field"]: p["problem"] for p in bad.json()["detail"]}
    assert "'hogs', 'maize', 'rice', 'tea'" in problems["features.crop"]
    assert "outside the range seen in training (0 to " in problems["features.late_payments"]
    assert fields(post(client, keys, {**SAFE, "crop": 2})) == {"features.crop": "wrong_type"}
    assert fields(post(client, keys, {**SAFE, "age": None})) == {
        "features.age": "missing_not_seen_in_training"
    }
    # Incomes were missing in training: an unknown income is scored as missing.
    assert post(client, keys, {**SAFE, "monthly_income": None}).status_code == 200


def test_out_of_range_values_scored_only_when_allowed_and_then_reviewed(
    client: TestClient, keys: Keys
) -> None:
    values = {**SAFE, "monthly_income": 10_000_000}
    assert fields(post(client, keys, values)) == {"features.monthly_income": "out_of_training_range"}
    allowed = post(client, keys, values, allow_out_of_range=True)
    assert allowed.status_code == 200, allowed.text
    body = allowed.json()
    assert body["decision"] == "review"
    assert "monthly_income=10000000 (training range" in body["decision_notes"][0]


def test_batch_fails_whole_naming_the_item_or_scores_each_as_one(client: TestClient, keys: Keys) -> None:
    items = [{**APPLICATION, "features": RISKY}, {**APPLICATION, "features": {**SAFE, "crop": "coffee"}}]
    bad = client.post("/v1/score/batch", json={"applications": items}, headers=keys.header("score"))
    assert fields(bad) == {"applications.1.features.crop": "unknown_category"}
    items[1]["features"] = SAFE
    good = client.post("/v1/score/batch", json={"applications": items}, headers=keys.header("score"))
    assert good.status_code == 200, good.text
    results = good.json()["results"]
    singles = [post(client, keys, RISKY).json(), post(client, keys, SAFE).json()]
    for batched, single in zip(results, singles, strict=True):
        assert batched["pd"] == pytest.approx(single["pd"], abs=1e-12)
        assert batched["reasons"] == single["reasons"]


def test_idempotent_replay_covers_the_inline_values(client: TestClient, keys: Keys) -> None:
    headers = {**keys.header("score"), "Idempotency-Key": "table-1"}
    first = client.post("/v1/score", json={**APPLICATION, "features": SAFE}, headers=headers)
    again = client.post("/v1/score", json={**APPLICATION, "features": SAFE}, headers=headers)
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()
    changed = client.post("/v1/score", json={**APPLICATION, "features": {**SAFE, "age": 51}}, headers=headers)
    assert fields(changed) == {"Idempotency-Key": None}


def test_the_openapi_document_shows_the_field_with_an_example(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ScoreRequest"]["properties"]
    features = schema["features"]
    assert "table-trained" in features["description"]
    assert features["examples"][0]["crop"] == "tea"
    assert "allow_out_of_range" in schema
