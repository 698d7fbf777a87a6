"""Journey (issue 18, item 2): an operator moves the online store to Redis, shared by API replicas.

The session world (simulated, ingested and trained with the CLI) is the make-run chain up to
`train`; from there this journey runs the rest of it with `COOPSCORE_ONLINE_STORE=redis://...`:
`features materialize` writes the vectors into Redis and `coopscore serve` reads them. The same
members get the same decision, score and reasons as from a server on a SQLite store materialized
the same way. A second
materialization switches generation while the server keeps answering, and the retired generation
expires. A Redis that does not answer, or a malformed URL, stops every command that opens the store
with one line naming the setting (password hidden) and a documented exit code (7, or 2).

Each server writes its own decision log, so the session server's counts are not touched; the Redis
keys live under a fresh prefix in the tests' database (15) and are deleted afterwards.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.journeys.conftest import Cli, JourneyServer, JourneyWorld, start_server, stop_server
from tests.utils.services import REDIS_HOST, REDIS_PORT, REDIS_TEST_DB, reachable, require_service

APPLICATION = {"amount_cny": 20000, "term_months": 12, "purpose": "farm_inputs"}
MEMBERS = 25
COMPARED = ("pd", "score", "grade", "decision", "reasons", "features_as_of", "feature_set_version")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Home:
    """Where one server runs: the world's data and MLflow store, its own online store and decision log."""

    cli: Cli
    root: Path


@dataclass
class RedisJourney:
    world: JourneyWorld
    url: str
    prefix: str
    redis_home: Home
    sqlite_home: Home
    materialized: dict[str, Any]


def _home(world: JourneyWorld, root: Path, **settings: str) -> Home:
    root.mkdir(parents=True, exist_ok=True)
    env = {**world.cli.env, "COOPSCORE_DECISION_LOG": f"sqlite:///{root / 'decisions.sqlite'}", **settings}
    return Home(Cli(env, root), root)


@pytest.fixture(scope="module")
def redis_journey(
    journey_world: JourneyWorld, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisJourney]:
    """The world's vectors materialized into Redis under a fresh prefix (deleted afterwards)."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    import redis

    prefix = f"coopscore-journey:{uuid.uuid4().hex[:12]}"
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_TEST_DB}?prefix={prefix}&retired_ttl=600"
    root = tmp_path_factory.mktemp("redis-online")
    redis_home = _home(journey_world, root / "redis", COOPSCORE_ONLINE_STORE=url)
    sqlite_url = f"sqlite:///{root / 'sqlite' / 'online.sqlite'}"
    sqlite_home = _home(journey_world, root / "sqlite", COOPSCORE_ONLINE_STORE=sqlite_url)
    # One DuckDB thread for both: a parallel sum may differ in its last bit from run to run, and
    # this journey compares the two stores' answers exactly.
    as_of = ("--as-of", _iso(journey_world.end), "--threads", "1")
    try:
        _, materialized = redis_home.cli.json("features", "materialize", *as_of)
        sqlite_home.cli.json("features", "materialize", *as_of)
        yield RedisJourney(journey_world, url, prefix, redis_home, sqlite_home, materialized)
    finally:
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_TEST_DB)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1_000))
        if keys:
            client.unlink(*keys)
        client.close()


@pytest.fixture(scope="module")
def servers(redis_journey: RedisJourney) -> Iterator[tuple[JourneyServer, JourneyServer]]:
    """A server on Redis and one on the world's SQLite store, same model, own decision logs."""
    on_redis = start_server(redis_journey.redis_home)
    try:
        on_sqlite = start_server(redis_journey.sqlite_home)
        try:
            yield on_redis, on_sqlite
        finally:
            stop_server(on_sqlite)
    finally:
        stop_server(on_redis)


def _score(server: JourneyServer, member: str) -> dict[str, Any]:
    with server.client() as http:
        response = http.post("/v1/score", json={"member_id": member, **APPLICATION, "explain": "all"})
    assert response.status_code == 200, f"{member}: {response.text}\n{server.log_tail()}"
    answer: dict[str, Any] = response.json()
    return answer


def test_materialize_into_redis_names_the_store_without_secrets(redis_journey: RedisJourney) -> None:
    materialized = redis_journey.materialized
    assert materialized["store"] == redis_journey.url  # no password in this URL: shown as configured
    assert materialized["members"] > 0 and materialized["generation"] >= 1
    member = redis_journey.world.member_ids(1)[0]
    _, vector = redis_journey.redis_home.cli.json("features", "get", member)
    _, same = redis_journey.sqlite_home.cli.json("features", "get", member)
    assert vector["found"] and vector == same  # the same vector, bit for bit, from either store


def test_a_server_on_redis_scores_like_one_on_sqlite(
    redis_journey: RedisJourney, servers: tuple[JourneyServer, JourneyServer]
) -> None:
    on_redis, on_sqlite = servers
    with on_redis.client() as http:
        ready = http.get("/readyz").json()
    assert ready["ready"] and ready["online_store"], ready
    members = redis_journey.world.member_ids(MEMBERS, offset=100)
    decisions = set()
    for member in members:
        from_redis, from_sqlite = _score(on_redis, member), _score(on_sqlite, member)
        assert {k: from_redis[k] for k in COMPARED} == {k: from_sqlite[k] for k in COMPARED}, member
        assert from_redis["features_as_of"].startswith(_iso(redis_journey.world.end)[:10])
        decisions.add(from_redis["decision"])
    assert decisions  # every member was scored (and compared) on both


def test_rematerializing_switches_generation_while_the_server_answers(
    redis_journey: RedisJourney, servers: tuple[JourneyServer, JourneyServer]
) -> None:
    import redis

    on_redis, _ = servers
    world = redis_journey.world
    member = world.member_ids(1, offset=7)[0]
    before = _score(on_redis, member)
    statuses: list[int] = []
    seen_as_of: set[str] = set()
    stop = threading.Event()

    def keep_scoring() -> None:
        with on_redis.client() as http:
            while not stop.is_set():
                response = http.post("/v1/score", json={"member_id": member, **APPLICATION})
                statuses.append(response.status_code)
                if response.status_code == 200:
                    seen_as_of.add(response.json()["features_as_of"])

    scorer = threading.Thread(target=keep_scoring)
    scorer.start()
    try:
        _, again = redis_journey.redis_home.cli.json(
            "features", "materialize", "--as-of", _iso(world.stable_as_of), "--threads", "1"
        )
    finally:
        stop.set()
        scorer.join(timeout=60)
    assert again["generation"] == redis_journey.materialized["generation"] + 1
    assert statuses and set(statuses) == {200}, f"{len(statuses)} requests: {sorted(set(statuses))}"
    after = _score(on_redis, member)
    assert after["features_as_of"].startswith(_iso(world.stable_as_of)[:10])
    assert before["features_as_of"] != after["features_as_of"]
    assert seen_as_of <= {before["features_as_of"], after["features_as_of"]}  # never anything else

    # The retired generation expires (retired_ttl=600 in the URL); the live one does not.
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_TEST_DB)
    try:
        prefix = redis_journey.prefix
        assert int(client.get(f"{prefix}:live") or 0) == again["generation"]
        assert 0 < client.ttl(f"{prefix}:gen:{redis_journey.materialized['generation']}:meta") <= 600
        assert client.ttl(f"{prefix}:gen:{again['generation']}:meta") == -1  # no expiry
    finally:
        client.close()


@pytest.mark.parametrize(
    "command",
    [
        ("features", "materialize"),
        ("features", "get", "M0000001"),
        ("recourse", "M0000001", "--amount", "20000", "--term", "12"),
        ("serve", "--port", "0"),
    ],
    ids=["materialize", "get", "recourse", "serve"],
)
def test_an_unreachable_redis_is_one_line_and_exit_7(
    redis_journey: RedisJourney, command: tuple[str, ...]
) -> None:
    port = _closed_port()
    url = f"redis://:s3cret@127.0.0.1:{port}/{REDIS_TEST_DB}?prefix={redis_journey.prefix}"
    home = _home(redis_journey.world, redis_journey.redis_home.root / "down", COOPSCORE_ONLINE_STORE=url)
    done = home.cli.run(*command, timeout=120)
    assert done.returncode == 7, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    [line] = [text for text in done.stderr.splitlines() if text.startswith("unavailable:")]
    assert f"COOPSCORE_ONLINE_STORE=redis://:***@127.0.0.1:{port}/{REDIS_TEST_DB}" in line
    assert "Connection refused" in line and "start it" in line
    assert "s3cret" not in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_a_malformed_redis_url_is_one_line_and_exit_2(redis_journey: RedisJourney) -> None:
    url = "redis://:s3cret@127.0.0.1:sixthreesevennine/15"
    home = _home(redis_journey.world, redis_journey.redis_home.root / "bad", COOPSCORE_ONLINE_STORE=url)
    _, payload = home.cli.json("features", "materialize", expect=2)
    assert payload["status"] == "error" and payload["exit_code"] == 2
    assert payload["message"].startswith(
        "COOPSCORE_ONLINE_STORE=redis://:***@127.0.0.1:sixthreesevennine/15:"
    )
    done = home.cli.run("features", "materialize")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "s3cret" not in done.stderr
    # With --debug, the traceback is there for whoever needs it.
    debug = home.cli.run("--debug", "features", "materialize")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A throwaway redis-server of our own (no persistence), so the test can stop it."""
    binary = shutil.which("redis-server")
    if binary is None:
        print("SKIP: no redis-server binary to start a private Redis (apt-get install redis-server)")
        pytest.skip("no redis-server binary to start a private Redis")
    port = _closed_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not reachable("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_the_api_answers_503_in_one_line_when_redis_stops(
    redis_journey: RedisJourney, private_redis: tuple[subprocess.Popen[bytes], int]
) -> None:
    process, port = private_redis
    url = f"redis://127.0.0.1:{port}/0?prefix=journey"
    home = _home(redis_journey.world, redis_journey.redis_home.root / "private", COOPSCORE_ONLINE_STORE=url)
    home.cli.json("features", "materialize", "--as-of", _iso(redis_journey.world.end))
    server = start_server(home)
    try:
        member = redis_journey.world.member_ids(1, offset=3)[0]
        _score(server, member)
        process.terminate()  # the operator's Redis goes away under a running server
        process.wait(timeout=30)
        with server.client() as http:
            response = http.post("/v1/score", json={"member_id": member, **APPLICATION})
            alive = http.get("/healthz")
        assert response.status_code == 503, response.text
        detail = response.json()["detail"]
        assert detail.startswith(f"COOPSCORE_ONLINE_STORE={url}: Redis is unreachable"), detail
        assert alive.status_code == 200  # the process stays up; it answers again once Redis is back
        assert "Traceback" not in server.log_tail()
    finally:
        stop_server(server)
