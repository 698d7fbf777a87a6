"""Subsidy reservations in the PostgreSQL decision log: the same tables and rules as SQLite's
(`decisions.sqlite_programmes`), run by the writer inside the transaction that stores a decision row.

SQLite has one writer at a time; here several processes and replicas write at once, so every change
of a shared amount or status is one conditional UPDATE. `reserved_fen + cost <= budget_fen` in the
WHERE clause is re-checked on the row PostgreSQL locks for the update, so two replicas never both take
the last subsidy of a budget. Expiry, release and settlement flip a reservation's status with
`UPDATE ... WHERE status = ... RETURNING`, so only the one transaction that changed it gives its
amounts back (never twice). One subsidy per member and period is the partial unique index, used by
`INSERT ... ON CONFLICT DO NOTHING`. Times are the same ISO text as SQLite's; money is whole fen.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

import psycopg

from decisions.base import (
    BudgetLine,
    LossCeilingLine,
    ReservationAction,
    ReservationOutcome,
    ReservationRequest,
    ReservationStateError,
    SubsidyClaim,
)

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS programme_budgets (
    programme_id TEXT NOT NULL,
    period       TEXT NOT NULL,
    county_id    TEXT NOT NULL,
    budget_fen   BIGINT NOT NULL,
    reserved_fen BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (programme_id, period, county_id)
);
CREATE TABLE IF NOT EXISTS programme_loss (
    programme_id      TEXT NOT NULL,
    period            TEXT NOT NULL,
    ceiling_fen       BIGINT NOT NULL,
    expected_loss_fen BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (programme_id, period)
);
CREATE TABLE IF NOT EXISTS subsidy_reservations (
    request_id        TEXT PRIMARY KEY,
    application_id    TEXT NOT NULL,
    programme_id      TEXT NOT NULL,
    programme_version INTEGER NOT NULL,
    period            TEXT NOT NULL,
    county_id         TEXT NOT NULL,
    member_id         TEXT NOT NULL,
    subsidy_fen       BIGINT NOT NULL,
    expected_loss_fen BIGINT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('reserved', 'accepted', 'released', 'expired')),
    created_at        TEXT NOT NULL,
    expires_at        TEXT NOT NULL,
    settled_at        TEXT,
    settled_reason    TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS reservations_one_per_member
    ON subsidy_reservations(programme_id, period, member_id) WHERE status IN ('reserved', 'accepted');
CREATE INDEX IF NOT EXISTS reservations_open ON subsidy_reservations(status, expires_at);
CREATE INDEX IF NOT EXISTS reservations_programme ON subsidy_reservations(programme_id);
CREATE TABLE IF NOT EXISTS programme_profile_uses (
    use_id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id        TEXT NOT NULL,
    programme_id      TEXT NOT NULL,
    programme_version INTEGER NOT NULL,
    rule              TEXT NOT NULL,
    field             TEXT NOT NULL,
    used_at           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS profile_uses_programme ON programme_profile_uses(programme_id);
"""

_RESERVATION_COLUMNS: Final = (
    "request_id",
    "application_id",
    "programme_id",
    "programme_version",
    "period",
    "county_id",
    "member_id",
    "subsidy_fen",
    "expected_loss_fen",
    "status",
    "created_at",
    "expires_at",
    "settled_at",
    "settled_reason",
)
_SELECTED: Final = ", ".join(_RESERVATION_COLUMNS)
_OPEN: Final = ("reserved", "accepted")
_RETURNED: Final = "RETURNING request_id, programme_id, period, county_id, subsidy_fen, expected_loss_fen"


def stamp(moment: datetime) -> str:
    """The SQLite log's text form for times (UTC, microseconds), so text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def log_profile_uses(
    con: psycopg.Connection[Any], claim: SubsidyClaim, request_id: str, now: datetime
) -> None:
    """The claim's protected profile reads, one row each (inside the caller's transaction)."""
    if not claim.profile_uses:
        return
    used_at = stamp(now)
    with con.cursor() as cur:
        cur.executemany(
            """INSERT INTO programme_profile_uses
               (request_id, programme_id, programme_version, rule, field, used_at)
               VALUES (%s, %s, %s, %s, %s, %s)""",
            [
                (request_id, u.programme_id, u.programme_version, u.rule, u.field, used_at)
                for u in claim.profile_uses
            ],
        )


def reserve(
    con: psycopg.Connection[Any], claim: SubsidyClaim, request_id: str, application_id: str, now: datetime
) -> ReservationOutcome:
    """Reserve the first candidate whose member, county budget and loss ceiling allow it (inside the
    caller's transaction); amounts taken for a candidate that then fails are given back before the next."""
    used_at = stamp(now)
    refused: list[tuple[str, Any]] = []
    for c in claim.candidates:
        held = con.execute(
            """SELECT 1 FROM subsidy_reservations WHERE programme_id = %s AND period = %s
               AND member_id = %s AND status IN ('reserved', 'accepted')""",
            (c.programme_id, c.period, c.member_id),
        ).fetchone()
        if held is not None:
            refused.append((c.programme_id, "already_subsidised"))
            continue
        if not _add_budget(con, c, c.subsidy_fen):
            refused.append((c.programme_id, "budget_exhausted"))
            continue
        if not _add_loss(con, c, c.expected_loss_fen):
            _add_budget(con, c, -c.subsidy_fen)
            refused.append((c.programme_id, "loss_ceiling_reached"))
            continue
        values = (
            request_id,
            application_id,
            c.programme_id,
            c.programme_version,
            c.period,
            c.county_id,
            c.member_id,
            c.subsidy_fen,
            c.expected_loss_fen,
            "reserved",
            used_at,
            stamp(c.expires_at),
            None,
            None,
        )
        inserted = con.execute(
            f"INSERT INTO subsidy_reservations ({_SELECTED}) "
            f"VALUES ({', '.join(['%s'] * len(_RESERVATION_COLUMNS))}) ON CONFLICT DO NOTHING",
            values,
        )
        if inserted.rowcount != 1:  # another replica reserved for this member meanwhile
            _add_budget(con, c, -c.subsidy_fen)
            _add_loss(con, c, -c.expected_loss_fen)
            refused.append((c.programme_id, "already_subsidised"))
            continue
        return ReservationOutcome(c, tuple(refused))
    return ReservationOutcome(None, tuple(refused))


def _add_budget(con: psycopg.Connection[Any], c: ReservationRequest, fen: int) -> bool:
    cur = con.execute(
        """UPDATE programme_budgets SET reserved_fen = reserved_fen + %s
           WHERE programme_id = %s AND period = %s AND county_id = %s AND reserved_fen + %s <= budget_fen""",
        (fen, c.programme_id, c.period, c.county_id, fen),
    )
    return cur.rowcount == 1


def _add_loss(con: psycopg.Connection[Any], c: ReservationRequest, fen: int) -> bool:
    cur = con.execute(
        """UPDATE programme_loss SET expected_loss_fen = expected_loss_fen + %s
           WHERE programme_id = %s AND period = %s AND expected_loss_fen + %s <= ceiling_fen""",
        (fen, c.programme_id, c.period, fen),
    )
    return cur.rowcount == 1


def _give_back(con: psycopg.Connection[Any], rows: Iterable[tuple[Any, ...]]) -> int:
    """Return closed reservations' amounts (rows from a status-flipping UPDATE ... RETURNING)."""
    count = 0
    for _, programme_id, period, county_id, subsidy_fen, loss_fen in rows:
        con.execute(
            """UPDATE programme_budgets SET reserved_fen = reserved_fen - %s
               WHERE programme_id = %s AND period = %s AND county_id = %s""",
            (subsidy_fen, programme_id, period, county_id),
        )
        con.execute(
            """UPDATE programme_loss SET expected_loss_fen = expected_loss_fen - %s
               WHERE programme_id = %s AND period = %s""",
            (loss_fen, programme_id, period),
        )
        count += 1
    return count


def expire(con: psycopg.Connection[Any], now: datetime) -> int:
    """Close every reservation past its expiry (inside the caller's transaction); returns how many.
    The status flip is the lock: a concurrent sweep in another process skips what this one closed."""
    at = stamp(now)
    rows = con.execute(
        f"""UPDATE subsidy_reservations SET status = 'expired', settled_at = %s,
                settled_reason = 'the offer expired'
            WHERE status = 'reserved' AND expires_at <= %s {_RETURNED}""",
        (at, at),
    ).fetchall()
    return _give_back(con, rows)


def release_for_review(
    con: psycopg.Connection[Any], request_id: str, final_decision: str, now: datetime
) -> None:
    """A reviewer turned an approval into another decision: its subsidy goes back to the budget."""
    rows = con.execute(
        f"""UPDATE subsidy_reservations SET status = 'released', settled_at = %s, settled_reason = %s
            WHERE request_id = %s AND status IN ('reserved', 'accepted') {_RETURNED}""",
        (stamp(now), f"review changed the decision to {final_decision}", request_id),
    ).fetchall()
    _give_back(con, rows)


def settle(
    con: psycopg.Connection[Any],
    programme_id: str,
    request_id: str,
    action: ReservationAction,
    reason: str,
    now: datetime,
) -> dict[str, Any] | None:
    """Accept or decline one reservation (inside the caller's transaction; the row is locked first,
    so a concurrent settlement of the same reservation waits and then sees this one's result)."""
    expire(con, now)
    locked = con.execute(
        "SELECT 1 FROM subsidy_reservations WHERE programme_id = %s AND request_id = %s FOR UPDATE",
        (programme_id, request_id),
    ).fetchone()
    if locked is None:
        return None
    found = reservation(con, programme_id, request_id, now)
    if found is None:
        return None
    status = found["status"]
    wanted = "accepted" if action == "accept" else "released"
    if status == wanted:
        return found  # the same answer twice: nothing more to do
    if action == "accept" and status != "reserved":
        raise ReservationStateError(f"reservation {request_id} is {status}: it can no longer be accepted")
    if action == "decline" and status not in _OPEN:
        raise ReservationStateError(f"reservation {request_id} is {status}: nothing to decline")
    at = stamp(now)
    if action == "accept":
        con.execute(
            """UPDATE subsidy_reservations SET status = 'accepted', settled_at = %s, settled_reason = %s
               WHERE request_id = %s""",
            (at, reason, request_id),
        )
    else:
        rows = con.execute(
            f"""UPDATE subsidy_reservations SET status = 'released', settled_at = %s, settled_reason = %s
                WHERE request_id = %s AND status IN ('reserved', 'accepted') {_RETURNED}""",
            (at, reason, request_id),
        ).fetchall()
        _give_back(con, rows)
    return reservation(con, programme_id, request_id, now)


def register(
    con: psycopg.Connection[Any], budgets: Iterable[BudgetLine], ceilings: Iterable[LossCeilingLine]
) -> None:
    """Set budget lines and loss ceilings (inside the caller's transaction); what is reserved stays."""
    with con.cursor() as cur:
        cur.executemany(
            """INSERT INTO programme_budgets (programme_id, period, county_id, budget_fen)
               VALUES (%s, %s, %s, %s) ON CONFLICT (programme_id, period, county_id)
               DO UPDATE SET budget_fen = excluded.budget_fen""",
            [(b.programme_id, b.period, b.county_id, b.budget_fen) for b in budgets],
        )
        cur.executemany(
            """INSERT INTO programme_loss (programme_id, period, ceiling_fen) VALUES (%s, %s, %s)
               ON CONFLICT (programme_id, period) DO UPDATE SET ceiling_fen = excluded.ceiling_fen""",
            [(c.programme_id, c.period, c.ceiling_fen) for c in ceilings],
        )


def _effective(row: dict[str, Any], now: str) -> dict[str, Any]:
    if row["status"] == "reserved" and row["expires_at"] <= now:
        row["status"] = "expired"
    return row


def reservation(
    con: psycopg.Connection[Any], programme_id: str, request_id: str, now: datetime
) -> dict[str, Any] | None:
    """One reservation with its status as of `now`."""
    row = con.execute(
        f"SELECT {_SELECTED} FROM subsidy_reservations WHERE programme_id = %s AND request_id = %s",
        (programme_id, request_id),
    ).fetchone()
    return None if row is None else _effective(dict(zip(_RESERVATION_COLUMNS, row, strict=True)), stamp(now))


def reservations(con: psycopg.Connection[Any], programme_id: str, now: datetime) -> list[dict[str, Any]]:
    """Every reservation of the programme, statuses as of `now`."""
    rows = con.execute(
        f"SELECT {_SELECTED} FROM subsidy_reservations WHERE programme_id = %s ORDER BY created_at",
        (programme_id,),
    ).fetchall()
    at = stamp(now)
    return [_effective(dict(zip(_RESERVATION_COLUMNS, r, strict=True)), at) for r in rows]


def profile_uses(con: psycopg.Connection[Any], programme_id: str) -> list[dict[str, Any]]:
    """Protected reads by rule and field: count, first and last use."""
    rows = con.execute(
        """SELECT rule, field, count(*), min(used_at), max(used_at) FROM programme_profile_uses
           WHERE programme_id = %s GROUP BY rule, field ORDER BY rule, field""",
        (programme_id,),
    ).fetchall()
    names = ("rule", "field", "count", "first_used_at", "last_used_at")
    return [dict(zip(names, r, strict=True)) for r in rows]
