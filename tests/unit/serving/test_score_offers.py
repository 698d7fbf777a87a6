"""Offers in the score API on a real model: an approved or reviewed application comes with an offer
priced by the configured policy, a decline with the reason there is none; the decision log keeps the
offer and the policy's version and digest; a bad policy stops the app before it starts."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from models.pricing import DEFAULT_PRICING_POLICY, PricingPolicyError, load_pricing_policy
from serving.app import create_app
from serving.champion import load_champion
from serving.schemas import ScoreResponse
from tests.unit.serving.test_score import APPLICATION, score
from tests.utils.api import Keys, champion_settings, make_settings

ClientFactory = Callable[..., TestClient]
# The synthetic training set's amounts are small: the golden strong applicant's deliveries are raised
# to a farm's (more deliveries only lower its PD), so affordability allows the amount asked for.
STRONG_DELIVERIES_CNY = 60_000.0


@pytest.fixture
def online_members(champion_store: tuple[Path, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    members = champion_store[1]
    return {**members, "strong": {**members["strong"], "delivery_amount_365d": STRONG_DELIVERIES_CNY}}


def _logged(tmp_path: Path, request_id: str) -> tuple[str | None, str | None, str | None]:
    con = sqlite3.connect(tmp_path / "data" / "decisions.sqlite")
    row = con.execute(
        "SELECT offer, pricing_policy_version, pricing_policy_digest FROM decisions WHERE request_id = ?",
        (request_id,),
    ).fetchone()
    con.close()
    return (row[0], row[1], row[2])


def _check(body: dict, version: str) -> None:
    """An offer for approve/review (or a named reason why not), never one for a decline."""
    assert ScoreResponse.model_validate(body).model_dump(mode="json") == body
    offer, no_offer = body["offer"], body["no_offer"]
    assert (offer is None) != (no_offer is None)
    if body["decision"] == "decline":
        assert no_offer["code"] == "declined" and no_offer["policy_version"] == version
    if offer is not None:
        assert offer["policy_version"] == version
        parts = sum(Decimal(repr(c["value"])) for c in offer["rate_components"])
        assert parts == Decimal(repr(offer["annual_rate"]))
        assert offer["principal_cny"] <= APPLICATION["amount_cny"]


def test_each_decision_comes_with_an_offer_or_its_reason_and_the_log_keeps_both(
    client: TestClient, keys: Keys, tmp_path: Path
) -> None:
    default = load_pricing_policy()
    bodies = [score(client, keys, m) for m in ("strong", "weak")]
    bodies.append(score(client, keys, "ghost", allow_new_member=True))
    for body in bodies:
        _check(body, default.version)
        offer, version, digest = _logged(tmp_path, body["request_id"])
        assert (version, digest) == (default.version, default.digest)
        assert (json.loads(offer) if offer else None) == body["offer"]
    strong, _, ghost = bodies
    assert strong["decision"] == "approve" and strong["offer"]["principal_cny"] == APPLICATION["amount_cny"]
    # A new member has no income on record to size a loan on.
    assert ghost["no_offer"]["code"] == "no_income_on_record"
    batch = client.post(
        "/v1/score/batch",
        json={"applications": [{"member_id": m, **APPLICATION} for m in ("strong", "weak")]},
        headers=keys.header("score"),
    )
    assert batch.status_code == 200
    for one, single in zip(batch.json()["results"], bodies, strict=False):
        _check(one, default.version)
        assert one["offer"] == single["offer"] and one["no_offer"] == single["no_offer"]


def test_the_configured_policy_prices_the_offer(
    champion_store: tuple[Path, dict[str, dict[str, float]]],
    client: TestClient,
    client_factory: ClientFactory,
    keys: Keys,
    tmp_path: Path,
) -> None:
    # `client` filled the online store; a second app on the same data folder serves another policy.
    raw = yaml.safe_load(DEFAULT_PRICING_POLICY.read_text(encoding="utf-8"))
    raw["version"] = "small-loans-1"
    raw["product"]["max_amount_cny"] = 3000
    path = tmp_path / "small.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    custom = client_factory(load_champion, pricing_policy=path, **champion_settings(champion_store[0]))
    body = score(custom, keys, "strong")
    _check(body, "small-loans-1")
    assert body["offer"]["limit_cny"] == body["offer"]["principal_cny"] == 3000
    assert body["offer"]["limit_binding"] == "product_max"
    assert _logged(tmp_path, body["request_id"])[1:] == ("small-loans-1", load_pricing_policy(path).digest)


def test_a_bad_policy_stops_the_app_with_one_line(tmp_path: Path, keys: Keys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(DEFAULT_PRICING_POLICY.read_text(encoding="utf-8").replace("lgd: 0.6", "lgd: 6"))
    with pytest.raises(
        PricingPolicyError, match=r"rate\.lgd: Input should be less than or equal to 1"
    ) as caught:
        create_app(make_settings(tmp_path, keys, pricing_policy=path))
    assert "\n" not in str(caught.value)
