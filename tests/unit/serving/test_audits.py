"""GET /v1/audits/fairness: the latest stored fairness audit, read-scoped, 404 before the first."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from monitoring.fairness import audit_fairness
from monitoring.fairness_report import audits_root, write_fairness_audit
from serving.schemas import FairnessAuditResponse
from tests.utils.api import Keys

ClientFactory = Callable[..., TestClient]
URL = "/v1/audits/fairness"


def no_champion(_settings: object) -> None:
    return None


def _decisions(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b"], n, p=[0.6, 0.4])
    pd_ = np.clip(rng.beta(2, 18, n) + np.where(group == "b", 0.05, 0.0), 0, 1)
    defaulted = (rng.random(n) < pd_).astype(float)
    decision = np.where(pd_ <= 0.08, "approve", np.where(pd_ >= 0.2, "decline", "review"))
    return pd.DataFrame({"pd": pd_, "decision": decision, "defaulted": defaulted, "group": group})


def test_latest_audit_is_served_without_server_paths(
    client_factory: ClientFactory, keys: Keys, tmp_path: Path
) -> None:
    client = client_factory(no_champion)
    frame = _decisions()
    audit = audit_fairness(frame, groups={"gender": frame["group"]}, min_group_size=50, n_boot=10)
    data_dir = tmp_path / "data"
    write_fairness_audit(audit, data_dir, context={"source": "old"}, now=datetime(2026, 1, 1, tzinfo=UTC))
    stored = write_fairness_audit(
        audit,
        data_dir,
        context={"source": "decision log", "model_name": "coopscore-pd", "model_version": "3"},
        now=datetime(2026, 2, 1, tzinfo=UTC),
        chart=False,
    )
    response = client.get(URL, headers=keys.header("read"))
    assert response.status_code == 200, response.text
    body = response.json()
    FairnessAuditResponse.model_validate(body)
    assert body["source"] == "decision log" and body["model_version"] == "3"
    assert body["passed"] is audit.passed
    assert body["created_at"].startswith("2026-02-01")
    assert body["flags"] == stored.payload["flags"]
    assert body["audit"]["attributes"]["gender"]["groups"]
    assert "outputs" not in body["audit"] and str(data_dir) not in response.text


def test_a_hand_written_audit_in_the_audits_folder_is_found(
    client_factory: ClientFactory, keys: Keys, tmp_path: Path
) -> None:
    client = client_factory(no_champion)
    folder = audits_root(tmp_path / "data") / "20260301T000000000000Z"
    folder.mkdir(parents=True)
    (folder / "audit.json").write_text(
        json.dumps({"passed": False, "flags": [{"attribute": "gender", "metric": "approval_ratio"}]}),
        encoding="utf-8",
    )
    body = client.get(URL, headers={"Authorization": f"Bearer {keys.by_scope['read']}"}).json()
    assert body["passed"] is False and body["created_at"] is None and body["source"] is None
    assert body["flags"][0]["metric"] == "approval_ratio"


def test_no_audit_is_404_with_how_to_run_one(client_factory: ClientFactory, keys: Keys) -> None:
    client = client_factory(no_champion)
    response = client.get(URL, headers=keys.header("read"))
    assert response.status_code == 404
    assert "coopscore audit fairness" in response.json()["detail"]


def test_audit_needs_a_read_key(client_factory: ClientFactory, keys: Keys) -> None:
    client = client_factory(no_champion)
    missing = client.get(URL)
    assert missing.status_code == 401 and "API key" in missing.json()["detail"]
    assert client.get(URL, headers={"X-API-Key": "cs_not-a-real-key"}).status_code == 401
    forbidden = client.get(URL, headers=keys.header("score"))
    assert forbidden.status_code == 403 and "read" in forbidden.json()["detail"]
