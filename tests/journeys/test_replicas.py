"""Journey (issue 18 item 4): two stateless API replicas on one Redis and one PostgreSQL.

A lender runs two `coopscore serve` processes on different ports, as behind a load balancer, both
configured with the same Redis online store (`COOPSCORE_ONLINE_STORE=redis://...`), the same
PostgreSQL decision log (`COOPSCORE_DECISION_LOG=postgresql://...`) and the same interest-subsidy
programme. Applications arrive concurrently; every one is sent to both replicas with one
Idempotency-Key (a client retrying through the balancer). Part-way the operator hot-reloads the model
on both, and later one replica is killed with SIGKILL; a request it can no longer answer is retried on
the other with the same key. Afterwards: one decision per key, every answered decision committed
exactly once in PostgreSQL (`coopscore decisions export`), no request failed by the reload, and the
county's subsidy budget not oversubscribed. Skipped (reason printed) without Redis or PostgreSQL.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.journeys.conftest import Cli, JourneyServer, JourneyWorld, start_server, stop_server
from tests.utils.programmes import subsidy_cny
from tests.utils.services import REDIS_HOST, REDIS_PORT, REDIS_TEST_DB, require_service

BIG = 20_000  # CNY over 12 months
OLD = "2020-06-01T00:00:00Z"  # outside the programme's period: scored without touching its budget
BUDGET_SUBSIDIES = 6  # the county's budget holds this many subsidies of a BIG loan
APPLICATIONS = 60
SCOPES = ("score", "read", "admin")
# What a balancer sees when a replica dies under a request: refused, reset, or cut mid-answer.
GONE = (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)


@dataclass(frozen=True)
class Home:
    """Both replicas' shared configuration: the world's data and models, Redis and PostgreSQL."""

    cli: Cli
    root: Path


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _largest_county(world: JourneyWorld) -> list[str]:
    by_county: dict[str, list[str]] = {}
    with (world.world_dir / "members" / "member_profiles.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            by_county.setdefault(row["county_id"], []).append(row["member_id"])
    return max(by_county.values(), key=len)


@pytest.fixture
def home(journey_world: JourneyWorld, postgres_url: str, tmp_path: Path) -> Iterator[Home]:
    """Redis under a fresh prefix (deleted afterwards), a fresh PostgreSQL schema, one API key set."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    import redis

    prefix = f"cs-replicas-{uuid.uuid4().hex[:8]}"
    store = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_TEST_DB}?prefix={prefix}"
    env = {
        **journey_world.cli.env,
        "COOPSCORE_ONLINE_STORE": store,
        "COOPSCORE_DECISION_LOG": postgres_url,
    }
    cli = Cli(env, tmp_path)
    try:
        yield Home(cli, tmp_path)
    finally:
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_TEST_DB)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.unlink(*keys)
        client.close()


def _keys(cli: Cli) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """One key per scope, created once and configured on both replicas (a shared secret store)."""
    keys: dict[str, str] = {}
    entries: list[dict[str, Any]] = []
    for scope in SCOPES:
        _, created = cli.json("keys", "create", f"replicas-{scope}", "--scopes", scope)
        keys[scope] = created["key"]
        entries.append(created["entry"])
    return keys, entries


def _programme(path: Path, county_members: list[str], world: JourneyWorld) -> str:
    county = ""
    with (world.world_dir / "members" / "member_profiles.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["member_id"] == county_members[0]:
                county = row["county_id"]
                break
    today = datetime.now(UTC).date()
    programme = {
        "id": "replicas-spring",
        "version": 1,
        "name": {"zh": "春耕贷款贴息", "en": "Spring planting loans"},
        "periods": [
            {"id": "now", "start": str(today - timedelta(days=30)), "end": str(today + timedelta(days=60))}
        ],
        "budgets": [
            {
                "county_id": county,
                "period": "now",
                "amount_cny": round((BUDGET_SUBSIDIES + 0.5) * subsidy_cny(BIG), 2),
            }
        ],
        "subsidy": {"share": 0.5, "reference_annual_rate": 0.08, "interest_at": "reference_rate"},
        "loss_ceiling": {"lgd": 0.6, "max_expected_loss_cny": 1_000_000},
    }
    file = path / "replicas-spring.json"
    file.write_text(json.dumps(programme, ensure_ascii=False), encoding="utf-8")
    return str(file)


def test_two_replicas_share_redis_and_postgresql_through_reload_and_kill(
    journey_world: JourneyWorld, home: Home
) -> None:
    # 1. The shared online store: the world's vectors materialized into Redis.
    _, materialized = home.cli.json("features", "materialize", "--as-of", _iso(journey_world.end))
    assert materialized["members"] > 0

    county = _largest_county(journey_world)
    programme = _programme(home.root, county, journey_world)
    keys, entries = _keys(home.cli)
    shared = {"COOPSCORE_API_KEYS": json.dumps(entries), "COOPSCORE_PROGRAMMES": json.dumps([programme])}
    started = datetime.now(UTC) - timedelta(seconds=1)
    first = start_server(home, env=shared)
    second = start_server(home, env=shared)
    try:
        _load(journey_world, home, first, second, keys, county, started)
    finally:
        stop_server(first)
        stop_server(second)


def _client(server: JourneyServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=60)


def _load(
    world: JourneyWorld,
    home: Home,
    first: JourneyServer,
    second: JourneyServer,
    keys: dict[str, str],
    county: list[str],
    started: datetime,
) -> None:
    # 2. Applicants of the programme's county the model approves (probed outside the period).
    with _client(first, keys["score"]) as probe:
        batch = probe.post(
            "/v1/score/batch",
            json={
                "applications": [
                    {
                        "member_id": m,
                        "amount_cny": BIG,
                        "term_months": 12,
                        "purpose": "farm_inputs",
                        "applied_at": OLD,
                    }
                    for m in county[:300]
                ]
            },
        )
    assert batch.status_code == 200, batch.text
    approved = [r["member_id"] for r in batch.json()["results"] if r["decision"] == "approve"]
    assert len(approved) >= 2 * BUDGET_SUBSIDIES, len(approved)
    others = [m for m in world.member_ids(400) if m not in set(county)]
    members = (approved[: APPLICATIONS // 2] + others)[:APPLICATIONS]
    probe_ids = {r["request_id"] for r in batch.json()["results"]}

    # 3. Concurrent load: each application to both replicas with one Idempotency-Key; the operator
    # reloads both after a third and kills the second replica with SIGKILL after two thirds.
    done = Counter[str]()
    lock = threading.Lock()
    reloads: list[httpx.Response] = []
    killed = threading.Event()
    reloaded = threading.Event()
    retried: list[str] = []
    answers: dict[str, list[dict[str, Any]]] = {}
    failures: list[str] = []

    def send(server: JourneyServer, body: dict[str, Any], key: str) -> httpx.Response | None:
        try:
            with _client(server, keys["score"]) as http:
                return http.post("/v1/score", json=body, headers={"Idempotency-Key": key})
        except GONE:
            return None

    def operator() -> None:
        for server in (first, second):
            with _client(server, keys["admin"]) as http:
                reloads.append(http.post("/v1/admin/reload"))
        reloaded.set()

    def application(index: int) -> None:
        key = f"replicas-{index:03d}"
        body = {
            "member_id": members[index],
            "application_id": f"REP-{index:03d}",
            "amount_cny": BIG,
            "term_months": 12,
            "purpose": "farm_inputs",
        }
        got: list[dict[str, Any]] = []
        for server in (first, second) if index % 2 == 0 else (second, first):
            response = send(server, body, key)
            if response is None:  # the replica is gone: the balancer sends it to the other one
                with lock:
                    retried.append(key)
                other = first if server is second else second
                response = send(other, body, key)
            if response is None or response.status_code != 200:
                with lock:
                    failures.append(f"{key}: {None if response is None else response.text}")
                continue
            got.append(response.json())
        with lock:
            answers[key] = got
            done["applications"] += 1
            count = done["applications"]
        if count == APPLICATIONS // 3:
            operator()
        if count == 2 * APPLICATIONS // 3:
            reloaded.wait(timeout=120)  # the operator's reloads finish first: then the crash
            os.kill(second.process.pid, signal.SIGKILL)
            killed.set()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(application, range(APPLICATIONS)))
    second.process.wait(timeout=10)

    assert killed.is_set() and second.process.returncode == -signal.SIGKILL
    assert failures == [], (failures[:3], first.log_tail())
    assert [r.status_code for r in reloads] == [200, 200], [r.text for r in reloads]
    assert all(r.json()["model_version"] == world.champion_version for r in reloads)

    # 4. One decision per Idempotency-Key, whichever replica answered.
    decided: dict[str, str] = {}
    for key, got in answers.items():
        assert len(got) == 2, key
        assert got[0]["request_id"] == got[1]["request_id"], (key, got)
        assert got[0]["decision"] == got[1]["decision"] and got[0]["score"] == got[1]["score"]
        decided[key] = got[0]["request_id"]
    assert len(set(decided.values())) == APPLICATIONS

    # 5. The budget: reservations never exceed it, and every reserved answer is counted once.
    reserved = [g[0] for g in answers.values() if g[0]["subsidy"]["status"] == "reserved"]
    exhausted = [g[0] for g in answers.values() if g[0]["subsidy"]["status"] == "budget_exhausted"]
    with _client(first, keys["read"]) as reader:
        status = reader.get("/v1/programmes/replicas-spring")
    assert status.status_code == 200, status.text
    [period] = status.json()["periods"]
    assert len(reserved) == BUDGET_SUBSIDIES and period["households"] == BUDGET_SUBSIDIES
    assert period["used_cny"] <= period["budget_cny"] + 1e-6
    assert abs(period["used_cny"] - BUDGET_SUBSIDIES * subsidy_cny(BIG)) < 0.005
    assert exhausted, "more approved applicants than the budget holds must be turned away"

    # 6. The auditor's export from PostgreSQL: every answered decision once, nothing else.
    window = ("--from", started.isoformat(), "--to", (datetime.now(UTC) + timedelta(seconds=1)).isoformat())
    out = home.root / "audit.csv"
    exported = home.cli.run("decisions", "export", *window, "--out", str(out), "--json")
    assert exported.returncode == 0, exported.stderr
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    ids = Counter(r["request_id"] for r in rows)
    assert max(ids.values()) == 1  # no decision logged twice
    assert set(ids) == set(decided.values()) | probe_ids  # no answered decision lost, none extra
    assert len(rows) == APPLICATIONS + len(probe_ids)

    print(
        "\nreplicas:",
        json.dumps(
            {
                "applications": APPLICATIONS,
                "requests": 2 * APPLICATIONS,
                "retried_after_kill": len(retried),
                "reloads": [r.json()["model_version"] for r in reloads],
                "decisions_logged": len(ids),
                "duplicate_decisions": sum(c - 1 for c in ids.values()),
                "reserved": period["households"],
                "budget_holds": BUDGET_SUBSIDIES,
                "budget_exhausted_answers": len(exhausted),
                "failed_requests": len(failures),
            }
        ),
    )
