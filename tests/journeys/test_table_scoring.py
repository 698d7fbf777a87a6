"""Journey: a lender trains on their own table, promotes the model and scores applicants over HTTP by
sending each applicant's values inline; bad values are refused naming the column, and an event-log
model refuses inline values.

The table journey runs in its own data folder and MLflow store (its own model name too), so the
session world is undisturbed; only the last test uses the session world's server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.journeys.conftest import Cli, JourneyServer, journey_env, start_server, stop_server

MODEL = "lender-table-inline"
APPLICATION = {"amount_cny": 20000, "term_months": 12, "purpose": "farm_inputs"}
RISKY = {
    "age": 28,
    "monthly_income": 900,
    "land_mu": 1.0,
    "late_payments": 5,
    "loan_amount": 45000,
    "crop": "hogs",
}
SAFE = {
    "age": 52,
    "monthly_income": 5200,
    "land_mu": 14.0,
    "late_payments": 0,
    "loan_amount": 5000,
    "crop": "tea",
}


@dataclass(frozen=True)
class LenderHome:
    """A lender's own coopscore folder (data, MLflow store, keys): a `ServerHome` for `start_server`."""

    cli: Cli
    root: Path


def test_a_table_model_scores_inline_values_over_http(tmp_path: Path) -> None:
    cli = Cli(journey_env(tmp_path, {"COOPSCORE_MODEL_NAME": MODEL}), tmp_path)
    table = tmp_path / "applications.csv"
    cli.json("simulate-table", "--rows", "1000", "--out", str(table))
    _, trained = cli.json(
        "train", "--table", str(table), "--label", "outcome", "--bad-value", "default",
        "--good-value", "repaid", "--time", "applied_on", "--time-format", "%d/%m/%Y",
        "--id", "application_id", "--protected", "gender", "--model-name", MODEL,
    )  # fmt: skip
    assert trained["status"] == "registered"
    version = str(trained["version"])
    code, promoted = cli.json("promote", "--version", version, "--model-name", MODEL, expect=(0, 10))
    if code != 0:  # a small table may miss a gate: the analyst signs it off, recorded
        _, promoted = cli.json(
            "promote", "--version", version, "--model-name", MODEL, "--force",
            "--by", "journey-analyst", "--reason", "table journey: first model of this lender",
        )  # fmt: skip
    assert promoted["champion_after"] == version

    # No online store was ever materialized: the server is ready all the same.
    server = start_server(LenderHome(cli, tmp_path))
    try:
        with server.client("score") as http:
            _scores_and_refuses(http, server, version)
    finally:
        stop_server(server)


def _scores_and_refuses(http: Any, server: JourneyServer, version: str) -> None:
    def score(features: Any, **extra: Any) -> Any:
        return http.post(
            "/v1/score", json={"member_id": "APP-NEW-1", **APPLICATION, "features": features, **extra}
        )

    def refused(response: Any) -> dict[str, str]:
        assert response.status_code == 422, response.text
        return {p["field"]: p["problem"] for p in response.json()["detail"]}

    risky = score(RISKY, explain="all")
    assert risky.status_code == 200, f"{risky.text}\n{server.log_tail()}"
    body = risky.json()
    assert body["model_name"] == MODEL and body["model_version"] == version
    assert set(body["group_points"]) == set(RISKY)  # every column is a reason group, by its own name
    assert body["reasons"], body
    for reason in body["reasons"]:
        assert reason["code"] in RISKY and list(reason["features"]) == [reason["code"]]
        assert reason["code"] in reason["text_en"]
    safe = score(SAFE).json()
    assert safe["score"] > body["score"]

    problems = refused(score({**SAFE, "village": "Xinzhuang"}))
    assert list(problems) == ["features.village"] and "unknown field" in problems["features.village"]
    problems = refused(score({**SAFE, "crop": "coffee"}))
    assert problems == {
        "features.crop": "unknown category 'coffee': expected one of 'hogs', 'maize', 'rice', 'tea'"
    }
    problems = refused(score({**SAFE, "age": "fifty-two", "crop": 3}))
    assert set(problems) == {"features.age", "features.crop"}
    assert "expected a number, got text" in problems["features.age"]
    problems = refused(score({**SAFE, "age": 130}))
    assert "130 is outside the range seen in training (22 to 65)" in problems["features.age"]
    reviewed = score({**SAFE, "age": 130}, allow_out_of_range=True).json()
    assert reviewed["decision"] == "review" and "age=130" in reviewed["decision_notes"][0]
    assert refused(score(None)).keys() == {"features"}


def test_an_event_log_model_refuses_inline_values(journey_server: JourneyServer) -> None:
    with journey_server.client("score") as http:
        response = http.post("/v1/score", json={"member_id": "M000001", **APPLICATION, "features": SAFE})
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["field"] == "features"
    assert problem["problem"].startswith("inline features are only accepted by table-trained models")
