"""Journey (issue 18, item 5): the model registry on PostgreSQL instead of the SQLite file.

An operator sets `COOPSCORE_TRACKING_URI=postgresql://USER@HOST:PORT/DB` (psycopg 3 is the driver;
MLflow creates its tables on first use) and runs the make-run chain's model steps on the session
world: `retrain` trains, registers and promotes (or an analyst signs the first model off with
`promote --force`), `models list` shows the champion, and `coopscore serve` loads it from the
PostgreSQL registry and scores over HTTP. The database is fresh for this test and dropped after it;
artifacts stay in a folder (`COOPSCORE_ARTIFACT_ROOT`), as with SQLite.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from tests.journeys.conftest import Cli, JourneyWorld, start_server, stop_server

APPLICATION = {"amount_cny": 20000, "term_months": 12, "purpose": "farm_inputs"}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Home:
    """Where the server runs: the world's data, a PostgreSQL registry, its own artifacts and decisions."""

    def __init__(self, cli: Cli, root: Path) -> None:
        self.cli = cli
        self.root = root


def test_train_register_promote_and_serve_from_a_postgresql_registry(
    journey_world: JourneyWorld, postgres_database_url: str, tmp_path: Path
) -> None:
    env = {
        **journey_world.cli.env,
        "COOPSCORE_TRACKING_URI": postgres_database_url,
        "COOPSCORE_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "COOPSCORE_DECISION_LOG": f"sqlite:///{tmp_path / 'decisions.sqlite'}",
    }
    home = Home(Cli(env, tmp_path), tmp_path)

    # Train and register (the gates may keep no champion on this small world: then sign it off).
    _, trained = home.cli.json(
        "retrain", "--truth", str(journey_world.world_dir), "--as-of", _iso(journey_world.drift_onset),
        expect=(0, 10),
    )  # fmt: skip
    version = str(trained["version"])
    assert version == "1"  # a fresh registry: the first version of the model
    if trained["exit_code"] != 0:
        home.cli.json(
            "promote", "--version", version, "--force", "--by", "journey-analyst",
            "--reason", "PostgreSQL registry journey: first model",
        )  # fmt: skip
    _, listed = home.cli.json("models", "list")
    champions = [v for v in listed["versions"] if "champion" in v["aliases"]]
    assert [v["version"] for v in champions] == [version], listed

    server = start_server(home)
    try:
        with server.client() as http:
            ready = http.get("/readyz").json()
            member = journey_world.member_ids(1, offset=11)[0]
            scored = http.post("/v1/score", json={"member_id": member, **APPLICATION})
        assert ready["ready"] and ready["model_version"] == version, ready
        assert scored.status_code == 200, f"{scored.text}\n{server.log_tail()}"
        assert scored.json()["model_version"] == version
    finally:
        stop_server(server)
    # Nothing of it went to the SQLite registry the world was built with.
    assert not (tmp_path / "mlruns").exists()
