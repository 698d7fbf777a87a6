"""API test fixtures: real settings in a temp data dir, real keys (hashed), the configured online store
(SQLite by default)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.auth import new_key
from serving.state import ScorerLoader
from tests.utils.api import SCOPES, Keys, champion_client, make_settings


@pytest.fixture
def keys() -> Keys:
    return Keys({s: new_key() for s in SCOPES}, new_key())


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


@pytest.fixture
def online_members(champion_store: tuple[Path, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The applicants `client` puts in the online store: the golden ones (a module may override it)."""
    return champion_store[1]


@pytest.fixture
def client(
    champion_store: tuple[Path, dict[str, dict[str, float]]],
    online_members: dict[str, dict[str, float]],
    client_factory: Callable[..., TestClient],
    keys: Keys,
    tmp_path: Path,
) -> TestClient:
    """A client of the real champion (`champion_store`), with `online_members`' vectors online."""
    return champion_client(client_factory, keys, tmp_path, champion_store[0], online_members)
