"""API test fixtures: real settings in a temp data dir, real keys (hashed), the configured online store
(SQLite by default)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from coopscore.settings import ApiKeyEntry, Settings
from features.online.base import FeatureBatch
from features.online.factory import online_store
from serving.app import create_app
from serving.auth import hash_key, new_key
from serving.state import ScorerLoader

SCOPES = ("score", "ingest", "read", "admin")


@dataclass(frozen=True)
class Keys:
    """One real key per scope, plus one with every scope."""

    by_scope: dict[str, str]
    all_scopes: str

    def header(self, scope: str | None = None) -> dict[str, str]:
        return {"X-API-Key": self.all_scopes if scope is None else self.by_scope[scope]}


@pytest.fixture
def keys() -> Keys:
    return Keys({s: new_key() for s in SCOPES}, new_key())


def make_settings(tmp_path: Path, keys: Keys, **overrides: object) -> Settings:
    entries = [
        ApiKeyEntry(name=f"{s}-only", sha256=hash_key(k), scopes=(s,)) for s, k in keys.by_scope.items()
    ]
    entries.append(ApiKeyEntry(name="everything", sha256=hash_key(keys.all_scopes), scopes=SCOPES))
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "tracking_uri": f"sqlite:///{tmp_path}/mlruns/mlflow.db",
        "artifact_root": tmp_path / "mlruns" / "artifacts",
        "api_keys": tuple(entries),
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def fill_online_store(
    settings: Settings,
    names: tuple[str, ...],
    rows: dict[str, list[float]],
    *,
    feature_set_version: str | None = None,
) -> None:
    """Write a committed generation of member vectors, as `features materialize` would (of this code's
    feature-set version unless told otherwise: the version the test champion is trained on)."""
    from features.catalog import default_registry

    store = online_store(settings)
    as_of = datetime(2026, 3, 1, tzinfo=UTC)
    version = feature_set_version or default_registry().version
    refresh = store.begin_refresh(feature_names=names, feature_set_version=version, as_of=as_of)
    store.online_write_batch(
        refresh, FeatureBatch(list(rows), as_of, names, np.array(list(rows.values()), dtype=np.float64))
    )
    store.commit_refresh(refresh)
    store.close()


@pytest.fixture
def client_factory(tmp_path: Path, keys: Keys) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def build(loader: ScorerLoader | None = None, **overrides: object) -> TestClient:
        settings = make_settings(tmp_path, keys, **overrides)
        client = TestClient(create_app(settings, scorer_loader=loader), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def champion_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, float]]]:
    """A real champion trained on synthetic applicants and registered in a temp MLflow store."""
    from tests.utils.model_fixtures import SyntheticSource, fast_config, golden_applicant
    from training.job import retrain

    root = tmp_path_factory.mktemp("mlflow")
    source = SyntheticSource(n=12_000, seed=1)
    summary = retrain(
        source,
        config=fast_config(),
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifact_root=root / "artifacts",
    )
    assert summary.status == "promoted", summary.message
    training_set = source.load()
    members = {
        "strong": golden_applicant(training_set, strong=True),
        "weak": golden_applicant(training_set, strong=False),
    }
    return root, members


def champion_settings(root: Path) -> dict[str, object]:
    """Settings overrides pointing at the champion store."""
    return {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "artifact_root": root / "artifacts"}
