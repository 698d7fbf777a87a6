"""An operator runs the server in production with small limits: guessed keys meet 429s after a short
budget, a key over its rate is told when to come back, every request leaves one JSON access-log line
(fingerprints, never keys), the docs and readiness details are hidden, and the data is private."""

from __future__ import annotations

import hashlib
import json
import stat
import time
from typing import Any

import httpx

from tests.journeys.conftest import JourneyWorld, start_server, stop_server

AUTH_BURST = 10
KEY_BURST = 5
SIGNING_KEY = "journey-signing-key-" + "0123456789abcdef" * 2
LIMITS = {
    "COOPSCORE_ENVIRONMENT": "production",
    "COOPSCORE_MODEL_SIGNING_KEY": SIGNING_KEY,  # production serves signed models only
    "COOPSCORE_RATE_LIMIT_PER_SECOND": "1",
    "COOPSCORE_RATE_LIMIT_BURST": str(KEY_BURST),
    "COOPSCORE_AUTH_FAILURE_PER_SECOND": "0.1",
    "COOPSCORE_AUTH_FAILURE_BURST": str(AUTH_BURST),
}


def _access_lines(log_text: str) -> list[dict[str, Any]]:
    lines = []
    for raw in log_text.splitlines():
        if raw.startswith("{"):
            parsed = json.loads(raw)
            if "request_id" in parsed:
                lines.append(parsed)
    return lines


def _metric(text: str, kind: str) -> float:
    prefix = f'coopscore_rate_limited_total{{kind="{kind}"}}'
    [line] = [row for row in text.splitlines() if row.startswith(prefix)]
    return float(line.split()[-1])


def test_production_server_limits_logs_and_keeps_data_private(journey_world: JourneyWorld) -> None:
    # The operator signs the champion with the production key first (`coopscore models sign`).
    _, listed = journey_world.cli.json("models", "list")
    [champion] = [v["version"] for v in listed["versions"] if "champion" in v["aliases"]]
    signed = journey_world.cli.run(
        "models", "sign", "--version", champion, "--json",
        env={"COOPSCORE_MODEL_SIGNING_KEY": SIGNING_KEY},
    )  # fmt: skip
    assert signed.returncode == 0 and json.loads(signed.stdout)["signed"], signed.stderr
    server = start_server(journey_world, env=LIMITS)
    guesses = [f"cs_guess-{i:03d}-{'x' * 20}" for i in range(300)]
    try:
        # 300 guessed keys from one address: the first AUTH_BURST are 401, then 429 with Retry-After.
        started = time.monotonic()
        with httpx.Client(base_url=server.url, timeout=30) as anonymous:
            answers = [anonymous.get("/v1/model", headers={"X-API-Key": g}) for g in guesses]
            elapsed = time.monotonic() - started
            statuses = [a.status_code for a in answers]
            refills = int(elapsed * 0.1) + 1
            assert AUTH_BURST <= statuses.count(401) <= AUTH_BURST + refills, statuses[:40]
            assert statuses[:AUTH_BURST] == [401] * AUTH_BURST
            assert statuses.count(429) == 300 - statuses.count(401)
            limited = [a for a in answers if a.status_code == 429]
            assert all(1 <= int(a.headers["Retry-After"]) <= 10 for a in limited)
            assert "too many failed authentications" in limited[0].json()["detail"]
            # Production: no docs, and readiness is one bit.
            for path in ("/docs", "/redoc", "/openapi.json"):
                assert anonymous.get(path).status_code == 404, path
            assert anonymous.get("/readyz").json() == {"ready": True}

        # A valid key from the same address still works; over its own rate it gets 429 + Retry-After.
        with server.client("read") as reader:
            burst = [reader.get("/v1/model") for _ in range(KEY_BURST + 3)]
        codes = [b.status_code for b in burst]
        assert codes[:KEY_BURST] == [200] * KEY_BURST and 429 in codes[KEY_BURST:], codes
        over = next(b for b in burst if b.status_code == 429)
        assert over.headers["Retry-After"] == "1"
        assert over.json()["detail"] == "API key 'journey-read' is over its rate limit; retry after 1 s"

        member = journey_world.member_ids(1)[0]
        with server.client("all") as client:
            scored = client.post(
                "/v1/score",
                json={"member_id": member, "amount_cny": 8000, "term_months": 12, "purpose": "livestock"},
            )
            assert scored.status_code == 200, scored.text
            assert scored.headers["X-Request-ID"] == scored.json()["request_id"]
            metrics = client.get("/metrics").text
        assert _metric(metrics, "auth_failure") == statuses.count(429)
        assert _metric(metrics, "key") == codes.count(429)
    finally:
        stop_server(server)

    log_text = server.log_path.read_text()
    lines = _access_lines(log_text)
    failures = [line for line in lines if line["status"] == 401]
    assert len(failures) == statuses.count(401)
    assert [f["key_fp"] for f in failures] == [
        hashlib.sha256(g.encode()).hexdigest()[:8] for g, s in zip(guesses, statuses, strict=True) if s == 401
    ]
    assert all(f["client"] == "127.0.0.1" and f["key"] is None for f in failures)
    assert sum(line["status"] == 429 for line in lines) == statuses.count(429) + codes.count(429)
    [score_line] = [line for line in lines if line["route"] == "/v1/score"]
    assert (score_line["request_id"], score_line["key"]) == (scored.json()["request_id"], "journey-all")
    for secret in (*guesses, *server.keys.values()):
        assert secret not in log_text
    assert member not in "\n".join(json.dumps(line) for line in lines)

    # Everything the CLI and the server wrote under the data folder and the MLflow store is private.
    for folder in (journey_world.data_dir, journey_world.root / "mlruns"):
        modes = {folder: stat.S_IMODE(folder.stat().st_mode)}
        modes.update({p: stat.S_IMODE(p.lstat().st_mode) for p in folder.rglob("*")})
        loose = {str(p): oct(m) for p, m in modes.items() if m != (0o700 if p.is_dir() else 0o600)}
        assert loose == {}, f"{len(loose)} paths not private, e.g. {list(loose.items())[:5]}"
    assert (journey_world.data_dir / "decisions.sqlite").exists()
