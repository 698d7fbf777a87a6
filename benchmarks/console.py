"""Benchmark: the console's score page against the API's /v1/score (the named peer), and page weights.

On `make run`'s world (20,000 members, 26 months, seed 7: simulated, ingested, materialized and
retrained once into `--work-dir`, then reused), one `coopscore serve` worker is started. The same
applicants are scored through POST /console/score (signed in with a session cookie, the HTML page with
its SVG waterfall) and through POST /v1/score (JSON, `explain: all` and `recourse: true`, as the page
asks), one request at a time on localhost, `--requests` each, `--runs` times; the table shows the
median of the runs' p50 and p95 (milliseconds, client-measured on localhost: server time plus a
loopback round trip). Page weight is every byte a browser loads for a page: the HTML (charts are
inline SVG) and the one stylesheet; the console loads nothing else.
Run: `python benchmarks/console.py [--requests 200] [--runs 5] [--work-dir /tmp/cs-console]`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAGE_BUDGET = 500 * 1024
TARGET_P50_MS = 50.0


def _cli(work: Path, env: dict[str, str], *args: str, ok: tuple[int, ...] = (0,)) -> None:
    done = subprocess.run([sys.executable, "-m", "coopscore", *args], env=env, cwd=work, check=False)
    if done.returncode not in ok:
        raise SystemExit(f"coopscore {' '.join(args)} exited {done.returncode}")


def _world(work: Path, env: dict[str, str], members: int) -> None:
    """`make run`'s steps, once (a manifest marks a finished world)."""
    done = work / "world.done"
    if done.is_file():
        return
    _cli(work, env, "simulate", "--members", str(members), "--months", "26", "--seed", "7",
         "--out", "data/world", "--overwrite")  # fmt: skip
    _cli(work, env, "ingest", "data/world")
    end = json.loads((work / "data/world/manifest.json").read_text())["world"]["end"]
    _cli(work, env, "features", "materialize", "--as-of", end)
    _cli(work, env, "retrain", "--truth", "data/world", ok=(0, 10, 11))
    done.write_text("ok\n")
    if not (work / "data" / "audits").is_dir():  # the monitoring page's fairness chart
        _cli(work, env, "audit", "fairness", "--data", "oot", "--model", "champion", ok=(0, 3))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=20_000, help="members of the world (make run: 20000)")
    parser.add_argument("--requests", type=int, default=200, help="requests per run and path")
    parser.add_argument("--runs", type=int, default=5, help="runs (medians shown)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/cs-console"), help="cached world")
    args = parser.parse_args()
    console = Console(width=140)
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COOPSCORE_")}
    env |= {"COOPSCORE_DATA_DIR": str(work / "data"), "NO_COLOR": "1",
            "COOPSCORE_TRACKING_URI": f"sqlite:///{work / 'mlruns' / 'mlflow.db'}",
            "COOPSCORE_ARTIFACT_ROOT": str(work / "mlruns" / "artifacts")}  # fmt: skip
    console.print(f"world: {work} (built once with make run's steps)")
    _world(work, env, args.members)

    from serving.auth import hash_key, new_key

    key = new_key()
    scopes = ["score", "ingest", "read", "review", "admin"]
    env["COOPSCORE_API_KEYS"] = json.dumps([{"name": "bench", "sha256": hash_key(key), "scopes": scopes}])
    env["COOPSCORE_ACCESS_LOG"] = "false"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (work / "serve.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "coopscore", "serve", "--port", str(port)],
                              env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"server did not start: see {work / 'serve.log'}")
            time.sleep(0.3)
        _measure(console, url, key, args, work)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _measure(console: Console, url: str, key: str, args: argparse.Namespace, work: Path) -> None:
    api = httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60)
    page = httpx.Client(base_url=url, timeout=60, follow_redirects=False)
    signed = page.post("/console/login", data={"api_key": key})
    assert signed.status_code == 303, signed.text
    form = page.get("/console/score").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    members = _members(work)
    bodies = [
        {
            "member_id": members[i % len(members)],
            "amount_cny": 8000,
            "term_months": 12,
            "purpose": "livestock",
        }
        for i in range(args.requests)
    ]

    def timed(send: object) -> list[float]:
        out = []
        for body in bodies:
            started = time.perf_counter()
            response = send(body)  # type: ignore[operator]
            out.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text[:300]
        return out

    def to_page(body: dict[str, object]) -> httpx.Response:
        return page.post("/console/score", data={**body, "csrf": csrf[1]})

    def to_api(body: dict[str, object]) -> httpx.Response:
        return api.post("/v1/score", json={**body, "explain": "all", "recourse": True})

    timed(to_page)  # warm-up
    timed(to_api)
    runs: dict[str, list[tuple[float, float]]] = {"console": [], "api": []}
    for _ in range(args.runs):
        runs["console"].append(_percentiles(timed(to_page)))
        runs["api"].append(_percentiles(timed(to_api)))
    table = Table(title=f"score: {args.requests} requests x {args.runs} runs, concurrency 1 (medians)")
    for column in ("path", "p50 ms", "p95 ms", "p50 vs API", "target p50"):
        table.add_column(column)
    api_p50 = statistics.median(r[0] for r in runs["api"])
    for name, label in (("console", "POST /console/score (HTML)"), ("api", "POST /v1/score (JSON, peer)")):
        p50 = statistics.median(r[0] for r in runs[name])
        p95 = statistics.median(r[1] for r in runs[name])
        target = f"<= {TARGET_P50_MS:.0f}" if name == "console" else "-"
        table.add_row(label, f"{p50:.1f}", f"{p95:.1f}", f"{p50 / api_p50:.2f}x", target)
    console.print(table)

    css = len(page.get("/console/static/console.css").content)
    weights = Table(title="page weight: HTML + stylesheet (nothing else is loaded)")
    for column in ("page", "HTML KB", "total KB", "budget"):
        weights.add_column(column)
    scored = to_page(bodies[0]).content
    queue = page.get("/console/reviews")
    first = re.search(r'href="(/console/reviews/[0-9a-f]{32})"', queue.text)
    pages = [
        ("sign-in", httpx.get(f"{url}/console/login").content),
        ("score (form)", page.get("/console/score").content),
        ("score (result)", scored),
        ("review queue", queue.content),
        ("review (one)", page.get(first[1]).content if first else b""),
        ("member", page.get(f"/console/member?member_id={members[0]}").content),
        ("monitoring", page.get("/console/monitoring").content),
        ("onboarding", page.get("/console/onboarding").content),
    ]
    for name, html in pages:
        total = len(html) + css
        weights.add_row(name, f"{len(html) / 1024:.1f}", f"{total / 1024:.1f}",
                        "ok" if total <= PAGE_BUDGET else "OVER 500 KB")  # fmt: skip
    console.print(weights)

    others = Table(title="other pages: server time, 20 requests x runs, concurrency 1 (medians)")
    for column in ("page", "p50 ms", "p95 ms"):
        others.add_column(column)
    for name, path in (
        ("member (activity charts from the event log)", "/console/member?member_id={m}"),
        ("review queue", "/console/reviews"),
        ("monitoring (cached model panels)", "/console/monitoring"),
        ("onboarding", "/console/onboarding"),
    ):
        page.get(path.format(m=members[0]))  # warm-up (the monitoring page reads MLflow once a minute)
        per_run = []
        for _ in range(args.runs):
            times = []
            for i in range(20):
                started = time.perf_counter()
                response = page.get(path.format(m=members[i % len(members)]))
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text[:300]
            per_run.append(_percentiles(times))
        p50 = statistics.median(r[0] for r in per_run)
        p95 = statistics.median(r[1] for r in per_run)
        others.add_row(name, f"{p50:.1f}", f"{p95:.1f}")
    console.print(others)


def _members(work: Path) -> list[str]:
    """Members with an online vector in the world's store."""
    from coopscore.settings import Settings
    from features.online.factory import online_store

    with online_store(Settings(data_dir=work / "data")) as store:
        return store.member_ids(limit=500)


if __name__ == "__main__":
    main()
