"""The serving benchmark's wrk driver against a real HTTP server: its Lua script posts the body with
rotating member ids and the API key, and the numbers read back from wrk's output are the ones wrk
measured. Skipped (saying so) where wrk is not installed; the benchmark then uses its Python client."""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import pytest

WRK = shutil.which("wrk")
pytestmark = pytest.mark.skipif(WRK is None, reason="wrk is not installed (apt-get install wrk)")


def _bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "serving.py"
    spec = importlib.util.spec_from_file_location("bench_serving", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorder(BaseHTTPRequestHandler):
    """Answers 200 to every POST and records its body and key."""

    seen: ClassVar[list[tuple[str, dict[str, object]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Recorder.seen.append((self.headers.get("X-API-Key", ""), body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        return  # wrk drops its connections when it stops: broken pipes are expected


@pytest.fixture
def server() -> Iterator[str]:
    Recorder.seen = []
    httpd = QuietServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/score"
    httpd.shutdown()
    httpd.server_close()


def test_wrk_posts_rotating_member_ids_with_the_key_and_its_numbers_are_read(
    server: str, tmp_path: Path
) -> None:
    bench = _bench()
    template = '{"member_id": "m{member}", "amount_cny": 8000, "note": "100%"}'
    script = bench.wrk_script({"X-API-Key": "k-123"}, template, 5, tmp_path)
    result = bench.drive_wrk(WRK, server, script, 2, 1.0)
    assert result["requests"] <= len(Recorder.seen)  # wrk counts answers it read before stopping
    assert result["requests"] > 10 and result["rps"] > 0 and result["errors"] == 0
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    members = {body["member_id"] for _, body in Recorder.seen}
    assert members <= {f"m{i}" for i in range(5)} and len(members) == 5
    assert {key for key, _ in Recorder.seen} == {"k-123"}
    assert {body["note"] for _, body in Recorder.seen} == {"100%"}
