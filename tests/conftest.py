"""Shared fixtures: a fresh event log, ledger and quarantine under a temporary data dir."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from features.event_log import EventLog
from features.ingest import IngestReport, ingest_paths
from features.ledger import IngestLedger
from tests.utils.feeds import limits


@dataclass
class Store:
    """The storage one ingest writes to, rooted in a temporary data dir."""

    data_dir: Path
    log: EventLog
    ledger: IngestLedger
    quarantine_dir: Path

    def ingest(self, *paths: Path, chunk_rows: int = 1_000_000) -> IngestReport:
        return ingest_paths(
            list(paths), self.log, self.ledger, self.quarantine_dir, limits(), chunk_rows=chunk_rows
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    data = tmp_path / "data"
    ledger = IngestLedger(data / "ledger.sqlite")
    yield Store(data, EventLog(data / "events", data / "tables"), ledger, data / "quarantine")
    ledger.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL on the tests' own db 15 with a fresh prefix; the prefix's keys are deleted after."""
    import uuid

    import redis

    from tests.utils.services import REDIS_HOST, REDIS_PORT, REDIS_TEST_DB, require_service

    require_service("Redis", REDIS_HOST, REDIS_PORT)
    prefix = f"coopscore-test:{uuid.uuid4().hex[:12]}"
    yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_TEST_DB}?prefix={prefix}"
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_TEST_DB)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1_000))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL decision-log URL on the tests' database with a fresh schema (`?schema=`), dropped
    after the test; skips (prints why) when PostgreSQL is not reachable on 127.0.0.1:5432."""
    import uuid

    import psycopg

    from tests.utils.services import postgres_dsn

    dsn = postgres_dsn()
    schema = f"cs_test_{uuid.uuid4().hex[:12]}"
    yield f"{dsn}?schema={schema}"
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def postgres_database_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (`postgresql://.../coopscore_test_<hex>`) created in the
    tests' server for this test and dropped after it; skips when PostgreSQL is absent."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from psycopg import sql

    from tests.utils.services import postgres_dsn

    dsn = postgres_dsn()
    name = f"coopscore_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def spark_session() -> Iterator[Any]:
    """One small local Spark session for the whole test run (local[2], 4 shuffle partitions, no UI).

    Without Java or pyspark the tests using it skip with the reason printed; with
    `COOPSCORE_REQUIRE_SERVICES=1` (CI) they fail instead.
    """
    import os

    from features.offline_engines.base import OfflineEngineError
    from features.offline_engines.spark import SparkConfig, SparkEngine, check_spark_available

    try:
        check_spark_available()
    except OfflineEngineError as error:
        if os.environ.get("COOPSCORE_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{error} and COOPSCORE_REQUIRE_SERVICES=1")
        print(f"SKIP: {error}")
        pytest.skip(str(error))
    engine = SparkEngine(
        SparkConfig(
            master="local[2]",
            app_name="coopscore-tests",
            shuffle_partitions=4,
            conf={"spark.driver.memory": "1g", "spark.sql.adaptive.enabled": "true"},
        )
    )
    session = engine.session()
    yield session
    engine.close()
