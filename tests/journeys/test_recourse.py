"""Journey (issue 16, recourse): a member who is not approved asks what would change the answer.

The loan officer scores applicants over HTTP with `"recourse": true` and finds one who is declined (or
sent to review) with a plan; the member asks again at the counter with the CLI (`coopscore recourse`)
and gets the same plan. Then the member follows it: the cooperative's bookkeeper records the deposits,
trainings and practices in a feed export, the data officer ingests it and refreshes the store, and
the same model, asked again, approves the member at the score the plan promised. That last part runs
in a copy of the session's data folder, so the session world's event log stays as other journeys
expect it.
"""

from __future__ import annotations

import csv
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.journeys.conftest import Cli, JourneyServer, JourneyWorld, journey_env

APPLICATION = {"term_months": 12, "purpose": "farm_inputs"}
AMOUNTS = (80_000, 20_000)  # a large loan is declined more often; then an ordinary one
TOPICS = ("financial_literacy", "bookkeeping", "agronomy")
PRACTICES = ("organic_fertilizer", "integrated_pest_management", "drip_irrigation")
COLUMNS = ("event_id", "member_id", "coop_id", "event_type", "event_time", "recorded_at")


def _find_applicant(world: JourneyWorld, server: JourneyServer) -> tuple[dict[str, Any], int]:
    """The first member (declined if any, else in review) whose answer carries a plan that reaches
    approval; and the amount asked."""
    fallback: tuple[dict[str, Any], int] | None = None
    with server.client("score") as client:
        for amount in AMOUNTS:
            for member in world.member_ids(300, offset=500):
                body = {"member_id": member, "amount_cny": amount, **APPLICATION, "recourse": True}
                response = client.post("/v1/score", json=body)
                assert response.status_code == 200, response.text
                answer = response.json()
                if answer["recourse"]["status"] != "found":
                    continue
                if answer["decision"] == "decline":
                    return answer, amount
                fallback = fallback or (answer, amount)
    assert fallback is not None, "no applicant in review or declined with a plan among 600 answers"
    return fallback


def _coop_of(world: JourneyWorld, member: str) -> str:
    """The member's cooperative, as the data officer knows it: the export folder their records are in."""
    for folder in sorted((world.world_dir / "events").iterdir()):
        for export in sorted(folder.iterdir()):
            text = export.read_text(encoding="utf-8")
            if f",{member}," in text or f'"{member}"' in text:  # CSV or JSON Lines
                return folder.name
    raise AssertionError(f"{member} is in no export")


def _mid_month(as_of: datetime, months_back: int) -> datetime:
    """The 15th of the month `months_back` months before the one `as_of` starts (10:00 UTC)."""
    first = as_of.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for _ in range(months_back):
        first = (first - timedelta(days=1)).replace(day=1)
    return first.replace(day=15, hour=2)


def _records(plan: dict[str, Any], member: str, coop: str, as_of: datetime) -> list[dict[str, str]]:
    """What the bookkeeper writes down as the member does each step, in the months before `as_of`."""
    rows: list[dict[str, str]] = []

    def record(event_type: str, months_back: int, **payload: str) -> None:
        when = _mid_month(as_of, months_back)
        rows.append(
            {
                "event_id": f"advice-{member}-{len(rows)}",
                "member_id": member,
                "coop_id": coop,
                "event_type": event_type,
                "event_time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "recorded_at": (when + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                **payload,
            }
        )

    for step in plan["actions"]:
        units = step["units"]
        if step["action"] == "save_group_fund":
            third = round(units / 3, -1)
            for back, amount in ((3, third), (2, third), (1, units - 2 * third)):
                record("savings_deposit", back, amount_cny=f"{amount:.2f}")
        elif step["action"] == "complete_training":
            for k in range(int(units)):
                record("training_completed", int(units) - k, topic=TOPICS[k])
        elif step["action"] == "adopt_green_practice":
            for k in range(int(units)):
                record("green_practice", int(units) - k, practice=PRACTICES[k], verified="true")
        else:
            raise AssertionError(f"a record-only action was advised: {step['action']}")
    return rows


def test_a_declined_member_gets_a_plan_follows_it_and_is_approved(
    journey_world: JourneyWorld, journey_server: JourneyServer, tmp_path: Path
) -> None:
    answer, amount = _find_applicant(journey_world, journey_server)
    member, plan = answer["member_id"], answer["recourse"]

    # Over HTTP: the cheapest causal actions, each with its target values, cost, time and the score
    # it reaches, ending in approval at or above the model's approve cutoff; in zh and en.
    assert plan["score"] < plan["target_score"] <= plan["reached_score"]
    assert plan["reached_decision"] == "approve" and plan["actions"]
    assert all(a["causal"] and a["moves"] and a["instruction_zh"] for a in plan["actions"])
    assert plan["actions"][-1]["score_after"] == plan["reached_score"]
    assert "approval" in plan["summary_en"] and "获批" in plan["summary_zh"]
    assert plan["total_cost_cny"] == sum(a["cost_cny"] for a in plan["actions"])

    # At the counter, the CLI gives the same plan from the same model and vector.
    args = ("recourse", member, "--amount", str(amount), "--term", "12")
    _, asked = journey_world.cli.json(*args)
    assert asked["decision"] == answer["decision"] and asked["status"] == "found"
    assert [(a["action"], a["units"]) for a in asked["actions"]] == [
        (a["action"], a["units"]) for a in plan["actions"]
    ]
    assert asked["reached_score"] == plan["reached_score"]
    text = journey_world.cli.run(*args)
    assert text.returncode == 0 and "approval" in text.stderr

    # The member follows the plan; the cooperative records it; the store is refreshed as of the same
    # day; the model, asked again, approves at the promised score (or better: months and kinds of
    # activity are counted pessimistically in the plan).
    copy = tmp_path / "home"
    shutil.copytree(
        journey_world.data_dir,
        copy / "data",
        ignore=shutil.ignore_patterns("decisions.sqlite*", "monitoring", "audits", "reports"),
    )
    cli = Cli(journey_env(copy, _same_models(journey_world)), copy)
    export = copy / "feeds" / "advice.csv"
    export.parent.mkdir()
    rows = _records(plan, member, _coop_of(journey_world, member), journey_world.end)
    payload_columns = sorted({k for r in rows for k in r} - set(COLUMNS))
    with export.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*COLUMNS, *payload_columns])
        writer.writeheader()
        writer.writerows(rows)
    _, ingested = cli.json("ingest", str(export.parent))
    assert ingested["sources"][0]["accepted"] == len(rows) and ingested["sources"][0]["quarantined"] == 0
    cli.json("features", "materialize", "--as-of", journey_world.end.strftime("%Y-%m-%dT%H:%M:%SZ"))
    _, after = cli.json(*args)
    assert after["decision"] == "approve" and after["status"] == "not_needed"
    assert after["score"] >= plan["reached_score"] - 1e-6


def _same_models(world: JourneyWorld) -> dict[str, str]:
    """The copy reads the session's MLflow store (the same champion)."""
    return {
        k: v for k, v in world.cli.env.items() if k in ("COOPSCORE_TRACKING_URI", "COOPSCORE_ARTIFACT_ROOT")
    }
