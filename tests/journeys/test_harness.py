"""The journey harness itself: the world was built by the CLI and the server answers with its champion."""

from __future__ import annotations

from tests.journeys.conftest import JourneyServer, JourneyWorld


def test_world_is_built_and_served(journey_world: JourneyWorld, journey_server: JourneyServer) -> None:
    _, stats = journey_world.cli.json("events", "stats")
    assert stats["events"] > 100_000
    with journey_server.client("none") as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.post("/v1/score", json={}).status_code == 401
    member = journey_world.member_ids(1)[0]
    with journey_server.client("score") as client:
        response = client.post(
            "/v1/score",
            json={"member_id": member, "amount_cny": 8000, "term_months": 12, "purpose": "livestock"},
        )
    assert response.status_code == 200, response.text
    decision = response.json()
    assert decision["decision"] in {"approve", "review", "decline"}
    assert decision["model_version"] == journey_world.champion_version
