"""GET /metrics: Prometheus exposition (read scope: scrapers send a key like any client)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.deps import ReadKey, StateDep
from serving.schemas import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES, tags=["metrics"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(state: StateDep, _key: ReadKey) -> Response:
    """Requests and latency by route and status, decisions, score distribution, model version."""
    from monitoring.monitor import latest_drift_gauges

    state.metrics.feature_psi.clear()
    for feature, psi in latest_drift_gauges(state.settings.data_dir).items():
        state.metrics.feature_psi.labels(feature=feature).set(psi)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
