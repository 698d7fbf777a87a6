"""Keyword-only factories for raw feed rows and files, in the wide bookkeeping-export layout."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from features.contracts import WIDE_EVENT_CONTRACT
from features.validation import Limits

NOW = datetime(2026, 6, 1, tzinfo=UTC)

VALID_PAYLOADS: dict[str, dict[str, str]] = {
    "membership": {"action": "join", "role": "member", "village_id": "v01"},
    "produce_delivery": {
        "product": "玉米",
        "quantity_kg": "120.5",
        "amount_cny": "301.2",
        "quality_grade": "A",
    },
    "input_purchase": {"category": "fertilizer", "amount_cny": "88", "on_credit": "true"},
    "savings_deposit": {"amount_cny": "50"},
    "savings_withdrawal": {"amount_cny": "20"},
    "loan_disbursement": {"loan_id": "L1", "amount_cny": "3000", "due_date": "2025-09-01T00:00:00Z"},
    "loan_repayment": {
        "loan_id": "L1",
        "amount_cny": "500",
        "due_date": "2025-09-01T00:00:00Z",
        "days_late": "3",
    },
    "meeting_attendance": {},
    "training_completed": {"topic": "bookkeeping"},
    "mobile_payment": {"direction": "in", "amount_cny": "42.5"},
    "green_practice": {"practice": "drip_irrigation", "verified": "false"},
}


def limits(*, now: datetime = NOW) -> Limits:
    """Ingestion limits with a fixed clock, so tests do not depend on today's date."""
    return Limits(max_amount_cny=5_000_000, max_quantity_kg=1_000_000, now=now, clock_skew_seconds=300)


def event_row(
    *,
    event_id: str,
    event_type: str = "produce_delivery",
    member_id: str = "m0001",
    coop_id: str = "c01",
    event_time: datetime = datetime(2025, 3, 5, 8, 0, tzinfo=UTC),
    recorded_after: timedelta = timedelta(hours=2),
    **overrides: str,
) -> dict[str, str]:
    """One valid wide event row as strings; `overrides` replace any column (use '' for empty)."""
    row = dict.fromkeys(WIDE_EVENT_CONTRACT.names, "")
    row.update(
        event_id=event_id,
        member_id=member_id,
        coop_id=coop_id,
        event_type=event_type,
        event_time=event_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        recorded_at=(event_time + recorded_after).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    row.update(VALID_PAYLOADS[event_type])
    row.update(overrides)
    return row


def varied_rows(*, count: int, prefix: str = "e") -> list[dict[str, str]]:
    """`count` valid rows cycling through every event type, members and days."""
    types = list(VALID_PAYLOADS)
    base = datetime(2025, 1, 1, tzinfo=UTC)
    return [
        event_row(
            event_id=f"{prefix}{i:08d}",
            event_type=types[i % len(types)],
            member_id=f"m{i % 97:04d}",
            event_time=base + timedelta(hours=i % 5000),
        )
        for i in range(count)
    ]


def write_csv(path: Path, rows: list[dict[str, str]], *, extra_lines: Sequence[str] = ()) -> Path:
    """Write rows as a CSV export (header = wide contract), then any raw extra lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=WIDE_EVENT_CONTRACT.names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        for line in extra_lines:
            handle.write(line + "\n")
    return path


def write_jsonl(path: Path, rows: list[dict[str, str]], *, extra_lines: Sequence[str] = ()) -> Path:
    """Write rows as JSON Lines (empty values omitted, as app exports do), then raw extra lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({k: v for k, v in row.items() if v != ""}, ensure_ascii=False) + "\n")
        for line in extra_lines:
            handle.write(line + "\n")
    return path
