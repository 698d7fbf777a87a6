"""The front door: token buckets, 429 with Retry-After per key and per failed-authentication address,
the JSON access log (no key material, no raw paths), production mode, and the data folder's modes."""

from __future__ import annotations

import hashlib
import json
import logging
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.access import ACCESS_LOGGER, key_fingerprint
from serving.app import create_app
from serving.champion import load_champion
from serving.ratelimit import Buckets, buckets_or_none, retry_after
from tests.utils.api import Keys, fill_online_store, make_settings

ClientFactory = Callable[..., TestClient]


def no_champion(_settings: object) -> None:
    return None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    """Collects the access log's lines as parsed JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.raw.append(record.getMessage())

    @property
    def lines(self) -> list[dict[str, object]]:
        return [json.loads(r) for r in self.raw]


@pytest.fixture
def access_lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


# ---- bucket math ----


def test_a_bucket_allows_its_burst_then_says_how_long_to_wait() -> None:
    clock = FakeClock()
    buckets = Buckets(2.0, 3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # 1 token at 2 per second
    assert buckets.take("b") == 0.0  # another key has its own bucket
    clock.now += 0.25
    assert buckets.take("a") == pytest.approx(0.25)  # half a token back: a quarter second to go
    clock.now += 0.25
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    clock.now += 100  # refills to the burst, never beyond
    assert [buckets.take("a") for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    assert buckets.wait("a") == pytest.approx(0.5)


def test_charging_spends_after_the_fact_and_never_goes_below_zero() -> None:
    clock = FakeClock()
    buckets = Buckets(0.1, 2, clock=clock)
    assert buckets.wait("10.0.0.1") == 0.0
    for _ in range(5):
        buckets.charge("10.0.0.1")
    assert buckets.wait("10.0.0.1") == pytest.approx(10.0)  # empty, not -3 tokens deep
    clock.now += 10
    assert buckets.wait("10.0.0.1") == 0.0


def test_bucket_count_is_bounded_and_full_buckets_go_first() -> None:
    clock = FakeClock()
    buckets = Buckets(1.0, 1, clock=clock, max_buckets=4)
    for i in range(4):
        buckets.take(f"k{i}")
    clock.now += 5  # all refilled: forgetting them changes nothing
    buckets.take("new")
    assert len(buckets) == 1
    for i in range(10):
        buckets.take(f"busy{i}")
    assert len(buckets) <= 4
    assert buckets.take("busy9") > 0  # the newest stays remembered


def test_retry_after_is_whole_seconds_at_least_one_and_zero_turns_limits_off() -> None:
    assert [retry_after(w) for w in (0.01, 1.0, 1.2, 29.5)] == [1, 1, 2, 30]
    assert buckets_or_none(0, 10) is None and buckets_or_none(5, 0) is None
    assert buckets_or_none(5, 10) is not None
    with pytest.raises(ValueError, match="rate > 0"):
        Buckets(0, 1)


# ---- limits on the real app ----


def _metric(client: TestClient, keys: Keys, kind: str) -> float:
    text = client.get("/metrics", headers=keys.header("read")).text
    [line] = [
        row for row in text.splitlines() if row.startswith(f'coopscore_rate_limited_total{{kind="{kind}"}}')
    ]
    return float(line.split()[-1])


def test_a_key_over_its_rate_gets_429_with_retry_after_and_other_keys_do_not(
    client_factory: ClientFactory, keys: Keys
) -> None:
    client = client_factory(no_champion, rate_limit_per_second=0.1, rate_limit_burst=3)
    answers = [client.get("/v1/model", headers=keys.header()) for _ in range(4)]
    assert [a.status_code for a in answers] == [503, 503, 503, 429]
    refused = answers[-1]
    assert refused.headers["Retry-After"] == "10"
    assert refused.json() == {"detail": "API key 'everything' is over its rate limit; retry after 10 s"}
    assert refused.headers["X-Request-ID"]
    assert client.get("/v1/model", headers=keys.header("read")).status_code == 503  # its own bucket
    assert _metric(client, keys, "key") == 1.0
    assert _metric(client, keys, "auth_failure") == 0.0


def test_failed_authentications_are_limited_per_client_address(
    client_factory: ClientFactory, keys: Keys, tmp_path: Path
) -> None:
    client = client_factory(no_champion, auth_failure_per_second=0.05, auth_failure_burst=3)
    bad = [client.get("/v1/model", headers={"X-API-Key": f"cs_guess-{i}"}) for i in range(6)]
    assert [b.status_code for b in bad] == [401, 401, 401, 429, 429, 429]
    assert bad[-1].headers["Retry-After"] == "20"
    assert "too many failed authentications" in bad[-1].json()["detail"]
    assert client.get("/v1/model").status_code == 429  # no key at all is no way around it
    # The same address with a valid key, and the public probes, are still answered.
    assert client.get("/v1/model", headers=keys.header("read")).status_code == 503
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
    # Another address has its own budget (same app, another client address).
    other = TestClient(client.app, client=("10.1.2.3", 40000), raise_server_exceptions=False)
    assert other.get("/v1/model", headers={"X-API-Key": "cs_guess"}).status_code == 401
    assert _metric(client, keys, "auth_failure") == 4.0


def test_limits_are_on_by_default_but_out_of_the_way(client_factory: ClientFactory, keys: Keys) -> None:
    client = client_factory(no_champion)
    settings = client.app.state.coopscore.settings  # type: ignore[attr-defined]
    assert settings.rate_limit_per_second >= 500 and settings.rate_limit_burst >= 1000
    assert 0 < settings.auth_failure_per_second < 1 and settings.auth_failure_burst <= 50
    assert all(client.get("/v1/model", headers=keys.header()).status_code == 503 for _ in range(200))


# ---- the access log ----


def test_every_request_is_one_json_line_without_key_material(
    client_factory: ClientFactory, keys: Keys, access_lines: Lines
) -> None:
    client = client_factory(no_champion)
    guess = "cs_this-is-a-guessed-key"
    ok = client.get("/v1/members/m-secret-42/features?name=Wang", headers=keys.header("read"))
    unauthorized = client.get("/v1/model", headers={"Authorization": f"Bearer {guess}"})
    forbidden = client.get("/v1/model", headers=keys.header("score"))
    assert (ok.status_code, unauthorized.status_code, forbidden.status_code) == (404, 401, 403)
    lines = access_lines.lines
    assert len(lines) == 3
    for line, response in zip(lines, (ok, unauthorized, forbidden), strict=True):
        assert set(line) == {
            "time", "request_id", "method", "route", "status", "latency_ms", "client", "key", "key_fp"
        }  # fmt: skip
        assert line["request_id"] == response.headers["X-Request-ID"]
        assert line["status"] == response.status_code
        assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0
        assert line["client"] == "testclient"
    assert lines[0]["route"] == "/v1/members/{member_id}/features"
    assert (lines[0]["key"], lines[0]["key_fp"]) == ("read-only", None)
    assert (lines[1]["key"], lines[1]["key_fp"]) == (None, hashlib.sha256(guess.encode()).hexdigest()[:8])
    assert (lines[2]["key"], lines[2]["key_fp"]) == ("score-only", key_fingerprint(keys.by_scope["score"]))
    text = "\n".join(access_lines.raw)
    for secret in (guess, *keys.by_scope.values(), keys.all_scopes, "m-secret-42", "Wang"):
        assert secret not in text
    for key in (guess, keys.by_scope["score"]):  # not even the whole digest
        assert hashlib.sha256(key.encode()).hexdigest() not in text


def test_request_ids_differ_and_the_log_can_be_turned_off(
    client_factory: ClientFactory, keys: Keys, access_lines: Lines
) -> None:
    client = client_factory(no_champion, access_log=False)
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3
    assert access_lines.raw == []


def test_a_score_answer_its_header_and_its_log_line_carry_one_request_id(
    champion_store: tuple[Path, dict[str, dict[str, float]]],
    client_factory: ClientFactory,
    keys: Keys,
    tmp_path: Path,
    access_lines: Lines,
) -> None:
    root, members = champion_store
    overrides = {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "artifact_root": root / "artifacts"}
    settings = make_settings(tmp_path, keys, **overrides)
    names = tuple(n for n in members["strong"] if not n.startswith("application_"))
    fill_online_store(settings, names, {m: [v[n] for n in names] for m, v in members.items()})
    client = client_factory(load_champion, **overrides)
    body = {"member_id": "strong", "amount_cny": 8000, "term_months": 12, "purpose": "livestock"}
    answer = client.post("/v1/score", json=body, headers=keys.header("score"))
    assert answer.status_code == 200, answer.text
    [line] = [x for x in access_lines.lines if x["route"] == "/v1/score"]
    assert answer.json()["request_id"] == answer.headers["X-Request-ID"] == line["request_id"]
    assert (line["method"], line["status"], line["key"]) == ("POST", 200, "score-only")


# ---- production ----


def test_production_hides_the_docs_and_says_only_ready_or_not(client_factory: ClientFactory) -> None:
    development = client_factory(no_champion)
    assert development.get("/openapi.json").status_code == 200
    assert set(development.get("/readyz").json()) == {"ready", "model_version", "online_store", "detail"}
    # Production needs a model-signing key (settings refuse to load without one).
    production = client_factory(no_champion, environment="production", model_signing_key="k" * 32)
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert production.get(path).status_code == 404, path
    ready = production.get("/readyz")
    assert (ready.status_code, ready.json()) == (503, {"ready": False})
    assert production.get("/healthz").json() == {"status": "ok"}


def test_an_unknown_environment_is_refused(tmp_path: Path, keys: Keys) -> None:
    with pytest.raises(ValueError, match="environment"):
        make_settings(tmp_path, keys, environment="prod")


# ---- private data ----


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_server_keeps_its_data_private_whatever_the_umask(
    tmp_path: Path, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # an install from before this release
    settings = make_settings(tmp_path, keys)
    app = create_app(settings, scorer_loader=no_champion)
    with caplog.at_level(logging.WARNING, logger="coopscore.files"), TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
    assert _mode(data) == 0o700
    assert [r.getMessage() for r in caplog.records if "tightened" in r.getMessage()] == [
        f"folder {data} was readable by other users (mode 755); tightened to 700"
    ]
    decision_log = settings.decision_log_path
    online = settings.online_store_path
    assert _mode(decision_log) == 0o600 and _mode(online) == 0o600
    assert _mode(online.parent) == 0o700
    companions = [p for p in data.rglob("*.sqlite-*") if p.is_file()]
    assert all(_mode(p) == 0o600 for p in companions), [(p, oct(_mode(p))) for p in companions]
