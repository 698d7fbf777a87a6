"""Monitoring journey: applications are scored over HTTP, `coopscore monitor drift` judges the window
against the champion's reference sample, the API serves the same check, outcomes give performance.

The session world has a `unit_fen` scenario from `DRIFT_MONTH` and its champion was trained as of
the onset. The online store is materialized as of a date in the quarter before the onset (stable
window), then as of a date six weeks after it (drifted window), and restored to the world's end at
the close. The applicants are the world's own application table (a lender's list of who applied,
with amounts and terms), each window the applications of the quarter before its date.

On this world the drifted window's alarms are the delivery features: the reference ends at the onset
(late autumn) and the window is six weeks into winter. The fen cooperative is ~2% of the applicants,
too few rows for the range test against a few hundred reference rows; the journey checks that the
monitor names what moved, not which scenario moved it.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.journeys.conftest import JourneyServer, JourneyWorld

WINDOW = 300  # decisions per drift check: above the monitor's 200-row minimum, a few seconds to score
BATCH = 100


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _applications(world: JourneyWorld, before: datetime, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` applications of the 91 days before `before`, from the world's application export."""
    since = before - timedelta(days=91)
    with (world.world_dir / "applications" / "applications.csv").open(newline="", encoding="utf-8") as f:
        rows = [
            row
            for row in csv.DictReader(f)
            if since <= datetime.fromisoformat(row["applied_at"].replace("Z", "+00:00")) < before
        ]
    assert len(rows) >= count, f"only {len(rows)} applications in the quarter before {before}"
    return random.Random(seed).sample(rows, count)


def _score(server: JourneyServer, applications: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Score the applications over HTTP, as a lender's batch upload does."""
    results: list[dict[str, Any]] = []
    with server.client("score") as client:
        for start in range(0, len(applications), BATCH):
            body = {
                "applications": [
                    {
                        "application_id": a["application_id"],
                        "member_id": a["member_id"],
                        "amount_cny": float(a["amount_cny"]),
                        "term_months": int(a["term_months"]),
                        "purpose": a["purpose"],
                    }
                    for a in applications[start : start + BATCH]
                ]
            }
            response = client.post("/v1/score/batch", json=body)
            assert response.status_code == 200, response.text
            results += response.json()["results"]
    return results


def _materialize(world: JourneyWorld, as_of: datetime) -> None:
    _, done = world.cli.json("features", "materialize", "--as-of", _iso(as_of))
    assert done["members"] > 0


def _check(world: JourneyWorld, *extra: str, expect: int) -> dict[str, Any]:
    """`coopscore monitor drift --last WINDOW --json`: its exit code, JSON and stderr line."""
    done = world.cli.run("monitor", "drift", "--last", str(WINDOW), *extra, "--json")
    assert done.returncode == expect, (
        f"monitor drift exited {done.returncode}, expected {expect}\n"
        f"stdout: {done.stdout[-3000:]}\nstderr: {done.stderr[-2000:]}"
    )
    assert "Downloading artifacts" not in done.stderr + done.stdout
    payload: dict[str, Any] = json.loads(done.stdout)
    return payload


def _served_check(server: JourneyServer) -> dict[str, Any]:
    with server.client("read") as client:
        response = client.get("/v1/monitoring/drift")
        assert response.status_code == 200, response.text
        report = client.get("/v1/monitoring/drift/report")
        assert report.status_code == 200 and "text/html" in report.headers["content-type"]
    served: dict[str, Any] = response.json()
    return served


def _drifted(payload: dict[str, Any]) -> set[str]:
    return {name for name, item in payload["features"].items() if item["alarm"] == "drift"}


@pytest.fixture
def store_restored(journey_world: JourneyWorld) -> Iterator[None]:
    """Leave the online store as the harness built it (as of the world's end) for later journeys."""
    yield
    _materialize(journey_world, journey_world.end)


@pytest.mark.usefixtures("store_restored")
def test_drift_is_judged_on_what_was_served(
    journey_world: JourneyWorld, journey_server: JourneyServer
) -> None:
    world = journey_world
    onset = world.drift_onset
    assert world.stable_as_of < onset, "the stable window must predate the drift scenario"

    # A stable quarter: vectors as of mid-month before the onset, the quarter's applicants.
    _materialize(world, world.stable_as_of)
    _score(journey_server, _applications(world, world.stable_as_of, WINDOW, seed=1))
    stable = _check(world, expect=0)
    assert stable["status"] in {"stable", "watch"}, stable["reasons"]
    assert stable["n_current"] == WINDOW and stable["model_version"] == world.champion_version
    assert stable["reference_period"]["end"] < _iso(onset)  # the reference predates the drift
    assert set(stable["scores"]) == {"score", "pd"} and not _drifted(stable)
    assert not [name for name in stable["features"] if name.startswith("_")]
    assert Path(stable["outputs"]["evidently"]).is_file()
    assert _served_check(journey_server)["created_at"] == stable["created_at"]

    # A drifted quarter: six weeks into the scenario. By the time it is checked, the lender has posted
    # what happened to those applications (the world's truth stands in for a year of repayments).
    drifted_as_of = (world.end - timedelta(days=1)).replace(day=15)
    assert drifted_as_of > onset
    _materialize(world, drifted_as_of)
    scored = _score(journey_server, _applications(world, drifted_as_of, WINDOW, seed=2))
    truth = pq.read_table(world.world_dir / "truth" / "applications.parquet").to_pandas()
    outcome = truth.set_index("application_id")["defaulted"]
    posted = [
        {
            "application_id": r["application_id"],
            "defaulted": bool(outcome[r["application_id"]]),
            "observed_at": _iso(drifted_as_of + timedelta(days=365)),
        }
        for r in scored
    ]
    with journey_server.client("ingest") as client:
        response = client.post("/v1/outcomes", json={"outcomes": posted})
    assert response.status_code == 200, response.text
    assert response.json()["linked_to_decisions"] == WINDOW

    drifted = _check(world, expect=3)
    assert drifted["status"] == "drift"
    named = _drifted(drifted)
    assert named and {f["name"] for f in drifted["top_features"] if f["alarm"] == "drift"} <= named
    assert all(any(r.startswith(f"{name}:") for r in drifted["reasons"]) for name in named)
    evidently = Path(drifted["outputs"]["evidently"])
    assert evidently.is_file() and evidently.stat().st_size > 10_000
    assert set(drifted["evidently"]["column_scores"]) >= named | {"score", "pd"}
    (cohort,) = drifted["performance"]
    assert cohort["applications"] == WINDOW and cohort["outcomes"] == WINDOW
    assert cohort["defaults"] == sum(p["defaulted"] for p in posted)
    served = _served_check(journey_server)
    assert (served["created_at"], served["status"], served["top_features"], served["performance"]) == (
        drifted["created_at"],
        "drift",
        drifted["top_features"],
        drifted["performance"],
    )

    # Asking for more decisions than were logged is refused with its own exit code, nothing written.
    checks = sorted(p.name for p in (world.data_dir / "monitoring").iterdir())
    # Far more than every journey of the session logs together (the shared log grows with each one).
    done = world.cli.run("monitor", "drift", "--last", "1000000", "--min-rows", "1000000", "--json")
    assert done.returncode == 5, done.stderr
    assert json.loads(done.stdout)["status"] == "insufficient_data"
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert sorted(p.name for p in (world.data_dir / "monitoring").iterdir()) == checks
