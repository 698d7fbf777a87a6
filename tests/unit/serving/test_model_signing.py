"""The API refuses a model whose bytes no longer match its signature, and keeps the old one serving.

A real champion in its own temp store: signed, served, then its booster and `sha256.booster.txt`
tag are rewritten together (what the checksum tags alone let through, `changed: false`). Reload
answers 409 and the model loaded before keeps answering; a fresh start is not ready, saying why.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient

from models import mlflow_io
from models.artifacts import sha256_file
from models.registry import MODEL_NAME, sign_version
from models.signing import SigningKey
from serving.champion import load_champion
from tests.utils.api import Keys
from tests.utils.model_fixtures import SMALL_PROMOTABLE_SOURCE, fast_config
from training.job import ExitCode, retrain

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

ClientFactory = Callable[..., TestClient]
KEY = "s" * 40
OTHER = "t" * 40


@pytest.fixture
def store(tmp_path: Path) -> dict[str, object]:
    """Settings overrides pointing at a fresh store with an unsigned champion v1."""
    root = tmp_path / "store"
    uri = f"sqlite:///{root / 'mlflow.db'}"
    summary = retrain(
        SMALL_PROMOTABLE_SOURCE,
        config=fast_config(),
        tracking_uri=uri,
        artifact_root=root / "artifacts",
        model_name=MODEL_NAME,
    )
    assert summary.exit_code == ExitCode.PROMOTED, summary.to_dict()
    return {"tracking_uri": uri, "artifact_root": root / "artifacts"}


def sign(store: dict[str, object], key: str) -> str:
    check = sign_version(str(store["tracking_uri"]), MODEL_NAME, "1", SigningKey(key.encode()), signed_at="t")
    return check.manifest_sha256


def rewrite_booster_and_its_tag(store: dict[str, object]) -> None:
    uri = str(store["tracking_uri"])
    model_dir = Path(urlparse(mlflow_io.version_artifact_location(uri, MODEL_NAME, "1")).path)
    booster = model_dir / "artifacts" / "booster.txt"
    booster.write_text(booster.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    mlflow_io.set_version_tags(uri, MODEL_NAME, "1", {"sha256.booster.txt": sha256_file(booster)})


def test_reload_refuses_a_rewritten_booster_and_tag_and_the_old_model_keeps_serving(
    store: dict[str, object], client_factory: ClientFactory, keys: Keys
) -> None:
    digest = sign(store, KEY)
    client = client_factory(load_champion, model_signing_key=KEY, **store)
    before = client.get("/v1/model", headers=keys.header("read")).json()
    assert before["signed"] is True and before["model_digest"] == digest
    assert before["signature_key_id"] == SigningKey(KEY.encode()).key_id
    assert before["model_card"] and "v1" in before["model_card"]

    rewrite_booster_and_its_tag(store)
    response = client.post("/v1/admin/reload", headers=keys.header("admin"))
    assert response.status_code == 409, response.text
    assert "old model stays" in response.text and "does not match" in response.text
    after = client.get("/v1/model", headers=keys.header("read")).json()
    assert after["loaded_at"] == before["loaded_at"] and after["model_digest"] == digest

    restarted = client_factory(load_champion, model_signing_key=KEY, **store)
    ready = restarted.get("/readyz")
    assert ready.status_code == 503 and "SignatureError" in ready.json()["detail"]
    assert restarted.get("/healthz").status_code == 200  # the server is up, only not ready


def test_a_model_signed_with_a_key_not_configured_is_refused_until_the_old_key_is_listed(
    store: dict[str, object], client_factory: ClientFactory, keys: Keys
) -> None:
    sign(store, OTHER)
    refused = client_factory(load_champion, model_signing_key=KEY, **store)
    detail = refused.get("/readyz").json()["detail"]
    assert f"signed with key {SigningKey(OTHER.encode()).key_id}, which is not configured" in detail
    rotated = client_factory(load_champion, model_signing_key=KEY, model_signing_old_keys=[OTHER], **store)
    body = rotated.get("/v1/model", headers=keys.header("read")).json()
    assert body["signed"] is True and body["signature_key_id"] == SigningKey(OTHER.encode()).key_id


def test_unsigned_serves_in_development_with_a_warning_and_is_refused_in_production(
    store: dict[str, object], client_factory: ClientFactory, keys: Keys
) -> None:
    development = client_factory(load_champion, **store)
    body = development.get("/v1/model", headers=keys.header("read")).json()
    assert body["signed"] is False and "can swap the model" in body["signing_note"]
    assert "unsigned" in development.get("/readyz").json()["detail"]
    production = client_factory(load_champion, environment="production", model_signing_key=KEY, **store)
    # Production's unauthenticated /readyz says only "not ready"; the reason is for key holders.
    ready = production.get("/readyz")
    assert (ready.status_code, ready.json()) == (503, {"ready": False})
    detail = production.get("/v1/model", headers=keys.header("read")).json()["detail"]
    assert "not signed" in detail and "coopscore models sign --version 1" in detail
