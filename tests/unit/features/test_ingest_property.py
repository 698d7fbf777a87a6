"""Property: whatever bytes sit beside valid feed files, ingest never raises, and every row of the valid
files is stored exactly once, as sent.

Each example is one folder: three unmutated valid files (CSV, JSON Lines, Parquet) and a few files made
from random bytes or from valid files (their own copies, or another export) by random byte flips,
truncation, inserted quotes, newlines and other bytes, deletions and re-encoding. The event log is read
back after the run. The fast variant runs in `make test`; the `slow` one tries many more examples.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contracts import EVENT_TYPES, WIDE_EVENT_CONTRACT
from features.event_log import EventLog
from features.ingest import ingest_paths
from features.ledger import IngestLedger
from tests.utils.feeds import limits, varied_rows
from tests.utils.xlsx import write_xlsx

# Formats with a writer below: every format ingest reads.
FORMATS = ("csv", "jsonl", "parquet", "xlsx")

_VALID = {fmt: varied_rows(count=40, prefix=f"ok{fmt}-") for fmt in FORMATS}
_OTHER = varied_rows(count=40, prefix="zz")
# Payload columns an event type stores, to compare stored rows with what was sent.
_COMPARED = ("event_id", "member_id", "coop_id", "event_type")


def _csv_bytes(rows: list[dict[str, str]]) -> bytes:
    import csv

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=WIDE_EVENT_CONTRACT.names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _jsonl_bytes(rows: list[dict[str, str]]) -> bytes:
    lines = [json.dumps({k: v for k, v in r.items() if v != ""}, ensure_ascii=False) for r in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _parquet_bytes(rows: list[dict[str, str]]) -> bytes:
    columns = {n: pa.array([r[n] or None for r in rows], pa.string()) for n in WIDE_EVENT_CONTRACT.names}
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, row_group_size=10, compression="zstd")
    return sink.getvalue()


def _xlsx_bytes(rows: list[dict[str, str]]) -> bytes:
    """A real workbook (the tests' writer, read back by python-calamine): header row, then text cells."""
    import tempfile

    names = WIDE_EVENT_CONTRACT.names
    table = [list(names), *[[r[n] or None for n in names] for r in rows]]
    with tempfile.TemporaryDirectory() as folder:
        path = write_xlsx(Path(folder) / "feed.xlsx", {"feed": table})
        return path.read_bytes()


_WRITERS: dict[str, Callable[[list[dict[str, str]]], bytes]] = {
    "csv": _csv_bytes,
    "jsonl": _jsonl_bytes,
    "parquet": _parquet_bytes,
    "xlsx": _xlsx_bytes,
}
_VALID_BYTES = {fmt: _WRITERS[fmt](_VALID[fmt]) for fmt in FORMATS}
_OTHER_BYTES = {fmt: _WRITERS[fmt](_OTHER) for fmt in FORMATS}

_TOKENS = [b'"', b"\n", b"\r\n", b"\r", b",", b"\x00", b"\xff", b"{", b"}", b"\xef\xbb\xbf", "社".encode()]
_ENCODINGS = ("gb18030", "utf-16", "utf-8-sig", "latin-1", "big5")


@st.composite
def _mutation(draw: st.DrawFn) -> Callable[[bytes], bytes]:
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "reencode"]))
    where = draw(st.floats(0, 1))
    if kind == "flip":
        mask = draw(st.integers(1, 255))
        return lambda b: b if not b else _at(b, where, lambda i: b[:i] + bytes([b[i] ^ mask]) + b[i + 1 :])
    if kind == "truncate":
        return lambda b: b[: int(len(b) * where)]
    if kind == "insert":
        token = draw(st.sampled_from(_TOKENS))
        return lambda b: _at(b, where, lambda i: b[:i] + token + b[i:], end=True)
    if kind == "delete":
        length = draw(st.integers(1, 200))
        return lambda b: b if not b else _at(b, where, lambda i: b[:i] + b[i + length :])
    encoding = draw(st.sampled_from(_ENCODINGS))
    return lambda b: b.decode("utf-8", "replace").encode(encoding, "replace")


def _at(data: bytes, where: float, change: Callable[[int], bytes], *, end: bool = False) -> bytes:
    """Apply `change` at the byte position `where` (a share of the length) of `data`."""
    limit = len(data) if end else max(len(data) - 1, 0)
    return change(min(int(where * len(data)), limit))


@st.composite
def _bad_file(draw: st.DrawFn) -> tuple[str, bytes]:
    """(suffix, content): random bytes, or a valid file (its own copy or another export) mutated."""
    fmt = draw(st.sampled_from(FORMATS))
    if draw(st.booleans()) and draw(st.booleans()):
        return fmt, draw(st.binary(max_size=3000))
    base = _VALID_BYTES[fmt] if draw(st.booleans()) else _OTHER_BYTES[fmt]
    for mutate in draw(st.lists(_mutation(), min_size=1, max_size=4)):
        base = mutate(base)
    return fmt, base


def _check_folder(bad_files: list[tuple[str, bytes]]) -> None:
    with tempfile.TemporaryDirectory(prefix="coopscore-prop-") as tmp:
        root = Path(tmp)
        folder = root / "exports" / "events"
        folder.mkdir(parents=True)
        # Sorted names put the valid files first: a mutated copy of one of their rows is then its duplicate.
        for fmt in FORMATS:
            (folder / f"a-valid.{fmt}").write_bytes(_VALID_BYTES[fmt])
        for i, (fmt, content) in enumerate(bad_files):
            (folder / f"z-bad-{i}.{fmt}").write_bytes(content)
        data = root / "data"
        ledger = IngestLedger(data / "ledger.sqlite")
        log = EventLog(data / "events", data / "tables")
        try:
            report = ingest_paths(
                [root / "exports"], log, ledger, data / "quarantine", limits(), chunk_rows=16
            )
        finally:
            ledger.close()
        for source in report.sources:
            assert source.rows_read == source.accepted + source.duplicates + source.quarantined, source
            if Path(source.source).name.startswith("a-valid"):
                assert (source.status, source.accepted) == ("stored", 40), source
        stored = pa.concat_tables(
            [
                log.read_events(t, list(_COMPARED)).cast(pa.schema([(c, pa.string()) for c in _COMPARED]))
                for t in EVENT_TYPES
            ]
        )
        ids = stored.column("event_id").to_pylist()
        assert len(ids) == len(set(ids)), "an event was stored twice"
        as_stored = {row["event_id"]: row for row in stored.to_pylist()}
        for fmt in FORMATS:
            for row in _VALID[fmt]:
                assert as_stored.get(row["event_id"]) == {c: row[c] for c in _COMPARED}


_BAD_FOLDERS = st.lists(_bad_file(), min_size=1, max_size=3)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(bad_files=_BAD_FOLDERS)
def test_bad_files_beside_valid_ones_never_raise_nor_touch_the_valid_rows(
    bad_files: list[tuple[str, bytes]],
) -> None:
    _check_folder(bad_files)


@pytest.mark.slow
# About a second per example on 2 cores: 150 keep the whole suite inside its budget; run more with
# `pytest -m slow --hypothesis-seed=N` when touching the readers.
@pytest.mark.timeout(1200)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_files=_BAD_FOLDERS)
def test_bad_files_beside_valid_ones_many_more_examples(bad_files: list[tuple[str, bytes]]) -> None:
    _check_folder(bad_files)
