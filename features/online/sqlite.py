"""SQLite (WAL) online store: the embedded default.

Layout: `feature_generations` lists every refresh (its state, feature names, feature-set version,
as_of); each generation's vectors live in their own `vectors_<n>` table (member_id primary key,
as_of in microseconds, the vector as little-endian float64 bytes in feature-name order). The view
`live_vectors` points at the live generation. `commit_refresh` re-points the view and flips the
generation states in one transaction; a read is one statement on the view (or one read transaction
for large id lists), so it sees either the old generation or the new one, never a mix. WAL lets
readers go on while a refresh is written and switched.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np

from coopscore.files import private_file
from features.online.base import FeatureBatch, GenerationInfo, MemberVector, OnlineStore, Refresh

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_READ_CHUNK: Final = 500  # ids per IN (...) statement, well under SQLite's variable limit
_VECTOR_DTYPE: Final = np.dtype("<f8")

_SCHEMA: Final = (
    """
CREATE TABLE IF NOT EXISTS feature_generations (
    generation INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL CHECK (state IN ('writing', 'live', 'retired', 'dropped', 'aborted')),
    feature_set_version TEXT NOT NULL,
    feature_names TEXT NOT NULL,
    as_of_us INTEGER NOT NULL,
    member_count INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    committed_at TEXT
)""",
    # Before the first refresh the view is empty, so reads simply find nothing.
    """
CREATE VIEW IF NOT EXISTS live_vectors AS
    SELECT CAST(NULL AS TEXT) AS member_id, CAST(NULL AS INTEGER) AS as_of_us,
           CAST(NULL AS BLOB) AS vector, 0 AS generation
    WHERE 0""",
)
_READ_ONE: Final = "SELECT member_id, as_of_us, vector, generation FROM live_vectors WHERE member_id = ?"


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class SqliteOnlineStore(OnlineStore):
    """Online store in one SQLite file (WAL); safe for many reader threads and processes.

    Args:
        path: database file (created with its folder if missing).
        keep_retired: retired generations kept as tables after a switch (older ones are dropped).
        busy_timeout_ms: how long a writer waits for another writer's lock.
    """

    def __init__(self, path: Path, *, keep_retired: int = 1, busy_timeout_ms: int = 10_000):
        self.path = Path(path)
        self.keep_retired = keep_retired
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writers: dict[int, sqlite3.Connection] = {}
        # generation -> (feature names, feature-set version); committed generations never change.
        self._generations: dict[int, tuple[tuple[str, ...], str]] = {}
        private_file(self.path)  # 0600 before SQLite opens it (its -wal/-shm take the same mode)
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                con.execute(statement)
            con.execute("COMMIT")
        finally:
            con.close()

    # ---- connections ----

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN ...), so their scope is visible here.
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        con.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")
        return con

    def _reader(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            con.execute("PRAGMA query_only = 1")
            self._local.con = con
            with self._lock:
                self._connections.append(con)
        return con

    def close(self) -> None:
        """Close every connection this store opened (abandoning unfinished refreshes)."""
        with self._lock:
            for con in self._connections:
                con.close()
            self._connections.clear()
            for con in self._writers.values():
                con.close()
            self._writers.clear()
        self._local = threading.local()

    # ---- writing ----

    def begin_refresh(
        self, *, feature_names: Sequence[str], feature_set_version: str, as_of: datetime
    ) -> Refresh:
        """Create generation N (state `writing`) and its empty `vectors_N` table."""
        names = tuple(feature_names)
        if len(set(names)) != len(names) or not names:
            raise ValueError("feature names must be unique and non-empty")
        con = self._connect()
        con.execute("BEGIN IMMEDIATE")
        try:
            cursor = con.execute(
                "INSERT INTO feature_generations "
                "(state, feature_set_version, feature_names, as_of_us, created_at) "
                "VALUES ('writing', ?, ?, ?, ?)",
                (feature_set_version, json.dumps(names), _to_us(as_of), _now()),
            )
            generation = int(cursor.lastrowid or 0)
            con.execute(
                f"CREATE TABLE vectors_{generation} (member_id TEXT PRIMARY KEY, "
                "as_of_us INTEGER NOT NULL, vector BLOB NOT NULL) WITHOUT ROWID"
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            con.close()
            raise
        with self._lock:
            self._writers[generation] = con
        return Refresh(
            generation=generation,
            feature_names=names,
            feature_set_version=feature_set_version,
            as_of=as_of,
        )

    def _writer(self, refresh: Refresh) -> sqlite3.Connection:
        with self._lock:
            con = self._writers.get(refresh.generation)
        if con is None:
            raise ValueError(f"generation {refresh.generation} is not being written here")
        return con

    def online_write_batch(self, refresh: Refresh, batch: FeatureBatch) -> None:
        """Insert a batch into the generation (a member may appear once per generation)."""
        if batch.feature_names != refresh.feature_names:
            raise ValueError("batch features differ from the refresh's features")
        con = self._writer(refresh)
        as_of_us = _to_us(batch.as_of)
        values = np.ascontiguousarray(batch.values, dtype=_VECTOR_DTYPE)
        # Sorted keys append to the B-tree's right edge: far fewer page splits.
        order = sorted(range(len(batch.member_ids)), key=batch.member_ids.__getitem__)
        rows = ((batch.member_ids[i], as_of_us, values[i].tobytes()) for i in order)
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany(
                f"INSERT INTO vectors_{refresh.generation} (member_id, as_of_us, vector) VALUES (?, ?, ?)",
                rows,
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def commit_refresh(self, refresh: Refresh) -> GenerationInfo:
        """Point `live_vectors` at the generation and flip states, in one transaction."""
        con = self._writer(refresh)
        gen = refresh.generation
        committed_at = _now()
        con.execute("BEGIN IMMEDIATE")
        try:
            state = con.execute(
                "SELECT state FROM feature_generations WHERE generation = ?", (gen,)
            ).fetchone()
            if state is None or state[0] != "writing":
                raise ValueError(f"generation {gen} is not being written")
            (count,) = con.execute(f"SELECT COUNT(*) FROM vectors_{gen}").fetchone()
            con.execute("DROP VIEW IF EXISTS live_vectors")
            con.execute(
                "CREATE VIEW live_vectors AS SELECT member_id, as_of_us, vector, "
                f"{gen} AS generation FROM vectors_{gen}"
            )
            con.execute("UPDATE feature_generations SET state = 'retired' WHERE state = 'live'")
            con.execute(
                "UPDATE feature_generations SET state = 'live', member_count = ?, "
                "committed_at = ? WHERE generation = ?",
                (count, committed_at, gen),
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self._drop_old_generations(con)
        with self._lock:
            self._writers.pop(gen, None)
        con.close()
        return GenerationInfo(
            generation=gen,
            feature_set_version=refresh.feature_set_version,
            as_of=refresh.as_of,
            feature_names=refresh.feature_names,
            member_count=int(count),
            committed_at=datetime.fromisoformat(committed_at),
        )

    def _drop_old_generations(self, con: sqlite3.Connection) -> None:
        """Drop retired generations beyond `keep_retired` (readers mid-read keep their snapshot)."""
        retired = [
            int(row[0])
            for row in con.execute(
                "SELECT generation FROM feature_generations WHERE state = 'retired' ORDER BY generation DESC"
            ).fetchall()
        ]
        for gen in retired[self.keep_retired :]:
            con.execute("BEGIN IMMEDIATE")
            con.execute(f"DROP TABLE IF EXISTS vectors_{gen}")
            con.execute("UPDATE feature_generations SET state = 'dropped' WHERE generation = ?", (gen,))
            con.execute("COMMIT")
        con.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def abort_refresh(self, refresh: Refresh) -> None:
        """Drop the unfinished generation's table; the live generation is untouched."""
        with self._lock:
            con = self._writers.pop(refresh.generation, None)
        con = con or self._connect()
        try:
            if con.in_transaction:
                con.execute("ROLLBACK")
            con.execute("BEGIN IMMEDIATE")
            con.execute(f"DROP TABLE IF EXISTS vectors_{refresh.generation}")
            con.execute(
                "UPDATE feature_generations SET state = 'aborted' WHERE generation = ? AND state = 'writing'",
                (refresh.generation,),
            )
            con.execute("COMMIT")
        finally:
            con.close()

    # ---- reading ----

    def _generation_meta(self, con: sqlite3.Connection, gen: int) -> tuple[tuple[str, ...], str]:
        meta = self._generations.get(gen)
        if meta is None:
            row = con.execute(
                "SELECT feature_names, feature_set_version FROM feature_generations WHERE generation = ?",
                (gen,),
            ).fetchone()
            meta = (tuple(json.loads(row[0])), str(row[1]))
            self._generations[gen] = meta
        return meta

    def _vector(self, con: sqlite3.Connection, row: tuple[str, int, bytes, int]) -> MemberVector:
        member_id, as_of_us, blob, gen = row
        names, version = self._generation_meta(con, gen)
        values = np.frombuffer(blob, dtype=_VECTOR_DTYPE).tolist()
        return MemberVector(
            member_id=member_id,
            as_of=_from_us(as_of_us),
            feature_set_version=version,
            features=dict(zip(names, values, strict=True)),
        )

    def online_read(self, member_ids: Sequence[str]) -> list[MemberVector | None]:
        """Live vectors in the order asked; one statement (or one read transaction) per call."""
        con = self._reader()
        if len(member_ids) == 1:
            row = con.execute(_READ_ONE, (member_ids[0],)).fetchone()
            return [None if row is None else self._vector(con, row)]
        found: dict[str, MemberVector] = {}
        unique = list(dict.fromkeys(member_ids))
        # Several statements must share one snapshot: wrap them in a read transaction.
        con.execute("BEGIN")
        try:
            for start in range(0, len(unique), _READ_CHUNK):
                chunk = unique[start : start + _READ_CHUNK]
                marks = ", ".join("?" * len(chunk))
                for row in con.execute(
                    "SELECT member_id, as_of_us, vector, generation FROM live_vectors "
                    f"WHERE member_id IN ({marks})",
                    chunk,
                ):
                    found[row[0]] = self._vector(con, row)
        finally:
            con.execute("COMMIT")
        return [found.get(m) for m in member_ids]

    def member_ids(self, limit: int) -> list[str]:
        """Up to `limit` member ids of the live generation (key order)."""
        rows = self._reader().execute("SELECT member_id FROM live_vectors LIMIT ?", (limit,)).fetchall()
        return [str(row[0]) for row in rows]

    def live_generation(self) -> GenerationInfo | None:
        """The live generation's metadata, or None before the first committed refresh."""
        row = (
            self._reader()
            .execute(
                "SELECT generation, feature_set_version, as_of_us, feature_names, member_count, "
                "committed_at FROM feature_generations WHERE state = 'live'"
            )
            .fetchone()
        )
        if row is None:
            return None
        return GenerationInfo(
            generation=int(row[0]),
            feature_set_version=str(row[1]),
            as_of=_from_us(int(row[2])),
            feature_names=tuple(json.loads(row[3])),
            member_count=int(row[4]),
            committed_at=datetime.fromisoformat(row[5]),
        )
