"""Event-log statistics: what is stored, by type, month and county, how late it arrived, what was refused,
and what became of each file ingested (its latest status in the ledger)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from features.event_log import EventLog
from features.ledger import FAILED, FILE_STATUSES, IngestLedger


def _listing(paths: list[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def event_log_stats(
    log: EventLog, quarantine_dir: Path, ledger: IngestLedger, late_after_days: int = 7
) -> dict[str, Any]:
    """Counts by event type, by event month and by county; late-record share; quarantine reasons and
    sources; files by their latest status, and every file whose latest ingest failed, with its reason."""
    con = duckdb.connect(config={"threads": 2})
    con.execute("SET TimeZone = 'UTC'")
    files = log.event_files()
    out: dict[str, Any] = {
        "events": 0,
        "by_type": {},
        "by_month": {},
        "by_county": {},
        "late_share": None,
        "late_after_days": late_after_days,
        "quarantine": {"rows": 0, "by_reason": {}, "by_source": {}},
        "files": _file_statuses(ledger),
    }
    if files:
        con.execute(
            "CREATE VIEW ev AS SELECT event_type, coop_id, event_time, recorded_at "
            f"FROM read_parquet({_listing(files)}, union_by_name = true)"
        )
        total, late = con.execute(
            f"""SELECT count(*), count(*) FILTER (
                    WHERE recorded_at > event_time + INTERVAL {int(late_after_days)} DAY)
                FROM ev"""
        ).fetchall()[0]
        out["events"] = int(total)
        out["late_share"] = round(late / total, 4) if total else None
        out["by_type"] = dict(
            con.execute("SELECT event_type, count(*) FROM ev GROUP BY 1 ORDER BY 1").fetchall()
        )
        out["by_month"] = dict(
            con.execute(
                "SELECT strftime(event_time, '%Y-%m') m, count(*) FROM ev GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
        coops = log.table_files("cooperatives")
        if coops:
            rows = con.execute(
                f"""SELECT coalesce(c.county_id, 'unknown') county, count(*)
                    FROM ev LEFT JOIN (SELECT DISTINCT coop_id, county_id
                                       FROM read_parquet({_listing(coops)})) c USING (coop_id)
                    GROUP BY 1 ORDER BY 1"""
            ).fetchall()
        else:
            rows = [("unknown", out["events"])]
        out["by_county"] = dict(rows)
    quarantine = sorted(quarantine_dir.glob("batch=*/part-*.parquet"))
    if quarantine:
        con.execute(
            f"CREATE VIEW q AS SELECT * FROM read_parquet({_listing(quarantine)}, union_by_name = true)"
        )
        out["quarantine"]["rows"] = int(con.sql("SELECT count(*) FROM q").fetchall()[0][0])
        # A row may break several rules; count each rule (the part before ':') once per row.
        reasons = con.execute(
            """SELECT reason, count(*) FROM (
                   SELECT DISTINCT rowid_, split_part(trim(r), ':', 1) || ':' ||
                          regexp_replace(split_part(trim(r), ':', 2), ' for [a-z_]+$', '') AS reason
                   FROM (SELECT row_number() OVER () rowid_, unnest(string_split(reasons, ';')) r
                         FROM q))
               GROUP BY 1 ORDER BY 2 DESC"""
        ).fetchall()
        out["quarantine"]["by_reason"] = {k: int(v) for k, v in reasons}
        sources = con.execute("SELECT source, count(*) FROM q GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
        out["quarantine"]["by_source"] = {k: int(v) for k, v in sources}
    con.close()
    return out


def _file_statuses(ledger: IngestLedger) -> dict[str, Any]:
    """Every file ever ingested, counted by its latest status; the failed ones listed with reasons (a
    file fixed and ingested again since shows its new status)."""
    latest = ledger.latest_sources()
    by_status = dict.fromkeys(FILE_STATUSES, 0)
    for row in latest:
        by_status[str(row["status"])] += 1
    failed = [
        {"source": row["source"], "reason": row["reason"], "batch_id": row["batch_id"]}
        for row in latest
        if row["status"] == FAILED
    ]
    return {"by_status": by_status, "failed": failed}
