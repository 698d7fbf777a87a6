"""Every validation rule rejects its bad case with the right reason, and valid rows pass."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.contracts import EVENT_TYPES, ID_PATTERN
from features.validation import contract_for, matching_id_columns
from tests.conftest import Store
from tests.utils.feeds import event_row, write_csv


def _reasons(store: Store) -> list[str]:
    files = sorted(store.quarantine_dir.glob("batch=*/*.parquet"))
    return [r for f in files for r in pq.read_table(f).column("reasons").to_pylist()]


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_valid_row_of_every_type_is_accepted(store: Store, tmp_path: Path, event_type: str) -> None:
    path = write_csv(tmp_path / "events" / "ok.csv", [event_row(event_id="e1", event_type=event_type)])
    report = store.ingest(path)
    assert report.totals() == {
        "rows_read": 1,
        "accepted": 1,
        "duplicates": 0,
        "quarantined": 0,
        "quarantined_before": 0,
    }
    stored = store.log.read_events(event_type)
    assert stored.column("event_id").to_pylist() == ["e1"]
    assert str(stored.schema.field("event_time").type) == "timestamp[us, tz=UTC]"


CASES = [
    ({"member_id": ""}, "member_id: required"),
    ({"event_id": ""}, "event_id: required"),
    ({"coop_id": "  "}, "coop_id: required"),
    ({"event_type": "harvest_party"}, "event_type: unknown harvest_party"),
    ({"event_time": "yesterday"}, "event_time: not a timestamp"),
    ({"event_time": ""}, "event_time: required"),
    ({"amount_cny": "12,5元"}, "amount_cny: not a number"),
    ({"amount_cny": "-3"}, "amount_cny: below minimum 0"),
    ({"amount_cny": "9000000"}, "amount_cny: above cap 5e+06"),
    ({"amount_cny": ""}, "amount_cny: required for produce_delivery"),
    ({"quantity_kg": "2000000"}, "quantity_kg: above cap 1e+06"),
    ({"product": "durian"}, "product: not one of"),
    ({"quality_grade": "Z"}, "quality_grade: not one of A|B|C"),
    ({"recorded_at": "2025-03-04T00:00:00Z"}, "recorded_at: before event_time"),
    (
        {"event_time": "2027-01-01T00:00:00Z", "recorded_at": "2027-01-01T01:00:00Z"},
        "event_time: in the future",
    ),
]


@pytest.mark.parametrize(("change", "reason"), CASES, ids=[c[1] for c in CASES])
def test_rule_rejects_bad_row_with_reason(
    store: Store, tmp_path: Path, change: dict[str, str], reason: str
) -> None:
    bad = event_row(event_id="bad")
    bad.update(change)
    rows = [event_row(event_id="good"), bad]
    report = store.ingest(write_csv(tmp_path / "events" / "x.csv", rows))
    assert report.totals()["accepted"] == 1
    assert report.totals()["quarantined"] == 1
    [found] = _reasons(store)
    assert reason in found


@pytest.mark.parametrize(
    ("event_type", "change", "reason"),
    [
        ("input_purchase", {"on_credit": "maybe"}, "on_credit: not a boolean"),
        ("input_purchase", {"category": "seedz"}, "category: not one of"),
        ("loan_repayment", {"days_late": "late"}, "days_late: not a integer"),
        ("loan_repayment", {"days_late": "-1"}, "days_late: below minimum 0"),
        ("loan_repayment", {"loan_id": ""}, "loan_id: required for loan_repayment"),
        ("loan_disbursement", {"due_date": "soon"}, "due_date: not a timestamp"),
        ("membership", {"action": "promote"}, "action: not one of join|leave"),
        ("mobile_payment", {"direction": "sideways"}, "direction: not one of in|out"),
        ("training_completed", {"topic": ""}, "topic: required for training_completed"),
        ("green_practice", {"verified": "perhaps"}, "verified: not a boolean"),
    ],
)
def test_payload_rules_per_type(
    store: Store, tmp_path: Path, event_type: str, change: dict[str, str], reason: str
) -> None:
    path = write_csv(
        tmp_path / "events" / "x.csv", [event_row(event_id="e", event_type=event_type, **change)]
    )
    assert store.ingest(path).totals()["quarantined"] == 1
    assert reason in _reasons(store)[0]


def test_one_row_can_break_several_rules_and_all_are_named(store: Store, tmp_path: Path) -> None:
    row = event_row(event_id="e", member_id="", amount_cny="abc", quality_grade="Q")
    store.ingest(write_csv(tmp_path / "events" / "x.csv", [row]))
    reasons = _reasons(store)[0].split("; ")
    assert {"member_id: required", "amount_cny: not a number"} <= set(reasons)
    assert any(r.startswith("quality_grade: not one of") for r in reasons)


def test_structurally_broken_csv_line_is_quarantined_not_lost(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "events" / "x.csv", [event_row(event_id="e1")], extra_lines=["e2,m1,c1"])
    report = store.ingest(path)
    assert report.totals() == {
        "rows_read": 2,
        "accepted": 1,
        "duplicates": 0,
        "quarantined": 1,
        "quarantined_before": 0,
    }
    assert "malformed line" in _reasons(store)[0]


def test_clock_skew_allowance(store: Store, tmp_path: Path) -> None:
    from tests.utils.feeds import NOW

    slightly_ahead = NOW + timedelta(seconds=60)
    far_ahead = NOW + timedelta(hours=1)
    rows = [
        event_row(event_id="skew", event_time=slightly_ahead, recorded_after=timedelta(0)),
        event_row(event_id="future", event_time=far_ahead, recorded_after=timedelta(0)),
    ]
    report = store.ingest(write_csv(tmp_path / "events" / "x.csv", rows))
    assert report.totals()["accepted"] == 1
    assert store.log.read_events("produce_delivery").column("event_id").to_pylist() == ["skew"]
    assert datetime(2026, 6, 1, tzinfo=UTC) == NOW


BAD_IDS = {
    "10,000 characters": "m" * 10_000,
    "NUL": "m00\x0001",
    "right-to-left override": "m\u202e1000",
    "path": "../../etc/passwd",
    "double quote": 'm"1',
    "single quote": "m'1",
    "inner space": "m 1",
    "Chinese": "社员1",
}


@pytest.mark.parametrize("column", ["event_id", "member_id", "coop_id"])
@pytest.mark.parametrize("value", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_an_id_the_api_refuses_is_quarantined_naming_its_column(
    store: Store, tmp_path: Path, column: str, value: str
) -> None:
    from pydantic import ValidationError

    from serving.schemas import ScoreRequest

    with pytest.raises(ValidationError):
        ScoreRequest(member_id=value, amount_cny=1000, term_months=12, purpose="livestock")
    bad = event_row(event_id="bad")
    bad[column] = value
    report = store.ingest(write_csv(tmp_path / "events" / "x.csv", [event_row(event_id="good"), bad]))
    assert report.totals()["accepted"] == 1
    assert report.totals()["quarantined"] == 1
    [reasons] = _reasons(store)
    assert reasons.startswith(f"{column}: not a valid id")


def test_loan_and_application_ids_are_held_to_the_id_pattern(store: Store, tmp_path: Path) -> None:
    row = event_row(event_id="e", event_type="loan_repayment", loan_id="L1;DROP TABLE")
    store.ingest(write_csv(tmp_path / "events" / "x.csv", [row]))
    assert _reasons(store) == [
        "loan_id: not a valid id (1 to 64 ASCII letters, digits, '_', '.', '-' or colons, "
        "first a letter or digit) for loan_repayment"
    ]
    folder = tmp_path / "world" / "applications"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text(
        "application_id,member_id,coop_id,applied_at,amount_cny,term_months,purpose\n"
        "a/../1,m1,c1,2025-05-01T00:00:00Z,5000,12,livestock\n"
        "a2,m1,c1,2025-05-01T00:00:00Z,5000,12,livestock\n",
        encoding="utf-8",
    )
    report = store.ingest(tmp_path / "world")
    assert report.by_table()["applications"]["accepted"] == 1
    assert sum(r.startswith("application_id: not a valid id") for r in _reasons(store)) == 1


def test_ids_that_fit_the_pattern_pass_padded_or_not(store: Store, tmp_path: Path) -> None:
    ok = ["M0000001", "coop-01-02", "e.1:2_3", "9" * 64, "  m-padded "]
    rows = [event_row(event_id=f"e{i}", member_id=m) for i, m in enumerate(ok)]
    report = store.ingest(write_csv(tmp_path / "events" / "x.csv", rows))
    assert report.totals()["accepted"] == len(ok)
    stored = store.log.read_events("produce_delivery", ["member_id"]).column(0).to_pylist()
    assert sorted(stored) == sorted(m.strip() for m in ok)


def test_dictionary_encoded_ids_are_checked_once_per_value_and_still_caught(
    store: Store, tmp_path: Path
) -> None:
    rows = [event_row(event_id=f"e{i}", coop_id="c01" if i % 3 else "c\u202e01") for i in range(9)]
    table = pa.Table.from_pylist(rows)
    path = tmp_path / "events" / "x.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table, path)  # the reader reads coop_id back dictionary-encoded
    report = store.ingest(path)
    assert (report.totals()["accepted"], report.totals()["quarantined"]) == (6, 3)
    assert all(r.startswith("coop_id: not a valid id") for r in _reasons(store))


_ID_ALPHABET = st.sampled_from(
    ["a", "Z", "7", "_", ".", ":", "-", " ", "\x00", "\u202e", "/", '"', "\n", "社", "é"]
)


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.lists(_ID_ALPHABET, max_size=70).map("".join)), max_size=12),
    skip=st.integers(0, 3),
    dictionary=st.booleans(),
)
def test_ids_skip_the_per_row_pattern_check_only_when_every_one_matches(
    values: list[str | None], skip: int, dictionary: bool
) -> None:
    """`matching_id_columns` checks bytes instead of running the pattern per row: it must agree."""
    column = pa.array(values, pa.string()).slice(min(skip, len(values)))
    if dictionary:
        column = column.dictionary_encode()
    expected = all(v is None or re.fullmatch(ID_PATTERN, v) for v in values[min(skip, len(values)) :])
    records = pa.table({"member_id": column})
    assert matching_id_columns(records, contract_for("events")) == ({"member_id"} if expected else set())
