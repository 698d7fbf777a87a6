"""SQLite decision log: every scored request, durable before its response is sent (WAL, FULL).

One fsync per request would cap throughput, so a single writer thread commits whatever rows are
waiting together (group commit); each request still waits for the commit that holds its own row.
Checkpoints (copying the WAL into the database file, with its own fsync) run on a separate thread, so
they never stall a commit that requests are waiting on.
It is the evidence for audits, the source for drift and fairness monitoring, and keeps human reviews
beside the automated decision (PIPL art. 24). Each decision records who asked (the API key's name,
never the key), the served model's digest and a hash of the inputs it scored; each review, the name
of the key that sent it. Idempotency keys are unique per caller. A log written by an earlier release
is upgraded when a server opens it (`_upgrade`).

`SqliteDecisionLogReader` opens the file read-only (`mode=ro`, `query_only`): no thread, no write
lock, never creates the database; `SqliteDecisionLogWriter` is the server's writer and reads through
the same queries.
"""

from __future__ import annotations

import fcntl
import json
import logging
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from decisions import sqlite_programmes as programmes
from decisions.base import (
    AUDIT_COLUMNS,
    OFFER_ROW_COLUMNS,
    OFFER_TERMS,
    ROW_COLUMNS,
    THIN_FILE_LIMITS,
    BudgetLine,
    DecisionLogReader,
    DecisionLogWriter,
    LossCeilingLine,
    ReservationAction,
    StoredResponse,
    SubsidyClaim,
)
from decisions.group_commit import GroupCommitQueue, Pending

log = logging.getLogger("coopscore.serving")

# The decisions table; idempotency keys are unique per caller (the API key's name), so two lenders
# that both number their requests 1, 2, 3 never meet. Rows logged before callers were recorded have
# caller '' (see `_upgrade`).
_DECISIONS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    request_id      TEXT PRIMARY KEY,
    application_id  TEXT NOT NULL,
    member_id       TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    model_name      TEXT NOT NULL,
    model_version   TEXT NOT NULL,
    pd              REAL NOT NULL,
    score           REAL NOT NULL,
    grade           TEXT NOT NULL,
    decision        TEXT NOT NULL,
    application     TEXT NOT NULL,
    features        TEXT NOT NULL,
    reasons         TEXT NOT NULL,
    response        TEXT NOT NULL,
    latency_ms      REAL NOT NULL,
    idempotency_key TEXT,
    body_sha256     TEXT,
    caller          TEXT NOT NULL DEFAULT '',
    model_digest    TEXT,
    inputs_hash     TEXT,
    offer           TEXT,
    pricing_policy_version TEXT,
    pricing_policy_digest  TEXT
)"""

_SCHEMA = (
    _DECISIONS_TABLE.format(name="decisions")
    + """;
CREATE INDEX IF NOT EXISTS decisions_created ON decisions(created_at);
CREATE INDEX IF NOT EXISTS decisions_application ON decisions(application_id);
CREATE INDEX IF NOT EXISTS decisions_member ON decisions(member_id, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS decisions_caller_idempotency ON decisions(caller, idempotency_key);
CREATE TABLE IF NOT EXISTS reviews (
    review_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id      TEXT NOT NULL REFERENCES decisions(request_id),
    reviewer        TEXT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('confirm', 'override')),
    final_decision  TEXT NOT NULL,
    reason          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    reviewed_by_key TEXT
);
CREATE INDEX IF NOT EXISTS reviews_request ON reviews(request_id);
CREATE TABLE IF NOT EXISTS review_requests (
    request_id       TEXT NOT NULL REFERENCES decisions(request_id),
    note             TEXT NOT NULL,
    requested_by_key TEXT NOT NULL,
    created_at       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS review_requests_request ON review_requests(request_id);
CREATE TABLE IF NOT EXISTS outcomes (
    application_id TEXT PRIMARY KEY,
    defaulted      INTEGER NOT NULL,
    observed_at    TEXT NOT NULL,
    recorded_at    TEXT NOT NULL
);
"""
)

# The columns of the first release's decisions table (idempotency_key UNIQUE on its own).
_V1_COLUMNS: Final = ROW_COLUMNS[:17]
# Added with offers (nullable: decisions logged before have none).
_PRICING_COLUMNS: Final = ("offer", "pricing_policy_version", "pricing_policy_digest")

_INSERT = (
    f"INSERT OR IGNORE INTO decisions ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})"
)
_CALLER, _KEY = ROW_COLUMNS.index("caller"), ROW_COLUMNS.index("idempotency_key")
_REQUEST, _APPLICATION, _RESPONSE = (
    ROW_COLUMNS.index(c) for c in ("request_id", "application_id", "response")
)


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    """The table's column names (empty when it does not exist)."""
    return {str(r[1]) for r in con.execute(f"PRAGMA table_info({table})").fetchall()}


def _upgrade(con: sqlite3.Connection) -> None:
    """Bring a log written by an earlier release to this schema, in one transaction (a second worker
    process waits on it, then finds nothing to do).

    Its `idempotency_key` was UNIQUE on its own, an index SQLite cannot drop, so the decisions table
    is rebuilt (SQLite's documented create-copy-drop-rename) with uniqueness per (caller, key); the
    old rows get caller '' and keep replaying their stored responses (see `by_idempotency_key`).
    Decisions gain the offer and pricing-policy columns (empty for earlier rows); reviews gain
    `reviewed_by_key`.
    """
    con.execute("BEGIN IMMEDIATE")
    try:
        decisions = _columns(con, "decisions")
        if decisions and "caller" not in decisions:
            old = ", ".join(_V1_COLUMNS)
            con.execute(_DECISIONS_TABLE.format(name="decisions_upgraded"))
            con.execute(f"INSERT INTO decisions_upgraded ({old}) SELECT {old} FROM decisions")
            moved = con.execute("SELECT count(*) FROM decisions_upgraded").fetchone()[0]
            con.execute("DROP TABLE decisions")
            con.execute("ALTER TABLE decisions_upgraded RENAME TO decisions")
            log.warning("decision log upgraded: %d earlier decisions kept with caller ''", moved)
        decisions = _columns(con, "decisions")
        for column in _PRICING_COLUMNS:
            if decisions and column not in decisions:
                con.execute(f"ALTER TABLE decisions ADD COLUMN {column} TEXT")
        reviews = _columns(con, "reviews")
        if reviews and "reviewed_by_key" not in reviews:
            con.execute("ALTER TABLE reviews ADD COLUMN reviewed_by_key TEXT")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


class SqliteDecisionLogReader(DecisionLogReader):
    """Read-only queries on a SQLite decision log; one connection per thread, opened on first use.

    Opening one starts no thread and takes no lock, so monitoring, audits and the CLI can read while
    the server writes (WAL: readers see the last committed state).
    """

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"no decision log at {path}")
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []

    def _connect(self) -> sqlite3.Connection:
        # mode=ro: never creates or changes the database; query_only: refuses writes on this connection.
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        con = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=30)
        con.execute("PRAGMA busy_timeout=30000")
        con.execute("PRAGMA query_only=1")
        return con

    def _reader(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            self._local.con = con
            self._connections.append(con)  # list.append is atomic: no lock needed
        return con

    def close(self) -> None:
        """Close every connection this reader opened."""
        for con in self._connections:
            con.close()
        self._connections.clear()
        self._local = threading.local()

    def by_idempotency_key(self, caller: str, key: str) -> StoredResponse | None:
        """The response stored for this caller's idempotency key, if any; else one logged under the
        key before callers were recorded (caller '', marked `legacy`). One indexed query."""
        row = (
            self._reader()
            .execute(
                """SELECT caller, body_sha256, response FROM decisions
                   WHERE caller IN (?, '') AND idempotency_key = ? ORDER BY caller = '' LIMIT 1""",
                (caller, key),
            )
            .fetchone()
        )
        if row is None:
            return None
        return StoredResponse(row[1], json.loads(row[2]), legacy=row[0] == "" and caller != "")

    def get(self, request_id: str) -> dict[str, Any] | None:
        """One decision with its reviews."""
        con = self._reader()
        row = con.execute(
            "SELECT request_id, decision, response FROM decisions WHERE request_id = ?", (request_id,)
        ).fetchone()
        if row is None:
            return None
        # A log an earlier release wrote (not yet upgraded by a server) has no reviewed_by_key.
        by_key = "reviewed_by_key" if "reviewed_by_key" in _columns(con, "reviews") else "NULL"
        reviews = con.execute(
            f"""SELECT review_id, reviewer, {by_key}, action, final_decision, reason, created_at
               FROM reviews WHERE request_id = ? ORDER BY review_id""",
            (request_id,),
        ).fetchall()
        names = (
            "review_id",
            "reviewer",
            "reviewed_by_key",
            "action",
            "final_decision",
            "reason",
            "created_at",
        )
        requests: list[dict[str, Any]] = []
        if _columns(con, "review_requests"):  # a log an earlier release wrote has none
            requests = [
                {"note": n, "requested_by_key": k, "created_at": c}
                for n, k, c in con.execute(
                    """SELECT note, requested_by_key, created_at FROM review_requests
                       WHERE request_id = ? ORDER BY rowid""",
                    (request_id,),
                ).fetchall()
            ]
        return {
            "request_id": row[0],
            "decision": row[1],
            "response": json.loads(row[2]),
            "reviews": [dict(zip(names, r, strict=True)) for r in reviews],
            "review_requests": requests,
        }

    def review_queue(self, limit: int = 50) -> list[dict[str, Any]]:
        """See `DecisionLogReader.review_queue` (thin files by `THIN_FILE_LIMITS`, on the logged vector)."""
        con = self._reader()
        thin = " OR ".join(
            f"CAST(json_extract(d.features, '$.{name}') AS REAL) < {limit:g}"
            for name, limit in THIN_FILE_LIMITS
        )
        none = " AND ".join(f"json_extract(d.features, '$.{name}') IS NULL" for name, _ in THIN_FILE_LIMITS)
        has_requests = bool(_columns(con, "review_requests"))
        requested = (
            "(SELECT MIN(q.created_at) FROM review_requests q WHERE q.request_id = d.request_id)"
            if has_requests
            else "NULL"
        )
        rows = con.execute(
            f"""SELECT * FROM (
                   SELECT d.request_id, d.member_id, d.created_at, d.score, d.grade, d.decision,
                          {requested} AS requested_at, ({thin}) OR ({none}) AS thin
                   FROM decisions d
                   WHERE NOT EXISTS (SELECT 1 FROM reviews r WHERE r.request_id = d.request_id))
               WHERE decision IN ('review', 'decline') OR thin OR requested_at IS NOT NULL
               ORDER BY requested_at IS NULL, created_at DESC LIMIT ?""",
            (limit,),
        ).fetchall()
        out = []
        for request_id, member_id, created_at, score, grade, decision, requested_at, is_thin in rows:
            queue = [
                reason
                for reason, applies in (
                    ("requested", requested_at is not None),
                    ("flagged", decision == "review"),
                    ("declined", decision == "decline"),
                    ("thin", bool(is_thin)),
                )
                if applies
            ]
            out.append(
                {
                    "request_id": request_id,
                    "member_id": member_id,
                    "created_at": created_at,
                    "score": score,
                    "grade": grade,
                    "decision": decision,
                    "queue": queue,
                    "requested_at": requested_at,
                }
            )
        return out

    def member_decisions(self, member_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """A member's latest decisions (indexed by member), each with its latest review's decision."""
        rows = (
            self._reader()
            .execute(
                """SELECT d.request_id, d.created_at, d.score, d.grade, d.decision,
                          (SELECT r.final_decision FROM reviews r WHERE r.request_id = d.request_id
                           ORDER BY r.review_id DESC LIMIT 1)
                   FROM decisions d WHERE d.member_id = ? ORDER BY d.created_at DESC LIMIT ?""",
                (member_id, limit),
            )
            .fetchall()
        )
        names = ("request_id", "created_at", "score", "grade", "decision", "reviewed_decision")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def request_ids(self) -> set[str]:
        """Every logged request id (used by durability checks)."""
        return {r[0] for r in self._reader().execute("SELECT request_id FROM decisions").fetchall()}

    def feature_rows(
        self, since: datetime | None = None, until: datetime | None = None, last: int | None = None
    ) -> list[dict[str, Any]]:
        """Logged feature vectors with pd, score, time and the vector's as-of time (`features_as_of`,
        when the online store computed it), for drift and fairness monitoring."""
        sql = (
            "SELECT created_at, request_id, application_id, member_id, pd, score, decision, features, "
            "json_extract(response, '$.features_as_of') FROM decisions"
        )
        where, params = [], []
        if since is not None:
            where.append("created_at >= ?")
            params.append(since.isoformat())
        if until is not None:
            where.append("created_at < ?")
            params.append(until.isoformat())
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC"
        if last is not None:
            sql += f" LIMIT {int(last)}"
        rows = self._reader().execute(sql, params).fetchall()
        out = []
        for created, request_id, application_id, member_id, pd_, score, decision, features, as_of in rows:
            row = json.loads(features)
            row.update(
                created_at=created,
                request_id=request_id,
                application_id=application_id,
                member_id=member_id,
                pd=pd_,
                score=score,
                decision=decision,
                features_as_of=as_of,
            )
            out.append(row)
        return out

    def offer_rows(self) -> list[dict[str, Any]]:
        """Per decision, what it offered (see `DecisionLogReader.offer_rows`); columns `OFFER_ROW_COLUMNS`."""
        con = self._reader()
        logged = "offer" in _columns(con, "decisions")
        offer = "json_extract(offer, '$.{}')" if logged else "NULL"
        sql = f"""
            SELECT request_id, {offer.format("annual_rate")}, {offer.format("limit_cny")},
                   {offer.format("principal_cny")}, json_extract(response, '$.subsidy.status'),
                   json_extract(response, '$.subsidy.programme_id'),
                   json_extract(response, '$.recourse.status'),
                   json_extract(response, '$.recourse.total_cost_cny'),
                   json_extract(response, '$.recourse.months')
            FROM decisions"""
        return [dict(zip(OFFER_ROW_COLUMNS, r, strict=True)) for r in con.execute(sql).fetchall()]

    def outcome_rows(self) -> dict[str, int]:
        """application_id -> observed default (0/1) from POST /v1/outcomes, for fairness audits."""
        rows = self._reader().execute("SELECT application_id, defaulted FROM outcomes").fetchall()
        return {str(a): int(d) for a, d in rows}

    def versions_by_application(self) -> dict[str, str]:
        """application_id -> model version of its latest logged decision (audits filter by version)."""
        rows = (
            self._reader()
            .execute("SELECT application_id, model_version FROM decisions ORDER BY created_at")
            .fetchall()
        )
        return {str(a): str(v) for a, v in rows}

    def audit_rows(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """One row per decision logged in [since, until), oldest first, with its latest review and
        its outcome (see `DecisionLogReader.audit_rows`); columns are `AUDIT_COLUMNS`."""
        con = self._reader()
        decisions, reviews = _columns(con, "decisions"), _columns(con, "reviews")

        # A log an earlier release wrote (not yet upgraded by a server) lacks the newer columns.
        def col(alias: str, name: str, have: set[str]) -> str:
            return f"{alias}.{name}" if name in have else "NULL"

        sql = f"""
            SELECT d.request_id, d.created_at, {col("d", "caller", decisions)},
                   d.model_name, d.model_version, {col("d", "model_digest", decisions)},
                   json_extract(d.response, '$.feature_set_version'),
                   {col("d", "inputs_hash", decisions)},
                   d.decision, d.pd, d.score, d.grade, d.reasons,
                   r.final_decision, r.action, r.reviewer,
                   {col("r", "reviewed_by_key", reviews)}, r.reason, r.created_at,
                   o.defaulted, o.observed_at, o.recorded_at,
                   {col("d", "pricing_policy_version", decisions)},
                   {col("d", "pricing_policy_digest", decisions)}, {col("d", "offer", decisions)}
            FROM decisions d
            LEFT JOIN reviews r ON r.review_id =
                (SELECT max(review_id) FROM reviews WHERE request_id = d.request_id)
            LEFT JOIN outcomes o ON o.application_id = d.application_id
            WHERE d.created_at >= ? AND d.created_at < ?
            ORDER BY d.created_at, d.request_id"""
        rows = con.execute(sql, (since.isoformat(), until.isoformat())).fetchall()
        out = []
        for row in rows:
            item = dict(zip(AUDIT_COLUMNS, row, strict=True))
            if item["outcome_defaulted"] is not None:
                item["outcome_defaulted"] = bool(item["outcome_defaulted"])
            out.append(item)
        return out

    def latest_decisions(self, features: tuple[str, ...]) -> list[dict[str, Any]]:
        """Each application's latest decision with its final word (latest review, else the model's),
        the application's time, amount and term, and the named features as scored."""
        extracted = "".join(", json_extract(d.features, ?)" for _ in features)
        con = self._reader()
        logged = "offer" in _columns(con, "decisions")  # a log written before offers has none

        def offer(term: str) -> str:
            return f"json_extract(d.offer, '$.{term}')" if logged else "NULL"

        sql = f"""
            WITH latest AS (
                SELECT d.*, row_number() OVER (
                    PARTITION BY d.application_id ORDER BY d.created_at DESC, d.request_id DESC) AS nth
                FROM decisions d)
            SELECT d.request_id, d.application_id, d.member_id, d.created_at,
                   json_extract(d.application, '$.applied_at'), json_extract(d.application, '$.amount_cny'),
                   json_extract(d.application, '$.term_months'), d.pd,
                   coalesce((SELECT r.final_decision FROM reviews r WHERE r.request_id = d.request_id
                             ORDER BY r.review_id DESC LIMIT 1), d.decision) AS final_decision,
                   {offer("principal_cny")}, {offer("annual_rate")}, {offer("term_months")}
                   {extracted}
            FROM latest d WHERE d.nth = 1"""
        paths = [f"$.{_json_key(name)}" for name in features]
        names = ("request_id", "application_id", "member_id", "created_at", "applied_at", "amount_cny",
                 "term_months", "pd", "decision", *OFFER_TERMS, *features)  # fmt: skip
        rows = con.execute(sql, paths).fetchall()
        return [dict(zip(names, r, strict=True)) for r in rows]

    def programme_reservations(self, programme_id: str, now: datetime) -> list[dict[str, Any]]:
        """Every reservation of the programme, each with its status as of `now`."""
        return programmes.reservations(self._reader(), programme_id, now)

    def programme_profile_uses(self, programme_id: str) -> list[dict[str, Any]]:
        """Protected profile reads by the programme's rules, counted by rule and field."""
        return programmes.profile_uses(self._reader(), programme_id)


def _json_key(name: str) -> str:
    """A feature name as a JSON path key (quoted unless it is a plain identifier)."""
    return name if name.isidentifier() else '"' + name.replace('"', '\\"') + '"'


class SqliteDecisionLogWriter(GroupCommitQueue, SqliteDecisionLogReader, DecisionLogWriter):
    """Append-only decision log with a group-committing writer thread (the server's, one per process)."""

    def __init__(self, path: Path, max_group: int = 256, checkpoint_rows: int = 500) -> None:
        # The reader's __init__ is not called: it refuses a missing file, which the writer creates.
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connections = []
        self._open_queue(max_group)
        self._writer_con = self._connect()
        _upgrade(self._writer_con)
        self._writer_con.executescript(_SCHEMA + programmes.SCHEMA)
        self._writer_con.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
        self._write_lock = path.with_name(path.name + ".writelock").open("ab")
        self._local = threading.local()
        self._checkpoint_rows = checkpoint_rows
        self._rows_since_checkpoint = 0
        self._checkpoint_wanted = threading.Event()
        self._stopping = False
        self.checkpoints = 0
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="decision-log-checkpointer", daemon=True
        )
        self._checkpointer.start()
        self._thread = threading.Thread(target=self._run, name="decision-log-writer", daemon=True)
        self._thread.start()
        self.commits = 0

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA busy_timeout=30000")
        return con

    def close(self) -> None:
        """Flush what is queued, stop the writer and the checkpointer, and close the connection."""
        self._stop_queue()
        self._thread.join(timeout=30)
        self._stopping = True
        self._checkpoint_wanted.set()
        self._checkpointer.join(timeout=30)
        self._writer_con.close()
        self._write_lock.close()

    def _checkpoint_loop(self) -> None:
        con = self._connect()
        try:
            while True:
                self._checkpoint_wanted.wait()
                self._checkpoint_wanted.clear()
                try:
                    # PASSIVE: copy what it can without waiting for (or blocking) the writer.
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error:
                    log.warning("decision-log checkpoint failed; the next one retries", exc_info=True)
                if self._stopping:
                    return
        finally:
            con.close()

    # -- writing -----------------------------------------------------------------------------------

    def _commit(self, group: list[Pending]) -> None:
        con = self._writer_con
        results: list[StoredResponse | None] = []
        failure: BaseException | None = None
        # Writers in other worker processes queue on this lock and wake the moment it is free; left
        # to SQLite's busy handler they would sleep 1, 2, 5, 10 ... ms between retries instead.
        fcntl.flock(self._write_lock, fcntl.LOCK_EX)
        try:
            con.execute("BEGIN IMMEDIATE")
            now = datetime.now(UTC)
            if any(claim is not None for _, claim, _ in group):
                programmes.expire(con, now)  # expired offers give their budget back first
            for row, claim, _ in group:
                if claim is not None:
                    row = self._claim(con, row, claim, now)
                cur = con.execute(_INSERT, row)
                if claim is not None:
                    # A duplicate idempotency key reserves nothing: its first request already did.
                    if cur.rowcount != 1:
                        con.execute("ROLLBACK TO claim")
                        claim.outcome = claim.response_json = None
                    con.execute("RELEASE claim")
                if cur.rowcount == 1 or row[_KEY] is None:
                    results.append(None)
                else:  # the same caller's key is already logged: answer with that row
                    stored = con.execute(
                        """SELECT body_sha256, response FROM decisions
                           WHERE caller = ? AND idempotency_key = ?""",
                        (row[_CALLER], row[_KEY]),
                    ).fetchone()
                    results.append(StoredResponse(stored[0], json.loads(stored[1])))
            con.execute("COMMIT")
        except BaseException as exc:  # the transaction failed: nobody in this group is durable
            failure = exc
            if con.in_transaction:
                con.execute("ROLLBACK")
        finally:
            fcntl.flock(self._write_lock, fcntl.LOCK_UN)
        if failure is not None:
            for _, _, future in group:
                future.set_exception(failure)
            return
        self.commits += 1
        self._rows_since_checkpoint += len(group)
        if self._rows_since_checkpoint >= self._checkpoint_rows:
            self._rows_since_checkpoint = 0
            self._checkpoint_wanted.set()
        for (_, _, future), result in zip(group, results, strict=True):
            future.set_result(result)

    @staticmethod
    def _claim(
        con: sqlite3.Connection, row: tuple[object, ...], claim: SubsidyClaim, now: datetime
    ) -> tuple[object, ...]:
        """Log the claim's protected reads (they were made, whatever follows), reserve its subsidy
        under a savepoint (undone if the row is a duplicate) and put the response built for the
        outcome into the row."""
        programmes.log_profile_uses(con, claim, str(row[_REQUEST]), now)
        con.execute("SAVEPOINT claim")
        claim.outcome = programmes.reserve(con, claim, str(row[_REQUEST]), str(row[_APPLICATION]), now)
        claim.response_json = claim.respond(claim.outcome)
        return (*row[:_RESPONSE], claim.response_json, *row[_RESPONSE + 1 :])

    def register_programme(self, budgets: list[BudgetLine], ceilings: list[LossCeilingLine]) -> None:
        """Set a programme's budget lines and loss ceilings; reservations made so far stay counted."""
        con = self._reader()
        with con:
            con.execute("BEGIN IMMEDIATE")
            programmes.register(con, budgets, ceilings)

    def settle_reservation(
        self, programme_id: str, request_id: str, action: ReservationAction, reason: str
    ) -> dict[str, Any] | None:
        """Accept (kept, no longer expires) or decline (budget released) one reservation."""
        con = self._reader()
        with con:
            con.execute("BEGIN IMMEDIATE")
            return programmes.settle(con, programme_id, request_id, action, reason, datetime.now(UTC))

    def add_review(
        self,
        request_id: str,
        reviewer: str,
        action: str,
        final_decision: str,
        reason: str,
        *,
        reviewed_by_key: str,
    ) -> dict[str, Any]:
        """Record a human review beside the automated decision (both are kept), with the name of the
        API key that sent it."""
        con = self._reader()
        created = datetime.now(UTC).isoformat()
        with con:
            con.execute("BEGIN IMMEDIATE")
            cur = con.execute(
                """INSERT INTO reviews
                   (request_id, reviewer, reviewed_by_key, action, final_decision, reason, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)""",
                (request_id, reviewer, reviewed_by_key, action, final_decision, reason, created),
            )
            if final_decision != "approve":  # no loan, no subsidy: its budget goes back
                programmes.release_for_review(con, request_id, final_decision, datetime.now(UTC))
        return {
            "review_id": cur.lastrowid,
            "request_id": request_id,
            "reviewer": reviewer,
            "reviewed_by_key": reviewed_by_key,
            "action": action,
            "final_decision": final_decision,
            "reason": reason,
            "created_at": created,
        }

    def add_review_request(self, request_id: str, note: str, *, requested_by_key: str) -> dict[str, Any]:
        """Record the applicant's request for a human review (see `DecisionLogWriter`)."""
        con = self._reader()
        created = datetime.now(UTC).isoformat()
        with con:
            con.execute("BEGIN IMMEDIATE")
            con.execute(
                """INSERT INTO review_requests (request_id, note, requested_by_key, created_at)
                   VALUES (?, ?, ?, ?)""",
                (request_id, note, requested_by_key, created),
            )
        return {
            "request_id": request_id,
            "note": note,
            "requested_by_key": requested_by_key,
            "created_at": created,
        }

    def add_outcomes(self, outcomes: list[tuple[str, bool, datetime]]) -> tuple[int, int]:
        """Store observed outcomes; returns (stored, linked to a logged decision)."""
        con = self._reader()
        recorded = datetime.now(UTC).isoformat()
        with con:
            con.execute("BEGIN IMMEDIATE")
            con.executemany(
                "INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?)",
                [(a, int(d), o.isoformat(), recorded) for a, d, o in outcomes],
            )
        ids = [a for a, _, _ in outcomes]
        linked = 0
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            linked += con.execute(
                f"SELECT count(DISTINCT application_id) FROM decisions WHERE application_id IN ({marks})",
                part,
            ).fetchone()[0]
        return len(outcomes), linked
