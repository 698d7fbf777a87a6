"""The MLflow wrapper's URI handling: PostgreSQL through psycopg 3, passwords never shown."""

from __future__ import annotations

import pytest

from models.mlflow_io import shown_uri, store_uri


@pytest.mark.parametrize(
    ("configured", "given_to_mlflow"),
    [
        ("postgresql://u:pw@db:5432/mlflow", "postgresql+psycopg://u:pw@db:5432/mlflow"),
        ("postgres://db/mlflow", "postgresql+psycopg://db/mlflow"),
        ("postgresql+psycopg://db/mlflow", "postgresql+psycopg://db/mlflow"),
        ("sqlite:///mlruns/mlflow.db", "sqlite:///mlruns/mlflow.db"),
    ],
)
def test_postgresql_uris_name_the_installed_driver(configured: str, given_to_mlflow: str) -> None:
    assert store_uri(configured) == given_to_mlflow


def test_a_shown_tracking_uri_hides_the_password() -> None:
    assert (
        shown_uri("postgresql://coopscore:s3cret@db:5432/mlflow")
        == "postgresql://coopscore:***@db:5432/mlflow"
    )
    assert shown_uri("sqlite:///mlruns/mlflow.db") == "sqlite:///mlruns/mlflow.db"
    assert shown_uri("mlruns") == "mlruns"
