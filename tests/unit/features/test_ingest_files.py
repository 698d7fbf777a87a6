"""Ingest file by file: a bad file never blocks, corrupts or thins out a feed.

Each file ends stored, stored with quarantined rows, empty or failed (with a reason naming it); a failed
file is read again next run; every file accounts for every row; quarantine holds each bad record once.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from features.contracts import EVENT_TYPES
from features.ingest import IngestReport, ingest_paths
from tests.conftest import Store
from tests.utils.bad_files import corrupt_row_group, crlf_reexport, truncated_copy, write_parquet
from tests.utils.feeds import event_row, limits, varied_rows, write_csv, write_jsonl


def _stored_ids(store: Store) -> list[str]:
    return [i for t in EVENT_TYPES for i in store.log.read_events(t, ["event_id"]).column(0).to_pylist()]


def _ids(rows: list[dict[str, str]]) -> list[str]:
    return [r["event_id"] for r in rows]


def _by_name(report: IngestReport) -> dict[str, tuple[str, str | None]]:
    return {Path(s.source).name: (s.status, s.reason) for s in report.sources}


def _quarantine_rows(store: Store) -> pa.Table:
    parts = sorted(store.quarantine_dir.glob("batch=*/*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts]) if parts else pa.table({})


def _assert_every_row_accounted(report: IngestReport) -> None:
    for s in report.sources:
        assert s.rows_read == s.accepted + s.duplicates + s.quarantined, s
        assert 0 <= s.quarantined_before <= s.quarantined, s


def test_bad_files_never_stop_the_good_ones(store: Store, tmp_path: Path) -> None:
    events = tmp_path / "exports" / "events"
    good_csv, good_jsonl, good_parquet = (
        varied_rows(count=120, prefix="a"),
        varied_rows(count=80, prefix="b"),
        varied_rows(count=60, prefix="c"),
    )
    write_csv(events / "good.csv", good_csv)
    write_jsonl(events / "good.jsonl", good_jsonl)
    intact = write_parquet(tmp_path / "intact.parquet", good_parquet)
    write_parquet(events / "good.parquet", good_parquet)
    (events / "empty.csv").write_bytes(b"")
    (events / "empty.jsonl").write_bytes(b"")
    write_csv(events / "header_only.csv", [])
    truncated_copy(intact, events / "truncated.parquet")
    (events / "garbage.parquet").write_bytes(bytes(range(256)) * 40)
    nested = pa.table({"event_id": ["n1"], "event_type": ["savings_deposit"], "amount_cny": [[1.0, 2.0]]})
    pq.write_table(nested, events / "nested.parquet")
    misc = tmp_path / "exports" / "misc"
    misc.mkdir()
    (misc / "register.csv").write_text("社员编号,日期\nA1,2025-01-01\n", encoding="utf-8")
    (misc / "nothing.jsonl").write_bytes(b"")
    progress: list[tuple[int, int]] = []

    report = ingest_paths(
        [tmp_path / "exports"],
        store.log,
        store.ledger,
        store.quarantine_dir,
        limits(),
        progress=lambda done, total: progress.append((done, total)),
    )

    statuses = {name: status for name, (status, _) in _by_name(report).items()}
    assert statuses == {
        "good.csv": "stored",
        "good.jsonl": "stored",
        "good.parquet": "stored",
        "empty.csv": "empty",
        "empty.jsonl": "empty",
        "header_only.csv": "empty",
        "nothing.jsonl": "empty",
        "truncated.parquet": "failed",
        "garbage.parquet": "failed",
        "nested.parquet": "failed",
        "register.csv": "failed",
    }
    reasons = {name: reason for name, (status, reason) in _by_name(report).items() if status == "failed"}
    for name, reason in reasons.items():
        assert reason is not None and reason.startswith(name), reason
    assert "amount_cny (list<" in str(reasons["nested.parquet"])
    assert "社员编号, 日期" in str(reasons["register.csv"])
    assert sorted(_stored_ids(store)) == sorted(_ids(good_csv + good_jsonl + good_parquet))
    assert report.by_status() == {"stored": 3, "stored with quarantined rows": 0, "empty": 4, "failed": 4}
    _assert_every_row_accounted(report)
    assert progress and progress[-1][0] == progress[-1][1]
    assert all(done <= total for done, total in progress)


def test_a_failed_file_is_read_again_and_once_fixed_only_its_rows_are_stored(
    store: Store, tmp_path: Path
) -> None:
    events = tmp_path / "exports" / "events"
    first, late = varied_rows(count=90, prefix="a"), varied_rows(count=70, prefix="p")
    write_csv(events / "2025-01.csv", first)
    intact = write_parquet(tmp_path / "intact.parquet", late)
    truncated_copy(intact, events / "2025-02.parquet", keep=0.7)

    broken = store.ingest(tmp_path / "exports")
    again = store.ingest(tmp_path / "exports")
    assert _by_name(broken)["2025-02.parquet"][0] == _by_name(again)["2025-02.parquet"][0] == "failed"
    retried = next(s for s in again.sources if s.source.endswith(".parquet"))
    assert not retried.skipped_as_already_ingested  # read again, not taken for done
    assert again.totals()["accepted"] == 0

    (events / "2025-02.parquet").write_bytes(intact.read_bytes())  # the cooperative sends it again
    fixed = store.ingest(tmp_path / "exports")
    assert _by_name(fixed) == {"2025-01.csv": ("stored", None), "2025-02.parquet": ("stored", None)}
    assert [s.skipped_as_already_ingested for s in fixed.sources] == [True, False]
    assert fixed.totals()["accepted"] == len(late)
    assert sorted(_stored_ids(store)) == sorted(_ids(first + late))


def test_a_reader_failing_part_way_keeps_what_it_handed_on_and_the_rerun_adds_the_rest(
    store: Store, tmp_path: Path
) -> None:
    rows = varied_rows(count=3000)
    intact = write_parquet(tmp_path / "intact.parquet", rows, row_group_size=1000)
    path = tmp_path / "events" / "feed.parquet"
    path.parent.mkdir()
    path.write_bytes(intact.read_bytes())
    corrupt_row_group(path, 2)

    report = store.ingest(path, chunk_rows=1000)
    [source] = report.sources
    assert (source.status, source.rows_read, source.accepted) == ("failed", 2000, 2000)
    assert source.reason is not None and source.reason.startswith("feed.parquet: ")
    assert "after 2,000 records" in source.reason
    assert sorted(_stored_ids(store)) == sorted(_ids(rows[:2000]))

    path.write_bytes(intact.read_bytes())
    rerun = store.ingest(path, chunk_rows=1000)
    assert (rerun.sources[0].status, rerun.totals()["accepted"], rerun.totals()["duplicates"]) == (
        "stored",
        1000,
        2000,
    )
    assert sorted(_stored_ids(store)) == sorted(_ids(rows))


def _feed_with_bad_rows(path: Path) -> Path:
    rows = varied_rows(count=30)
    rows.insert(5, event_row(event_id="bad-amount", amount_cny="12,5元"))
    rows.insert(9, event_row(event_id="bad-id", member_id="../../etc/passwd"))
    return write_csv(path, rows, extra_lines=["e77,m1,c1"])


def test_a_reexport_does_not_quarantine_the_same_bad_records_twice(store: Store, tmp_path: Path) -> None:
    original = _feed_with_bad_rows(tmp_path / "events" / "2025-03.csv")
    first = store.ingest(original)
    crlf = store.ingest(crlf_reexport(original, tmp_path / "again" / "events" / "2025-03 (1).csv"))
    reordered = store.ingest(
        crlf_reexport(original, tmp_path / "later" / "events" / "2025-03.csv", reverse_columns=True)
    )
    as_jsonl = store.ingest(
        write_jsonl(
            tmp_path / "app" / "events" / "2025-03.jsonl",
            [
                event_row(event_id="bad-amount", amount_cny="12,5元"),
                event_row(event_id="bad-id", member_id="../../etc/passwd"),
            ],
        )
    )
    assert first.totals() == {
        "rows_read": 33,
        "accepted": 30,
        "duplicates": 0,
        "quarantined": 3,
        "quarantined_before": 0,
    }
    # Other line endings, other column order, other format: the same records, already in quarantine.
    assert crlf.totals() == {
        "rows_read": 33,
        "accepted": 0,
        "duplicates": 30,
        "quarantined": 3,
        "quarantined_before": 3,
    }
    assert (reordered.totals()["quarantined"], reordered.totals()["quarantined_before"]) == (3, 3)
    assert (as_jsonl.totals()["quarantined"], as_jsonl.totals()["quarantined_before"]) == (2, 2)
    quarantine = _quarantine_rows(store)
    assert quarantine.num_rows == 3
    assert len(set(quarantine.column("record_hash").to_pylist())) == 3
    assert sorted(quarantine.column("source").to_pylist()) == [str(original)] * 3


def test_the_same_bad_record_twice_in_one_file_is_quarantined_once(store: Store, tmp_path: Path) -> None:
    bad = event_row(event_id="x", member_id="m\u202e1")
    report = store.ingest(write_csv(tmp_path / "events" / "a.csv", [bad, event_row(event_id="ok"), bad]))
    assert (report.totals()["quarantined"], report.totals()["quarantined_before"]) == (2, 1)
    assert _quarantine_rows(store).num_rows == 1


def test_quarantine_written_before_the_index_is_indexed_on_first_need(store: Store, tmp_path: Path) -> None:
    original = _feed_with_bad_rows(tmp_path / "events" / "a.csv")
    store.ingest(original)
    # As an older coopscore left it: quarantine parts without record hashes, a ledger without the index.
    for part in store.quarantine_dir.glob("batch=*/*.parquet"):
        pq.write_table(pq.read_table(part).drop_columns(["record_hash"]), part)
    with sqlite3.connect(store.ledger.path) as con:
        con.execute("DELETE FROM quarantine_records")
    again = store.ingest(crlf_reexport(original, tmp_path / "again" / "events" / "a.csv"))
    assert (again.totals()["quarantined"], again.totals()["quarantined_before"]) == (3, 3)
    assert _quarantine_rows(store).num_rows == 3


def test_a_crashed_batchs_quarantine_is_written_again(store: Store, tmp_path: Path) -> None:
    original = _feed_with_bad_rows(tmp_path / "events" / "a.csv")
    store.ingest(original)
    [batch] = [p.name.removeprefix("batch=") for p in store.quarantine_dir.glob("batch=*")]
    # That batch dies before it finishes: its quarantine folder goes, its records must be written again.
    with sqlite3.connect(store.ledger.path) as con:
        con.execute("UPDATE batches SET status = 'started' WHERE batch_id = ?", (batch,))
        con.execute("DELETE FROM sources WHERE batch_id = ?", (batch,))
    again = store.ingest(crlf_reexport(original, tmp_path / "again" / "events" / "a.csv"))
    assert again.recovered_batches == [batch]
    assert (again.totals()["quarantined"], again.totals()["quarantined_before"]) == (3, 0)
    assert _quarantine_rows(store).num_rows == 3


_APPLICATIONS = "application_id,member_id,coop_id,applied_at,amount_cny,term_months,purpose\n"
_OUTCOMES = "application_id,defaulted,observed_at\n"
_MEMBERS = "member_id,gender,birth_year,returning_youth,left_behind_woman,county_id\n"
_COOPS = "coop_id,name,county_id,founded_at\n"


def test_every_file_of_every_kind_accounts_for_every_row(store: Store, tmp_path: Path) -> None:
    world = tmp_path / "world"
    rows = varied_rows(count=400)
    bad = [
        event_row(event_id="q1", amount_cny="-3"),
        event_row(event_id="q2", coop_id="c'1"),
        event_row(event_id="q3", event_type="produce_delivery", quality_grade="Z"),
    ]
    write_csv(world / "events" / "a.csv", rows[:150] + bad + rows[:20], extra_lines=["x,y", '"open'])
    write_jsonl(world / "events" / "b.jsonl", rows[140:260] + bad[:1], extra_lines=["{oops", "[]"])
    write_parquet(world / "events" / "c.parquet", rows[250:400] + bad[1:])
    typed = pa.Table.from_pylist(rows[:50])
    typed = typed.set_column(
        typed.schema.get_field_index("event_time"),
        "event_time",
        pa.array([r["event_time"] for r in rows[:50]]).cast(pa.timestamp("s", tz="UTC")),
    )
    pq.write_table(typed, world / "events" / "d.parquet")
    corrupt = write_parquet(
        world / "events" / "e.parquet", varied_rows(count=300, prefix="z"), row_group_size=100
    )
    corrupt_row_group(corrupt, 1)
    (world / "events" / "f.csv").write_bytes(b"")
    tables = {
        "applications": _APPLICATIONS
        + "a1,m1,c1,2025-05-01T00:00:00Z,5000,12,livestock\n" * 2
        + "a2,m1,c1,2025-05-01T00:00:00Z,5000,0,livestock\na3,m 1,c1,2025-05-01T00:00:00Z,5000,6,trade\n",
        "outcomes": _OUTCOMES + "a1,false,2026-01-01T00:00:00Z\na2,perhaps,2026-01-01T00:00:00Z\nbroken\n",
        "members": _MEMBERS + "m1,female,1980,false,true,county-01\nm2,other,1980,false,false,county-01\n",
        "cooperatives": _COOPS
        + "c1,茶叶合作社,county-01,2019-04-01T00:00:00Z\nc1,dup,county-01,2019-04-01T00:00:00Z\n",
    }
    for folder, text in tables.items():
        (world / folder).mkdir()
        (world / folder / f"{folder}.csv").write_text(text, encoding="utf-8")

    for run in range(2):  # the second run skips the files it completed and reads the failed one again
        report = store.ingest(world, chunk_rows=200)
        _assert_every_row_accounted(report)
        assert len(report.sources) == 10
        assert {Path(s.source).name for s in report.failed} == {"e.parquet"}
        assert report.by_table()["applications"] == {
            "files": 1,
            "rows_read": 4,
            "accepted": 1 - run,
            "duplicates": 1 + run,
            "quarantined": 2,
            "quarantined_before": 2 * run,
        }
    reexport = crlf_reexport(
        world / "events" / "a.csv", tmp_path / "re" / "events" / "a.csv", reverse_columns=True
    )
    report = store.ingest(reexport)
    _assert_every_row_accounted(report)
    assert report.totals()["accepted"] == 0
    assert sorted(set(_stored_ids(store))) == sorted(_stored_ids(store))
    assert set(_ids(rows)) <= set(_stored_ids(store))


def test_the_same_bytes_read_with_another_encoding_are_read_again(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "events" / "a.csv", varied_rows(count=25))

    def run(encoding: str | None) -> IngestReport:
        return ingest_paths(
            [path], store.log, store.ledger, store.quarantine_dir, limits(), encoding=encoding
        )

    first, declared, again = run(None), run("utf-8"), run("utf-8")
    assert (first.totals()["accepted"], first.sources[0].skipped_as_already_ingested) == (25, False)
    # Declaring an encoding may change what the bytes say: not taken for the file read before.
    assert (declared.totals()["duplicates"], declared.sources[0].skipped_as_already_ingested) == (25, False)
    assert again.sources[0].skipped_as_already_ingested
    assert len(_stored_ids(store)) == 25
