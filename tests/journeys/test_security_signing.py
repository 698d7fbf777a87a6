"""Journey: a promoted model is signed, and a model rewritten in the artifact store (with its checksum
tag rewritten in mlflow.db to match) is refused on reload while the old one keeps serving.

Needs no session world: a table-trained model in its own folder, MLflow store and signing key.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.journeys.conftest import Cli, JourneyServer, journey_env, start_server, stop_server

KEY = "journey-signing-key-0123456789abcdef"


@dataclass
class Home:
    """A ServerHome: the CLI with the signing key in its environment, and its folder."""

    cli: Cli
    root: Path


def test_promotion_signs_and_a_tampered_model_is_refused_on_reload(tmp_path: Path) -> None:
    cli = Cli(journey_env(tmp_path, {"COOPSCORE_MODEL_SIGNING_KEY": KEY}), tmp_path)
    table = tmp_path / "applications.csv"
    cli.json("simulate-table", "--rows", "1500", "--out", str(table))
    _, trained = cli.json(
        "train", "--table", str(table), "--time", "applied_on", "--time-format", "%d/%m/%Y",
        "--label", "outcome", "--bad-value", "default", "--good-value", "repaid",
        "--protected", "gender", "--oot-months", "4",
    )  # fmt: skip
    version = str(trained["version"])
    _, promoted = cli.json(
        "promote", "--version", version, "--force", "--by", "journey-analyst", "--reason", "signing journey",
        expect=0,
    )  # fmt: skip
    key_id = hashlib.sha256(KEY.encode()).hexdigest()[:8]
    assert promoted["signed"] is True and promoted["signature"]["key_id"] == key_id

    done = cli.run("models", "sign", "--version", version)  # re-signing is idempotent and says so
    assert done.returncode == 0 and f"signed v{version} with key {key_id}" in done.stderr + done.stdout

    server = start_server(Home(cli, tmp_path))
    try:
        with server.client("read") as client:
            before = client.get("/v1/model").json()
        assert before["signed"] is True and before["signature_key_id"] == key_id
        assert before["model_card"] and f"v{version}" in before["model_card"]

        # Someone with write access to the artifact store and mlflow.db swaps the booster and its tag.
        (booster,) = (tmp_path / "mlruns" / "artifacts").rglob("booster.txt")
        booster.write_text(booster.read_text(encoding="utf-8") + "\n", encoding="utf-8")
        digest = hashlib.sha256(booster.read_bytes()).hexdigest()
        with sqlite3.connect(tmp_path / "mlruns" / "mlflow.db") as db:
            updated = db.execute(
                "UPDATE model_version_tags SET value = ? WHERE key = 'sha256.booster.txt' AND version = ?",
                (digest, int(version)),
            ).rowcount
        assert updated == 1

        with server.client("admin") as client:
            reload = client.post("/v1/admin/reload")
        assert reload.status_code == 409, reload.text
        assert "old model stays" in reload.json()["detail"] and "artifacts/booster.txt" in reload.text
        with server.client("read") as client:
            after = client.get("/v1/model").json()
        assert after["loaded_at"] == before["loaded_at"] and after["model_digest"] == before["model_digest"]
        assert server_ready(server)

        drift = cli.run("monitor", "drift", "--current", str(table))  # the reference sample is checked too
        assert drift.returncode == 2 and "does not match" in drift.stderr, drift.stderr[-2000:]
    finally:
        stop_server(server)


def server_ready(server: JourneyServer) -> bool:
    """/readyz answers 200: the old model is still the one in service."""
    return httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
