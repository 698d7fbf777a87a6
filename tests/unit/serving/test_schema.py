"""Schemathesis over the whole OpenAPI schema, in process: no 5xx, no response that breaks the schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from serving.app import create_app
from serving.champion import load_champion
from tests.utils.api import Keys, champion_settings, fill_online_store, make_settings


@pytest.fixture(scope="module")
def api(
    champion_store: tuple[Path, dict[str, dict[str, float]]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[object, Keys]]:
    from serving.auth import new_key

    keys = Keys({s: new_key() for s in ("score", "ingest", "read", "admin")}, new_key())
    root, members = champion_store
    app_settings = make_settings(tmp_path_factory.mktemp("schema"), keys, **champion_settings(root))
    names = tuple(n for n in members["strong"] if not n.startswith("application_"))
    fill_online_store(app_settings, names, {m: [v[n] for n in names] for m, v in members.items()})
    app = create_app(app_settings, scorer_loader=load_champion)
    # The lifespan runs while this client is open; schemathesis then calls the same app in process.
    with TestClient(app):
        yield app, keys


@pytest.fixture(scope="module")
def api_schema(api: tuple[object, Keys]) -> schemathesis.BaseSchema:
    app, _ = api
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_no_server_errors_and_responses_match_the_schema(
    api_schema: schemathesis.BaseSchema, api: tuple[object, Keys]
) -> None:
    _, keys = api
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def exercise(case: schemathesis.Case) -> None:
            # A schema-valid request may still be refused for state the schema cannot express (an
            # unknown member, a reused idempotency key): those are documented 4xx, not failures.
            case.call_and_validate(
                headers={"X-API-Key": keys.all_scopes}, excluded_checks=[positive_data_acceptance]
            )

        exercise()
