"""Reachability of the services some tests need (Redis, PostgreSQL on 127.0.0.1).

A test needing an absent service skips with the reason printed; with `COOPSCORE_REQUIRE_SERVICES=1`
(set by `.ci/run`) it fails instead, so CI never silently skips them.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_TEST_DB = 15  # the tests' own database: nothing else on the machine should use it
POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
# Trust authentication, database `test` (issue 18); COOPSCORE_TEST_POSTGRES overrides the whole DSN.
POSTGRES_DEFAULT_DSN = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test"


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to host:port opens within `timeout` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (print why) when the service is unreachable; fail if services are required."""
    if reachable(host, port):
        return
    reason = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("COOPSCORE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} and COOPSCORE_REQUIRE_SERVICES=1 (start it)")
    print(f"SKIP: {reason}")
    pytest.skip(reason)


def postgres_dsn() -> str:
    """The tests' PostgreSQL (`postgresql://postgres@127.0.0.1:5432/test`, or `COOPSCORE_TEST_POSTGRES`);
    skips (prints why) when it is unreachable, fails instead with COOPSCORE_REQUIRE_SERVICES=1."""
    dsn = os.environ.get("COOPSCORE_TEST_POSTGRES", POSTGRES_DEFAULT_DSN)
    parts = urlsplit(dsn)
    require_service("PostgreSQL", parts.hostname or POSTGRES_HOST, parts.port or POSTGRES_PORT)
    return dsn
