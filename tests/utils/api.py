"""Shared helpers for tests of the HTTP API: real keys per scope, settings in a temp data dir, and a
committed online-store generation written through the configured backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from coopscore.settings import ApiKeyEntry, Settings
from features.online.base import FeatureBatch
from features.online.factory import online_store
from serving.auth import hash_key

SCOPES = ("score", "ingest", "read", "review", "admin")
# An offer's rate components, in the order they add up to the annual rate (the API's contract).
RATE_COMPONENTS = (
    "funding_cost",
    "expected_loss",
    "operating_cost",
    "margin",
    "green_discount",
    "floor_cap_adjustment",
)


@dataclass(frozen=True)
class Keys:
    """One real key per scope, plus one with every scope."""

    by_scope: dict[str, str]
    all_scopes: str

    def header(self, scope: str | None = None) -> dict[str, str]:
        return {"X-API-Key": self.all_scopes if scope is None else self.by_scope[scope]}


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


def champion_settings(root: Path) -> dict[str, object]:
    """Settings overrides pointing at the champion store."""
    return {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "artifact_root": root / "artifacts"}


def champion_client(
    client_factory: Callable[..., TestClient],
    keys: Keys,
    tmp_path: Path,
    root: Path,
    members: dict[str, dict[str, float]],
) -> TestClient:
    """A client of the real champion in the store at `root`, with `members`' vectors online (their
    request-time `application_*` values are computed per request, not stored)."""
    from serving.champion import load_champion

    settings = make_settings(tmp_path, keys, **champion_settings(root))
    names = tuple(n for n in members["strong"] if not n.startswith("application_"))
    fill_online_store(settings, names, {m: [v[n] for n in names] for m, v in members.items()})
    return client_factory(load_champion, **champion_settings(root))
