"""Journeys: the paths people take, driven only through the real CLI and the real HTTP server.

One small world is built once per test session with the CLI, exactly as a new user would:
`simulate` → `ingest` → `features materialize` → `retrain` (which promotes the first model when its
gates pass, else the journey forces it with `promote --force`, as an analyst signing it off would),
then `keys create` and a real `coopscore serve` subprocess on a free port. Journey tests use only
`JourneyWorld.cli` (subprocess, exit code, `--json`) and `JourneyServer` (HTTP); nothing internal.

The world carries a late drift scenario (`unit_fen` from `DRIFT_MONTH`): every record before that month
is ordinary. The model is trained as of the onset (`world.drift_onset`), so neither its labels nor its
reference sample (the applications of the quarter before it) see a drifted month: the online store
materialized as of `world.stable_as_of` (mid-month, in that quarter) is a stable window, and as of a
date after the onset a drifted one. Any day of the month would do: features counted in months are
elapsed time (30.4375-day months), so a vector does not depend on the day it is computed on.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

# Small enough to build in about a minute on 2 cores, large enough for the promotion gates to judge.
MEMBERS = 8_000
MONTHS = 26
SEED = 5
DRIFT_MONTH = 24
SCENARIO = f"unit_fen@{DRIFT_MONTH}"
SCOPES = ("score", "ingest", "read", "review", "admin")


def _coopscore_command() -> list[str]:
    """The installed `coopscore` entry point beside this interpreter (what `make` puts on PATH)."""
    script = Path(sys.executable).with_name("coopscore")
    return [str(script)] if script.exists() else [sys.executable, "-m", "coopscore"]


@dataclass
class Cli:
    """Runs `coopscore ...` as a subprocess with one world's environment, like a person at a shell."""

    env: dict[str, str]
    cwd: Path
    history: list[tuple[list[str], int, float]] = field(default_factory=list)
    # The program to run; default the installed `coopscore` (a journey may run another release's).
    command: list[str] = field(default_factory=lambda: _coopscore_command())

    def run(
        self, *args: str, timeout: float = 900, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run one command; return the finished process (exit code, stdout, stderr as text)."""
        command = [*self.command, *args]
        started = time.monotonic()
        done = subprocess.run(
            command,
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        self.history.append((list(args), done.returncode, time.monotonic() - started))
        return done

    def json(
        self, *args: str, expect: int | Sequence[int] = 0, timeout: float = 900
    ) -> tuple[int, dict[str, Any]]:
        """Run a command with `--json`; check its exit code is expected and stdout is one JSON object."""
        done = self.run(*args, "--json", timeout=timeout)
        allowed = {expect} if isinstance(expect, int) else set(expect)
        assert done.returncode in allowed, (
            f"`coopscore {' '.join(args)} --json` exited {done.returncode}, expected {sorted(allowed)}\n"
            f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-3000:]}"
        )
        try:
            payload = json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(
                f"`coopscore {' '.join(args)} --json` printed no single JSON object on stdout: {exc}\n"
                f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}"
            ) from exc
        assert isinstance(payload, dict)
        return done.returncode, payload


def journey_env(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a user whose coopscore data, MLflow store and keys all live under `root`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COOPSCORE_")}
    env.update(
        {
            "COOPSCORE_DATA_DIR": str(root / "data"),
            "COOPSCORE_TRACKING_URI": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
            "COOPSCORE_ARTIFACT_ROOT": str(root / "mlruns" / "artifacts"),
            # Rich output without terminal width guesses; no colour codes in captured text.
            "NO_COLOR": "1",
            "COLUMNS": "160",
        }
    )
    env.update(extra or {})
    return env


@dataclass
class JourneyWorld:
    """The session's world: its folders, its CLI, its dates, and how long each build step took."""

    root: Path
    world_dir: Path
    data_dir: Path
    cli: Cli
    start: datetime
    end: datetime
    stable_as_of: datetime
    drift_onset: datetime
    champion_version: str
    build_seconds: dict[str, float]
    retrain_summary: dict[str, Any] = field(default_factory=dict)  # what `retrain --json` printed

    def member_ids(self, count: int, *, offset: int = 0) -> list[str]:
        """Member ids from the world's own member export, as a lender's list of applicants would be."""
        import csv

        with (self.world_dir / "members" / "member_profiles.csv").open(
            newline="", encoding="utf-8"
        ) as handle:
            ids = sorted(row["member_id"] for row in csv.DictReader(handle))
        return ids[offset : offset + count]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _build_world(root: Path) -> JourneyWorld:
    cli = Cli(journey_env(root), root)
    world_dir = root / "world"
    seconds: dict[str, float] = {}

    def step(name: str, *args: str, expect: int | Sequence[int] = 0) -> dict[str, Any]:
        started = time.monotonic()
        _, payload = cli.json(*args, expect=expect)
        seconds[name] = round(time.monotonic() - started, 1)
        return payload

    step(
        "simulate",
        "simulate", "--members", str(MEMBERS), "--months", str(MONTHS), "--seed", str(SEED),
        "--scenario", SCENARIO, "--out", str(world_dir),
    )  # fmt: skip
    manifest = json.loads((world_dir / "manifest.json").read_text())
    start = datetime.fromisoformat(manifest["world"]["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(manifest["world"]["end"].replace("Z", "+00:00"))
    # The first day of the drift month (months counted from the world's start); the stable window
    # is the middle of the month before it.
    onset = start.replace(day=1)
    for _ in range(DRIFT_MONTH):
        onset = (onset + timedelta(days=32)).replace(day=1)
    stable_as_of = (onset - timedelta(days=1)).replace(day=16)

    step("ingest", "ingest", str(world_dir))
    step("materialize", "features", "materialize", "--as-of", _iso(end))
    retrain = step("retrain", "retrain", "--truth", str(world_dir), "--as-of", _iso(onset), expect=(0, 10))
    version = str(retrain["version"])
    if retrain["exit_code"] != 0:
        # The gates kept no champion on this small world: sign the first model off by hand, recorded.
        step(
            "promote",
            "promote", "--version", version, "--force", "--by", "journey-analyst",
            "--reason", f"journey world: first model ({retrain.get('message', '')})",
        )  # fmt: skip
    return JourneyWorld(
        root=root,
        world_dir=world_dir,
        data_dir=root / "data",
        cli=cli,
        start=start,
        end=end,
        stable_as_of=stable_as_of,
        drift_onset=onset,
        champion_version=version,
        build_seconds=seconds,
        retrain_summary=retrain,
    )


@pytest.fixture(scope="session")
def journey_world(tmp_path_factory: pytest.TempPathFactory) -> JourneyWorld:
    """One world per session, built with the real CLI (about a minute on 2 cores)."""
    return _build_world(tmp_path_factory.mktemp("journey"))


@dataclass
class JourneyServer:
    """A running `coopscore serve` on this session's world, with one key per scope and an all-scope key."""

    url: str
    keys: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, scope: str = "all", **kwargs: Any) -> httpx.Client:
        """An HTTP client sending the key of `scope` ('all' for every scope, 'none' for no key)."""
        headers = {} if scope == "none" else {"X-API-Key": self.keys[scope]}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

    def log_tail(self) -> str:
        """The server's last output, for assertion messages."""
        return self.log_path.read_text(errors="replace")[-3000:]


class ServerHome(Protocol):
    """Where a server runs: a CLI with its environment, and a folder (a `JourneyWorld`, or a journey's
    own data folder)."""

    @property
    def cli(self) -> Cli: ...

    @property
    def root(self) -> Path: ...


def start_server(
    world: ServerHome,
    *,
    workers: int = 1,
    until: str = "/readyz",
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
) -> JourneyServer:
    """Create keys with `coopscore keys create` and start `coopscore serve` on a free port; return once
    `until` answers 200 (`/healthz` for a server that is expected not to be ready). `env` adds
    settings for this server only (e.g. `COOPSCORE_RATE_LIMIT_BURST`), `args` options of `coopscore
    serve` (e.g. `--pricing-policy FILE`)."""
    keys: dict[str, str] = {}
    entries: list[dict[str, Any]] = []
    for scope in (*SCOPES, "all"):
        scopes = list(SCOPES) if scope == "all" else [scope]
        _, created = world.cli.json(
            "keys", "create", f"journey-{scope}", *[a for s in scopes for a in ("--scopes", s)]
        )
        keys[scope] = created["key"]
        entries.append(created["entry"])
    port = _free_port()
    log_path = world.root / f"serve-{port}.log"
    env = {**world.cli.env, "COOPSCORE_API_KEYS": json.dumps(entries), **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *_coopscore_command(),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                *args,
            ],
            env=env,
            cwd=world.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = JourneyServer(f"http://127.0.0.1:{port}", keys, process, log_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"coopscore serve exited {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}{until}", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(server)
    raise RuntimeError(f"coopscore serve: {until} not 200 within 120 s:\n{server.log_tail()}")


def stop_server(server: JourneyServer) -> None:
    """Stop the server as an operator would (SIGTERM), then make sure it is gone."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


@pytest.fixture(scope="session")
def journey_server(journey_world: JourneyWorld) -> Iterator[JourneyServer]:
    """The session's running server (one worker)."""
    server = start_server(journey_world)
    try:
        yield server
    finally:
        stop_server(server)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/journeys/ is a journey (select with -m journey)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.journey)
