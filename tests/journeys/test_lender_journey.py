"""Journey (issue 13): a lender's awkward table to a model a credit committee signs off, served.

A generated table with dd/mm/yyyy dates, an id column, a constant column, a numeric protected column
(age) and a text label goes through train -> model report -> fairness audit on its own stored OOT
split -> promote -> serve -> score inline over HTTP, with only the CLI and HTTP; training it again
registers nothing (exit 11). Bad inline values are refused naming the column, and an event-log
model refuses inline values.

The lender's journey runs in its own data folder and MLflow store (its own model name too), so the
session world is undisturbed; only the last test uses the session world's server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.journeys.conftest import Cli, JourneyServer, journey_env, start_server, stop_server
from training.report_html import SECTIONS

MODEL = "lender-table-inline"
APPLICATION = {"amount_cny": 20000, "term_months": 12, "purpose": "farm_inputs"}
# Age is protected (audit groups only): it is not an input, so applicants do not send it.
RISKY = {"monthly_income": 900, "land_mu": 1.0, "late_payments": 5, "loan_amount": 45000, "crop": "hogs"}
SAFE = {"monthly_income": 5200, "land_mu": 14.0, "late_payments": 0, "loan_amount": 5000, "crop": "tea"}
TRAIN = (
    "train", "--table", "applications.csv", "--label", "outcome", "--bad-value", "default",
    "--good-value", "repaid", "--label-desc", "60+ days past due within 12 months",
    "--time", "applied_on", "--time-format", "%d/%m/%Y", "--id", "application_id",
    "--protected", "gender", "--protected", "age", "--target-bad-rate", "0.10",
    "--oot-months", "4", "--model-name", MODEL,
)  # fmt: skip


@dataclass(frozen=True)
class LenderHome:
    """A lender's own coopscore folder (data, MLflow store, keys): a `ServerHome` for `start_server`."""

    cli: Cli
    root: Path


def test_my_table_to_a_signed_off_model_scored_over_http(tmp_path: Path) -> None:
    cli = Cli(journey_env(tmp_path, {"COOPSCORE_MODEL_NAME": MODEL}), tmp_path)
    cli.json("simulate-table", "--rows", "2000", "--out", "applications.csv")

    # Train: every awkward case is handled and said; cutoffs come from the lender's target.
    _, trained = cli.json(*TRAIN)
    assert trained["status"] == "registered"
    version = str(trained["version"])
    inputs = trained["data"]["inputs"]
    assert {e["column"]: e["reason"] for e in inputs["columns_excluded"]} == {
        "branch": "constant",
        "collections_stage": "leakage suspect",
    }
    assert inputs["roles"]["id"] == ["application_id"] and inputs["protected"] == ["gender", "age"]
    assert set(inputs["bands"]["age"]["counts"]) == {"<25", "25-39", "40-59", "60+"}
    policy = trained["metrics"]["policy"]
    assert policy["mode"] == "target_bad_rate" and policy["target"] == 0.10

    # The model report: the path printed, every table of a credit committee, offline.
    page = Path(trained["report"]["path"])
    assert page.is_file() and page.is_relative_to(tmp_path)
    html = page.read_text(encoding="utf-8")
    for anchor, english, chinese in SECTIONS:
        assert f'id="{anchor}"' in html and english in html and chinese in html
    assert not re.findall(r'(?:src|href)="(?!#|data:image/png;base64,)', html)
    assert len(trained["report"]["tables"]["deciles"]) == 10

    # Fairness audit on the model's own stored OOT split, by gender and by age band.
    code, audit = cli.json(
        "audit", "fairness", "--data", "oot", "--model-name", MODEL, "--model", version,
        "--min-group-size", "30", expect=(0, 3),
    )  # fmt: skip
    assert code == (0 if audit["passed"] else 3)
    assert audit["source"].startswith(f"oot: stored split of {MODEL} v{version}")
    assert audit["n"] == trained["metrics"]["oot_rows"]
    assert list(audit["attributes"]) == ["gender", "age"]
    ages = {g["group"] for g in audit["attributes"]["age"]["groups"]}
    assert ages <= {"<25", "25-39", "40-59", "60+"}, ages  # bands, not one group per age

    # Promote: every gate judges (fairness on the table's own groups, the scorecard comparison);
    # a small table may miss one, and then the analyst signs it off, recorded.
    code, promoted = cli.json("promote", "--version", version, "--model-name", MODEL, expect=(0, 10))
    gates = {g["gate"]: g for g in promoted["gates"]}
    assert not gates["fairness"]["skipped"] and not gates["scorecard"]["skipped"]
    if code != 0:
        failed = [g["reason"] for g in promoted["gates"] if not g["passed"]]
        assert failed and all(reason for reason in failed)  # each failure says why
        _, promoted = cli.json(
            "promote", "--version", version, "--model-name", MODEL, "--force",
            "--by", "journey-analyst", "--reason", "table journey: first model of this lender",
        )  # fmt: skip
    assert promoted["champion_after"] == version

    # The same table again registers nothing.
    _, again = cli.json(*TRAIN, expect=11)
    assert again["status"] == "no_new_data" and again["version"] == version

    # No online store was ever materialized: the server is ready all the same.
    server = start_server(LenderHome(cli, tmp_path))
    try:
        with server.client("score") as http:
            _scores_and_refuses(http, server, version)
    finally:
        stop_server(server)


def _scores_and_refuses(http: Any, server: JourneyServer, version: str) -> None:
    def score(features: Any, **extra: Any) -> Any:
        return http.post(
            "/v1/score", json={"member_id": "APP-NEW-1", **APPLICATION, "features": features, **extra}
        )

    def refused(response: Any) -> dict[str, str]:
        assert response.status_code == 422, response.text
        return {p["field"]: p["problem"] for p in response.json()["detail"]}

    risky = score(RISKY, explain="all")
    assert risky.status_code == 200, f"{risky.text}\n{server.log_tail()}"
    body = risky.json()
    assert body["model_name"] == MODEL and body["model_version"] == version
    assert set(body["group_points"]) == set(RISKY)  # every column is a reason group, by its own name
    assert body["reasons"], body
    for reason in body["reasons"]:
        assert reason["code"] in RISKY and list(reason["features"]) == [reason["code"]]
        assert reason["code"] in reason["text_en"]
    safe = score(SAFE).json()
    assert safe["score"] > body["score"]

    problems = refused(score({**SAFE, "village": "Xinzhuang"}))
    assert list(problems) == ["features.village"] and "unknown field" in problems["features.village"]
    problems = refused(score({**SAFE, "crop": "coffee"}))
    assert problems == {
        "features.crop": "unknown category 'coffee': expected one of 'hogs', 'maize', 'rice', 'tea'"
    }
    problems = refused(score({**SAFE, "land_mu": "many", "crop": 3}))
    assert set(problems) == {"features.land_mu", "features.crop"}
    assert "expected a number, got text" in problems["features.land_mu"]
    problems = refused(score({**SAFE, "age": 52}))  # protected, not an input: not accepted
    assert list(problems) == ["features.age"] and "unknown field" in problems["features.age"]
    problems = refused(score({**SAFE, "late_payments": 50}))
    assert re.search(
        r"50 is outside the range seen in training \(0 to \d+\)", problems["features.late_payments"]
    )
    reviewed = score({**SAFE, "late_payments": 50}, allow_out_of_range=True).json()
    assert reviewed["decision"] == "review" and "late_payments=50" in reviewed["decision_notes"][0]
    assert refused(score(None)).keys() == {"features"}


def test_an_event_log_model_refuses_inline_values(journey_server: JourneyServer) -> None:
    with journey_server.client("score") as http:
        response = http.post("/v1/score", json={"member_id": "M000001", **APPLICATION, "features": SAFE})
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["field"] == "features"
    assert problem["problem"].startswith("inline features are only accepted by table-trained models")
