"""The persistent key index: exact dedupe, collisions, crash repair, rebuilds and concurrent writers."""

from __future__ import annotations

import json
import threading
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from features.contracts import EVENT_TYPES
from features.event_log import EventLog
from features.ingest import RecordIngest, _fetch, new_connection
from features.key_index import SEGMENT_SUFFIX, KeyIndex, read_segment_meta, write_segment
from features.ledger import IngestLedger
from features.validation import EVENTS, clean_text_columns, contract_for, matching_id_columns, validation_plan
from tests.conftest import Store, limits
from tests.utils.feeds import event_row, varied_rows, write_csv


def _stored_ids(log: EventLog) -> list[str]:
    return [i for t in EVENT_TYPES for i in log.read_events(t, ["event_id"]).column(0).to_pylist()]


def _segments(store: Store) -> list[Path]:
    return sorted((store.data_dir / "index" / EVENTS).glob("seg-*" + SEGMENT_SUFFIX))


def _service(store: Store) -> RecordIngest:
    return RecordIngest(store.log, IngestLedger(store.ledger.path), store.quarantine_dir)


def _post(service: RecordIngest, rows: list[dict[str, str]]) -> dict[str, int]:
    payload: list[dict[str, object]] = [dict(r) for r in rows]
    report, _ = service.ingest(payload, "api:test", limits())
    return report.totals()


def test_cli_and_api_share_one_index_and_store_each_event_once(store: Store, tmp_path: Path) -> None:
    rows = varied_rows(count=300, prefix="s")
    store.ingest(write_csv(tmp_path / "feed" / "a.csv", rows[:200]))
    assert _segments(store), "file ingest writes index segments"
    service = _service(store)
    try:
        totals = _post(service, rows[150:])  # 50 already stored by the CLI, 100 new
        assert (totals["accepted"], totals["duplicates"]) == (100, 50)
        again = _post(service, rows[250:] + rows[250:260])
        assert (again["accepted"], again["duplicates"]) == (0, 60)
        # The CLI after the API: it opens the index from disk, including the API's segments.
        report = store.ingest(write_csv(tmp_path / "feed2" / "b.csv", rows))
        assert report.totals()["accepted"] == 0
        more = varied_rows(count=20, prefix="late")
        store.ingest(write_csv(tmp_path / "feed3" / "c.csv", more))
        # ...and the API picks up the CLI's new segments under the writer lock.
        assert _post(service, more)["duplicates"] == 20
    finally:
        service.close()
    ids = _stored_ids(store.log)
    assert len(ids) == len(set(ids)) == 320


def _weak(keys: list[str]) -> np.ndarray:
    """A deliberately bad 'hash' under which different keys collide all the time."""
    return np.array([zlib.crc32(k.encode()) % 5 for k in keys], np.uint64)


def test_colliding_hashes_in_stored_segments_are_told_apart_by_key_text(store: Store, tmp_path: Path) -> None:
    rows = varied_rows(count=40, prefix="k")
    store.ingest(write_csv(tmp_path / "feed" / "a.csv", rows))
    (segment,) = _segments(store)
    meta = read_segment_meta(segment)
    assert meta is not None
    # The same keys and parts, under a 'hash' that makes different keys collide all the time.
    stored = [r["event_id"] for r in rows]
    hashes = _weak(stored)
    order = np.argsort(hashes, kind="stable")
    write_segment(segment, hashes[order], pa.array(stored).take(pa.array(order)), meta.parts)
    index = KeyIndex(store.data_dir, store.log)
    keys = index.keys(EVENTS)
    assert index.rebuilt_parts == 0, "the segment covers the parts: nothing is read back"
    offered = [stored[3], "new1", stored[39], "new2", "new1", stored[0]]
    drop = keys.dedupe(_weak(offered), np.arange(len(offered)), pa.array(offered))
    assert drop.tolist() == [True, False, True, False, True, True]
    assert len(set(_weak(offered + stored).tolist())) <= 5


def test_a_part_whose_segment_was_lost_is_repaired_from_the_part(store: Store, tmp_path: Path) -> None:
    rows = varied_rows(count=120, prefix="c")
    service = _service(store)
    try:
        _post(service, rows[:60])
        _post(service, rows[60:])
    finally:
        service.close()
    segments = _segments(store)
    assert len(segments) == 2
    # A crash after the parts were renamed into place but before the segment was: no segment at all.
    segments[1].unlink()
    # And a segment cut short by a crash (never fsynced): unreadable, so dropped and rebuilt.
    data = segments[0].read_bytes()
    segments[0].write_bytes(data[: len(data) // 2])
    index = KeyIndex(store.data_dir, store.log)
    assert len(index.keys(EVENTS)) == 120
    assert index.rebuilt_parts == len(store.log.event_files())
    report = store.ingest(write_csv(tmp_path / "feed" / "again.csv", rows[::-1]))
    assert (report.totals()["accepted"], report.totals()["duplicates"]) == (0, 120)
    ids = _stored_ids(store.log)
    assert len(ids) == len(set(ids)) == 120


def test_a_segment_covering_a_part_that_never_landed_is_dropped(store: Store, tmp_path: Path) -> None:
    rows = varied_rows(count=70, prefix="g")
    store.ingest(write_csv(tmp_path / "feed" / "a.csv", rows))
    (segment,) = _segments(store)
    meta = read_segment_meta(segment)
    assert meta is not None
    # A crash after the segment was renamed but before one of its parts was: that part is not there.
    gone = store.data_dir / meta.parts[0]
    lost = {
        i for i in store.log.read_events(gone.parent.name.split("=")[1], ["event_id"]).column(0).to_pylist()
    }
    gone.unlink()
    index = KeyIndex(store.data_dir, store.log)
    assert len(index.keys(EVENTS)) == 70 - len(lost)
    assert not segment.exists()
    # Ingesting the events again (other bytes: the same file would be skipped as done) stores exactly
    # the lost ones, once.
    report = store.ingest(write_csv(tmp_path / "feed2" / "a.csv", rows[::-1]))
    assert report.totals()["accepted"] == len(lost)
    ids = _stored_ids(store.log)
    assert len(ids) == len(set(ids)) == 70


def test_a_segment_made_by_another_hash_is_rebuilt(store: Store, tmp_path: Path) -> None:
    rows = varied_rows(count=50, prefix="h")
    store.ingest(write_csv(tmp_path / "feed" / "a.csv", rows))
    (segment,) = _segments(store)
    table = ipc.open_file(pa.memory_map(str(segment))).read_all()
    meta = dict(table.schema.metadata)
    meta[b"duckdb"] = b"0.0.1"
    meta[b"probe"] = b"12345"
    # Same keys but other hash values, as an older DuckDB's hash() would give.
    other = table.set_column(0, "h", pa.array(np.arange(50, dtype=np.uint64))).replace_schema_metadata(meta)
    with ipc.new_file(str(segment), other.schema) as writer:
        writer.write_table(other)
    index = KeyIndex(store.data_dir, store.log)
    keys = index.keys(EVENTS)
    assert index.rebuilt_parts == len(store.log.event_files())
    assert len(keys) == 50
    rebuilt = [read_segment_meta(p) for p in _segments(store)]
    assert all(m is not None and m.identity["duckdb"] != "0.0.1" for m in rebuilt)
    report = store.ingest(write_csv(tmp_path / "feed2" / "a.csv", rows[::-1]))
    assert report.totals()["duplicates"] == 50


def test_small_segments_are_merged_and_stay_exact(store: Store) -> None:
    service = _service(store)
    try:
        for i in range(20):
            _post(service, varied_rows(count=5, prefix=f"m{i}-"))
    finally:
        service.close()
    segments = _segments(store)
    assert len(segments) < 20
    merged = [m for p in segments if (m := read_segment_meta(p)) is not None and m.replaces]
    assert merged and len(merged[0].replaces) == 16
    index = KeyIndex(store.data_dir, store.log)
    assert len(index.keys(EVENTS)) == 100
    assert index.rebuilt_parts == 0
    # A compaction that died before deleting its inputs: both on disk, the merged one wins.
    leftover = store.data_dir / "index" / EVENTS / merged[0].replaces[0]
    write_segment(leftover, np.array([1], np.uint64), pa.array(["m0-00000000"]), json.loads("[]"))
    again = KeyIndex(store.data_dir, store.log)
    assert len(again.keys(EVENTS)) == 100
    assert not leftover.exists()


def test_concurrent_api_and_cli_ingest_store_every_event_once(store: Store, tmp_path: Path) -> None:
    rows = varied_rows(count=2_000, prefix="x")
    feeds = [write_csv(tmp_path / f"feed{i}" / "f.csv", rows[i * 500 : i * 500 + 900]) for i in range(3)]
    service = _service(store)
    errors: list[BaseException] = []

    def api() -> None:
        try:
            for start in range(0, 2_000, 100):
                _post(service, rows[start : start + 100])
        except BaseException as exc:
            errors.append(exc)

    def cli() -> None:
        try:
            ledger = IngestLedger(store.ledger.path)
            cli_store = Store(
                store.data_dir,
                EventLog(store.log.events_dir, store.log.tables_dir),
                ledger,
                store.quarantine_dir,
            )
            for feed in feeds:
                cli_store.ingest(feed, chunk_rows=300)
            ledger.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=api), threading.Thread(target=cli)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    service.close()
    assert not errors, errors
    ids = _stored_ids(store.log)
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert set(ids) == {r["event_id"] for r in rows}


@pytest.mark.parametrize("count", [1, 7, 300])
def test_small_queries_planned_once_return_what_the_relation_path_returns(count: int) -> None:
    rows = varied_rows(count=count, prefix="q")
    rows[0] = event_row(event_id="q-bad", amount_cny="12,5元", member_id=" m1 ")
    if count > 2:
        rows[1] = {**event_row(event_id=" padded "), "event_type": "nonsense", "event_time": "yesterday"}
        rows[2] = rows[3 % count]
    table = pa.table({k: pa.array([r[k] for r in rows], pa.string()) for k in rows[0]})
    contract = contract_for(EVENTS)
    plan = validation_plan(
        EVENTS,
        table.schema,
        limits(),
        clean_text_columns(table, contract),
        matching_id_columns(table, contract),
    )
    source = table.append_column("_seq", pa.array(np.arange(count, dtype=np.int64)))
    con = new_connection()
    try:
        con.register("chunk_in", source)
        for sql in (plan.sql("chunk_in"), plan.detail_sql("chunk_in")):
            small = _fetch(con, sql, small=True)
            relation = _fetch(con, sql)
            assert small.equals(relation), sql[:80]
        assert _fetch(con, plan.sql("chunk_in"), small=True).column("_bad").to_pylist()[0] is True
    finally:
        con.close()
