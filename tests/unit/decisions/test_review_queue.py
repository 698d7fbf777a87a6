"""The console's review queue and member history, read from the decision log (SQLite, PostgreSQL)."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from decisions.base import DecisionLogWriter
from tests.unit.decisions.conftest import LogBackend
from tests.unit.decisions.test_sqlite import record

THICK: dict[str, float | str | None] = {"history_months": 30.0, "event_count_365d": 40.0}  # not thin


def _logged(backend: LogBackend) -> DecisionLogWriter:
    log = backend.writer()
    rows = [
        dataclasses.replace(record(1), decision="approve"),
        dataclasses.replace(record(2), decision="decline", created_at=datetime(2026, 1, 2, tzinfo=UTC)),
        dataclasses.replace(record(3), decision="review", created_at=datetime(2026, 1, 3, tzinfo=UTC)),
        dataclasses.replace(record(4), decision="decline", member_id="m2"),
    ]
    for row in rows:
        log.submit(dataclasses.replace(row, features=THICK)).result(timeout=10)
    return log


def test_the_queue_holds_unreviewed_reviews_and_declines_newest_first(backend: LogBackend) -> None:
    log = _logged(backend)
    assert [q["request_id"] for q in log.review_queue()] == [f"{i:032x}" for i in (3, 2, 4)]
    log.add_review(f"{2:032x}", "wang", "override", "approve", "vouched for", reviewed_by_key="rev")
    queue = log.review_queue()
    assert [q["request_id"] for q in queue] == [f"{i:032x}" for i in (3, 4)]
    assert queue[0]["decision"] == "review" and queue[0]["member_id"] == "m1"
    assert len(log.review_queue(limit=1)) == 1
    log.close()


def test_member_history_is_the_members_own_with_the_reviewed_decision(backend: LogBackend) -> None:
    log = _logged(backend)
    log.add_review(f"{2:032x}", "wang", "override", "approve", "vouched for", reviewed_by_key="rev")
    history = log.member_decisions("m1")
    assert [h["request_id"] for h in history] == [f"{i:032x}" for i in (3, 2, 1)]
    assert [h["reviewed_decision"] for h in history] == [None, "approve", None]
    assert [h["request_id"] for h in log.member_decisions("m2")] == [f"{4:032x}"]
    assert log.member_decisions("nobody") == []
    log.close()


def test_member_history_uses_the_member_index(tmp_path: Path) -> None:
    _logged(LogBackend("sqlite", str(tmp_path / "d.sqlite"))).close()
    con = sqlite3.connect(tmp_path / "d.sqlite")
    plan = con.execute(
        "EXPLAIN QUERY PLAN SELECT request_id FROM decisions WHERE member_id = ? ORDER BY created_at DESC",
        ("m1",),
    ).fetchall()
    con.close()
    assert any("decisions_member" in str(step) for step in plan), plan


def test_thin_files_requests_and_flags_are_queued_and_tagged(backend: LogBackend) -> None:
    log = _logged(backend)
    thin = [
        dataclasses.replace(record(5), decision="approve", features={**THICK, "history_months": 6.0}),
        dataclasses.replace(record(6), decision="approve", features={**THICK, "event_count_365d": 3.0}),
        dataclasses.replace(record(7), decision="approve", features={"savings_balance": None}),  # neither
        dataclasses.replace(record(8), decision="approve", features={**THICK, "history_months": 12.0}),
    ]
    for row in thin:
        log.submit(row).result(timeout=10)
    queue = {q["request_id"]: q["queue"] for q in log.review_queue()}
    assert queue[f"{5:032x}"] == queue[f"{6:032x}"] == queue[f"{7:032x}"] == ["thin"]
    assert f"{8:032x}" not in queue and f"{1:032x}" not in queue  # 12 months is not thin; nor a thick approve
    assert queue[f"{3:032x}"] == ["flagged"] and queue[f"{2:032x}"] == ["declined"]

    stored = log.add_review_request(f"{4:032x}", "I repaid early", requested_by_key="officer")
    assert stored["requested_by_key"] == "officer"
    first = log.review_queue()[0]
    assert (first["request_id"], first["queue"]) == (f"{4:032x}", ["requested", "declined"])
    assert first["requested_at"] == stored["created_at"]
    found = log.get(f"{4:032x}")
    assert found is not None and found["review_requests"][0]["note"] == "I repaid early"
    log.add_review(f"{4:032x}", "wang", "confirm", "decline", "checked the ledger", reviewed_by_key="rev")
    assert f"{4:032x}" not in {q["request_id"] for q in log.review_queue()}  # reviewed: out of the queue
    log.close()


def test_requests_come_first_then_newest_and_are_kept_in_order(backend: LogBackend) -> None:
    log = _logged(backend)  # unrequested queue: 3 (2026-01-03), 2 (2026-01-02), 4 (2026-01-01)
    first = log.add_review_request(f"{4:032x}", "I repaid early", requested_by_key="officer")
    log.add_review_request(f"{2:032x}", "my harvest was late", requested_by_key="officer")
    log.add_review_request(f"{4:032x}", "and I have a guarantor", requested_by_key="desk")
    queue = log.review_queue()
    assert [q["request_id"] for q in queue] == [f"{i:032x}" for i in (2, 4, 3)]  # requested, newest first
    assert [q["queue"] for q in queue] == [["requested", "declined"], ["requested", "declined"], ["flagged"]]
    assert queue[1]["requested_at"] == first["created_at"] and queue[2]["requested_at"] is None
    assert set(queue[0]) == {
        "request_id",
        "member_id",
        "created_at",
        "score",
        "grade",
        "decision",
        "queue",
        "requested_at",
    }
    found = log.get(f"{4:032x}")
    assert found is not None
    assert [(r["note"], r["requested_by_key"]) for r in found["review_requests"]] == [
        ("I repaid early", "officer"),
        ("and I have a guarantor", "desk"),
    ]
    assert found["review_requests"][0] == {k: first[k] for k in ("note", "requested_by_key", "created_at")}
    none = log.get(f"{3:032x}")
    assert none is not None and none["review_requests"] == []
    log.close()


# Feature values the thin-file test reads as SQLite's CAST(... AS REAL) does (longest numeric prefix of
# a string, else 0; absent or null is no value): each backend must queue the same decisions.
ODD_VALUES: list[tuple[dict[str, float | str | None], bool]] = [
    ({**THICK, "history_months": "6 months"}, True),
    ({**THICK, "history_months": " 30"}, False),
    ({**THICK, "history_months": "n/a"}, True),
    ({**THICK, "history_months": "1e1"}, True),
    ({**THICK, "history_months": "2.5e1x"}, False),
    ({**THICK, "event_count_365d": -1.0}, True),
    ({"history_months": None, "event_count_365d": None}, True),
    ({"history_months": None, "event_count_365d": 40.0}, False),
    ({"history_months": 11.999, "event_count_365d": None}, True),
]


def test_thin_file_reading_of_odd_values_is_the_same_on_every_backend(backend: LogBackend) -> None:
    log = backend.writer()
    for i, (features, _) in enumerate(ODD_VALUES):
        log.submit(dataclasses.replace(record(i), features=features)).result(timeout=10)
    queued = {q["request_id"] for q in log.review_queue()}
    assert [f"{i:032x}" in queued for i in range(len(ODD_VALUES))] == [thin for _, thin in ODD_VALUES]
    log.close()


def test_a_log_written_before_review_requests_still_reads(backend: LogBackend) -> None:
    _logged(backend).close()
    backend.execute("DROP TABLE review_requests")  # as an earlier release left it
    reader = backend.reader()
    assert [q["request_id"] for q in reader.review_queue()] == [f"{i:032x}" for i in (3, 2, 4)]
    assert all(q["requested_at"] is None for q in reader.review_queue())
    found = reader.get(f"{2:032x}")
    assert found is not None and found["review_requests"] == []
    reader.close()
    writer = backend.writer()  # a writer adds the table
    writer.add_review_request(f"{2:032x}", "please look again", requested_by_key="officer")
    assert writer.review_queue()[0]["request_id"] == f"{2:032x}"
    writer.close()
