"""Subsidy reservations in the SQLite decision log: the tables and the statements the writer runs
inside the transaction that stores a decision row, so a budget is never oversubscribed.

Each county's running budget is a row (`programme_budgets`), and each period's expected loss another
(`programme_loss`). A reservation adds to both with a conditional update (`... WHERE reserved_fen +
cost <= budget_fen`): it succeeds only while the budget holds, whatever else runs at the same time,
and it is the same statement a PostgreSQL backend would use. Money is whole fen, so sums are exact.
A declined or expired offer gives its amounts back. Every read of a protected profile field by a
programme's eligibility rule is a row of `programme_profile_uses`, written with its decision.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

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
    budget_fen   INTEGER NOT NULL,
    reserved_fen INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (programme_id, period, county_id)
);
CREATE TABLE IF NOT EXISTS programme_loss (
    programme_id      TEXT NOT NULL,
    period            TEXT NOT NULL,
    ceiling_fen       INTEGER NOT NULL,
    expected_loss_fen INTEGER NOT NULL DEFAULT 0,
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
    subsidy_fen       INTEGER NOT NULL,
    expected_loss_fen INTEGER NOT NULL,
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
    use_id            INTEGER PRIMARY KEY AUTOINCREMENT,
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


def stamp(moment: datetime) -> str:
    """One text form for every time in these tables (UTC, microseconds), so text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def log_profile_uses(con: sqlite3.Connection, claim: SubsidyClaim, request_id: str, now: datetime) -> None:
    """The claim's protected profile reads, one row each (inside the caller's transaction)."""
    used_at = stamp(now)
    con.executemany(
        """INSERT INTO programme_profile_uses
           (request_id, programme_id, programme_version, rule, field, used_at) VALUES (?, ?, ?, ?, ?, ?)""",
        [
            (request_id, u.programme_id, u.programme_version, u.rule, u.field, used_at)
            for u in claim.profile_uses
        ],
    )


def reserve(
    con: sqlite3.Connection, claim: SubsidyClaim, request_id: str, application_id: str, now: datetime
) -> ReservationOutcome:
    """Reserve the first candidate whose member, county budget and loss ceiling allow it (inside the
    caller's transaction)."""
    used_at = stamp(now)
    refused: list[tuple[str, Any]] = []
    for c in claim.candidates:
        held = con.execute(
            """SELECT 1 FROM subsidy_reservations WHERE programme_id = ? AND period = ? AND member_id = ?
               AND status IN ('reserved', 'accepted')""",
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
        con.execute(
            f"INSERT INTO subsidy_reservations ({', '.join(_RESERVATION_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_RESERVATION_COLUMNS))})",
            (
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
            ),
        )
        return ReservationOutcome(c, tuple(refused))
    return ReservationOutcome(None, tuple(refused))


def _add_budget(con: sqlite3.Connection, c: ReservationRequest, fen: int) -> bool:
    cur = con.execute(
        """UPDATE programme_budgets SET reserved_fen = reserved_fen + ?
           WHERE programme_id = ? AND period = ? AND county_id = ? AND reserved_fen + ? <= budget_fen""",
        (fen, c.programme_id, c.period, c.county_id, fen),
    )
    return cur.rowcount == 1


def _add_loss(con: sqlite3.Connection, c: ReservationRequest, fen: int) -> bool:
    cur = con.execute(
        """UPDATE programme_loss SET expected_loss_fen = expected_loss_fen + ?
           WHERE programme_id = ? AND period = ? AND expected_loss_fen + ? <= ceiling_fen""",
        (fen, c.programme_id, c.period, fen),
    )
    return cur.rowcount == 1


def _give_back(
    con: sqlite3.Connection, row: sqlite3.Row | tuple[Any, ...], status: str, reason: str, now: str
) -> None:
    """Return an open reservation's amounts to its budget and loss rows and close it."""
    request_id, programme_id, period, county_id, subsidy_fen, loss_fen = row
    con.execute(
        """UPDATE programme_budgets SET reserved_fen = reserved_fen - ?
           WHERE programme_id = ? AND period = ? AND county_id = ?""",
        (subsidy_fen, programme_id, period, county_id),
    )
    con.execute(
        """UPDATE programme_loss SET expected_loss_fen = expected_loss_fen - ?
           WHERE programme_id = ? AND period = ?""",
        (loss_fen, programme_id, period),
    )
    con.execute(
        "UPDATE subsidy_reservations SET status = ?, settled_at = ?, settled_reason = ? WHERE request_id = ?",
        (status, now, reason, request_id),
    )


_OPEN_ROW: Final = """SELECT request_id, programme_id, period, county_id, subsidy_fen, expected_loss_fen
    FROM subsidy_reservations"""


def expire(con: sqlite3.Connection, now: datetime) -> int:
    """Close every reservation past its expiry (inside the caller's transaction); returns how many."""
    at = stamp(now)
    rows = con.execute(f"{_OPEN_ROW} WHERE status = 'reserved' AND expires_at <= ?", (at,)).fetchall()
    for row in rows:
        _give_back(con, row, "expired", "the offer expired", at)
    return len(rows)


def release_for_review(con: sqlite3.Connection, request_id: str, final_decision: str, now: datetime) -> None:
    """A reviewer turned an approval into another decision: its subsidy goes back to the budget."""
    row = con.execute(
        f"{_OPEN_ROW} WHERE request_id = ? AND status IN ('reserved', 'accepted')", (request_id,)
    ).fetchone()
    if row is not None:
        _give_back(con, row, "released", f"review changed the decision to {final_decision}", stamp(now))


def settle(
    con: sqlite3.Connection,
    programme_id: str,
    request_id: str,
    action: ReservationAction,
    reason: str,
    now: datetime,
) -> dict[str, Any] | None:
    """Accept or decline one reservation (inside the caller's transaction)."""
    expire(con, now)
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
            """UPDATE subsidy_reservations SET status = 'accepted', settled_at = ?, settled_reason = ?
               WHERE request_id = ?""",
            (at, reason, request_id),
        )
    else:
        row = con.execute(f"{_OPEN_ROW} WHERE request_id = ?", (request_id,)).fetchone()
        _give_back(con, row, "released", reason, at)
    return reservation(con, programme_id, request_id, now)


def register(
    con: sqlite3.Connection, budgets: Iterable[BudgetLine], ceilings: Iterable[LossCeilingLine]
) -> None:
    """Set budget lines and loss ceilings (inside the caller's transaction); what is reserved stays."""
    con.executemany(
        """INSERT INTO programme_budgets (programme_id, period, county_id, budget_fen) VALUES (?, ?, ?, ?)
           ON CONFLICT (programme_id, period, county_id) DO UPDATE SET budget_fen = excluded.budget_fen""",
        [(b.programme_id, b.period, b.county_id, b.budget_fen) for b in budgets],
    )
    con.executemany(
        """INSERT INTO programme_loss (programme_id, period, ceiling_fen) VALUES (?, ?, ?)
           ON CONFLICT (programme_id, period) DO UPDATE SET ceiling_fen = excluded.ceiling_fen""",
        [(c.programme_id, c.period, c.ceiling_fen) for c in ceilings],
    )


def _effective(row: dict[str, Any], now: str) -> dict[str, Any]:
    if row["status"] == "reserved" and row["expires_at"] <= now:
        row["status"] = "expired"
    return row


def reservation(
    con: sqlite3.Connection, programme_id: str, request_id: str, now: datetime
) -> dict[str, Any] | None:
    """One reservation with its status as of `now`."""
    if not _has_tables(con):
        return None
    row = con.execute(
        f"SELECT {_SELECTED} FROM subsidy_reservations WHERE programme_id = ? AND request_id = ?",
        (programme_id, request_id),
    ).fetchone()
    return None if row is None else _effective(dict(zip(_RESERVATION_COLUMNS, row, strict=True)), stamp(now))


def reservations(con: sqlite3.Connection, programme_id: str, now: datetime) -> list[dict[str, Any]]:
    """Every reservation of the programme, statuses as of `now` (empty before the first)."""
    if not _has_tables(con):
        return []
    rows = con.execute(
        f"SELECT {_SELECTED} FROM subsidy_reservations WHERE programme_id = ? ORDER BY created_at",
        (programme_id,),
    ).fetchall()
    at = stamp(now)
    return [_effective(dict(zip(_RESERVATION_COLUMNS, r, strict=True)), at) for r in rows]


def profile_uses(con: sqlite3.Connection, programme_id: str) -> list[dict[str, Any]]:
    """Protected reads by rule and field: count, first and last use."""
    if not _has_tables(con):
        return []
    rows = con.execute(
        """SELECT rule, field, count(*), min(used_at), max(used_at) FROM programme_profile_uses
           WHERE programme_id = ? GROUP BY rule, field ORDER BY rule, field""",
        (programme_id,),
    ).fetchall()
    names = ("rule", "field", "count", "first_used_at", "last_used_at")
    return [dict(zip(names, r, strict=True)) for r in rows]


def _has_tables(con: sqlite3.Connection) -> bool:
    """False for a log an earlier release wrote (a read-only reader cannot add the tables)."""
    return (
        con.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'subsidy_reservations'"
        ).fetchone()
        is not None
    )
