"""`coopscore serve` with a PostgreSQL decision log it cannot reach stops before uvicorn starts: exit 7
and one line naming the URL, its password hidden."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_serve_stops_with_one_line_when_the_postgresql_log_is_unreachable(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "COOPSCORE_DATA_DIR": str(tmp_path / "data"),
        # Port 1 on loopback: nothing listens there, so the connection is refused at once.
        "COOPSCORE_DECISION_LOG": "postgresql://scorer:hunter2@127.0.0.1:1/test?schema=coopscore",
    }
    done = subprocess.run(
        [sys.executable, "-m", "coopscore", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 7, done.stderr
    errors = [line for line in done.stderr.splitlines() if "unavailable" in line]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "cannot reach the PostgreSQL decision log at postgresql://scorer:***@127.0.0.1:1/test" in errors[0]
    assert "hunter2" not in done.stderr + done.stdout


def test_serve_refuses_a_bad_schema_option_as_bad_input(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "COOPSCORE_DATA_DIR": str(tmp_path / "data"),
        "COOPSCORE_DECISION_LOG": "postgresql://scorer:hunter2@127.0.0.1:1/test?schema=Robert;DROP",
    }
    done = subprocess.run(
        [sys.executable, "-m", "coopscore", "serve", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "schema=" in done.stderr and "hunter2" not in done.stderr
