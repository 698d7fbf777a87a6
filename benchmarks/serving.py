"""Benchmark: our `/v1/score` against `mlflow models serve` on the same registered model version.

Both servers run locally with the same number of worker processes (`--workers`, default 2: one per
core of the target machine) and serve the same registered version (signed: ours verifies it). A
closed-loop load (each connection sends its next request when the previous answer arrives) runs at
concurrency 1, 8 and 32 (`--levels`) for `--seconds` each, `--runs` times; the table shows medians.
The load comes from wrk where it is installed (`apt-get install wrk`; a small Lua script posts bodies
with rotating member ids), else from separate client processes with lean stdlib keep-alive
connections; the output says which. Ours returns PD, score, grade, decision and reasons and writes
a durable decision-log row per request; MLflow returns the PD only.
Run: `python benchmarks/serving.py [--seconds 15] [--workers 2] [--runs 3] [--driver auto|wrk|python]`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import re
import shutil
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


def _client(args: tuple[str, dict[str, str], list[str], float]) -> list[float]:
    # A keep-alive stdlib connection: on a 2-core box the load generator shares the CPU with the
    # server, and httpx spends ~1 ms of CPU per request (http.client a few hundred microseconds).
    url, headers, bodies, seconds = args
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    sent_headers = {**headers, "Content-Type": "application/json"}
    payloads = [b.encode() for b in bodies]
    latencies: list[float] = []
    try:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            started = time.perf_counter()
            payload = payloads[len(latencies) % len(payloads)]
            connection.request("POST", parts.path, body=payload, headers=sent_headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"{url}: {response.status} {answer[:200]!r}")
            latencies.append(time.perf_counter() - started)
    finally:
        connection.close()
    return latencies


def drive_python(
    url: str, headers: dict[str, str], bodies: list[str], concurrency: int, seconds: float
) -> dict[str, float]:
    """Closed-loop load from `concurrency` stdlib client processes; req/s, p50 and p99 in ms."""
    with mp.get_context("spawn").Pool(concurrency) as pool:
        started = time.perf_counter()
        parts = pool.map(_client, [(url, headers, bodies, seconds)] * concurrency)
        wall = time.perf_counter() - started
    latencies = sorted(x for part in parts for x in part)
    return {
        "requests": len(latencies),
        "rps": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "errors": 0,
    }


# wrk's Lua: one state per thread; `request` builds each body, so member ids rotate per request.
_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{headers}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format({template}, counter % {members}))
end
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}
_DURATION = re.compile(r"^\s*(?P<pct>50|99)(?:\.0+)?%\s+(?P<value>[\d.]+)(?P<unit>us|ms|s|m)\s*$", re.M)


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for this ASCII text


def wrk_script(headers: dict[str, str], template: str, members: int, directory: Path) -> Path:
    """A Lua script posting `template` with `{member}` replaced by a rotating number below `members`."""
    lines = "\n".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items())
    body = template.replace("%", "%%").replace("{member}", "%d")
    path = directory / f"post-{abs(hash((template, members)))}.lua"
    path.write_text(_LUA.format(headers=lines, template=_lua_string(body), members=max(members, 1)))
    return path


def parse_wrk(output: str) -> dict[str, float]:
    """Requests, req/s, p50 and p99 (ms) and non-2xx answers from `wrk --latency` output."""
    latency = {m["pct"]: float(m["value"]) * _UNITS[m["unit"]] for m in _DURATION.finditer(output)}
    rps = re.search(r"Requests/sec:\s*([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    if rps is None or total is None or {"50", "99"} - latency.keys():
        raise RuntimeError(f"could not read wrk's output:\n{output[-1500:]}")
    return {
        "requests": int(total[1]),
        "rps": float(rps[1]),
        "p50_ms": latency["50"],
        "p99_ms": latency["99"],
        "errors": int(errors[1]) if errors else 0,
    }


def drive_wrk(wrk: str, url: str, script: Path, concurrency: int, seconds: float) -> dict[str, float]:
    """Closed-loop load from wrk: `concurrency` connections on one thread (two from 8 up)."""
    threads = 1 if concurrency < 8 else 2
    command = [
        wrk, "--latency", "--timeout", "10s", "-t", str(threads), "-c", str(concurrency),
        "-d", f"{max(1, round(seconds))}s", "-s", str(script), url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr[-500:]}")
    return parse_wrk(done.stdout)


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def _driver(choice: str) -> tuple[str | None, str]:
    """(wrk path or None, a line saying which load generator runs and why)."""
    wrk = shutil.which("wrk")
    if choice == "python" or (choice == "auto" and wrk is None):
        why = "as asked" if choice == "python" else "wrk not found; `apt-get install wrk` to use it"
        return None, f"load driver: Python stdlib http.client, one process per connection ({why})"
    if wrk is None:
        raise SystemExit("--driver wrk: wrk is not installed (`apt-get install wrk`)")
    version = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    text = (version.stdout or version.stderr or "wrk").splitlines()[0]
    name = text.split("Copyright")[0].strip()  # "wrk debian/4.1.0-3+b2  Copyright (C) ..."
    return wrk, f"load driver: {name} ({wrk}), Lua script with rotating member ids"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per load level and run")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of each server")
    parser.add_argument("--levels", default="1,8,32", help="concurrency levels, e.g. 1,8,32")
    parser.add_argument("--runs", type=int, default=3, help="runs per level and server (medians shown)")
    parser.add_argument("--members", type=int, default=1000, help="member ids the requests rotate over")
    parser.add_argument("--driver", choices=("auto", "wrk", "python"), default="auto", help="load generator")
    args = parser.parse_args()
    console = Console(width=160)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    wrk, driver_line = _driver(args.driver)
    console.print(driver_line)

    from coopscore.settings import Settings
    from features.online.base import FeatureBatch
    from features.online.factory import online_store
    from models.registry import MODEL_NAME, sign_version
    from models.signing import SigningKey
    from serving.auth import hash_key, new_key
    from serving.scoring import applicant_vector
    from tests.utils.model_fixtures import SyntheticSource, fast_config, golden_applicant
    from training.job import retrain

    work = Path(tempfile.mkdtemp(prefix="coopscore-serving-bench-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    console.print("training and registering a champion ...")
    source = SyntheticSource(n=12_000, seed=1)
    summary = retrain(source, config=fast_config(), tracking_uri=uri, artifact_root=work / "artifacts")
    # Signed, as in production: our server verifies the signature at load.
    signing_key = new_key() + new_key()
    sign_version(uri, MODEL_NAME, str(summary.version), SigningKey(signing_key.encode()), signed_at="bench")
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
    ids = [f"m{i}" for i in range(args.members)]
    vectors = np.tile(np.array([[member[n] for n in names]], dtype=np.float64), (len(ids), 1))
    store.online_write_batch(refresh, FeatureBatch(ids, as_of, names, vectors))
    store.commit_refresh(refresh)
    store.close()

    key = new_key()
    ours_port, mlflow_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "COOPSCORE_DATA_DIR": str(work / "data"),
        "COOPSCORE_TRACKING_URI": uri,
        "COOPSCORE_ARTIFACT_ROOT": str(work / "artifacts"),
        "COOPSCORE_MODEL_SIGNING_KEY": signing_key,
        "COOPSCORE_API_KEYS": json.dumps(
            [{"name": "bench", "sha256": hash_key(key), "scopes": ["score", "read"]}]
        ),
        "MLFLOW_TRACKING_URI": uri,
        # mlflow models serve execs `uvicorn` by name: the venv's bin must be on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    ours_log = (work / "coopscore-serve.log").open("wb")
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
        stdout=ours_log,
        stderr=subprocess.STDOUT,
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
        try:
            _wait(f"http://127.0.0.1:{ours_port}/readyz", headers)
        except RuntimeError:
            ready = httpx.get(f"http://127.0.0.1:{ours_port}/readyz", timeout=5).text
            raise RuntimeError(f"coopscore never became ready: {ready} (log: {ours_log.name})") from None
        _wait(f"http://127.0.0.1:{mlflow_port}/ping", {})
        ours_template = (
            '{"member_id": "m{member}", "amount_cny": 8000, "term_months": 12, "purpose": "livestock"}'
        )
        vector = applicant_vector({n: member[n] for n in names}, amount_cny=8000, term_months=12)
        mlflow_body = json.dumps(
            {
                "dataframe_split": {
                    "columns": list(vector),
                    "data": [[None if v != v else v for v in vector.values()]],
                }
            }
        )
        ours_url = f"http://127.0.0.1:{ours_port}/v1/score"
        mlflow_url = f"http://127.0.0.1:{mlflow_port}/invocations"
        ours_script = wrk_script(headers, ours_template, args.members, work)
        mlflow_script = wrk_script({}, mlflow_body, 1, work)
        ours_bodies = [ours_template.replace("{member}", str(i)) for i in range(min(args.members, 256))]

        def once(server: str, concurrency: int) -> dict[str, float]:
            if wrk is not None:
                script, url = (ours_script, ours_url) if server == "ours" else (mlflow_script, mlflow_url)
                return drive_wrk(wrk, url, script, concurrency, args.seconds)
            if server == "ours":
                return drive_python(ours_url, headers, ours_bodies, concurrency, args.seconds)
            return drive_python(mlflow_url, {}, [mlflow_body], concurrency, args.seconds)

        for concurrency in levels:
            ours_runs: list[dict[str, float]] = []
            mlflow_runs: list[dict[str, float]] = []
            for _ in range(args.runs):  # interleaved, so a noisy minute hurts both servers alike
                ours_runs.append(once("ours", concurrency))
                mlflow_runs.append(once("mlflow", concurrency))
            rows.append((concurrency, _median(ours_runs), _median(mlflow_runs)))
    finally:
        for proc in (ours, theirs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    table = Table(
        title=f"/v1/score vs mlflow models serve ({os.cpu_count()} cores, {args.workers} worker(s) each, "
        f"{args.seconds:.0f} s per level, median of {args.runs} run(s), load average before {load_before})",
        caption=driver_line,
    )
    for col in ("concurrency", "server", "requests", "req/s", "p50 ms", "p99 ms", "non-2xx", "req/s ratio"):
        table.add_column(col, justify="right")
    for concurrency, mine, peer in rows:
        for label, result, ratio in (
            ("coopscore (PD+reasons+durable log, signed)", mine, mine["rps"] / peer["rps"]),
            ("mlflow models serve (PD only)", peer, 1.0),
        ):
            table.add_row(
                str(concurrency) if result is mine else "",
                label,
                f"{result['requests']:,.0f}",
                f"{result['rps']:,.0f}",
                f"{result['p50_ms']:.2f}",
                f"{result['p99_ms']:.2f}",
                f"{result['errors']:,.0f}",
                f"{ratio:.1f}×",
            )
    console.print(table)
    for concurrency, mine, peer in rows:
        if concurrency == 8:
            console.print(
                f"targets at concurrency 8: req/s ratio {mine['rps'] / peer['rps']:.1f}× (>= 10×), "
                f"p99 {mine['p99_ms']:.1f} ms (<= 25 ms)"
            )


if __name__ == "__main__":
    main()
