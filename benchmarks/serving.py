"""Benchmark: our `/v1/score` against `mlflow models serve` on the same registered model version.

Both servers run locally with the same number of worker processes (`--workers`, default 2: one per
core of the target machine). A closed-loop load (each client sends its next request when the previous
answer arrives) runs at concurrency 1 and 8 for `--seconds` each, from separate client processes with
lean stdlib keep-alive connections, so the load generator takes as little of the shared CPU as it
can. Ours returns PD, score, grade, decision and reasons and writes a durable decision-log row per
request; MLflow returns the PD only.
Run: `python benchmarks/serving.py [--seconds 15] [--workers 2]`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, headers: dict[str, str], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} never became ready")


def _client(args: tuple[str, dict[str, str], str, float]) -> list[float]:
    # A keep-alive stdlib connection: on a 2-core box the load generator shares the CPU with the
    # server, and httpx spends ~1 ms of CPU per request (http.client a few hundred microseconds).
    url, headers, body, seconds = args
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    sent_headers = {**headers, "Content-Type": "application/json"}
    payload = body.encode()
    latencies: list[float] = []
    try:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            started = time.perf_counter()
            connection.request("POST", parts.path, body=payload, headers=sent_headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"{url}: {response.status} {answer[:200]!r}")
            latencies.append(time.perf_counter() - started)
    finally:
        connection.close()
    return latencies


def drive(url: str, headers: dict[str, str], body: str, concurrency: int, seconds: float) -> dict[str, float]:
    """Closed-loop load; returns req/s, p50 and p99 in ms."""
    with mp.get_context("spawn").Pool(concurrency) as pool:
        started = time.perf_counter()
        parts = pool.map(_client, [(url, headers, body, seconds)] * concurrency)
        wall = time.perf_counter() - started
    latencies = sorted(x for part in parts for x in part)
    return {
        "requests": len(latencies),
        "rps": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per load level")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of each server")
    args = parser.parse_args()
    console = Console(width=150)

    from coopscore.settings import Settings
    from features.online.base import FeatureBatch
    from features.online.factory import online_store
    from models.registry import MODEL_NAME
    from serving.auth import hash_key, new_key
    from serving.scoring import applicant_vector
    from tests.utils.model_fixtures import SyntheticSource, fast_config, golden_applicant
    from training.job import retrain

    work = Path(tempfile.mkdtemp(prefix="coopscore-serving-bench-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    console.print("training and registering a champion ...")
    source = SyntheticSource(n=12_000, seed=1)
    summary = retrain(source, config=fast_config(), tracking_uri=uri, artifact_root=work / "artifacts")
    member = golden_applicant(source.load(), strong=False)
    names = tuple(n for n in member if not n.startswith("application_"))

    from datetime import UTC, datetime

    import numpy as np

    # The store the server will open: the configured backend under the server's data_dir.
    store = online_store(Settings(data_dir=work / "data"))
    as_of = datetime.now(UTC)
    # Vectors of the feature set the champion was trained on: the server refuses to mix versions.
    version = source.load().spec.feature_set_version
    refresh = store.begin_refresh(feature_names=names, feature_set_version=version, as_of=as_of)
    store.online_write_batch(
        refresh, FeatureBatch(["m1"], as_of, names, np.array([[member[n] for n in names]], dtype=np.float64))
    )
    store.commit_refresh(refresh)
    store.close()

    key = new_key()
    ours_port, mlflow_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "COOPSCORE_DATA_DIR": str(work / "data"),
        "COOPSCORE_TRACKING_URI": uri,
        "COOPSCORE_ARTIFACT_ROOT": str(work / "artifacts"),
        "COOPSCORE_API_KEYS": json.dumps(
            [{"name": "bench", "sha256": hash_key(key), "scopes": ["score", "read"]}]
        ),
        "MLFLOW_TRACKING_URI": uri,
        # mlflow models serve execs `uvicorn` by name: the venv's bin must be on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    ours = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coopscore",
            "serve",
            "--port",
            str(ours_port),
            "--workers",
            str(args.workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    theirs = subprocess.Popen(
        [
            mlflow_bin,
            "models",
            "serve",
            "-m",
            f"models:/{MODEL_NAME}/{summary.version}",
            "--env-manager",
            "local",
            "-p",
            str(mlflow_port),
            "--workers",
            str(args.workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows = []
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    try:
        headers = {"X-API-Key": key}
        _wait(f"http://127.0.0.1:{ours_port}/readyz", headers)
        _wait(f"http://127.0.0.1:{mlflow_port}/ping", {})
        ours_body = json.dumps(
            {"member_id": "m1", "amount_cny": 8000, "term_months": 12, "purpose": "livestock"}
        )
        vector = applicant_vector({n: member[n] for n in names}, amount_cny=8000, term_months=12)
        columns = list(vector)
        mlflow_body = json.dumps(
            {
                "dataframe_split": {
                    "columns": columns,
                    "data": [[None if v != v else v for v in vector.values()]],
                }
            }
        )
        for concurrency in (1, 8):
            mine = drive(
                f"http://127.0.0.1:{ours_port}/v1/score", headers, ours_body, concurrency, args.seconds
            )
            peer = drive(
                f"http://127.0.0.1:{mlflow_port}/invocations", {}, mlflow_body, concurrency, args.seconds
            )
            rows.append((concurrency, mine, peer))
    finally:
        for proc in (ours, theirs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    table = Table(
        title=f"/v1/score vs mlflow models serve ({os.cpu_count()} cores, {args.workers} worker(s) each, "
        f"{args.seconds:.0f} s per level, load average before {load_before})"
    )
    for col in ("concurrency", "server", "requests", "req/s", "p50 ms", "p99 ms", "req/s ratio"):
        table.add_column(col, justify="right")
    for concurrency, mine, peer in rows:
        table.add_row(
            str(concurrency),
            "coopscore (PD+reasons+durable log)",
            f"{mine['requests']:,}",
            f"{mine['rps']:,.0f}",
            f"{mine['p50_ms']:.2f}",
            f"{mine['p99_ms']:.2f}",
            f"{mine['rps'] / peer['rps']:.1f}×",
        )
        table.add_row(
            "",
            "mlflow models serve (PD only)",
            f"{peer['requests']:,}",
            f"{peer['rps']:,.0f}",
            f"{peer['p50_ms']:.2f}",
            f"{peer['p99_ms']:.2f}",
            "1.0×",
        )
    console.print(table)


if __name__ == "__main__":
    main()
