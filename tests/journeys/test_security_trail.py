"""Journey (issue 14): who asked is on the record, and one client's idempotency keys are its own.

Two lenders that both number their requests reuse one Idempotency-Key against the real server: each
gets its own decision, and each retry replays its own. An officer reviews one of them with the admin
key. `coopscore decisions export` over the window (run while the server writes) lists those decisions
with the callers' key names, the model's digest, the inputs hash and the review, and no key material.
"""

from __future__ import annotations

import csv
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from tests.journeys.conftest import JourneyServer, JourneyWorld

APPLICATION = {"amount_cny": 8000, "term_months": 12, "purpose": "livestock"}


def test_two_lenders_reuse_a_key_and_the_auditor_sees_who_asked(
    journey_world: JourneyWorld, journey_server: JourneyServer, tmp_path: Path
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    member = journey_world.member_ids(1, offset=7)[0]
    body = {"member_id": member, **APPLICATION}
    decided: dict[str, str] = {}
    for scope in ("score", "all"):  # lender A (key journey-score), lender B (key journey-all)
        with journey_server.client(scope) as http:
            first, retry = (
                http.post("/v1/score", json=body, headers={"Idempotency-Key": "request-1"}) for _ in range(2)
            )
        assert first.status_code == 200, first.text
        assert "Idempotent-Replayed" not in first.headers  # not the other lender's decision
        assert retry.headers.get("Idempotent-Replayed") == "true"
        assert retry.json()["request_id"] == first.json()["request_id"]
        decided[f"journey-{scope}"] = first.json()["request_id"]
    assert len(set(decided.values())) == 2, journey_server.log_tail()

    with journey_server.client("admin") as http:
        review = http.post(
            f"/v1/decisions/{decided['journey-all']}/review",
            json={"reviewer": "officer wang", "action": "override", "decision": "decline", "reason": "debt"},
        )
    assert review.status_code == 201, review.text
    with journey_server.client("read") as http:
        [stored] = http.get(f"/v1/decisions/{decided['journey-all']}").json()["reviews"]
    assert (stored["reviewer"], stored["reviewed_by_key"]) == ("officer wang", "journey-admin")

    window = ("--from", started.isoformat(), "--to", (datetime.now(UTC) + timedelta(seconds=1)).isoformat())
    out = tmp_path / "audit.csv"
    _, summary = journey_world.cli.json("decisions", "export", *window, "--out", str(out))
    assert summary["format"] == "csv" and summary["rows"] >= 2
    assert (
        summary["by_caller"].get("journey-score", 0) >= 1 and summary["by_caller"].get("journey-all", 0) >= 1
    )
    with out.open(newline="", encoding="utf-8") as handle:
        rows = {r["request_id"]: r for r in csv.DictReader(handle)}
    assert len(rows) == summary["rows"]
    for caller, request_id in decided.items():
        row = rows[request_id]
        assert row["caller"] == caller
        assert len(row["model_digest"]) == 64 and len(row["inputs_hash"]) == 64
        assert row["model_version"] == journey_world.champion_version and row["feature_set_version"]
    reviewed, plain = rows[decided["journey-all"]], rows[decided["journey-score"]]
    assert (reviewed["review_decision"], reviewed["reviewer"], reviewed["reviewed_by_key"]) == (
        "decline",
        "officer wang",
        "journey-admin",
    )
    assert plain["review_decision"] == "" and plain["inputs_hash"] == reviewed["inputs_hash"]  # same inputs

    parquet = tmp_path / "audit.parquet"
    _, again = journey_world.cli.json("decisions", "export", *window, "--out", str(parquet))
    assert again["format"] == "parquet" and again["rows"] == summary["rows"]
    table = pq.read_table(parquet).to_pylist()
    assert {r["request_id"]: r["caller"] for r in table if r["request_id"] in decided.values()} == {
        v: k for k, v in decided.items()
    }
    # No key material in what an auditor receives: neither a key nor its SHA-256.
    exported = out.read_text(encoding="utf-8") + parquet.read_bytes().decode("latin-1")
    for key in journey_server.keys.values():
        assert key not in exported and hashlib.sha256(key.encode()).hexdigest() not in exported

    # A window that ends before it starts is bad input (exit 2), and writes nothing.
    bad = journey_world.cli.run(
        "decisions", "export", "--from", "2026-02-01", "--to", "2026-01-01", "--out", "x.csv"
    )
    assert bad.returncode == 2 and "not before --to" in bad.stderr
    assert not (journey_world.root / "x.csv").exists()
