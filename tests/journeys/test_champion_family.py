"""Journey (issue 15, item 4): a lender whose committee prefers the scorecard makes it the champion
family, and it is served like any booster: the same score, points that add up, reasons and API.

Its own data folder, MLflow store and server under tmp_path, like the lender-table journey.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.journeys.conftest import Cli, journey_env, start_server, stop_server
from tests.journeys.test_lender_journey import APPLICATION, RISKY, SAFE, TRAIN, LenderHome

MODEL = "lender-table-scorecard"


def test_a_scorecard_champion_is_served_through_the_same_points_and_reasons(tmp_path: Path) -> None:
    cli = Cli(journey_env(tmp_path, {"COOPSCORE_MODEL_NAME": MODEL}), tmp_path)
    cli.json("simulate-table", "--rows", "2000", "--out", "applications.csv")
    (tmp_path / "family.json").write_text(json.dumps({"model_family": "scorecard"}), encoding="utf-8")
    train = [arg if arg != "lender-table-inline" else MODEL for arg in TRAIN]

    # Auto (the default): both families are fitted and the evidence is printed with the choice.
    _, auto = cli.json(*train)
    family = auto["metrics"]["model_family"]
    assert family["chosen"] in ("booster", "scorecard") and "paired 95% interval" in family["why"]
    other = "scorecard" if family["chosen"] == "booster" else "booster"
    assert f"{other}_family" in {row["contender"] for row in auto["comparison"]}

    # The committee's choice: the scorecard family, by configuration.
    _, trained = cli.json(*train, "--config", "family.json")
    assert trained["status"] == "registered" and trained["version"] != auto["version"]
    assert trained["metrics"]["model_family"]["chosen"] == "scorecard"
    version = str(trained["version"])
    rows = {row["contender"]: row for row in trained["comparison"]}
    # The served scorecard ranks like the WOE scorecard it was fitted to (same OOT rows).
    assert abs(rows["model"]["auc"] - rows["scorecard"]["auc"]) < 0.03, rows

    code, promoted = cli.json("promote", "--version", version, "--model-name", MODEL, expect=(0, 10))
    gates = {g["gate"]: g for g in promoted["gates"]}
    assert gates["directions"]["passed"], gates["directions"]  # the declared direction holds
    if code != 0:
        _, promoted = cli.json(
            "promote", "--version", version, "--model-name", MODEL, "--force",
            "--by", "journey-analyst", "--reason", "committee: scorecard family",
        )  # fmt: skip
    assert promoted["champion_after"] == version

    server = start_server(LenderHome(cli, tmp_path))
    try:
        with server.client("read") as http:
            served = http.get("/v1/model")
            assert served.status_code == 200, served.text
            model = served.json()
            assert model["model_version"] == version and "WOE scorecard" in (model["model_card"] or "")
        with server.client("score") as http:
            scored = {}
            for name, features in (("risky", RISKY), ("safe", SAFE)):
                response = http.post(
                    "/v1/score",
                    json={"member_id": f"APP-{name}", **APPLICATION, "features": features, "explain": "all"},
                )
                assert response.status_code == 200, f"{response.text}\n{server.log_tail()}"
                scored[name] = body = response.json()
                assert body["model_version"] == version and set(body["group_points"]) == set(RISKY)
                total = body["base_points"] + math.fsum(body["group_points"].values())
                assert total == pytest.approx(body["score"], abs=1e-6), body
            assert scored["risky"]["reasons"] and scored["safe"]["score"] > scored["risky"]["score"]
            # One more late payment never raises the score: the monotone direction, served.
            worse = http.post(
                "/v1/score",
                json={
                    "member_id": "APP-worse",
                    **APPLICATION,
                    "features": {**RISKY, "late_payments": RISKY["late_payments"] + 1},
                },
            ).json()
            assert worse["score"] <= scored["risky"]["score"] + 1e-9
    finally:
        stop_server(server)
