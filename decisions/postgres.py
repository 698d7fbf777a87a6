"""PostgreSQL decision log (`COOPSCORE_DECISION_LOG=postgresql://...`): the SQLite log's schema and
guarantees, shared by every worker process and every API replica.

- Durable before the response: a writer thread per process commits whatever rows are waiting in one
  transaction (group commit: one multi-row `INSERT`, one WAL flush with `synchronous_commit=on`), and
  each request waits for the commit that holds its own row.
- Idempotency keys are unique per caller (a unique index on `(caller, idempotency_key)`); rows go in
  with `ON CONFLICT DO NOTHING`, which waits for a concurrent insert of the same key in another
  process or replica to commit, so the later request answers with the first one's stored response.
- Reviews, outcomes and subsidy reservations are transactions; budgets are guarded by conditional
  UPDATEs on row locks (`decisions.postgres_programmes`), so replicas never oversubscribe them.
- Two groups that lock the same rows in opposite orders deadlock; PostgreSQL aborts one, and the
  writer runs that group again (nothing of it was committed).

Tables live in one schema (`?schema=NAME`, default `coopscore`), created on first use by a writer under
an advisory lock (idempotent DDL, safe when several processes start at once). Times and JSON are
stored as the same text as in SQLite, so exports, monitoring and audits read identical values.
`PostgresDecisionLogReader` never creates anything and runs its sessions read-only. The URL's
password never appears in a message (`redact`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool

from decisions import postgres_programmes as programmes
from decisions.base import (
    AUDIT_COLUMNS,
    OFFER_ROW_COLUMNS,
    OFFER_TERMS,
    ROW_COLUMNS,
    THIN_FILE_LIMITS,
    BudgetLine,
    DecisionLogReader,
    DecisionLogUnavailableError,
    DecisionLogWriter,
    LossCeilingLine,
    ReservationAction,
    StoredResponse,
    SubsidyClaim,
)
from decisions.group_commit import GroupCommitQueue, Pending

log = logging.getLogger("coopscore.serving")

DEFAULT_SCHEMA: Final = "coopscore"
_OPTIONS: Final = ("schema", "pool_size")
_SCHEMA_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_CONNECT_TIMEOUT: Final = 5  # seconds: an unreachable server is reported, not waited on
_ATTEMPTS: Final = 5  # a group aborted by a deadlock or serialization failure is run again

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS decisions (
    request_id      TEXT PRIMARY KEY,
    application_id  TEXT NOT NULL,
    member_id       TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    model_name      TEXT NOT NULL,
    model_version   TEXT NOT NULL,
    pd              DOUBLE PRECISION NOT NULL,
    score           DOUBLE PRECISION NOT NULL,
    grade           TEXT NOT NULL,
    decision        TEXT NOT NULL,
    application     TEXT NOT NULL,
    features        TEXT NOT NULL,
    reasons         TEXT NOT NULL,
    response        TEXT NOT NULL,
    latency_ms      DOUBLE PRECISION NOT NULL,
    idempotency_key TEXT,
    body_sha256     TEXT,
    caller          TEXT NOT NULL DEFAULT '',
    model_digest    TEXT,
    inputs_hash     TEXT,
    offer           TEXT,
    pricing_policy_version TEXT,
    pricing_policy_digest  TEXT
);
CREATE INDEX IF NOT EXISTS decisions_created ON decisions(created_at);
CREATE INDEX IF NOT EXISTS decisions_application ON decisions(application_id);
CREATE INDEX IF NOT EXISTS decisions_member ON decisions(member_id, created_at);
CREATE UNIQUE INDEX IF NOT EXISTS decisions_caller_idempotency ON decisions(caller, idempotency_key);
CREATE TABLE IF NOT EXISTS reviews (
    review_id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
    created_at       TEXT NOT NULL,
    review_request_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY
);
CREATE INDEX IF NOT EXISTS review_requests_request ON review_requests(request_id);
CREATE TABLE IF NOT EXISTS outcomes (
    application_id TEXT PRIMARY KEY,
    defaulted      INTEGER NOT NULL,
    observed_at    TEXT NOT NULL,
    recorded_at    TEXT NOT NULL
);
"""

_INSERT_HEAD: Final = f"INSERT INTO decisions ({', '.join(ROW_COLUMNS)}) VALUES "
_ROW_MARKS: Final = "(" + ", ".join(["%s"] * len(ROW_COLUMNS)) + ")"
_CALLER, _KEY = ROW_COLUMNS.index("caller"), ROW_COLUMNS.index("idempotency_key")
_REQUEST, _APPLICATION, _RESPONSE = (
    ROW_COLUMNS.index(c) for c in ("request_id", "application_id", "response")
)
# A string feature value read as a number the way SQLite's CAST(... AS REAL) reads it: the longest
# numeric prefix after leading spaces, else 0.
_NUMERIC_PREFIX: Final = r"^\s*([+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?)"


def _logged_number(name: str) -> str:
    """SQL for feature `name` of the logged vector (`f`, the row's features as jsonb) as a number, as
    SQLite's `CAST(json_extract(features, '$.name') AS REAL)` gives it: NULL when absent or null,
    booleans 1/0, strings by their numeric prefix, objects and arrays 0."""
    value = "f -> '" + name.replace("'", "''") + "'"
    return f"""CASE jsonb_typeof({value})
            WHEN 'number' THEN ({value} #>> '{{}}')::float8
            WHEN 'string' THEN COALESCE(substring({value} #>> '{{}}' from '{_NUMERIC_PREFIX}')::float8, 0)
            WHEN 'boolean' THEN CASE WHEN ({value})::boolean THEN 1 ELSE 0 END
            WHEN 'null' THEN NULL
            ELSE 0 END"""


# Errors after which the same transaction, run again, can succeed.
_RETRYABLE: Final = (errors.DeadlockDetected, errors.SerializationFailure)


def redact(url: str) -> str:
    """The URL with its password (in the authority or a `password=` option) replaced by `***`."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))


@dataclass(frozen=True)
class PostgresTarget:
    """Where the log lives: the connection URL psycopg understands, the log's schema, the pool size
    and the redacted URL every message shows."""

    conninfo: str
    schema: str
    pool_size: int
    shown: str

    @classmethod
    def from_url(cls, url: str) -> PostgresTarget:
        """Split `postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DB?schema=NAME&pool_size=N` (other query
        options go to libpq); a bad option raises a one-line ValueError naming it."""
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in _OPTIONS}
        rest = [(k, v) for k, v in query if k not in _OPTIONS]
        shown = redact(url)
        schema = ours.get("schema", DEFAULT_SCHEMA)
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(
                f"{shown}: schema={schema!r} is not a schema name (lower-case letters, digits, _)"
            )
        try:
            pool_size = int(ours.get("pool_size", "4"))
        except ValueError:
            pool_size = 0
        if pool_size < 1:
            raise ValueError(f"{shown}: pool_size={ours.get('pool_size')!r}: give a whole number >= 1")
        conninfo = urlunsplit(parts._replace(query=urlencode(rest)))
        return cls(conninfo, schema, pool_size, shown)

    def connect(self) -> psycopg.Connection[Any]:
        """One session on the log's schema, in UTC, autocommit (transactions are explicit)."""
        try:
            con = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=_CONNECT_TIMEOUT)
        except psycopg.OperationalError as error:
            raise self.unavailable(error) from None
        self.configure(con)
        return con

    def configure(self, con: psycopg.Connection[Any]) -> None:
        """Point a session at the log's schema and UTC (the pool calls it for every new connection)."""
        con.execute(f"SET search_path TO {self.schema}")
        con.execute("SET TIME ZONE 'UTC'")

    def unavailable(self, error: BaseException) -> DecisionLogUnavailableError:
        """The one-line error for a server that cannot be reached (never the password)."""
        reason = " ".join(str(error).split()) or type(error).__name__
        password = urlsplit(self.conninfo).password
        if password:
            reason = reason.replace(password, "***")
        return DecisionLogUnavailableError(
            f"cannot reach the PostgreSQL decision log at {self.shown} (COOPSCORE_DECISION_LOG): {reason}"
        )

    def pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """A small pool of configured sessions (the writer's, for the server's request threads)."""
        return ConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=self.pool_size,
            kwargs={"autocommit": True, "connect_timeout": _CONNECT_TIMEOUT},
            configure=self.configure,
            timeout=30,
            name=f"decision-log-{self.schema}",
            open=True,
        )


def create_schema(target: PostgresTarget) -> None:
    """Create the log's schema and tables if missing: idempotent, and serialized by an advisory lock so
    several processes starting at once do not race on the catalog."""
    with target.connect() as con, con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"coopscore.decisions.{target.schema}",))
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {target.schema}")
        con.execute(f"SET LOCAL search_path TO {target.schema}")
        for statement in (_SCHEMA + programmes.SCHEMA).split(";"):
            if statement.strip():
                con.execute(statement)


class PostgresDecisionLogReader(DecisionLogReader):
    """Read-only queries on a PostgreSQL decision log, over a small pool of read-only sessions.

    Raises:
        DecisionLogUnavailableError: the server cannot be reached.
        FileNotFoundError: the schema holds no decision log yet (nothing has been scored).
    """

    def __init__(self, url: str) -> None:
        self.target = PostgresTarget.from_url(url)
        with self.target.connect() as con:
            found = con.execute("SELECT to_regclass('decisions') IS NOT NULL").fetchone()
        if not found or not found[0]:
            raise FileNotFoundError(
                f"no decision log at {self.target.shown} (schema {self.target.schema} has no decisions table)"
            )
        self._local = threading.local()
        self._connections: list[psycopg.Connection[Any]] = []
        self._has_requests = False

    @contextmanager
    def _session(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's read-only session, opened on first use (a reader starts no thread: no pool)."""
        con: psycopg.Connection[Any] | None = getattr(self._local, "con", None)
        if con is None or con.closed:
            con = self.target.connect()
            con.execute("SET default_transaction_read_only = on")
            self._local.con = con
            self._connections.append(con)  # list.append is atomic: no lock needed
        yield con

    def _rows(self, sql: str, params: tuple[object, ...] | list[object] = ()) -> list[tuple[Any, ...]]:
        with self._session() as con:
            return con.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def close(self) -> None:
        """Close every session this reader opened."""
        for con in self._connections:
            con.close()
        self._connections.clear()
        self._local = threading.local()

    def by_idempotency_key(self, caller: str, key: str) -> StoredResponse | None:
        """The response stored for this caller's key, else one logged with caller '' (`legacy`)."""
        rows = self._rows(
            """SELECT caller, body_sha256, response FROM decisions
               WHERE caller IN (%s, '') AND idempotency_key = %s ORDER BY caller = '' LIMIT 1""",
            (caller, key),
        )
        if not rows:
            return None
        row = rows[0]
        return StoredResponse(row[1], json.loads(row[2]), legacy=row[0] == "" and caller != "")

    def _requests_table(self, con: psycopg.Connection[Any]) -> bool:
        """Whether the log has `review_requests` (a schema an earlier release wrote has none until a
        writer opens it); remembered once true, as the table never goes away."""
        if not getattr(self, "_has_requests", False):
            found = con.execute("SELECT to_regclass('review_requests') IS NOT NULL").fetchone()
            self._has_requests = bool(found and found[0])
        return self._has_requests

    def get(self, request_id: str) -> dict[str, Any] | None:
        """One decision with its reviews and its review requests."""
        with self._session() as con:
            row = con.execute(
                "SELECT request_id, decision, response FROM decisions WHERE request_id = %s", (request_id,)
            ).fetchone()
            if row is None:
                return None
            reviews = con.execute(
                """SELECT review_id, reviewer, reviewed_by_key, action, final_decision, reason, created_at
                   FROM reviews WHERE request_id = %s ORDER BY review_id""",
                (request_id,),
            ).fetchall()
            requests = (
                con.execute(
                    """SELECT note, requested_by_key, created_at FROM review_requests
                       WHERE request_id = %s ORDER BY review_request_id""",
                    (request_id,),
                ).fetchall()
                if self._requests_table(con)
                else []
            )
        names = (
            "review_id",
            "reviewer",
            "reviewed_by_key",
            "action",
            "final_decision",
            "reason",
            "created_at",
        )
        return {
            "request_id": row[0],
            "decision": row[1],
            "response": json.loads(row[2]),
            "reviews": [dict(zip(names, r, strict=True)) for r in reviews],
            "review_requests": [{"note": n, "requested_by_key": k, "created_at": c} for n, k, c in requests],
        }

    def review_queue(self, limit: int = 50) -> list[dict[str, Any]]:
        """See `DecisionLogReader.review_queue`: the SQLite log's query, with the thin-file test on the
        logged vector (`THIN_FILE_LIMITS`) read as SQLite reads it and times ordered byte by byte
        (COLLATE "C", as SQLite compares text), so both backends queue and order alike."""
        thin = " OR ".join(f"{_logged_number(name)} < {bound:g}" for name, bound in THIN_FILE_LIMITS)
        none = " AND ".join(f"{_logged_number(name)} IS NULL" for name, _ in THIN_FILE_LIMITS)
        with self._session() as con:
            requested = (
                """(SELECT MIN(q.created_at COLLATE "C") FROM review_requests q
                    WHERE q.request_id = d.request_id)"""
                if self._requests_table(con)
                else "NULL::text"
            )
            rows = con.execute(
                f"""SELECT * FROM (
                       SELECT d.request_id, d.member_id, d.created_at, d.score, d.grade, d.decision,
                              {requested} AS requested_at, COALESCE(({thin}) OR ({none}), false) AS thin
                       FROM decisions d CROSS JOIN LATERAL (SELECT d.features::jsonb AS f) v
                       WHERE NOT EXISTS (SELECT 1 FROM reviews r WHERE r.request_id = d.request_id)) queued
                   WHERE decision IN ('review', 'decline') OR thin OR requested_at IS NOT NULL
                   ORDER BY requested_at IS NULL, created_at COLLATE "C" DESC LIMIT %s""",
                (limit,),
            ).fetchall()
        out = []
        for request_id, member_id, created_at, score, grade, decision, requested_at, is_thin in rows:
            reasons = [
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
                    "queue": reasons,
                    "requested_at": requested_at,
                }
            )
        return out

    def member_decisions(self, member_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """A member's latest decisions, each with its latest review's decision."""
        rows = self._rows(
            """SELECT d.request_id, d.created_at, d.score, d.grade, d.decision,
                      (SELECT r.final_decision FROM reviews r WHERE r.request_id = d.request_id
                       ORDER BY r.review_id DESC LIMIT 1)
               FROM decisions d WHERE d.member_id = %s ORDER BY d.created_at DESC LIMIT %s""",
            (member_id, limit),
        )
        names = ("request_id", "created_at", "score", "grade", "decision", "reviewed_decision")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def request_ids(self) -> set[str]:
        """Every logged request id (used by durability checks)."""
        return {r[0] for r in self._rows("SELECT request_id FROM decisions")}

    def feature_rows(
        self, since: datetime | None = None, until: datetime | None = None, last: int | None = None
    ) -> list[dict[str, Any]]:
        """Logged feature vectors with pd, score, time and the vector's as-of time, newest first."""
        sql = (
            "SELECT created_at, request_id, application_id, member_id, pd, score, decision, features, "
            "response::json -> 'features_as_of' FROM decisions"
        )
        where: list[str] = []
        params: list[object] = []
        if since is not None:
            where.append("created_at >= %s")
            params.append(since.isoformat())
        if until is not None:
            where.append("created_at < %s")
            params.append(until.isoformat())
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC"
        if last is not None:
            sql += f" LIMIT {int(last)}"
        out = []
        for (
            created,
            request_id,
            application_id,
            member_id,
            pd_,
            score,
            decision,
            features,
            as_of,
        ) in self._rows(sql, params):
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
        """Per decision, what it offered; columns `OFFER_ROW_COLUMNS`."""
        sql = """
            SELECT request_id, offer::json -> 'annual_rate', offer::json -> 'limit_cny',
                   offer::json -> 'principal_cny', response::json #> '{subsidy,status}',
                   response::json #> '{subsidy,programme_id}', response::json #> '{recourse,status}',
                   response::json #> '{recourse,total_cost_cny}', response::json #> '{recourse,months}'
            FROM decisions"""
        return [dict(zip(OFFER_ROW_COLUMNS, r, strict=True)) for r in self._rows(sql)]

    def outcome_rows(self) -> dict[str, int]:
        """application_id -> observed default (0/1) from POST /v1/outcomes, for fairness audits."""
        return {str(a): int(d) for a, d in self._rows("SELECT application_id, defaulted FROM outcomes")}

    def versions_by_application(self) -> dict[str, str]:
        """application_id -> model version of its latest logged decision."""
        rows = self._rows("SELECT application_id, model_version FROM decisions ORDER BY created_at")
        return {str(a): str(v) for a, v in rows}

    def audit_rows(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """One row per decision logged in [since, until), oldest first; columns `AUDIT_COLUMNS`."""
        sql = """
            SELECT d.request_id, d.created_at, d.caller, d.model_name, d.model_version, d.model_digest,
                   d.response::json -> 'feature_set_version', d.inputs_hash,
                   d.decision, d.pd, d.score, d.grade, d.reasons,
                   r.final_decision, r.action, r.reviewer, r.reviewed_by_key, r.reason, r.created_at,
                   o.defaulted, o.observed_at, o.recorded_at,
                   d.pricing_policy_version, d.pricing_policy_digest, d.offer
            FROM decisions d
            LEFT JOIN reviews r ON r.review_id =
                (SELECT max(review_id) FROM reviews WHERE request_id = d.request_id)
            LEFT JOIN outcomes o ON o.application_id = d.application_id
            WHERE d.created_at >= %s AND d.created_at < %s
            ORDER BY d.created_at, d.request_id"""
        out = []
        for row in self._rows(sql, (since.isoformat(), until.isoformat())):
            item = dict(zip(AUDIT_COLUMNS, row, strict=True))
            if item["outcome_defaulted"] is not None:
                item["outcome_defaulted"] = bool(item["outcome_defaulted"])
            out.append(item)
        return out

    def latest_decisions(self, features: tuple[str, ...]) -> list[dict[str, Any]]:
        """Each application's latest decision with its final word, terms and the named features."""
        sql = """
            SELECT DISTINCT ON (d.application_id)
                   d.request_id, d.application_id, d.member_id, d.created_at,
                   d.application::json -> 'applied_at', d.application::json -> 'amount_cny',
                   d.application::json -> 'term_months', d.pd,
                   coalesce((SELECT r.final_decision FROM reviews r WHERE r.request_id = d.request_id
                             ORDER BY r.review_id DESC LIMIT 1), d.decision),
                   d.offer::json -> 'principal_cny', d.offer::json -> 'annual_rate',
                   d.offer::json -> 'term_months', d.features
            FROM decisions d
            ORDER BY d.application_id, d.created_at DESC, d.request_id DESC"""
        names = ("request_id", "application_id", "member_id", "created_at", "applied_at", "amount_cny",
                 "term_months", "pd", "decision", *OFFER_TERMS)  # fmt: skip
        out = []
        for *fields, features_json in self._rows(sql):
            row = dict(zip(names, fields, strict=True))
            # Features are parsed here, not cast in SQL: a vector may hold NaN, which is not JSON.
            scored = json.loads(features_json) if features else {}
            row.update({name: scored.get(name) for name in features})
            out.append(row)
        return out

    def programme_reservations(self, programme_id: str, now: datetime) -> list[dict[str, Any]]:
        """Every reservation of the programme, each with its status as of `now`."""
        with self._session() as con:
            return programmes.reservations(con, programme_id, now)

    def programme_profile_uses(self, programme_id: str) -> list[dict[str, Any]]:
        """Protected profile reads by the programme's rules, counted by rule and field."""
        with self._session() as con:
            return programmes.profile_uses(con, programme_id)


class PostgresDecisionLogWriter(GroupCommitQueue, PostgresDecisionLogReader, DecisionLogWriter):
    """The server's writer (one per process): a group-committing thread on its own session, and a
    pool for queries, reviews, outcomes and settlements.

    Raises:
        DecisionLogUnavailableError: the server cannot be reached.
    """

    def __init__(self, url: str, max_group: int = 256) -> None:
        # The reader's __init__ is not called: it refuses a missing log, which the writer creates.
        self.target = PostgresTarget.from_url(url)
        create_schema(self.target)
        self._writer_con = self.target.connect()
        # Durable at COMMIT whatever the server's default: a 200 is never sent for an unflushed row.
        self._writer_con.execute("SET synchronous_commit = on")
        try:
            self._pool = self.target.pool()
        except psycopg.OperationalError as error:
            raise self.target.unavailable(error) from None
        self._open_queue(max_group)
        self.commits = 0
        self.retries = 0
        self._thread = threading.Thread(target=self._run, name="decision-log-writer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Flush what is queued, stop the writer and close the sessions."""
        self._stop_queue()
        self._thread.join(timeout=30)
        self._writer_con.close()
        self._pool.close()

    @contextmanager
    def _session(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled session: the server's request threads share a few connections."""
        with self._pool.connection() as con:
            yield con

    # -- writing -----------------------------------------------------------------------------------

    def _commit(self, group: list[Pending]) -> None:
        """Write the group in one transaction (again after a deadlock), then resolve its futures: a
        failure resolves every future with the error, since nothing of the group was committed."""
        failure: BaseException | None = None
        results: list[StoredResponse | None] = []
        for attempt in range(_ATTEMPTS):
            try:
                results = self._transaction(group)
                failure = None
                break
            except _RETRYABLE as error:
                failure = error
                self.retries += 1
                log.info("decision-log group of %d retried (attempt %d): %s", len(group), attempt + 1, error)
            except psycopg.OperationalError as error:  # the session is gone: open a new one for next time
                failure = self.target.unavailable(error)
                self._reconnect()
                break
            except BaseException as error:
                failure = error
                break
        if failure is not None:
            for _, _, future in group:
                future.set_exception(failure)
            return
        self.commits += 1
        for (_, _, future), result in zip(group, results, strict=True):
            future.set_result(result)

    def _reconnect(self) -> None:
        try:
            self._writer_con.close()
            self._writer_con = self.target.connect()
            self._writer_con.execute("SET synchronous_commit = on")
        except DecisionLogUnavailableError:
            log.warning("decision log unreachable; the next group tries again")

    def _transaction(self, group: list[Pending]) -> list[StoredResponse | None]:
        con = self._writer_con
        if con.closed:
            self._reconnect()
            con = self._writer_con
        results: list[StoredResponse | None] = [None] * len(group)
        if all(claim is None for _, claim, _ in group):
            return self._plain_group(con, group)
        con.execute("BEGIN")
        try:
            now = datetime.now(UTC)
            if any(claim is not None for _, claim, _ in group):
                programmes.expire(con, now)  # expired offers give their budget back first
            plain: list[int] = []  # rows without a subsidy, inserted together
            for index, (row, claim, _) in enumerate(group):
                if claim is None:
                    plain.append(index)
                    continue
                self._insert_plain(con, group, plain, results)
                plain = []
                results[index] = self._insert_claimed(con, row, claim, now)
            self._insert_plain(con, group, plain, results)
            con.execute("COMMIT")
        except BaseException:
            if not con.closed:
                con.execute("ROLLBACK")
            for _, claim, _ in group:
                if claim is not None:
                    claim.outcome = claim.response_json = None
            raise
        return results

    @staticmethod
    def _plain_group(con: psycopg.Connection[Any], group: list[Pending]) -> list[StoredResponse | None]:
        """A group without subsidies: BEGIN, one multi-row INSERT and COMMIT in one round trip
        (pipeline mode); a row skipped for a duplicate key then reads the committed first one."""
        rows = [row for row, _, _ in group]
        sql = (
            _INSERT_HEAD
            + ", ".join([_ROW_MARKS] * len(rows))
            + " ON CONFLICT DO NOTHING RETURNING request_id"
        )
        try:
            with con.pipeline():
                con.execute("BEGIN")
                cur = con.execute(sql, [v for row in rows for v in row])
                con.execute("COMMIT")
        except BaseException:
            if not con.closed:
                con.execute("ROLLBACK")
            raise
        written = {r[0] for r in cur.fetchall()}
        return [None if row[_REQUEST] in written or row[_KEY] is None else _stored(con, row) for row in rows]

    @staticmethod
    def _insert_plain(
        con: psycopg.Connection[Any],
        group: list[Pending],
        indices: list[int],
        results: list[StoredResponse | None],
    ) -> None:
        """One multi-row INSERT for these rows; each row a duplicate key skipped gets the stored one."""
        if not indices:
            return
        rows = [group[i][0] for i in indices]
        sql = (
            _INSERT_HEAD
            + ", ".join([_ROW_MARKS] * len(rows))
            + " ON CONFLICT DO NOTHING RETURNING request_id"
        )
        written = {r[0] for r in con.execute(sql, [v for row in rows for v in row]).fetchall()}
        for index, row in zip(indices, rows, strict=True):
            if row[_REQUEST] in written or row[_KEY] is None:
                results[index] = None
            else:
                results[index] = _stored(con, row)

    @staticmethod
    def _insert_claimed(
        con: psycopg.Connection[Any], row: tuple[object, ...], claim: SubsidyClaim, now: datetime
    ) -> StoredResponse | None:
        """Log the claim's protected reads (they were made, whatever follows), reserve its subsidy under a
        savepoint, insert the row with the response built for the outcome; a duplicate undoes the
        reservation (its first request already made one) and answers with the stored row."""
        request_id = str(row[_REQUEST])
        programmes.log_profile_uses(con, claim, request_id, now)
        con.execute("SAVEPOINT claim")
        claim.outcome = programmes.reserve(con, claim, request_id, str(row[_APPLICATION]), now)
        claim.response_json = claim.respond(claim.outcome)
        row = (*row[:_RESPONSE], claim.response_json, *row[_RESPONSE + 1 :])
        cur = con.execute(_INSERT_HEAD + _ROW_MARKS + " ON CONFLICT DO NOTHING", row)
        if cur.rowcount != 1:
            con.execute("ROLLBACK TO SAVEPOINT claim")
            claim.outcome = claim.response_json = None
        con.execute("RELEASE SAVEPOINT claim")
        if cur.rowcount == 1 or row[_KEY] is None:
            return None
        return _stored(con, row)

    def register_programme(self, budgets: list[BudgetLine], ceilings: list[LossCeilingLine]) -> None:
        """Set a programme's budget lines and loss ceilings; reservations made so far stay counted."""
        with self._session() as con, con.transaction():
            programmes.register(con, budgets, ceilings)

    def settle_reservation(
        self, programme_id: str, request_id: str, action: ReservationAction, reason: str
    ) -> dict[str, Any] | None:
        """Accept (kept, no longer expires) or decline (budget released) one reservation."""
        for attempt in range(_ATTEMPTS):
            try:
                with self._session() as con, con.transaction():
                    return programmes.settle(con, programme_id, request_id, action, reason, datetime.now(UTC))
            except _RETRYABLE:
                if attempt == _ATTEMPTS - 1:
                    raise
        return None  # unreachable: the last attempt returns or raises

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
        """Record a human review beside the automated decision (both kept); a review that turns an
        approval into something else releases its subsidy in the same transaction."""
        created = datetime.now(UTC).isoformat()
        with self._session() as con, con.transaction():
            found = con.execute(
                """INSERT INTO reviews
                   (request_id, reviewer, reviewed_by_key, action, final_decision, reason, created_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING review_id""",
                (request_id, reviewer, reviewed_by_key, action, final_decision, reason, created),
            ).fetchone()
            if final_decision != "approve":  # no loan, no subsidy: its budget goes back
                programmes.release_for_review(con, request_id, final_decision, datetime.now(UTC))
        return {
            "review_id": found[0] if found else None,
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
        created = datetime.now(UTC).isoformat()
        with self._session() as con, con.transaction():
            con.execute(
                """INSERT INTO review_requests (request_id, note, requested_by_key, created_at)
                   VALUES (%s, %s, %s, %s)""",
                (request_id, note, requested_by_key, created),
            )
        return {
            "request_id": request_id,
            "note": note,
            "requested_by_key": requested_by_key,
            "created_at": created,
        }

    def add_outcomes(self, outcomes: list[tuple[str, bool, datetime]]) -> tuple[int, int]:
        """Store observed outcomes (a later report replaces an earlier one); returns (stored, linked)."""
        recorded = datetime.now(UTC).isoformat()
        ids = [a for a, _, _ in outcomes]
        with self._session() as con:
            with con.transaction(), con.cursor() as cur:
                cur.executemany(
                    """INSERT INTO outcomes VALUES (%s, %s, %s, %s) ON CONFLICT (application_id)
                       DO UPDATE SET defaulted = excluded.defaulted, observed_at = excluded.observed_at,
                                     recorded_at = excluded.recorded_at""",
                    [(a, int(d), o.isoformat(), recorded) for a, d, o in outcomes],
                )
            linked = con.execute(
                "SELECT count(DISTINCT application_id) FROM decisions WHERE application_id = ANY(%s)", (ids,)
            ).fetchone()
        return len(outcomes), int(linked[0]) if linked else 0


def _stored(con: psycopg.Connection[Any], row: tuple[object, ...]) -> StoredResponse:
    """The response already logged under this row's caller and idempotency key."""
    stored = con.execute(
        "SELECT body_sha256, response FROM decisions WHERE caller = %s AND idempotency_key = %s",
        (row[_CALLER], row[_KEY]),
    ).fetchone()
    if stored is None:  # cannot happen: the conflict that skipped the row is this committed row
        raise RuntimeError(f"idempotency key {row[_KEY]!r} conflicted but no row holds it")
    return StoredResponse(stored[0], json.loads(stored[1]))
