"""Ingestion: dedupe, idempotent re-ingest, formats, reference tables, discovery and recovery."""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from features.contracts import EVENT_CONTRACTS, EVENT_TYPES, WIDE_EVENT_CONTRACT
from features.ingest import KeySet, discover
from features.readers import iter_chunks
from tests.conftest import Store
from tests.utils.feeds import event_row, varied_rows, write_csv, write_jsonl


def _stored_ids(store: Store) -> list[str]:
    return [i for t in EVENT_TYPES for i in store.log.read_events(t, ["event_id"]).column(0).to_pylist()]


def test_duplicates_within_and_across_files_are_stored_once(store: Store, tmp_path: Path) -> None:
    rows = varied_rows(count=300)
    first = write_csv(tmp_path / "events" / "a.csv", rows[:200] + rows[:10])
    second = write_jsonl(tmp_path / "events" / "b.jsonl", rows[150:])
    report = store.ingest(first, second)
    assert report.totals() == {
        "rows_read": 360,
        "accepted": 300,
        "duplicates": 60,
        "quarantined": 0,
        "quarantined_before": 0,
    }
    ids = _stored_ids(store)
    assert len(ids) == len(set(ids)) == 300


def test_reingesting_the_same_file_is_a_noop_reported_as_duplicates(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "events" / "a.csv", varied_rows(count=50), extra_lines=["broken,line"])
    first = store.ingest(path)
    again = store.ingest(path)
    assert first.totals() == {
        "rows_read": 51,
        "accepted": 50,
        "duplicates": 0,
        "quarantined": 1,
        "quarantined_before": 0,
    }
    # Skipped by checksum: its rows are the earlier run's duplicates, its bad line already in quarantine.
    assert again.totals() == {
        "rows_read": 51,
        "accepted": 0,
        "duplicates": 50,
        "quarantined": 1,
        "quarantined_before": 1,
    }
    assert [s.status for s in (*first.sources, *again.sources)] == ["stored with quarantined rows"] * 2
    assert again.sources[0].skipped_as_already_ingested
    assert len(_stored_ids(store)) == 50
    quarantine = list(store.quarantine_dir.glob("batch=*/*.parquet"))
    assert sum(pq.read_metadata(q).num_rows for q in quarantine) == 1


def test_same_rows_in_a_new_file_are_deduplicated_by_event_id(store: Store, tmp_path: Path) -> None:
    rows = varied_rows(count=40)
    store.ingest(write_csv(tmp_path / "events" / "a.csv", rows))
    resent = store.ingest(write_csv(tmp_path / "events" / "resent.csv", rows[::-1]))
    assert resent.totals()["duplicates"] == 40
    assert not resent.sources[0].skipped_as_already_ingested
    assert len(_stored_ids(store)) == 40


def test_chunked_ingest_stores_exactly_what_one_chunk_stores(store: Store, tmp_path: Path) -> None:
    rows = varied_rows(count=2500)
    path = write_csv(tmp_path / "events" / "a.csv", rows + rows[:700])
    report = store.ingest(path, chunk_rows=1000)
    assert report.totals()["accepted"] == 2500
    assert report.totals()["duplicates"] == 700
    assert sorted(_stored_ids(store)) == sorted(r["event_id"] for r in rows)


def test_jsonl_broken_lines_are_quarantined_and_the_rest_kept(store: Store, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "events" / "a.jsonl",
        varied_rows(count=30),
        extra_lines=['{"event_id": "x1", "member_id": ', "[1, 2]"],
    )
    report = store.ingest(path)
    assert report.totals() == {
        "rows_read": 32,
        "accepted": 30,
        "duplicates": 0,
        "quarantined": 2,
        "quarantined_before": 0,
    }


def test_parquet_input_with_typed_columns(store: Store, tmp_path: Path) -> None:
    rows = varied_rows(count=100)
    table = pa.Table.from_pylist(rows).select(WIDE_EVENT_CONTRACT.names)
    # A Parquet export from another system: typed money column, string timestamps.
    amounts = pa.array([float(r["amount_cny"]) if r["amount_cny"] else None for r in rows], pa.float64())
    table = table.set_column(table.schema.get_field_index("amount_cny"), "amount_cny", amounts)
    path = tmp_path / "events" / "a.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table, path)
    report = store.ingest(path)
    assert report.totals()["accepted"] == 100
    delivered = store.log.read_events("produce_delivery", ["amount_cny"]).column(0).to_pylist()
    assert delivered and all(a == 301.2 for a in delivered)


def test_reference_tables_are_deduplicated_by_key(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "world" / "applications"
    folder.mkdir(parents=True)
    header = ["application_id", "member_id", "coop_id", "applied_at", "amount_cny", "term_months", "purpose"]
    good = ["a1", "m1", "c1", "2025-05-01T00:00:00Z", "5000", "12", "livestock"]
    with (folder / "applications.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerow(good)
        writer.writerow(good)
        writer.writerow(["a2", "m2", "c1", "2025-05-02T00:00:00Z", "5000", "0", "livestock"])
        writer.writerow(["a3", "m3", "c1", "2025-05-02T00:00:00Z", "5000", "6", "gambling"])
    report = store.ingest(tmp_path / "world")
    assert report.by_table()["applications"] == {
        "files": 1,
        "rows_read": 4,
        "accepted": 1,
        "duplicates": 1,
        "quarantined": 2,
        "quarantined_before": 0,
    }
    assert store.log.read_table("applications").column("application_id").to_pylist() == ["a1"]


def test_discovery_by_folder_and_columns_never_reads_truth(tmp_path: Path) -> None:
    world = tmp_path / "world"
    write_csv(world / "events" / "c01" / "2024-01.csv", varied_rows(count=3))
    write_csv(world / "exports" / "unnamed.csv", varied_rows(count=3))
    write_csv(world / "truth" / "events.csv", varied_rows(count=3))
    (world / "manifest.json").write_text("{}")
    (world / "notes.docx").write_text("not data")
    found, unrecognised = discover([world])
    assert [(f.path.relative_to(world).as_posix(), f.kind, f.problem) for f in found] == [
        ("events/c01/2024-01.csv", "events", None),
        ("exports/unnamed.csv", "events", None),
    ]
    assert len(unrecognised) == 1 and "notes.docx" in unrecognised[0]


def test_crashed_batch_quarantine_is_replaced_on_recovery(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "events" / "a.csv", [event_row(event_id="e1", member_id="")])
    store.ledger.start_batch("dead-batch", "test")  # a batch whose process died
    dead = store.quarantine_dir / "batch=dead-batch"
    dead.mkdir(parents=True)
    (dead / "part-dead-batch-00001.parquet").write_bytes(b"half")
    report = store.ingest(path)
    assert report.recovered_batches == ["dead-batch"]
    assert not dead.exists()
    assert store.ledger.crashed_batches() == []


def test_ledger_checksum_changes_with_new_data(store: Store, tmp_path: Path) -> None:
    empty = store.ledger.checksum()
    store.ingest(write_csv(tmp_path / "events" / "a.csv", varied_rows(count=5)))
    once = store.ledger.checksum()
    store.ingest(write_csv(tmp_path / "events" / "b.csv", varied_rows(count=5, prefix="f")))
    assert len({empty, once, store.ledger.checksum()}) == 3


def test_small_files_are_pooled_and_counted_per_source(store: Store, tmp_path: Path) -> None:
    rows = varied_rows(count=600)
    paths = [write_csv(tmp_path / "events" / f"{i:02d}.csv", rows[i * 20 : (i + 1) * 20]) for i in range(30)]
    paths.append(write_csv(tmp_path / "events" / "resent.csv", rows[:5], extra_lines=["x,y"]))
    report = store.ingest(tmp_path / "events")
    assert report.totals() == {
        "rows_read": 606,
        "accepted": 600,
        "duplicates": 5,
        "quarantined": 1,
        "quarantined_before": 0,
    }
    resent = next(s for s in report.sources if s.source.endswith("resent.csv"))
    assert (resent.accepted, resent.duplicates, resent.quarantined) == (0, 5, 1)
    assert all(s.accepted == 20 for s in report.sources if not s.source.endswith("resent.csv"))
    # One pooled write per event type, not one per tiny file.
    assert len(store.log.event_files()) == len(EVENT_TYPES)
    assert len(paths) == 31


def _weak_hashes(keys: list[str], buckets: int) -> np.ndarray:
    """A deliberately bad 64-bit 'hash' that makes different keys collide all the time."""
    return np.array([zlib.crc32(k.encode()) % buckets for k in keys], np.uint64)


def test_key_set_tells_apart_keys_whose_hashes_collide() -> None:
    keys = KeySet()
    first = ["a", "b", "a", "c"]
    fake = {"a": 7, "b": 7, "c": 9, "d": 7, "e": 9}
    drop = keys.dedupe(np.array([fake[k] for k in first], np.uint64), np.arange(4), pa.array(first))
    assert drop.tolist() == [False, False, True, False]
    second = ["x", "b", "d", "a", "e", "d"]
    rows = np.arange(1, 6)  # "x" is not offered, as a rejected row would not be
    drop = keys.dedupe(
        np.array([fake[k] for k in second[1:]], np.uint64), rows, pa.array(second, pa.string())
    )
    assert drop.tolist() == [True, False, True, False, True]
    assert len(keys) == 5


def test_key_set_matches_a_set_over_many_chunks_and_merges() -> None:
    rng = np.random.default_rng(3)
    keys, seen = KeySet(), set()
    for _ in range(40):  # more chunks than runs are kept apart, so runs get merged
        batch = [f"k{int(i)}" for i in rng.integers(0, 3000, 120)]
        drop = keys.dedupe(_weak_hashes(batch, 64), np.arange(len(batch)), pa.array(batch))
        expected = []
        for key in batch:
            expected.append(key in seen)
            seen.add(key)
        assert drop.tolist() == expected
    assert len(keys) == len(seen)


def test_typed_parquet_is_stored_as_read_except_padded_ids_and_blank_text(
    store: Store, tmp_path: Path
) -> None:
    rows = varied_rows(count=22)
    rows[1]["member_id"] = "  m0042 "  # produce_delivery: a padded id is trimmed
    rows[12]["product"] = ""  # produce_delivery: a blank required value is quarantined
    table = pa.Table.from_pylist(rows).select(WIDE_EVENT_CONTRACT.names)
    amounts = pa.array([float(r["amount_cny"]) if r["amount_cny"] else None for r in rows], pa.float64())
    amounts = pc.if_else(pa.array([i == 2 for i in range(22)]), -1.0, amounts)  # input_purchase
    table = table.set_column(table.schema.get_field_index("amount_cny"), "amount_cny", amounts)
    stamps = pc.strptime(table.column("event_time"), "%Y-%m-%dT%H:%M:%SZ", "us").cast(
        pa.timestamp("us", tz="UTC")
    )
    table = table.set_column(table.schema.get_field_index("event_time"), "event_time", stamps)
    path = tmp_path / "events" / "typed.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table, path)
    report = store.ingest(path)
    assert report.totals() == {
        "rows_read": 22,
        "accepted": 20,
        "duplicates": 0,
        "quarantined": 2,
        "quarantined_before": 0,
    }
    delivered = store.log.read_events("produce_delivery")
    assert delivered.column("member_id").to_pylist() == ["m0042"]
    assert delivered.schema.equals(EVENT_CONTRACTS["produce_delivery"].arrow_schema(), check_metadata=True)
    quarantine = pq.read_table(next(store.quarantine_dir.glob("batch=*/*.parquet")))
    assert quarantine.column("reasons").to_pylist() == [
        "amount_cny: below minimum 0",
        "product: required for produce_delivery",
    ]
    assert quarantine.column("record_index").to_pylist() == [2, 12]


def test_csv_is_read_in_ranges_without_losing_quoted_newlines_or_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    lines = ["a,b,c"]
    expected = []
    for i in range(20_000):
        if i % 997 == 5:
            lines.append(f"{i},broken")  # a malformed line, at physical line len(lines) + 1
            continue
        value = f'"v{i}\nnext ""quoted"""' if i % 501 == 0 else f"v{i}"
        lines.append(f"{i},{value},x")
        expected.append([str(i), f'v{i}\nnext "quoted"' if i % 501 == 0 else f"v{i}", "x"])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    chunks = list(iter_chunks(path, chunk_rows=1000))
    assert len(chunks) > 3
    got = [[str(r["a"]), str(r["b"]), str(r["c"])] for c in chunks for r in c.records.to_pylist()]
    assert got == expected
    assert [c.first_record_index for c in chunks] == list(
        np.cumsum([0] + [c.records.num_rows for c in chunks[:-1]])
    )
    broken = [b for c in chunks for b in c.broken]
    assert [b.text for b in broken] == [f"{i},broken" for i in range(20_000) if i % 997 == 5]
    # Line numbers count records (a quoted newline does not start a new one); the header is line 1.
    assert [b.line_number for b in broken] == [2 + i for i in range(20_000) if i % 997 == 5]


def test_each_chunk_is_deduplicated_against_the_one_still_being_stored(store: Store, tmp_path: Path) -> None:
    # Every chunk of 100 rows repeats 30 keys of the chunk before it, whose dedupe and writes run in the
    # background while the next chunk is validated: the repeats must still be caught, and counted.
    rows = varied_rows(count=700)
    sent = []
    for i in range(7):
        sent += rows[i * 100 : i * 100 + 70] + (rows[(i - 1) * 100 : (i - 1) * 100 + 30] if i else [])
        sent += [] if i else rows[70:100]
    path = write_csv(tmp_path / "events" / "a.csv", sent)
    report = store.ingest(path, chunk_rows=200)  # CSV ranges of about 100 rows
    expected = sorted({r["event_id"] for r in sent})
    assert report.totals() == {
        "rows_read": len(sent),
        "accepted": len(expected),
        "duplicates": len(sent) - len(expected),
        "quarantined": 0,
        "quarantined_before": 0,
    }
    assert sorted(_stored_ids(store)) == expected
    assert len(store.log.event_files()) > len(EVENT_TYPES)  # it really was stored chunk by chunk


def test_a_failed_background_write_fails_the_ingest(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store.log, "append_events", broken)
    path = write_csv(tmp_path / "events" / "a.csv", varied_rows(count=300))
    with pytest.raises(OSError, match="disk full"):
        store.ingest(path, chunk_rows=200)
    assert store.ledger.crashed_batches()  # started, never finished: recovered by the next run
