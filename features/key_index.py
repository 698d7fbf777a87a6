"""A persistent index of every stored key, so a writer dedupes against the whole log without reading it.

File ingest and `POST /v1/events` share it. Below the data dir, `index/<kind>/seg-<name>.keys.arrow`
(kind: `events`, or a reference table) are Arrow IPC files, each holding the DuckDB `hash()` and the text
of the keys of some part files, sorted by hash. Each segment's schema metadata names the part files it
covers (relative to the data dir), the segments it replaced (compaction), its row count, and what its
hashes mean: the format version, the hash function, the DuckDB version and the hash of a fixed probe key.

Why it stays exact and crash-safe without fsyncing a segment: a segment is written by temp file and
rename, after or beside the parts it covers, and trusted only while every part it covers exists. `open`
(at a writer's start, or after a crashed batch) checks that: it drops a segment that is unreadable,
short, made by another hash, replaced by a compacted one, or covers a missing part, and rebuilds the keys
of every part no segment covers from the part itself. So a crash between a part and its segment, or a
segment lost with the page cache, costs one re-read of those parts, never a lost or doubled event; and a
DuckDB whose `hash()` changed rebuilds the whole index. A hash match is only a candidate: `KeySet`
compares key texts, so colliding keys are still told apart.

In memory the keys live in a `KeySet` per kind (64-bit hashes in sorted runs behind a Bloom filter, key
texts beside them). A long-lived writer (the API server) keeps it and, under the writer lock, `refresh`es
it with the segments other processes wrote since; segments are merged by size tier so their number stays
small.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from features.event_log import EventLog

FORMAT_VERSION = "1"
HASH_FUNCTION = "duckdb hash(VARCHAR)"
SEGMENT_SUFFIX = ".keys.arrow"
_PROBE = "coopscore key index probe"
# Segments of the same size tier (tier = log16 of their row count) are merged once this many exist.
_MERGE_AT = 16
# A rebuild reads the keys of this many stored rows per segment.
_REBUILD_ROWS = 2_000_000
# Only segments smaller than this are merged: a big ingest's segments are big enough already.
_MERGE_BELOW = 1 << 16
SEGMENT_SCHEMA = pa.schema([pa.field("h", pa.uint64(), nullable=False), pa.field("k", pa.string())])


_MIN_FILTER_BITS = 27  # 16 MiB to start; grown 4x whenever more than 1/16 of the bits are in use
_MAX_FILTER_BITS = 31  # 256 MiB at most
# Sorted runs of one size tier (log16 of their length) are merged once 16 exist; runs of 64Ki keys or
# more are never merged, so adding a small run never costs a merge of millions (a POST's latency).
_RUN_TIER_BASE = 16
_MERGE_RUNS_BELOW = 1 << 16


class KeySet:
    """Every key stored for one table, for exact dedupe at the cost of a few bytes per key.

    Keys are held as 64-bit hashes in sorted runs (one per chunk; the smallest merged when there are many),
    behind a one-hash Bloom filter that answers "certainly new" for almost every new key without a
    search. A hash match is only a candidate: the key text kept beside it is compared, so two keys
    whose hashes collide are still told apart.
    """

    def __init__(self) -> None:
        self._texts: list[pa.Array] = []
        self._text_starts: list[int] = []
        self._positions = 0
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._count = 0
        self._bits_log2 = _MIN_FILTER_BITS
        self._bits = np.zeros(1 << (self._bits_log2 - 3), np.uint8)

    def __len__(self) -> int:
        return self._count

    def load(self, hashes: np.ndarray, keys: pa.Array) -> None:
        """Add keys known to be distinct (read back from the log) without checking them."""
        order = np.argsort(hashes, kind="stable")  # a key-index segment comes sorted: one linear pass
        base = self._keep_texts(keys)
        self._add_run(hashes[order], self._positions_of(order, base))

    def dedupe(self, hashes: np.ndarray, rows: np.ndarray, keys: pa.Array) -> np.ndarray:
        """For the keys `keys[rows]` with 64-bit hashes `hashes`, mark each that repeats an earlier one
        among them or a key already in the set; remember the others. Returns the marks (a bool array).
        """
        return self.dedupe_sorted(hashes, rows, keys)[0]

    def dedupe_sorted(
        self, hashes: np.ndarray, rows: np.ndarray, keys: pa.Array
    ) -> tuple[np.ndarray, np.ndarray]:
        """`dedupe`, also returning the positions (in `hashes`) of the keys kept, in hash order: what a
        key-index segment stores, without sorting again."""
        n = len(hashes)
        drop = np.zeros(n, np.bool_)
        if n == 0:
            return drop, np.zeros(0, np.intp)
        order = np.argsort(hashes)
        ordered = hashes[order]
        same = ordered[1:] == ordered[:-1]
        if same.any():
            # Rows sharing a hash (nearly always the same key sent twice): keep the first of each key.
            shared = np.zeros(n, np.bool_)
            shared[1:] |= same
            shared[:-1] |= same
            candidates = np.sort(order[shared])
            texts = keys.take(pa.array(rows[candidates]))
            firsts = (
                pa.table({"k": texts, "i": pa.array(candidates)})
                .group_by("k", use_threads=False)
                .aggregate([("i", "min")])
                .column("i_min")
                .to_numpy()
            )
            drop[candidates] = True
            drop[firsts] = False
        might = np.empty(n, np.bool_)
        might[order] = self._might_contain(ordered)
        maybe = np.flatnonzero(might & ~drop)
        if maybe.size:
            found = self._contains(hashes[maybe], keys.take(pa.array(rows[maybe])))
            drop[maybe[found]] = True
        kept = order[~drop[order]]
        if kept.size:
            base = self._keep_texts(keys)
            self._add_run(hashes[kept], self._positions_of(rows[kept], base))
        return drop, kept

    def _keep_texts(self, keys: pa.Array) -> int:
        if not pa.types.is_string(keys.type):
            keys = keys.cast(pa.string())
        base = self._positions
        self._texts.append(keys)
        self._text_starts.append(base)
        self._positions += len(keys)
        return base

    def _positions_of(self, rows: np.ndarray, base: int) -> np.ndarray:
        """Where the texts of `rows` (of the text array starting at `base`) are; 4 bytes each while
        that is enough."""
        positions = rows.astype(np.int64) + base
        return positions.astype(np.uint32) if self._positions <= np.iinfo(np.uint32).max else positions

    def _texts_at(self, positions: np.ndarray) -> pa.Array:
        starts = np.asarray(self._text_starts, np.int64)
        positions = positions.astype(np.int64)
        which = np.searchsorted(starts, positions, side="right") - 1
        if which.size and (which == which[0]).all():
            return self._texts[int(which[0])].take(pa.array(positions - starts[which[0]]))
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(len(starts) + 1))
        parts = [
            self._texts[i].take(pa.array(positions[order[bounds[i] : bounds[i + 1]]] - starts[i]))
            for i in range(len(starts))
            if bounds[i + 1] > bounds[i]
        ]
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return pa.concat_arrays(parts).take(pa.array(inverse))

    def _contains(self, hashes: np.ndarray, texts: pa.Array) -> np.ndarray:
        """Exact membership of each key (hash and text) in the set."""
        found = np.zeros(len(hashes), np.bool_)
        order = np.argsort(hashes)
        ordered = hashes[order]
        for run_hashes, run_positions in self._runs:
            at = np.searchsorted(run_hashes, ordered)
            inside = at < len(run_hashes)
            hit = np.zeros(len(ordered), np.bool_)
            hit[inside] = run_hashes[at[inside]] == ordered[inside]
            if not hit.any():
                continue
            queries, first = order[hit], at[hit]
            stored = self._texts_at(run_positions[first])
            equal = pc.equal(stored, texts.take(pa.array(queries))).to_numpy(zero_copy_only=False)
            found[queries[equal]] = True
            # A true 64-bit collision: other keys with the same hash follow in the run; check them too.
            for query, j in zip(queries[~equal].tolist(), (first[~equal] + 1).tolist(), strict=True):
                text = texts[query].as_py()
                while j < len(run_hashes) and run_hashes[j] == hashes[query]:
                    if self._texts_at(run_positions[j : j + 1])[0].as_py() == text:
                        found[query] = True
                        break
                    j += 1
        return found

    def _add_run(self, hashes: np.ndarray, positions: np.ndarray) -> None:
        """Add sorted hashes (with the positions of their texts); merge the smallest runs when many."""
        self._count += len(hashes)
        if self._count * 16 > (1 << self._bits_log2) and self._bits_log2 < _MAX_FILTER_BITS:
            while self._count * 16 > (1 << self._bits_log2) and self._bits_log2 < _MAX_FILTER_BITS:
                self._bits_log2 = min(self._bits_log2 + 2, _MAX_FILTER_BITS)
            self._bits = np.zeros(1 << (self._bits_log2 - 3), np.uint8)
            for run_hashes, _ in self._runs:
                self._set_bits(run_hashes)
        self._set_bits(hashes)
        self._runs.append((hashes, positions))
        while len(hashes) < _MERGE_RUNS_BELOW:
            tier = _run_tier(len(hashes))
            same = [run for run in self._runs if _run_tier(len(run[0])) == tier]
            if len(same) < _RUN_TIER_BASE:
                break
            self._runs = [run for run in self._runs if _run_tier(len(run[0])) != tier]
            merged = np.concatenate([h for h, _ in same])
            order = np.argsort(merged, kind="stable")  # sorted runs: timsort merges them
            hashes = merged[order]
            self._runs.append((hashes, np.concatenate([p for _, p in same])[order]))

    def _slots(self, hashes: np.ndarray) -> np.ndarray:
        return hashes >> np.uint64(64 - self._bits_log2)

    def _set_bits(self, hashes: np.ndarray) -> None:
        if not hashes.size:
            return
        slots = self._slots(hashes)
        byte = (slots >> np.uint64(3)).astype(np.intp)
        bit = np.left_shift(np.uint8(1), (slots & np.uint64(7)).astype(np.uint8))
        np.bitwise_or.at(self._bits, byte, bit)

    def _might_contain(self, hashes: np.ndarray) -> np.ndarray:
        """False where a hash is certainly not in the set (fastest for sorted hashes: the filter is then
        read front to back)."""
        slots = self._slots(hashes)
        byte = (slots >> np.uint64(3)).astype(np.intp)
        bit = np.left_shift(np.uint8(1), (slots & np.uint64(7)).astype(np.uint8))
        found: np.ndarray = np.bitwise_and(self._bits[byte], bit) != 0
        return found


def _run_tier(length: int) -> int:
    return int(math.log(max(length, 1), _RUN_TIER_BASE))


@cache
def _hash_probe() -> str:
    """DuckDB's hash of a fixed key: if a DuckDB upgrade changes `hash()`, stored segments no longer
    match what validation computes, and this tells."""
    con = duckdb.connect()
    try:
        row = con.execute("SELECT hash(?::VARCHAR)", [_PROBE]).fetchone()
    finally:
        con.close()
    assert row is not None
    return str(row[0])


def index_identity() -> dict[str, str]:
    """What a segment's hashes mean; a segment whose identity differs is rebuilt from the parts."""
    return {
        "format": FORMAT_VERSION,
        "hash": HASH_FUNCTION,
        "duckdb": duckdb.__version__,
        "probe": _hash_probe(),
    }


@dataclass
class Segment:
    """One segment file's metadata: the parts it covers, the segments it replaced, its key count."""

    name: str
    parts: list[str]
    replaces: list[str]
    rows: int
    identity: dict[str, str] = field(default_factory=dict)


def _segment_tier(rows: int) -> int:
    return int(math.log(max(rows, 1), _MERGE_AT))


def read_segment_meta(path: Path) -> Segment | None:
    """A segment's metadata, or None if the file is unreadable or shorter than it says (a crash)."""
    try:
        with pa.memory_map(str(path)) as source:
            reader = ipc.open_file(source)
            meta = {k.decode(): v.decode() for k, v in (reader.schema.metadata or {}).items()}
            rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        segment = Segment(
            path.name,
            json.loads(meta["parts"]),
            json.loads(meta["replaces"]),
            int(meta["rows"]),
            {k: meta.get(k, "") for k in ("format", "hash", "duckdb", "probe")},
        )
    except (OSError, pa.ArrowInvalid, KeyError, ValueError):
        return None
    return segment if segment.rows == rows else None


def _read_segment(path: Path) -> tuple[np.ndarray, pa.Array]:
    """A segment's hashes (sorted) and key texts, memory-mapped."""
    table = ipc.open_file(pa.memory_map(str(path))).read_all()
    hashes = table.column("h").combine_chunks()
    keys = table.column("k").combine_chunks()
    return hashes.to_numpy(zero_copy_only=False), keys


def write_segment(
    path: Path, hashes: np.ndarray, keys: pa.Array, parts: list[str], replaces: Iterable[str] = ()
) -> None:
    """Write one segment (hashes sorted, key texts beside them) whole or not at all. Not fsynced: a
    segment lost in a crash is rebuilt from its parts (see the module docstring)."""
    meta = {
        **index_identity(),
        "parts": json.dumps(sorted(parts)),
        "replaces": json.dumps(sorted(replaces)),
        "rows": str(len(hashes)),
    }
    if not pa.types.is_string(keys.type):
        keys = keys.cast(pa.string())
    table = pa.table([pa.array(hashes, pa.uint64()), keys], schema=SEGMENT_SCHEMA.with_metadata(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with ipc.new_file(str(tmp), table.schema) as writer:
            writer.write_table(table)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class KeyIndex:
    """The stored keys of every table kind of one data dir: on disk as segments, in memory as `KeySet`s.

    Use only under the data dir's writer lock. `keys(kind)` opens a kind on first use (checking and
    repairing its segments against the parts, see the module docstring); `refresh` picks up segments
    other writers added since; `forget` drops what is in memory, so the next use opens from disk again
    (after a crashed batch, or when a write of this process failed half-way).
    """

    def __init__(self, data_dir: Path, log: EventLog) -> None:
        self.data_dir = data_dir
        self.root = data_dir / "index"
        self.log = log
        self._sets: dict[str, KeySet] = {}
        self._segments: dict[str, dict[str, Segment]] = {}
        self._lock = threading.Lock()
        self.rebuilt_parts = 0  # parts whose keys were read back from the log (for tests and logs)

    def kind_dir(self, kind: str) -> Path:
        """Folder of one table kind's segments."""
        return self.root / kind

    def _part_files(self, kind: str) -> list[Path]:
        return self.log.event_files() if kind == "events" else self.log.table_files(kind)

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.data_dir).as_posix()

    def keys(self, kind: str) -> KeySet:
        """Every stored key of this kind (the set dedupe adds to)."""
        with self._lock:
            keys = self._sets.get(kind)
            if keys is None:
                keys = self._open(kind)
            return keys

    def forget(self) -> None:
        """Drop every kind from memory; the next `keys` checks the segments against the log again."""
        with self._lock:
            self._sets.clear()
            self._segments.clear()

    def refresh(self) -> None:
        """Load the segments other writers added since; a kind whose segments were replaced or removed
        is dropped and opened afresh on next use."""
        with self._lock:
            for kind in list(self._sets):
                folder = self.kind_dir(kind)
                on_disk = (
                    {p.name for p in folder.glob("seg-*" + SEGMENT_SUFFIX)} if folder.exists() else set()
                )
                loaded = self._segments[kind]
                if not loaded.keys() <= on_disk:
                    del self._sets[kind], self._segments[kind]
                    continue
                for name in sorted(on_disk - loaded.keys()):
                    segment = read_segment_meta(folder / name)
                    if segment is None or segment.identity != index_identity() or segment.replaces:
                        # Partial, foreign or a compaction of segments we hold: check from scratch.
                        del self._sets[kind], self._segments[kind]
                        break
                    hashes, texts = _read_segment(folder / name)
                    self._sets[kind].load(hashes, texts)
                    loaded[name] = segment

    def _open(self, kind: str) -> KeySet:
        """Check this kind's segments against its parts, repair what is missing, and load them."""
        folder = self.kind_dir(kind)
        identity = index_identity()
        segments: dict[str, Segment] = {}
        for tmp in folder.glob(".seg-*.tmp-*") if folder.exists() else []:
            tmp.unlink(missing_ok=True)  # a writer died before its rename: never part of the index
        for path in sorted(folder.glob("seg-*" + SEGMENT_SUFFIX)) if folder.exists() else []:
            segment = read_segment_meta(path)
            if segment is None or segment.identity != identity:
                path.unlink(missing_ok=True)  # partial (a crash) or made by another hash: rebuilt below
                continue
            segments[segment.name] = segment
        # A compaction that died before removing its inputs leaves both: the merged one wins.
        for replaced in {r for s in list(segments.values()) for r in s.replaces} & segments.keys():
            (folder / replaced).unlink(missing_ok=True)
            del segments[replaced]
        parts = {self._relative(p): p for p in self._part_files(kind)}
        covered: set[str] = set()
        for name, segment in list(segments.items()):
            if not set(segment.parts) <= parts.keys() or covered & set(segment.parts):
                # It covers a part that is gone (a crash before the part was renamed into place), or a
                # part another segment covers: its parts are read back below instead.
                (folder / name).unlink(missing_ok=True)
                del segments[name]
                continue
            covered |= set(segment.parts)
        missing = [parts[name] for name in sorted(parts.keys() - covered)]
        for segment in self._rebuild(kind, missing):
            segments[segment.name] = segment
        keys = KeySet()
        for name in sorted(segments):
            hashes, texts = _read_segment(folder / name)
            keys.load(hashes, texts)
        self._sets[kind] = keys
        self._segments[kind] = segments
        return keys

    def _rebuild(self, kind: str, parts: list[Path]) -> list[Segment]:
        """Segments for parts no segment covers, read back from the parts themselves."""
        if not parts:
            return []
        from features.validation import contract_for

        key = contract_for(kind).key[0]
        groups: list[list[Path]] = [[]]
        rows = 0
        for part in parts:
            n = pq.read_metadata(part).num_rows
            if groups[-1] and rows + n > _REBUILD_ROWS:
                groups.append([])
                rows = 0
            groups[-1].append(part)
            rows += n
        con = duckdb.connect(config={"threads": 2})
        out: list[Segment] = []
        try:
            for group in groups:
                listing = ", ".join("'" + str(p).replace("'", "''") + "'" for p in group)
                table = con.sql(
                    f"SELECT hash({key}) AS h, {key}::VARCHAR AS k FROM read_parquet([{listing}]) ORDER BY h"
                ).to_arrow_table()
                names = [self._relative(p) for p in group]
                name = f"seg-rebuilt-{group[0].stem}-{len(group)}{SEGMENT_SUFFIX}"
                hashes = table.column("h").to_numpy()
                write_segment(self.kind_dir(kind) / name, hashes, table.column("k").combine_chunks(), names)
                out.append(Segment(name, sorted(names), [], len(hashes), index_identity()))
                self.rebuilt_parts += len(group)
        finally:
            con.close()
        return out

    def add_segment(
        self, kind: str, stem: str, parts: list[Path], hashes: np.ndarray, keys: pa.Array
    ) -> None:
        """Record on disk the keys just added to `keys(kind)` (hashes sorted) for the parts that hold
        them. Runs beside the writes of those parts (see the module docstring for why that is safe)."""
        name = f"seg-{stem}{SEGMENT_SUFFIX}"
        names = [self._relative(p) for p in parts]
        write_segment(self.kind_dir(kind) / name, hashes, keys, names)
        with self._lock:
            if kind in self._segments:
                self._segments[kind][name] = Segment(name, sorted(names), [], len(hashes), index_identity())

    def compact(self) -> int:
        """Merge segments of the same size tier once `_MERGE_AT` exist (only small ones: a big ingest's
        segments are large already); returns how many merges ran. Keys in memory are unchanged."""
        merges = 0
        with self._lock:
            for kind, segments in self._segments.items():
                folder = self.kind_dir(kind)
                while True:
                    tiers: dict[int, list[Segment]] = {}
                    for segment in segments.values():
                        if segment.rows < _MERGE_BELOW:
                            tiers.setdefault(_segment_tier(segment.rows), []).append(segment)
                    full = [group for group in tiers.values() if len(group) >= _MERGE_AT]
                    if not full:
                        break
                    group = sorted(full[0], key=lambda s: s.name)
                    read = [_read_segment(folder / s.name) for s in group]
                    hashes = np.concatenate([h for h, _ in read])
                    order = np.argsort(hashes, kind="stable")
                    texts = pa.concat_arrays([t for _, t in read]).take(pa.array(order))
                    parts = sorted({p for s in group for p in s.parts})
                    replaces = [s.name for s in group]
                    name = f"seg-merged-{group[0].name.removeprefix('seg-').removesuffix(SEGMENT_SUFFIX)}"
                    name += f"-{len(group)}{SEGMENT_SUFFIX}"
                    write_segment(folder / name, hashes[order], texts, parts, replaces)
                    for old in replaces:
                        (folder / old).unlink(missing_ok=True)
                        del segments[old]
                    segments[name] = Segment(name, parts, [], len(hashes), index_identity())
                    merges += 1
        return merges
