"""POST /v1/events: pushed events go through the same validation, quarantine and dedupe as files."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, status
from starlette.concurrency import run_in_threadpool

from features.validation import Limits
from serving.deps import IngestKey, StateDep
from serving.schemas import ERROR_RESPONSES, EventsRequest, EventsResponse, RowError

router = APIRouter(responses=ERROR_RESPONSES, prefix="/v1/events", tags=["events"])


@router.post("", response_model=EventsResponse)
async def post_events(body: EventsRequest, state: StateDep, key: IngestKey) -> EventsResponse:
    """Append valid events to the log; each bad row comes back with its index and reasons."""
    settings = state.settings
    if len(body.events) > settings.max_events_per_request:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            [{"field": "events", "problem": f"at most {settings.max_events_per_request} events per request"}],
        )
    limits = Limits.from_settings(settings, datetime.now(UTC))

    events = state.events
    if events is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "event ingest is not set up in this process")

    def run() -> tuple[str, int, int, int, list[tuple[int, str]]]:
        # The process's key index, connection and ledger (see `RecordIngest`): no per-request load.
        report, rejections = events.ingest(body.events, f"api:{key.name}", limits)
        totals = report.totals()
        return report.batch_id, totals["accepted"], totals["duplicates"], totals["quarantined"], rejections

    batch_id, accepted, duplicates, quarantined, rejections = await run_in_threadpool(run)
    errors = []
    for index, reasons in rejections:
        event_id = body.events[index].get("event_id")
        errors.append(
            RowError(
                index=index,
                event_id=str(event_id) if event_id is not None else None,
                reasons=reasons.split("; "),
            )
        )
    return EventsResponse(
        batch_id=batch_id,
        received=len(body.events),
        accepted=accepted,
        duplicates=duplicates,
        quarantined=quarantined,
        errors=errors,
    )
