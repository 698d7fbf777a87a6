"""`coopscore decisions ...`: the decision log for auditors.

`coopscore decisions export --from ISO --to ISO --out FILE [--format parquet|csv] [--json]` writes one
row per decision logged in [--from, --to): request id, time, caller (the API key's name, never the
key), model name, version and digest, feature-set version, inputs hash, decision, PD, score, grade,
reasons (JSON text), the latest review, the outcome, the pricing policy's version and digest and the
offer (JSON text) (`decisions.base.AUDIT_COLUMNS`). It reads through the read-only decision-log
reader, so it runs while the server writes.

Exit codes: 0 written (also when the window holds no decision: the file then has only its header),
2 bad input (a time that is not ISO 8601, --from not before --to, no decision log yet, an unknown
--format), 7 the configured decision log's database cannot be reached, 1 internal error.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from coopscore.cli.output import (
    EXIT_BAD_INPUT,
    EXIT_ERROR,
    EXIT_UNAVAILABLE,
    JsonOnStdoutOption,
    console,
    emit,
    fail,
)

app = typer.Typer(help="The decision log: export it for auditors.", no_args_is_help=True)


def _moment(text: str, option: str) -> datetime:
    """An ISO 8601 date or time; without a zone it is UTC (the log's clock)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 date or time (e.g. 2026-01-01 or 2026-01-01T08:00:00Z)",
            param_hint=option,
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@app.command("export")
def export(
    start: Annotated[
        str,
        typer.Option(
            "--from",
            help="First moment included, ISO 8601 (no zone: UTC), e.g. --from 2026-01-01 or "
            "--from 2026-01-01T08:00:00Z.",
        ),
    ],
    end: Annotated[
        str,
        typer.Option(
            "--to",
            help="End of the window, excluded, ISO 8601 (no zone: UTC), e.g. --to 2026-02-01.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="File to write, e.g. --out audit-2026-01.parquet.")],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="parquet or csv (default: csv when --out ends in .csv, else parquet), e.g. --format csv.",
        ),
    ] = None,
    as_json: JsonOnStdoutOption = False,
) -> None:
    """Export the decisions of a time window for auditors: who asked, which model, on which inputs
    (hash), the decision and its reasons, the latest review, the outcome, and the offer with the
    pricing policy that priced it. Never an API key.

    Exit codes: 0 written, 2 bad input (bad time, --from not before --to, no decision log, unknown
    --format), 7 the decision log's database cannot be reached, 1 internal error.
    """
    from coopscore.settings import get_settings
    from decisions.base import DecisionLogUnavailableError
    from decisions.export import FORMATS, write_export
    from decisions.factory import decision_log_reader

    def stop(message: str, code: int) -> NoReturn:
        payload = {"status": "error", "exit_code": code, "message": message} if as_json else None
        fail(message, code, payload=payload, soft_wrap=True)

    since, until = _moment(start, "--from"), _moment(end, "--to")
    if since >= until:
        stop(f"--from {since.isoformat()} is not before --to {until.isoformat()}", EXIT_BAD_INPUT)
    chosen = fmt or ("csv" if out.suffix.lower() == ".csv" else "parquet")
    if chosen not in FORMATS:
        stop(f"--format {chosen!r}: use one of {', '.join(FORMATS)}", EXIT_BAD_INPUT)
    settings = get_settings()
    try:
        reader = decision_log_reader(settings)
    except FileNotFoundError as error:
        stop(f"{error}: nothing has been scored with these settings (COOPSCORE_DATA_DIR?)", EXIT_BAD_INPUT)
    except DecisionLogUnavailableError as error:
        stop(str(error), EXIT_UNAVAILABLE)
    with reader:
        rows = reader.audit_rows(since, until)
    try:
        write_export(rows, out, chosen)  # type: ignore[arg-type]  # checked against FORMATS above
    except OSError as error:
        stop(f"cannot write {out}: {error.strerror or error}", EXIT_ERROR)
    summary: dict[str, Any] = {
        "status": "ok",
        "rows": len(rows),
        "out": str(out),
        "format": chosen,
        "from": since.isoformat(),
        "to": until.isoformat(),
        "by_caller": dict(sorted(Counter(r["caller"] or "" for r in rows).items())),
        "reviewed": sum(r["review_decision"] is not None for r in rows),
        "with_outcome": sum(r["outcome_defaulted"] is not None for r in rows),
        "with_offer": sum(r["offer"] is not None for r in rows),
        # Decisions logged before offers existed have no policy: counted under "".
        "by_pricing_policy": dict(sorted(Counter(r["pricing_policy_version"] or "" for r in rows).items())),
    }
    if as_json:
        emit(summary)
        return
    console.print(
        f"wrote {len(rows):,} decisions ({summary['reviewed']:,} reviewed, "
        f"{summary['with_outcome']:,} with an outcome) from {since.isoformat()} to "
        f"{until.isoformat()} to {out} ({chosen})",
        soft_wrap=True,
        highlight=False,
    )
