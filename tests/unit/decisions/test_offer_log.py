"""The decision log keeps each decision's offer and the pricing policy that priced it: in its own
columns, in the auditors' rows and export, and in `decisions export --json`'s counts; a log written
before offers existed is upgraded in place, its earlier decisions with no policy."""

from __future__ import annotations

import csv
import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from coopscore.cli.main import app
from coopscore.settings import get_settings
from decisions.base import DecisionRecord
from decisions.export import write_export
from decisions.sqlite import SqliteDecisionLogReader, SqliteDecisionLogWriter
from models.offers import Offer, price_application
from models.pricing import load_pricing_policy

T0 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
POLICY = load_pricing_policy()


def decision(i: int, *, offered: bool) -> DecisionRecord:
    """A decision as the server logs it: approved with an offer, or declined without one."""
    priced = price_application(
        POLICY,
        decision="approve" if offered else "decline",
        pd=0.03,
        amount_cny=6000.0,
        term_months=12,
        features={"delivery_amount_365d": 40_000.0, "green_verified_count_365d": 1.0},
    )
    offer = priced.model_dump() if isinstance(priced, Offer) else None
    return DecisionRecord(
        request_id=f"{i:032x}",
        application_id=f"app-{i}",
        member_id=f"m{i}",
        created_at=T0 + timedelta(minutes=i),
        model_name="coopscore-pd",
        model_version="3",
        pd=0.03,
        score=630.0,
        grade="B",
        decision="approve" if offered else "decline",
        application={"amount_cny": 6000.0},
        features={"delivery_amount_365d": 40_000.0},
        reasons=[],
        response={"request_id": f"{i:032x}", "offer": offer},
        latency_ms=1.0,
        caller="lender-a",
        offer=offer,
        pricing_policy_version=POLICY.version,
        pricing_policy_digest=POLICY.digest,
    )


@pytest.fixture
def offer_log(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "decisions.sqlite"
    log = SqliteDecisionLogWriter(path)
    log.submit_many([decision(0, offered=True), decision(1, offered=False)])[-1].result(timeout=10)
    log.close()
    return path


def test_the_offer_and_policy_are_kept_and_exported(offer_log: Path, tmp_path: Path) -> None:
    with SqliteDecisionLogReader(offer_log) as reader:
        offered, declined = reader.audit_rows(T0, T0 + timedelta(days=1))
    assert offered["pricing_policy_version"] == declined["pricing_policy_version"] == POLICY.version
    assert offered["pricing_policy_digest"] == POLICY.digest
    offer = json.loads(offered["offer"])
    assert offer["principal_cny"] == 6000.0 and offer["policy_version"] == POLICY.version
    assert declined["offer"] is None  # a decline has no offer, but its policy is on record
    write_export([offered, declined], tmp_path / "out.csv", "csv")
    write_export([offered, declined], tmp_path / "out.parquet", "parquet")
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["pricing_policy_version"] for r in rows] == [POLICY.version] * 2
    assert json.loads(rows[0]["offer"])["annual_rate"] == offer["annual_rate"] and rows[1]["offer"] == ""
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column("offer").to_pylist()[1] is None


def test_the_cli_export_counts_offers_by_pricing_policy(
    offer_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COOPSCORE_DATA_DIR", str(offer_log.parent))
    monkeypatch.delenv("COOPSCORE_DECISION_LOG", raising=False)
    get_settings.cache_clear()
    try:
        out = tmp_path / "audit.csv"
        args = [
            "decisions",
            "export",
            "--from",
            "2026-01-01",
            "--to",
            "2026-02-01",
            "--out",
            str(out),
            "--json",
        ]
        result = CliRunner().invoke(app, args)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["with_offer"] == 1 and summary["by_pricing_policy"] == {POLICY.version: 2}


def test_a_log_written_before_offers_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite"
    log = SqliteDecisionLogWriter(path)
    log.submit(replace(decision(0, offered=True), offer=None, pricing_policy_version=None)).result(10)
    log.close()
    con = sqlite3.connect(path)  # the log as the release before offers left it
    for column in ("offer", "pricing_policy_version", "pricing_policy_digest"):
        con.execute(f"ALTER TABLE decisions DROP COLUMN {column}")
    con.commit()
    with SqliteDecisionLogReader(path) as old:  # a reader of the old file works before the upgrade
        [row] = old.audit_rows(T0, T0 + timedelta(days=1))
        assert row["pricing_policy_version"] is None and row["offer"] is None
    log = SqliteDecisionLogWriter(path)
    log.submit(decision(1, offered=True)).result(10)
    earlier, later = log.audit_rows(T0, T0 + timedelta(days=1))
    log.close()
    assert earlier["offer"] is None and earlier["pricing_policy_digest"] is None
    assert later["pricing_policy_version"] == POLICY.version and json.loads(later["offer"])
    columns = {r[1] for r in con.execute("PRAGMA table_info(decisions)")}
    assert {"offer", "pricing_policy_version", "pricing_policy_digest"} <= columns
    con.close()
