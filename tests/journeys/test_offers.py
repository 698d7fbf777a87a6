"""Journey (issue 16 item 1): offers priced by a versioned policy, and the auditor finds the policy.

A loan officer screens a list of applicants over HTTP: every approved or reviewed application comes
with an offer (limit, annual rate and its named parts in zh/en, which add up to the rate exactly,
monthly payment, total cost of credit, the green discount the programme pays), and every decline
with the reason there is none. At the counter the strongest applicant gets an offer and the weakest
is told why not. The auditor's `decisions export` shows the pricing policy's version and digest with
every decision, and each offer as JSON. A pricing team then serves its own policy file with
`coopscore serve --pricing-policy`; a file with a typo is refused with one line naming the field.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.journeys.conftest import MEMBERS, JourneyServer, JourneyWorld, start_server, stop_server
from tests.utils.api import RATE_COMPONENTS

APPLICATION = {"amount_cny": 8000, "term_months": 12, "purpose": "farm_inputs"}
APPLICANTS = 400
CJK = re.compile(r"[\u4e00-\u9fff]")


def _exact(value: float) -> Decimal:
    return Decimal(repr(value))


def _check_offer(result: dict[str, Any], policy: dict[str, Any]) -> None:
    """What a loan officer relies on in every answer: an offer or the reason for none, never both."""
    offer, no_offer = result["offer"], result["no_offer"]
    assert (offer is None) != (no_offer is None), result
    if result["decision"] == "decline":
        assert no_offer["code"] == "declined"
    if no_offer is not None:
        assert CJK.search(no_offer["text_zh"]) and no_offer["text_en"]
        assert no_offer["policy_version"] == policy["version"]
        return
    assert (offer["policy_version"], offer["policy_digest"]) == (policy["version"], policy["digest"])
    assert tuple(c["code"] for c in offer["rate_components"]) == RATE_COMPONENTS
    assert all(CJK.search(c["label_zh"]) and c["label_en"] for c in offer["rate_components"])
    assert all(CJK.search(c["label_zh"]) and c["label_en"] for c in offer["limit_components"])
    assert sum(_exact(c["value"]) for c in offer["rate_components"]) == _exact(offer["annual_rate"])
    rate = policy["policy"]["rate"]
    assert rate["floor_bps"] / 10_000 <= offer["annual_rate"] <= rate["cap_bps"] / 10_000
    assert offer["principal_cny"] == min(APPLICATION["amount_cny"], offer["limit_cny"])
    # Equal instalments (等额本息), as the borrower's contract would compute them.
    r, n, principal = offer["annual_rate"] / 12, offer["term_months"], offer["principal_cny"]
    payment = principal * r / (1 - (1 + r) ** -n)
    assert abs(offer["monthly_payment_cny"] - payment) <= 0.005
    assert abs(offer["total_cost_of_credit_cny"] - (payment * n - principal)) <= 0.01


def test_offers_are_priced_by_a_versioned_policy_the_auditor_can_find(
    journey_world: JourneyWorld, journey_server: JourneyServer, tmp_path: Path
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    cli = journey_world.cli
    _, policy = cli.json("pricing", "check")  # the policy the server was started with (the default)

    # The loan officer screens the cooperative's members, a list at a time, until some are declined.
    results: list[dict[str, Any]] = []
    with journey_server.client("score") as http:
        for offset in range(0, MEMBERS, APPLICANTS):
            applicants = journey_world.member_ids(APPLICANTS, offset=offset)
            items = [{"member_id": m, **APPLICATION, "allow_new_member": True} for m in applicants]
            screened = http.post("/v1/score/batch", json={"applications": items})
            assert screened.status_code == 200, screened.text
            results += screened.json()["results"]
            if any(r["decision"] == "decline" for r in results):
                break
    for result in results:
        _check_offer(result, policy)
    offered = [r for r in results if r["offer"] is not None]
    declined = [r for r in results if r["decision"] == "decline"]
    assert offered and declined, Counter((r["decision"], r["offer"] is None) for r in results)
    # Verified green practices lower the rate; the programme pays the interest they save.
    green = [r["offer"] for r in offered if r["offer"]["green"]["verified_practices"] > 0]
    assert green, "some offered applicant has a verified green practice in the last 12 months"
    for offer in green:
        parts = {c["code"]: c["value"] for c in offer["rate_components"]}
        assert parts["green_discount"] < 0 and offer["green"]["discount_bps"] > 0
        assert offer["green"]["rate_without_discount"] >= offer["annual_rate"]
        assert offer["green"]["programme_cost_cny"] >= 0 and offer["green"]["funded_by_en"]

    # At the counter: the strongest applicant, then the weakest, one at a time.
    strong_id = min((r for r in offered if r["decision"] == "approve"), key=lambda r: r["pd"])["member_id"]
    weak_id = max(declined, key=lambda r: r["pd"])["member_id"]
    answers = {}
    with journey_server.client("score") as http:
        for name, member in (("strong", strong_id), ("weak", weak_id)):
            response = http.post("/v1/score", json={"member_id": member, **APPLICATION})
            assert response.status_code == 200, response.text
            answers[name] = response.json()
    strong, weak = answers["strong"], answers["weak"]
    _check_offer(strong, policy)
    assert strong["decision"] == "approve" and strong["offer"]["limit_cny"] > 0
    assert weak["decision"] == "decline" and weak["offer"] is None and weak["no_offer"]["code"] == "declined"
    with journey_server.client("read") as http:
        kept = http.get(f"/v1/decisions/{strong['request_id']}").json()
    assert kept["response"]["offer"] == strong["offer"]

    # The auditor's export: the policy's version and digest with every decision, each offer as JSON.
    window = ("--from", started.isoformat(), "--to", (datetime.now(UTC) + timedelta(seconds=1)).isoformat())
    out = tmp_path / "decisions.csv"
    _, summary = cli.json("decisions", "export", *window, "--out", str(out))
    assert summary["by_pricing_policy"].get(policy["version"], 0) >= len(results) + 2
    assert summary["with_offer"] >= len(offered) + 1
    with out.open(newline="", encoding="utf-8") as handle:
        rows = {r["request_id"]: r for r in csv.DictReader(handle)}
    for answer in (strong, weak, *results):
        row = rows[answer["request_id"]]
        assert (row["pricing_policy_version"], row["pricing_policy_digest"]) == (
            policy["version"],
            policy["digest"],
        )
        assert (json.loads(row["offer"]) if row["offer"] else None) == answer["offer"]

    # A pricing team's own policy: a typo is refused before any server starts; the fixed file serves.
    own = tmp_path / "county-pilot.yaml"
    text = Path(policy["source"]).read_text(encoding="utf-8")
    text = text.replace(f"version: {policy['version']}", "version: county-pilot-2027")
    own.write_text(text.replace("margin_bps: 100", "margin_bp: 0"), encoding="utf-8")
    refused = cli.run("serve", "--port", "1", "--pricing-policy", str(own))
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "rate.margin_bp: unknown field" in refused.stderr
    own.write_text(text.replace("margin_bps: 100", "margin_bps: 0"), encoding="utf-8")
    _, pilot = cli.json("pricing", "check", str(own))
    server = start_server(journey_world, args=("--pricing-policy", str(own)))
    try:
        with server.client("score") as http:
            response = http.post("/v1/score", json={"member_id": strong_id, **APPLICATION})
    finally:
        stop_server(server)
    assert response.status_code == 200, response.text
    piloted = response.json()
    _check_offer(piloted, pilot)
    assert pilot["version"] == "county-pilot-2027" and pilot["digest"] != policy["digest"]
    assert piloted["offer"]["annual_rate"] <= strong["offer"]["annual_rate"]  # no margin
    _, after = cli.json(
        "decisions", "export", *window[:2], "--to", datetime.now(UTC).isoformat(), "--out", str(out)
    )
    assert after["by_pricing_policy"]["county-pilot-2027"] == 1
