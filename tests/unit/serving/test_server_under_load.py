"""A real uvicorn server under load: a reload drops no request; kill -9 loses no answered decision,
with the SQLite decision log and with the PostgreSQL one (when reachable)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.auth import hash_key, new_key
from tests.utils.api import champion_settings, fill_online_store, make_settings

pytestmark = pytest.mark.integration

BODY = {"member_id": "strong", "amount_cny": 8000, "term_months": 12, "purpose": "livestock"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`coopscore serve` in a subprocess, with its own data dir and one all-scope key."""

    def __init__(self, root: Path, data_dir: Path, decision_log: str = "") -> None:
        self.key = new_key()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        entry = {"name": "load", "sha256": hash_key(self.key), "scopes": ["score", "ingest", "read", "admin"]}
        self.env = {
            **os.environ,
            "COOPSCORE_DATA_DIR": str(data_dir),
            "COOPSCORE_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "COOPSCORE_ARTIFACT_ROOT": str(root / "artifacts"),
            "COOPSCORE_API_KEYS": json.dumps([entry]),
            "COOPSCORE_DECISION_LOG": decision_log,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "coopscore", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)


@pytest.fixture
def decision_log(request: pytest.FixtureRequest) -> str:
    """The decision log the server writes: "" for SQLite under its data dir (the default), or
    "postgresql" (parametrized) for a fresh schema on the tests' PostgreSQL, skipped when absent."""
    if getattr(request, "param", "") == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return ""


@pytest.fixture
def server(champion_store, keys, tmp_path: Path, decision_log: str) -> Iterator[Server]:
    root, members = champion_store
    settings = make_settings(tmp_path, keys, **champion_settings(root))
    names = tuple(n for n in members["strong"] if not n.startswith("application_"))
    fill_online_store(settings, names, {m: [v[n] for n in names] for m, v in members.items()})
    running = Server(root, settings.data_dir, decision_log)
    running.start()
    yield running
    running.stop(signal.SIGKILL)


def _load(server: Server, stop: threading.Event, results: list[tuple[int, str | None]]) -> None:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=30) as client:
        while not stop.is_set():
            try:
                response = client.post("/v1/score", json=BODY)
            except httpx.HTTPError:
                results.append((-1, None))
                continue
            rid = response.json().get("request_id") if response.status_code == 200 else None
            results.append((response.status_code, rid))


def test_reload_under_load_fails_no_request(server: Server) -> None:
    stop, results = threading.Event(), []
    workers = [threading.Thread(target=_load, args=(server, stop, results)) for _ in range(6)]
    for worker in workers:
        worker.start()
    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.key}, timeout=60) as admin:
        for _ in range(4):
            time.sleep(0.3)
            assert admin.post("/v1/admin/reload").status_code == 200
    stop.set()
    for worker in workers:
        worker.join()
    assert len(results) > 20
    assert {status for status, _ in results} == {200}


@pytest.mark.parametrize("decision_log", ["", "postgresql"], ids=["sqlite", "postgresql"], indirect=True)
def test_kill_9_under_load_loses_no_answered_decision(
    server: Server, tmp_path: Path, decision_log: str
) -> None:
    stop, results = threading.Event(), []
    workers = [threading.Thread(target=_load, args=(server, stop, results)) for _ in range(6)]
    for worker in workers:
        worker.start()
    time.sleep(2.0)
    server.stop(signal.SIGKILL)
    stop.set()
    for worker in workers:
        worker.join()
    answered = {rid for status, rid in results if status == 200}
    assert len(answered) > 20
    if decision_log:
        from decisions.postgres import PostgresDecisionLogReader

        with PostgresDecisionLogReader(decision_log) as reader:
            logged = reader.request_ids()
    else:
        con = sqlite3.connect(tmp_path / "data" / "decisions.sqlite")
        logged = {row[0] for row in con.execute("SELECT request_id FROM decisions")}
    assert answered <= logged, f"{len(answered - logged)} answered decisions are missing from the log"
