"""Subsidies through the API on a real model and the real SQLite decision log: reserved while the
county's budget lasts, never oversubscribed by concurrent requests, released when declined; the
programme's status is aggregates only; protected reads are logged; nothing names a protected value."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from features.contracts import PROTECTED_ATTRIBUTES
from features.event_log import EventLog
from models.programmes.cost import total_interest_cny
from serving.champion import load_champion
from serving.schemas import ProgrammeStatusResponse, ScoreResponse
from tests.utils.api import Keys, fill_online_store, make_settings

ClientFactory = Callable[..., TestClient]
APPLICATION = {"amount_cny": 8000, "term_months": 12, "purpose": "livestock"}
# 50% of the interest of 8,000 CNY over 12 months at 8%, floored to the fen.
COST = int(total_interest_cny([8000.0], [0.08], [12])[0] * 0.5 * 100) / 100


def programme_file(tmp_path: Path, households: float, **changes: Any) -> Path:
    body = {
        "id": "youth",
        "version": 1,
        "name": {"zh": "返乡青年贴息", "en": "Returning youth subsidy"},
        "periods": [{"id": "P1", "start": "2020-01-01", "end": "2100-01-01"}],
        "budgets": [{"county_id": "c1", "period": "P1", "amount_cny": round(COST * households, 2)}],
        "subsidy": {"share": 0.5, "reference_annual_rate": 0.08, "interest_at": "reference_rate"},
        "loss_ceiling": {"lgd": 0.6, "max_expected_loss_cny": 1_000_000},
        "eligibility": {"any_of": ["returning_youth", "left_behind_woman"]},
        **changes,
    }
    path = tmp_path / "youth.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


@pytest.fixture
def start(
    champion_store: tuple[Path, dict[str, dict[str, float]]],
    client_factory: ClientFactory,
    keys: Keys,
    tmp_path: Path,
) -> Callable[..., TestClient]:
    """A client on a server running a programme; members s0..s19 are the strong golden applicant
    (approved) in county c1, returning youth except s19; w0 is the weak one."""

    def build(households: float = 3.5, pricing: Path | None = None, **changes: Any) -> TestClient:
        root, members = champion_store
        overrides: dict[str, Any] = {
            "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
            "artifact_root": root / "artifacts",
            "programmes": (programme_file(tmp_path, households, **changes),),
        }
        if pricing is not None:
            overrides["pricing_policy"] = pricing
        settings = make_settings(tmp_path, keys, **overrides)
        names = tuple(n for n in members["strong"] if not n.startswith("application_"))
        vectors = {f"s{i}": [members["strong"][n] for n in names] for i in range(20)}
        vectors["w0"] = [members["weak"][n] for n in names]
        fill_online_store(settings, names, vectors)
        ids = [*(f"s{i}" for i in range(20)), "w0"]
        profiles = pa.table(
            {
                "member_id": ids,
                "gender": ["male"] * len(ids),
                "birth_year": pa.array([1998] * len(ids), pa.int32()),
                "returning_youth": [m != "s19" for m in ids],
                "left_behind_woman": [False] * len(ids),
                "county_id": ["c1"] * len(ids),
            }
        )
        EventLog(settings.events_dir, settings.tables_dir).append_table("member_profiles", profiles, "part-0")
        return client_factory(load_champion, **overrides)

    return build


def score(client: TestClient, keys: Keys, member: str, **extra: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/score", json={"member_id": member, **APPLICATION, **extra}, headers=keys.header("score")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert ScoreResponse.model_validate(body).model_dump(mode="json") == body  # the documented shape
    return body


def test_subsidies_are_reserved_while_the_budget_lasts_and_a_decline_frees_one(
    start: Callable[..., TestClient], keys: Keys
) -> None:
    client = start(households=3.5)
    answers = [score(client, keys, f"s{i}") for i in range(5)]
    assert all(a["decision"] == "approve" for a in answers)
    assert [a["subsidy"]["status"] for a in answers] == ["reserved"] * 3 + ["budget_exhausted"] * 2
    granted = answers[0]["subsidy"]
    assert granted["amount_cny"] == COST and granted["share"] == 0.5 and granted["annual_rate"] == 0.08
    assert granted["rate_source"] == "programme_reference_rate" and granted["programme_version"] == 1
    assert (
        "返乡青年贴息" in granted["message"]["zh"] and "Returning youth subsidy" in granted["message"]["en"]
    )

    status = client.get("/v1/programmes/youth", headers=keys.header("read")).json()
    [period] = status["periods"]
    assert period["used_cny"] == pytest.approx(3 * COST) and period["households"] == 3
    assert period["left_cny"] == pytest.approx(round(COST * 3.5, 2) - 3 * COST, abs=0.011)

    declined = client.post(
        f"/v1/programmes/youth/reservations/{answers[0]['request_id']}",
        json={"action": "decline"},
        headers=keys.header("score"),
    )
    assert declined.status_code == 200, declined.text
    assert declined.json()["status"] == "released" and declined.json()["amount_cny"] == COST
    assert "county_id" not in declined.json()
    assert score(client, keys, "s5")["subsidy"]["status"] == "reserved"  # the freed budget is used
    accepted = client.post(
        f"/v1/programmes/youth/reservations/{answers[1]['request_id']}",
        json={"action": "accept"},
        headers=keys.header("score"),
    )
    assert accepted.json()["status"] == "accepted"
    late = client.post(
        f"/v1/programmes/youth/reservations/{answers[0]['request_id']}",
        json={"action": "accept"},
        headers=keys.header("score"),
    )
    assert late.status_code == 409 and "released" in late.json()["detail"]


def test_a_replayed_request_answers_with_its_stored_subsidy_and_reserves_nothing_more(
    start: Callable[..., TestClient], keys: Keys
) -> None:
    client = start(households=2.5)
    body = {"member_id": "s0", **APPLICATION}
    headers = {**keys.header("score"), "Idempotency-Key": "k-1"}
    first = client.post("/v1/score", json=body, headers=headers)
    again = client.post("/v1/score", json=body, headers=headers)
    assert first.json()["subsidy"]["status"] == "reserved"
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()
    status = client.get("/v1/programmes/youth", headers=keys.header("read")).json()
    assert status["periods"][0]["households"] == 1 and status["periods"][0]["used_cny"] == pytest.approx(COST)


def test_sixteen_concurrent_requests_against_a_budget_for_five_subsidise_exactly_five(
    start: Callable[..., TestClient], keys: Keys
) -> None:
    client = start(households=5.5)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: score(client, keys, f"s{i}"), range(16)))
    statuses = sorted(a["subsidy"]["status"] for a in answers)
    assert statuses == ["budget_exhausted"] * 11 + ["reserved"] * 5
    status = client.get("/v1/programmes/youth", headers=keys.header("read")).json()
    assert status["periods"][0]["households"] == 5
    assert status["periods"][0]["used_cny"] == pytest.approx(5 * COST)


def test_who_is_not_approved_or_not_eligible_is_told_so_without_a_protected_value(
    start: Callable[..., TestClient], keys: Keys
) -> None:
    client = start()
    weak = score(client, keys, "w0")
    assert weak["decision"] != "approve" and weak["subsidy"]["status"] == "not_approved"
    not_targeted = score(client, keys, "s19")  # neither a returning youth nor a left-behind woman
    assert not_targeted["subsidy"]["status"] == "not_eligible"
    unknown = score(client, keys, "s0", applied_at="2101-01-01T00:00:00Z")  # outside every period
    assert unknown["subsidy"]["status"] == "not_eligible"
    for body in (weak, not_targeted, unknown):
        text = json.dumps(body["subsidy"], ensure_ascii=False)
        assert not any(name in text for name in PROTECTED_ATTRIBUTES), text


def test_programme_status_is_aggregates_only_and_counts_each_protected_read(
    start: Callable[..., TestClient], keys: Keys
) -> None:
    client = start(households=2.5)
    for member in ("s0", "s1", "s2", "s19", "w0"):
        score(client, keys, member)
    response = client.get("/v1/programmes/youth", headers=keys.header("read"))
    assert response.status_code == 200
    body = response.json()
    assert ProgrammeStatusResponse.model_validate(body).model_dump(mode="json") == body
    text = json.dumps(body)
    assert not any(f'"s{i}"' in text for i in range(20))  # no member id: aggregates only
    groups = {(g["attribute"], g["group"]): g["households"] for g in body["periods"][0]["groups"]}
    assert groups[("returning_youth", "true")] == 2 and groups[("gender", "male")] == 2
    [county] = body["periods"][0]["counties"]
    assert county == {
        "county_id": "c1",
        "budget_cny": round(COST * 2.5, 2),
        "used_cny": pytest.approx(2 * COST),
        "left_cny": pytest.approx(round(COST * 2.5, 2) - 2 * COST, abs=0.011),
        "households": 2,
    }
    uses = {(u["rule"], u["field"]): u["count"] for u in body["profile_uses"]}
    # The four approvals had their county read; returning_youth was read for each of them, and
    # left_behind_woman only for s19 (the one returning_youth did not admit). The decline read nothing.
    assert uses == {
        ("county_budget", "county_id"): 4,
        ("returning_youth", "returning_youth"): 4,
        ("left_behind_woman", "left_behind_woman"): 1,
    }


def test_programme_routes_need_their_scopes_and_name_what_is_missing(
    start: Callable[..., TestClient], keys: Keys
) -> None:
    client = start()
    assert client.get("/v1/programmes/youth").status_code == 401
    assert client.get("/v1/programmes/youth", headers=keys.header("ingest")).status_code == 403
    missing = client.get("/v1/programmes/other", headers=keys.header("read"))
    assert missing.status_code == 404 and "youth" in missing.json()["detail"]
    decline = client.post(
        f"/v1/programmes/youth/reservations/{'0' * 32}",
        json={"action": "decline"},
        headers=keys.header("read"),
    )
    assert decline.status_code == 403
    unknown = client.post(
        f"/v1/programmes/youth/reservations/{'0' * 32}",
        json={"action": "decline"},
        headers=keys.header("score"),
    )
    assert unknown.status_code == 404
    bad = client.post(
        f"/v1/programmes/youth/reservations/{'0' * 32}",
        json={"action": "maybe"},
        headers=keys.header("score"),
    )
    assert bad.status_code == 422


def test_a_programme_file_that_does_not_validate_stops_the_server(
    tmp_path: Path, keys: Keys, champion_store: tuple[Path, dict[str, dict[str, float]]]
) -> None:
    from serving.app import create_app

    root, _ = champion_store
    bad = programme_file(tmp_path, 1, subsidy={"share": 2})
    settings = make_settings(
        tmp_path,
        keys,
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifact_root=root / "artifacts",
        programmes=(bad,),
    )
    with pytest.raises(Exception, match=r"youth\.json: subsidy\.share"), TestClient(create_app(settings)):
        pass


def test_a_subsidy_is_priced_on_the_loan_as_offered(
    start: Callable[..., TestClient], keys: Keys, tmp_path: Path
) -> None:
    # The default (`interest_at: offer`): the interest of the offer's principal, rate and term. The
    # golden applicant's income allows 800 CNY: a product from 500 CNY makes that an offer.
    default = Path(__file__).resolve().parents[3] / "models" / "pricing_policy.yaml"
    pricing = tmp_path / "pricing.yaml"
    text = default.read_text(encoding="utf-8")
    assert "min_amount_cny: 1000" in text
    pricing.write_text(text.replace("min_amount_cny: 1000", "min_amount_cny: 500"), encoding="utf-8")
    client = start(households=100, pricing=pricing, subsidy={"share": 0.5, "reference_annual_rate": 0.08})
    answer = score(client, keys, "s0")
    offer, granted = answer["offer"], answer["subsidy"]
    assert answer["decision"] == "approve" and offer is not None, answer.get("no_offer")
    assert granted["status"] == "reserved" and granted["rate_source"] == "offer"
    assert granted["annual_rate"] == offer["annual_rate"] != 0.08
    interest = total_interest_cny([offer["principal_cny"]], [offer["annual_rate"]], [offer["term_months"]])[0]
    assert granted["interest_cny"] == round(float(interest), 2)
    assert granted["amount_cny"] == int(interest * 0.5 * 100) / 100
