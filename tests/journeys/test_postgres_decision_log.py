"""Journey (issue 18 item 3): the decision log on PostgreSQL.

An operator points `COOPSCORE_DECISION_LOG` at PostgreSQL and starts `coopscore serve --workers 2`.
A lender scores applicants concurrently, sending every request twice with the same Idempotency-Key
(the two copies may reach different worker processes): each key gets one decision, both copies the
same answer. An officer overrides one decision, outcomes are posted, and the auditor's
`coopscore decisions export` reads it all back from PostgreSQL. A mistyped server address is one line,
exit 7, with the password hidden. Skipped (reason printed) when PostgreSQL is not on 127.0.0.1:5432.
"""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.journeys.conftest import JourneyWorld, start_server, stop_server

APPLICATION = {"amount_cny": 8000, "term_months": 12, "purpose": "livestock"}


def test_two_workers_share_one_postgresql_log_and_the_auditor_exports_it(
    journey_world: JourneyWorld, postgres_url: str, tmp_path: Path
) -> None:
    env = {"COOPSCORE_DECISION_LOG": postgres_url}
    started = datetime.now(UTC) - timedelta(seconds=1)
    server = start_server(journey_world, workers=2, env=env)
    try:
        members = journey_world.member_ids(12, offset=40)

        def score_twice(index: int) -> list[httpx.Response]:
            key = f"pg-journey-{index}"
            body = {"member_id": members[index], "application_id": f"PGJ-{index:03d}", **APPLICATION}
            with server.client("score") as http:
                return [http.post("/v1/score", json=body, headers={"Idempotency-Key": key}) for _ in range(2)]

        with ThreadPoolExecutor(8) as pool:  # 24 requests, 8 at a time, over both workers
            answers = list(pool.map(score_twice, range(len(members))))
        for first, again in answers:
            assert first.status_code == again.status_code == 200, (first.text, server.log_tail())
            assert first.json()["request_id"] == again.json()["request_id"]  # one decision per key
        decided = {f"PGJ-{i:03d}": pair[0].json()["request_id"] for i, pair in enumerate(answers)}

        overridden = decided["PGJ-003"]
        with server.client("admin") as http:
            review = http.post(
                f"/v1/decisions/{overridden}/review",
                json={
                    "reviewer": "officer zhao",
                    "action": "override",
                    "decision": "decline",
                    "reason": "debt",
                },
            )
            assert review.status_code == 201, review.text
        with server.client("read") as http:
            assert http.get(f"/v1/decisions/{overridden}").json()["reviews"][0]["reviewer"] == "officer zhao"
        with server.client("ingest") as http:
            posted = http.post(
                "/v1/outcomes",
                json={
                    "outcomes": [
                        {
                            "application_id": "PGJ-005",
                            "defaulted": True,
                            "observed_at": "2027-01-01T00:00:00Z",
                        }
                    ]
                },
            )
        assert posted.status_code == 200, posted.text
        assert posted.json() == {"stored": 1, "linked_to_decisions": 1}
    finally:
        stop_server(server)

    window = ("--from", started.isoformat(), "--to", (datetime.now(UTC) + timedelta(seconds=1)).isoformat())
    out = tmp_path / "audit.csv"
    done = journey_world.cli.run("decisions", "export", *window, "--out", str(out), "--json", env=env)
    assert done.returncode == 0, done.stderr
    with out.open(newline="", encoding="utf-8") as handle:
        rows = {r["request_id"]: r for r in csv.DictReader(handle)}
    assert set(rows) == set(decided.values())  # every answered decision, none twice, nothing else
    assert {r["caller"] for r in rows.values()} == {"journey-score"}
    assert (rows[overridden]["review_decision"], rows[overridden]["reviewed_by_key"]) == (
        "decline",
        "journey-admin",
    )
    assert rows[decided["PGJ-005"]]["outcome_defaulted"] == "1"

    # The auditor mistypes the port: one line naming the URL (password hidden), exit 7.
    wrong = "postgresql://auditor:s3cret@127.0.0.1:1/test?schema=coopscore"
    failed = journey_world.cli.run(
        "decisions",
        "export",
        *window,
        "--out",
        str(tmp_path / "x.csv"),
        env={"COOPSCORE_DECISION_LOG": wrong},
    )
    assert failed.returncode == 7
    assert "postgresql://auditor:***@127.0.0.1:1/test" in failed.stderr and "s3cret" not in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
