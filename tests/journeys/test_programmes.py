"""Journey (issue 16, item 2): an interest-subsidy programme (贴息) from its file to its report.

The county centre writes a programme for one county and a second for another; a server runs both
(two worker processes, its own decision log beside the session world's, so the session world is
undisturbed). A loan officer scores applicants over HTTP: subsidies are reserved until the county's
budget runs out, a smaller loan still fits what is left, a declined offer frees its share; sixteen
applicants arriving at once against a budget for five get exactly five. The data officer then reads
the programme's status over HTTP (aggregates only), runs `coopscore programme allocate` in batch on
the logged decisions and opens the report: the integer program beside both greedy rules.
"""

from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.journeys.conftest import Cli, JourneyServer, JourneyWorld, start_server, stop_server
from tests.utils.programmes import subsidy_cny

BIG, SMALL = 20_000, 5_000  # CNY, both over 12 months
OLD = "2020-06-01T00:00:00Z"  # outside every period: scored without touching a budget


@dataclass(frozen=True)
class ProgrammeHome:
    """This journey's folder: the session world's data and models, its own decision log."""

    cli: Cli
    root: Path


def _counties(world: JourneyWorld) -> dict[str, list[str]]:
    """Members by county, from the world's own member export (the centre's register)."""
    by_county: dict[str, list[str]] = {}
    with (world.world_dir / "members" / "member_profiles.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            by_county.setdefault(row["county_id"], []).append(row["member_id"])
    return by_county


def _programmes(path: Path, youth_county: str, burst_county: str) -> list[str]:
    """Two programme files: one county's start-up loans (budget for 3.6 subsidies of a large loan),
    and another county's spring loans (budget for 5.5), both for a period around today."""
    today = datetime.now(UTC).date()
    period = {"id": "now", "start": str(today - timedelta(days=30)), "end": str(today + timedelta(days=60))}
    common = {
        "version": 1,
        "periods": [period],
        "subsidy": {"share": 0.5, "reference_annual_rate": 0.08, "interest_at": "reference_rate"},
        "loss_ceiling": {"lgd": 0.6, "max_expected_loss_cny": 1_000_000},
    }
    youth = {
        "id": "journey-youth",
        "name": {
            "zh": "返乡青年与留守妇女创业贷款贴息",
            "en": "Start-up loans for returning youth and left-behind women",
        },
        "budgets": [
            {"county_id": youth_county, "period": "now", "amount_cny": round(3.6 * subsidy_cny(BIG), 2)}
        ],
        "eligibility": {
            "any_of": [
                "first_formal_loan",
                "returning_youth",
                "left_behind_woman",
                "completed_training",
                "verified_green_practice",
            ]
        },
        **common,
    }
    burst = {
        "id": "journey-burst",
        "name": {"zh": "春耕贷款贴息", "en": "Spring planting loans"},
        "budgets": [
            {"county_id": burst_county, "period": "now", "amount_cny": round(5.5 * subsidy_cny(BIG), 2)}
        ],
        **common,
    }
    files = []
    for programme in (youth, burst):
        file = path / f"{programme['id']}.json"
        file.write_text(json.dumps(programme, ensure_ascii=False), encoding="utf-8")
        files.append(str(file))
    return files


def _score(client: httpx.Client, member: str, amount: int, **extra: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/score",
        json={
            "member_id": member,
            "amount_cny": amount,
            "term_months": 12,
            "purpose": "farm_inputs",
            **extra,
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_programme_for_one_county_from_reservations_to_the_batch_report(
    journey_world: JourneyWorld, tmp_path: Path
) -> None:
    counties = _counties(journey_world)
    youth_county, burst_county = sorted(counties, key=lambda c: -len(counties[c]))[:2]
    files = _programmes(tmp_path, youth_county, burst_county)
    env = {
        **journey_world.cli.env,
        "COOPSCORE_PROGRAMMES": json.dumps(files),
        "COOPSCORE_DECISION_LOG": f"sqlite:///{tmp_path / 'decisions.sqlite'}",
    }
    home = ProgrammeHome(Cli(env, journey_world.root), tmp_path)
    _, checked = home.cli.json("programme", "check", files[0])
    assert checked["id"] == "journey-youth" and checked["version"] == 1
    server = start_server(home, workers=2)
    try:
        _journey(home, server, counties, youth_county, burst_county, files)
    finally:
        stop_server(server)


def _journey(
    home: ProgrammeHome,
    server: JourneyServer,
    counties: dict[str, list[str]],
    youth_county: str,
    burst_county: str,
    files: list[str],
) -> None:
    officer, reader = server.client("score"), server.client("read")

    # 1. Applicants of the programme's county, one after another, until its budget runs out.
    answers: list[dict[str, Any]] = []
    for member in counties[youth_county][:120]:
        answers.append(_score(officer, member, BIG))
        if answers[-1]["subsidy"]["status"] == "budget_exhausted":
            break
    statuses = [a["subsidy"]["status"] for a in answers]
    assert statuses[-1] == "budget_exhausted", statuses
    reserved = [a for a in answers if a["subsidy"]["status"] == "reserved"]
    assert len(reserved) == 3  # the budget holds 3.6 subsidies of a 20,000 CNY loan
    assert all(a["decision"] == "approve" for a in reserved)
    assert {a["subsidy"]["amount_cny"] for a in reserved} == {subsidy_cny(BIG)}
    assert set(statuses) <= {"reserved", "not_approved", "not_eligible", "budget_exhausted"}
    assert all(a["subsidy"]["status"] == "not_approved" for a in answers if a["decision"] != "approve")
    one = reserved[0]["subsidy"]
    assert one["programme_id"] == "journey-youth" and one["rate_source"] == "programme_reference_rate"
    assert "贴息" in one["message"]["zh"] and "CNY is reserved" in one["message"]["en"]

    # 2. Two smaller loans still fit what is left (0.6 of a large one); then nothing does.
    small: list[dict[str, Any]] = []
    for member in counties[youth_county][len(answers) : len(answers) + 120]:
        answer = _score(officer, member, SMALL)
        if answer["decision"] == "approve" and answer["subsidy"]["status"] != "not_eligible":
            small.append(answer)
        if len(small) == 3:
            break
    assert [a["subsidy"]["status"] for a in small] == ["reserved", "reserved", "budget_exhausted"]

    # 3. The programme's status: budget used and left, reach by group and county, reads counted.
    status = reader.get("/v1/programmes/journey-youth")
    assert status.status_code == 200, status.text
    [period] = status.json()["periods"]
    used = 3 * subsidy_cny(BIG) + 2 * subsidy_cny(SMALL)
    assert period["households"] == 5 and abs(period["used_cny"] - used) < 0.005
    assert abs(period["left_cny"] - (period["budget_cny"] - used)) < 0.011
    assert sum(g["households"] for g in period["groups"] if g["attribute"] == "gender") == 5
    assert [c["county_id"] for c in period["counties"]] == [youth_county]
    assert not any(a["member_id"] in status.text for a in answers)  # aggregates only
    uses = {(u["rule"], u["field"]) for u in status.json()["profile_uses"]}
    assert ("county_budget", "county_id") in uses

    # 4. The first applicant declines the offer: its share goes back and the next one gets it.
    declined = officer.post(
        f"/v1/programmes/journey-youth/reservations/{reserved[0]['request_id']}", json={"action": "decline"}
    )
    assert declined.status_code == 200 and declined.json()["status"] == "released"
    after = reader.get("/v1/programmes/journey-youth").json()["periods"][0]
    assert after["released"] == 1 and abs(after["used_cny"] - (used - subsidy_cny(BIG))) < 0.005
    taken = next(
        a
        for m in counties[youth_county][len(answers) + 120 :]
        if (a := _score(officer, m, BIG))["decision"] == "approve"
        and a["subsidy"]["status"] != "not_eligible"
    )
    assert taken["subsidy"]["status"] == "reserved"

    # 5. Sixteen approved applicants of the other county arrive at once; its budget holds five.
    probe = officer.post(
        "/v1/score/batch",
        json={
            "applications": [
                {
                    "member_id": m,
                    "amount_cny": BIG,
                    "term_months": 12,
                    "purpose": "farm_inputs",
                    "applied_at": OLD,
                }
                for m in counties[burst_county][:200]
            ]
        },
    )
    assert probe.status_code == 200, probe.text
    assert {r["subsidy"]["status"] for r in probe.json()["results"] if r["decision"] == "approve"} == {
        "not_eligible"
    }
    approved = [r["member_id"] for r in probe.json()["results"] if r["decision"] == "approve"][:16]
    assert len(approved) == 16
    clients = [server.client("score") for _ in range(16)]
    with ThreadPoolExecutor(16) as pool:
        burst = list(
            pool.map(lambda pair: _score(pair[0], pair[1], BIG), zip(clients, approved, strict=True))
        )
    burst_statuses = sorted(a["subsidy"]["status"] for a in burst)
    assert burst_statuses == ["budget_exhausted"] * 11 + ["reserved"] * 5, burst_statuses
    burst_status = reader.get("/v1/programmes/journey-burst").json()["periods"][0]
    assert burst_status["households"] == 5 and abs(burst_status["used_cny"] - 5 * subsidy_cny(BIG)) < 0.005

    # 6. In batch: the integer program on the logged approvals, beside both greedy rules.
    out = home.root / "allocation"
    _, report = home.cli.json("programme", "allocate", "--programme", files[0], "--out", str(out))
    rules = {r["rule"]: r for r in report["rules"]}
    solver, fcfs, lowest = (
        rules["integer program (HiGHS)"],
        rules["first come first served"],
        rules["lowest PD first"],
    )
    assert solver["households"] >= max(fcfs["households"], lowest["households"]) >= 5
    for rule in rules.values():
        assert rule["subsidy_cny"] <= rule["budget_cny"] + 1e-6
        assert rule["expected_loss_cny"] <= rule["loss_ceiling_cny"] + 1e-6
        assert (
            sum(g["households"] for g in rule["by_group"] if g["attribute"] == "county") == rule["households"]
        )
    assert report["solver"]["status"] == "optimal"
    apps = report["applications"]
    assert apps["excluded"]["not approved"] > 0
    assert apps["excluded"]["the member's county has no budget in the period"] > 0  # the other county
    assert apps["read"] == apps["eligible"] + sum(apps["excluded"].values())
    assert {u["rule"] for u in report["profile_uses"]} >= {"county_budget", "returning_youth"}

    # 7. The report: offline, both languages, the comparison and the chart.
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "覆盖户数" in page and "households reached" in page and "first come first served" in page
    assert "data:image/png;base64," in page and "https://" not in page
    listed = (out / "subsidised.csv").read_text(encoding="utf-8").splitlines()
    assert listed[0].startswith("application_id,member_id") and len(listed) == solver["households"] + 1
    bad = home.cli.run("programme", "allocate", "--programme", str(home.root / "missing.yaml"), "--json")
    assert bad.returncode == 2 and "missing.yaml" in bad.stderr
