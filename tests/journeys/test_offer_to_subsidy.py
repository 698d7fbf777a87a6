"""Journey (issue 16 item 5): from a county's programme to offers, subsidies, recourse, the batch
allocation and the audit of offers by group.

A county centre writes a zero-interest programme (it pays all the interest) for one county, priced on
the loan as offered. A loan officer scores that county's applicants over HTTP, asking for recourse:
each approval comes with an offer and, while the budget lasts, a subsidy equal to the offer's whole
interest; then the budget runs out. A declined applicant hears what would change the answer. The data
officer allocates the programme in batch from the decision log (priced on the logged offers) and
opens the report; the auditor audits the offers by group, with recourse for the declines.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.journeys.conftest import Cli, JourneyServer, JourneyWorld, start_server, stop_server

AMOUNT, TERM = 8_000, 12
PROGRAMME = "journey-zero-interest"
BEFORE = "2020-06-01T00:00:00Z"  # before every period of the programme: screening takes no budget
PROTECTED = ("gender", "birth_year", "returning_youth", "left_behind_woman", "county_id")


def interest_cny(principal: float, annual_rate: float, months: int) -> float:
    """Interest of equal monthly instalments, as a borrower's contract states it (computed here)."""
    r = annual_rate / 12
    return principal * r / (1 - (1 + r) ** -months) * months - principal


class Home:
    """This journey's folder: the session world's data and models, its own decision log."""

    def __init__(self, cli: Cli, root: Path) -> None:
        self.cli, self.root = cli, root


def _county_members(world: JourneyWorld) -> tuple[str, list[str]]:
    """The county with the most members, and its members (the centre's register)."""
    by_county: dict[str, list[str]] = {}
    with (world.world_dir / "members" / "member_profiles.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            by_county.setdefault(row["county_id"], []).append(row["member_id"])
    county = max(by_county, key=lambda c: len(by_county[c]))
    return county, by_county[county]


def _programme(path: Path, county: str, budget_cny: float) -> Path:
    today = datetime.now(UTC).date()
    programme = {
        "id": PROGRAMME,
        "version": 1,
        "name": {"zh": "绿色农业零利率贷款", "en": "Zero-interest loans for green farming"},
        "periods": [
            {"id": "now", "start": str(today - timedelta(days=30)), "end": str(today + timedelta(days=60))}
        ],
        "budgets": [{"county_id": county, "period": "now", "amount_cny": budget_cny}],
        "subsidy": {"share": 1.0, "reference_annual_rate": 0.08},  # priced on the offer (the default)
        "loss_ceiling": {"lgd": 0.6, "max_expected_loss_cny": 1_000_000},
    }
    file = path / f"{PROGRAMME}.json"
    file.write_text(json.dumps(programme, ensure_ascii=False), encoding="utf-8")
    return file


def test_a_county_programme_from_offers_to_the_batch_report_and_the_audit(
    journey_world: JourneyWorld, tmp_path: Path
) -> None:
    county, members = _county_members(journey_world)
    budget = 1_500.0  # about three loans' interest
    file = _programme(tmp_path, county, budget)
    env = {
        **journey_world.cli.env,
        "COOPSCORE_PROGRAMMES": json.dumps([str(file)]),
        "COOPSCORE_DECISION_LOG": f"sqlite:///{tmp_path / 'decisions.sqlite'}",
    }
    home = Home(Cli(env, journey_world.root), tmp_path)
    server = start_server(home)
    try:
        screened, answers = _officer(server, members)
        _programme_status(server, answers, budget)
    finally:
        stop_server(server)
    _batch(home, file, answers)
    _audit(home, [*screened, *answers])


def _officer(server: JourneyServer, members: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Screen the county's list in batch (dated before the programme: no budget is touched), then
    score approved applicants one by one until the budget is spent, and the declined ones with
    recourse. Returns (screened, answers)."""
    screened: list[dict[str, Any]] = []
    with server.client("score") as http:
        for offset in range(0, len(members), 400):
            items = [
                {"member_id": m, "amount_cny": AMOUNT, "term_months": TERM, "purpose": "farm_inputs",
                 "applied_at": BEFORE}
                for m in members[offset : offset + 400]
            ]  # fmt: skip
            response = http.post("/v1/score/batch", json={"applications": items})
            assert response.status_code == 200, response.text
            screened += response.json()["results"]
            if any(r["decision"] == "decline" for r in screened):
                break
        assert {r["subsidy"]["status"] for r in screened} <= {"not_eligible", "not_approved"}
        approved = [r["member_id"] for r in screened if r["decision"] == "approve"]
        declined_ids = [r["member_id"] for r in screened if r["decision"] == "decline"][:3]
        answers: list[dict[str, Any]] = []
        for member in [*approved[:60], *declined_ids]:
            if member in approved and any(a["subsidy"]["status"] == "budget_exhausted" for a in answers):
                continue
            response = http.post(
                "/v1/score",
                json={"member_id": member, "amount_cny": AMOUNT, "term_months": TERM,
                      "purpose": "farm_inputs", "recourse": True},
            )  # fmt: skip
            assert response.status_code == 200, response.text
            answers.append(response.json())
    reserved = [a for a in answers if a["subsidy"]["status"] == "reserved"]
    assert len(reserved) >= 2
    assert any(a["subsidy"]["status"] == "budget_exhausted" for a in answers)

    # Every subsidy is the whole interest of the loan as offered (limit, rate and term), to the fen.
    for answer in reserved:
        offer, subsidy = answer["offer"], answer["subsidy"]
        assert answer["decision"] == "approve" and offer is not None
        assert subsidy["rate_source"] == "offer" and subsidy["annual_rate"] == offer["annual_rate"]
        owed = interest_cny(offer["principal_cny"], offer["annual_rate"], offer["term_months"])
        assert abs(subsidy["amount_cny"] - owed) <= 0.011, (subsidy, offer)
        assert "贴息" in subsidy["message"]["zh"] and "reserved" in subsidy["message"]["en"]

    # A declined applicant hears what would change the decision, in both languages.
    declined = [a for a in answers if a["decision"] == "decline"]
    assert declined and all(a["subsidy"]["status"] == "not_approved" for a in declined)
    for answer in declined:
        plan = answer["recourse"]
        assert plan["status"] in ("found", "out_of_reach"), plan
        assert plan["summary_zh"] and plan["summary_en"]
        moved = {m["name"] for step in plan["actions"] for m in step["moves"]}
        assert not moved & set(PROTECTED)
        if plan["status"] == "found":
            assert plan["actions"] and plan["reached_decision"] == "approve"
            assert plan["actions"][-1]["score_after"] >= plan["target_score"]
    return screened, answers


def _programme_status(server: JourneyServer, answers: list[dict[str, Any]], budget: float) -> None:
    reserved = [a for a in answers if a["subsidy"]["status"] == "reserved"]
    with server.client("read") as http:
        status = http.get(f"/v1/programmes/{PROGRAMME}")
    assert status.status_code == 200, status.text
    [period] = status.json()["periods"]
    assert period["households"] == len(reserved)
    assert sum(a["subsidy"]["amount_cny"] for a in reserved) <= budget
    assert abs(period["used_cny"] - sum(a["subsidy"]["amount_cny"] for a in reserved)) < 0.005
    assert abs(period["left_cny"] - (budget - period["used_cny"])) < 0.011
    # The last refusal was right: what was left could not pay that loan's interest.
    last = [a for a in answers if a["subsidy"]["status"] == "budget_exhausted"][-1]
    assert last["subsidy"]["interest_cny"] > period["left_cny"]


def _batch(home: Home, file: Path, answers: list[dict[str, Any]]) -> None:
    """The integer program on the logged approvals, priced on their logged offers."""
    out = home.root / "allocation"
    _, report = home.cli.json("programme", "allocate", "--programme", str(file), "--out", str(out))
    apps = report["applications"]
    approved = {a["application_id"] for a in answers if a["decision"] == "approve"}
    assert apps["eligible"] == len(approved)
    assert apps["read"] == apps["eligible"] + sum(apps["excluded"].values())
    assert any(
        f"the loan as offered (principal, rate, term) for {len(approved):,}" in n for n in apps["notes"]
    )
    rules = {r["rule"]: r for r in report["rules"]}
    solver = rules["integer program (HiGHS)"]
    assert solver["households"] >= max(rules["first come first served"]["households"],
                                       rules["lowest PD first"]["households"])  # fmt: skip
    assert all(r["subsidy_cny"] <= r["budget_cny"] + 1e-6 for r in rules.values())
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "覆盖户数" in page and "households reached" in page and "https://" not in page
    assert "the loan as offered" in page
    with (out / "subsidised.csv").open(newline="", encoding="utf-8") as handle:
        chosen = list(csv.DictReader(handle))
    assert len(chosen) == solver["households"] and {r["application_id"] for r in chosen} <= approved


def _audit(home: Home, answers: list[dict[str, Any]]) -> None:
    """Offers by group: rate and limit given PD band, subsidy share against eligible share, recourse."""
    code, audit = home.cli.json(
        "audit", "fairness", "--data", "decision-log", "--model", "champion",
        "--min-group-size", "5", "--n-boot", "50", expect=(0, 3),
    )  # fmt: skip
    assert code == (0 if audit["passed"] else 3)
    offers = audit["offers"]
    counts = offers["counts"]
    assert counts["applications"] == len(answers)
    assert counts["offers"] == sum(a["offer"] is not None for a in answers)
    assert counts["subsidised"] == sum(a["subsidy"]["status"] == "reserved" for a in answers)
    assert counts["subsidy_eligible"] == sum(
        a["subsidy"]["status"] in ("reserved", "budget_exhausted") for a in answers
    )
    declined = sum(a["decision"] == "decline" for a in answers)
    # Declines asked with recourse keep the plan they were given; the model plans for the others.
    assert counts["declined"] == declined and counts["declined_with_recourse"] == declined
    asked = [a for a in answers if a["decision"] == "decline" and a.get("recourse")]
    assert counts["declined_with_plan"] >= sum(a["recourse"]["status"] == "found" for a in asked)
    assert any("recourse logged with" in n for n in offers["notes"])
    assert any("recourse computed by the model" in n for n in offers["notes"])
    assert offers["pd_bands"][0].startswith("0%")
    gender = {g["group"]: g for g in offers["attributes"]["gender"]}
    assert sum(g["n"] for g in gender.values()) == len(answers)
    assert sum(g["n_subsidised"] for g in gender.values()) == counts["subsidised"]
    shares = [g["values"]["subsidised_share"] for g in gender.values() if g["n_subsidised"]]
    assert abs(sum(shares) - 1) < 1e-9
    # The stored report shows the section, and no member id leaves in it.
    page = Path(audit["outputs"]["report"]).read_text(encoding="utf-8")
    assert "Offers by group" in page and "分组贷款条件" in page
    assert not any(a["member_id"] in page for a in answers)
    print(json.dumps({"offers": counts, "flags": [f["message"] for f in audit["flags"]]}, ensure_ascii=False))
