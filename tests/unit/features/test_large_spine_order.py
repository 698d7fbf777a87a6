"""Regression: a spine larger than one DuckDB vector (2,048 rows) keeps every row with its own member."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from features.contracts import EVENT_CONTRACTS
from features.event_log import EventLog
from features.offline import build_features, member_spine


def test_each_row_of_a_large_build_belongs_to_its_member(tmp_path: Path) -> None:
    members = [f"m{i:05d}" for i in range(5000)]
    deliveries = {m: i % 7 for i, m in enumerate(members)}  # a per-member fingerprint
    rows = []
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for member, count in deliveries.items():
        for k in range(count):
            when = start + timedelta(days=k)
            rows.append(
                {
                    "event_id": f"{member}-{k}",
                    "member_id": member,
                    "coop_id": "c1",
                    "event_type": "produce_delivery",
                    "event_time": when,
                    "recorded_at": when,
                    "product": "玉米",
                    "quantity_kg": 10.0,
                    "amount_cny": 100.0,
                    "quality_grade": "A",
                }
            )
    schema = EVENT_CONTRACTS["produce_delivery"].arrow_schema()
    log = EventLog(tmp_path / "events", tmp_path / "tables")
    log.append_events("produce_delivery", pa.Table.from_pylist(rows, schema=schema), "t-00001")
    # Shuffle the spine so that order of members and order of rows differ.
    spine = member_spine(
        sorted(members, key=lambda m: (int(m[1:]) * 7919) % 5000), datetime(2025, 6, 1, tzinfo=UTC)
    )
    frame = build_features(spine, events_dir=log.events_dir, tables_dir=log.tables_dir)
    amounts = dict(zip(frame["member_id"], frame["delivery_amount_365d"].fillna(0.0), strict=True))
    assert all(amounts[m] == 100.0 * deliveries[m] for m in members)
