"""Who asked: idempotency keys per caller, the upgrade of a log an earlier release wrote, the inputs
hash, and the auditors' rows and export (CSV, Parquet, the CLI)."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from coopscore.cli.main import app
from coopscore.settings import get_settings
from decisions.base import AUDIT_COLUMNS, DecisionRecord, inputs_hash
from decisions.export import write_export
from decisions.sqlite import SqliteDecisionLogReader, SqliteDecisionLogWriter
from tests.unit.decisions.conftest import LogBackend

T0 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)

# The decisions table as the first release created it (idempotency_key UNIQUE on its own).
V1_SCHEMA = """
CREATE TABLE decisions (
    request_id TEXT PRIMARY KEY, application_id TEXT NOT NULL, member_id TEXT NOT NULL,
    created_at TEXT NOT NULL, model_name TEXT NOT NULL, model_version TEXT NOT NULL,
    pd REAL NOT NULL, score REAL NOT NULL, grade TEXT NOT NULL, decision TEXT NOT NULL,
    application TEXT NOT NULL, features TEXT NOT NULL, reasons TEXT NOT NULL, response TEXT NOT NULL,
    latency_ms REAL NOT NULL, idempotency_key TEXT UNIQUE, body_sha256 TEXT
);
CREATE INDEX decisions_created ON decisions(created_at);
CREATE INDEX decisions_application ON decisions(application_id);
CREATE TABLE reviews (
    review_id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL REFERENCES decisions(request_id), reviewer TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('confirm', 'override')), final_decision TEXT NOT NULL,
    reason TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE outcomes (
    application_id TEXT PRIMARY KEY, defaulted INTEGER NOT NULL, observed_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
"""


def record(
    i: int,
    *,
    caller: str,
    key: str | None = None,
    sha: str | None = None,
    at: datetime = T0,
    features: dict[str, float | str | None] | None = None,
) -> DecisionRecord:
    request_id = f"{i:032x}"
    return DecisionRecord(
        request_id=request_id,
        application_id=f"app-{i}",
        member_id=f"m{i}",
        created_at=at,
        model_name="coopscore-pd",
        model_version="3",
        pd=0.04 + i / 1000,
        score=620.0 - i,
        grade="B",
        decision="approve" if i % 2 else "review",
        application={"amount_cny": 5000 + i},
        features=features or {"savings_balance": float(i), "tenure_months": None},
        reasons=[{"code": "savings", "points": -3.5, "text_en": "low savings", "text_zh": "储蓄低"}],
        response={"request_id": request_id, "feature_set_version": "fs1", "caller_sees": caller},
        latency_ms=1.0,
        idempotency_key=key,
        body_sha256=sha,
        caller=caller,
        model_digest="ab" * 32,
    )


def v1_log(path: Path) -> None:
    """A decision log as the first release wrote it: one idempotent decision with a review."""
    con = sqlite3.connect(path)
    con.executescript(V1_SCHEMA)
    response = json.dumps({"request_id": "old", "decision": "approve"})
    con.execute(
        "INSERT INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        ("0" * 32, "app-old", "m-old", T0.isoformat(), "coopscore-pd", "1", 0.05, 610.0, "B", "approve",
         "{}", '{"savings_balance":1.0}', "[]", response, 1.0, "loan-1", "sha-old"),
    )  # fmt: skip
    con.execute(
        "INSERT INTO reviews (request_id, reviewer, action, final_decision, reason, created_at) "
        "VALUES (?, 'officer li (key admin)', 'confirm', 'approve', 'ok', ?)",
        ("0" * 32, T0.isoformat()),
    )
    con.commit()
    con.close()


def test_an_earlier_log_is_upgraded_and_its_idempotent_replays_still_work(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite"
    v1_log(path)
    # Read-only readers of the old file (the server not yet upgraded) work, with no callers.
    with SqliteDecisionLogReader(path) as old:
        [row] = old.audit_rows(T0 - timedelta(days=1), T0 + timedelta(days=1))
        assert row["caller"] is None and row["reviewer"] == "officer li (key admin)"
        assert row["reviewed_by_key"] is None
    log = SqliteDecisionLogWriter(path)
    con = sqlite3.connect(path)
    columns = {r[1] for r in con.execute("PRAGMA table_info(decisions)")}
    assert {"caller", "model_digest", "inputs_hash"} <= columns
    assert "reviewed_by_key" in {r[1] for r in con.execute("PRAGMA table_info(reviews)")}
    assert con.execute("SELECT caller FROM decisions").fetchall() == [("",)]
    [(unique,)] = con.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'decisions_caller_idempotency'"
    ).fetchall()
    assert "UNIQUE" in unique and "(caller, idempotency_key)" in unique
    # A retry of the old request (same body) after the upgrade replays the stored answer.
    stored = log.by_idempotency_key("lender-a", "loan-1")
    assert stored is not None and stored.legacy and stored.body_sha256 == "sha-old"
    assert stored.response == {"request_id": "old", "decision": "approve"}
    assert log.get("0" * 32) is not None  # the old review is still beside it
    # The old key does not block a client: its own decision under it is written, and found first.
    assert log.submit(record(1, caller="lender-a", key="loan-1", sha="new")).result(timeout=10) is None
    own = log.by_idempotency_key("lender-a", "loan-1")
    assert own is not None and not own.legacy and own.body_sha256 == "new"
    log.close()
    # Opening it again (another worker, a restart) finds nothing to upgrade and keeps every row.
    again = SqliteDecisionLogWriter(path)
    assert again.request_ids() == {"0" * 32, f"{1:032x}"}
    again.close()


def test_two_clients_with_one_key_each_get_their_own_decision(backend: LogBackend) -> None:
    log = backend.writer()
    assert log.submit(record(1, caller="lender-a", key="1", sha="body-a")).result(timeout=10) is None
    assert log.submit(record(2, caller="lender-b", key="1", sha="body-b")).result(timeout=10) is None
    mine, theirs = log.by_idempotency_key("lender-a", "1"), log.by_idempotency_key("lender-b", "1")
    assert mine is not None and mine.response["request_id"] == f"{1:032x}" and not mine.legacy
    assert theirs is not None and theirs.response["request_id"] == f"{2:032x}"
    assert log.by_idempotency_key("lender-c", "1") is None
    log.close()


def test_concurrent_duplicates_from_one_client_write_one_row_per_client(backend: LogBackend) -> None:
    log = backend.writer()

    async def race() -> list[object]:
        return await asyncio.gather(
            *(log.append(record(i, caller=("a", "b")[i % 2], key="k", sha="s")) for i in range(10))
        )

    results = asyncio.run(race())
    assert sum(r is None for r in results) == 2  # one row written for each client
    rows = backend.query("SELECT caller, request_id FROM decisions ORDER BY caller")
    assert [c for c, _ in rows] == ["a", "b"]
    written = dict(rows)
    for i, result in enumerate(results):  # each duplicate got its own client's stored response
        if result is not None:
            assert result.response["request_id"] == written[("a", "b")[i % 2]]  # type: ignore[attr-defined]
    log.close()


def test_the_inputs_hash_is_the_sha256_of_the_canonical_features(backend: LogBackend) -> None:
    features: dict[str, float | str | None] = {"z": 1.5, "a": None, "crop": "玉米"}
    canonical = '{"a":null,"crop":"玉米","z":1.5}'
    assert inputs_hash(features) == hashlib.sha256(canonical.encode()).hexdigest()
    assert inputs_hash(dict(reversed(features.items()))) == inputs_hash(features)
    log = backend.writer()
    log.submit(record(1, caller="a", features=features)).result(timeout=10)
    log.close()
    [(stored_features, stored_hash, caller, digest)] = backend.query(
        "SELECT features, inputs_hash, caller, model_digest FROM decisions"
    )
    assert stored_hash == inputs_hash(json.loads(stored_features))  # an auditor can recompute it
    assert (caller, digest) == ("a", "ab" * 32)


@pytest.fixture
def audited_log(backend: LogBackend, tmp_path: Path) -> LogBackend:
    """Four decisions over three days from two clients; one reviewed twice, one with an outcome."""
    if backend.name == "sqlite":  # where `coopscore decisions export` finds it by default
        backend = LogBackend("sqlite", str(tmp_path / "data" / "decisions.sqlite"))
    log = backend.writer()
    for i in range(4):
        log.submit(record(i, caller=("lender-a", "lender-b")[i % 2], at=T0 + timedelta(days=i))).result(10)
    log.add_review(f"{1:032x}", "officer li", "confirm", "approve", "looked fine", reviewed_by_key="adm-1")
    log.add_review(f"{1:032x}", "officer wu", "override", "decline", "debt found", reviewed_by_key="adm-2")
    log.add_outcomes([("app-2", True, T0 + timedelta(days=60))])
    log.close()
    return backend


def test_audit_rows_carry_the_caller_the_latest_review_and_the_outcome(audited_log: LogBackend) -> None:
    with audited_log.reader() as reader:
        rows = reader.audit_rows(T0 + timedelta(days=1), T0 + timedelta(days=3))  # [day 1, day 3)
    assert [r["request_id"] for r in rows] == [f"{1:032x}", f"{2:032x}"]
    assert all(list(r) == list(AUDIT_COLUMNS) for r in rows)
    reviewed, defaulted = rows
    assert reviewed["caller"] == "lender-b" and defaulted["caller"] == "lender-a"
    assert (reviewed["review_decision"], reviewed["reviewer"], reviewed["reviewed_by_key"]) == (
        "decline",
        "officer wu",
        "adm-2",
    )
    assert reviewed["review_action"] == "override" and reviewed["outcome_defaulted"] is None
    assert defaulted["review_decision"] is None and defaulted["outcome_defaulted"] is True
    assert defaulted["outcome_observed_at"].startswith("2026-03-")
    assert reviewed["model_digest"] == "ab" * 32 and reviewed["feature_set_version"] == "fs1"
    assert json.loads(reviewed["reasons"])[0]["code"] == "savings"


def test_export_writes_every_row_as_csv_and_parquet(audited_log: LogBackend, tmp_path: Path) -> None:
    with audited_log.reader() as reader:
        rows = reader.audit_rows(T0, T0 + timedelta(days=10))
    write_export(rows, tmp_path / "out.csv", "csv")
    write_export(rows, tmp_path / "out.parquet", "parquet")
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as handle:
        from_csv = list(csv.DictReader(handle))
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == list(AUDIT_COLUMNS) and list(from_csv[0]) == list(AUDIT_COLUMNS)
    assert table.num_rows == len(from_csv) == 4
    assert [r["caller"] for r in from_csv] == ["lender-a", "lender-b", "lender-a", "lender-b"]
    assert table.column("caller").to_pylist() == [r["caller"] for r in from_csv]
    assert [r["outcome_defaulted"] for r in from_csv] == ["", "", "1", ""]
    assert table.column("outcome_defaulted").to_pylist() == [None, None, True, None]
    assert table.schema.field("created_at").type.tz == "UTC"
    assert table.column("created_at").to_pylist()[3] == T0 + timedelta(days=3)
    assert from_csv[1]["reviewed_by_key"] == "adm-2" and json.loads(from_csv[0]["reasons"])
    assert not list(tmp_path.glob(".*.partial"))


@pytest.fixture
def cli_env(audited_log: LogBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("COOPSCORE_DATA_DIR", str(data_dir))
    if audited_log.name == "sqlite":
        monkeypatch.delenv("COOPSCORE_DECISION_LOG", raising=False)
    else:
        monkeypatch.setenv("COOPSCORE_DECISION_LOG", audited_log.target)
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


def export(*args: str) -> tuple[int, dict[str, object], str]:
    result = CliRunner().invoke(app, ["decisions", "export", *args, "--json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {}, result.stderr


def test_the_cli_exports_a_window_and_reports_its_counts(cli_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "audit" / "jan.csv"
    code, payload, _ = export("--from", "2026-01-10", "--to", "2026-01-12T09:00:00Z", "--out", str(out))
    assert code == 0
    assert payload["rows"] == 2 and payload["format"] == "csv"  # day 0 and day 1; day 2 starts at --to
    assert payload["by_caller"] == {"lender-a": 1, "lender-b": 1} and payload["reviewed"] == 1
    with out.open(newline="", encoding="utf-8") as handle:
        assert [r["request_id"] for r in csv.DictReader(handle)] == [f"{0:032x}", f"{1:032x}"]
    code, payload, _ = export("--from", "2026-01-01", "--to", "2026-02-01", "--out", str(tmp_path / "all"))
    assert code == 0 and payload["format"] == "parquet" and payload["rows"] == 4
    assert pq.read_table(tmp_path / "all").num_rows == 4


def test_the_cli_refuses_bad_windows_and_a_missing_log(
    cli_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "x.csv")
    code, payload, stderr = export("--from", "2026-02-01", "--to", "2026-01-01", "--out", out)
    assert code == 2 and "is not before --to" in str(payload["message"])
    code, _, stderr = export("--from", "last tuesday", "--to", "2026-01-01", "--out", out)
    assert code == 2 and "ISO 8601" in stderr
    code, payload, _ = export("--from", "2026-01-01", "--to", "2026-02-01", "--format", "xlsx", "--out", out)
    assert code == 2 and "xlsx" in str(payload["message"])
    monkeypatch.setenv("COOPSCORE_DATA_DIR", str(tmp_path / "empty"))
    configured = get_settings().decision_log
    if configured:  # PostgreSQL: a schema nothing was logged in
        monkeypatch.setenv("COOPSCORE_DECISION_LOG", configured.replace("schema=", "schema=empty_"))
    get_settings.cache_clear()
    code, payload, _ = export("--from", "2026-01-01", "--to", "2026-02-01", "--out", out)
    assert code == 2 and "no decision log" in str(payload["message"])
    assert not (tmp_path / "x.csv").exists()


def test_the_cli_names_an_unreachable_postgresql_log_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port 1 on loopback: nothing listens there, so the connection is refused at once.
    monkeypatch.setenv("COOPSCORE_DECISION_LOG", "postgresql://auditor:s3cret@127.0.0.1:1/test?schema=x")
    get_settings.cache_clear()
    try:
        code, payload, stderr = export(
            "--from", "2026-01-01", "--to", "2026-02-01", "--out", str(tmp_path / "a")
        )
    finally:
        get_settings.cache_clear()
    assert code == 7
    message = str(payload["message"])
    assert "cannot reach the PostgreSQL decision log at postgresql://auditor:***@127.0.0.1:1/test" in message
    assert "s3cret" not in message + stderr and len(stderr.strip().splitlines()) == 1
