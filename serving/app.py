"""The FastAPI app factory: routers, auth, limits, metrics and the lifespan that loads the champion."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coopscore.files import private_dir, private_file
from coopscore.settings import Settings, get_settings
from decisions.factory import decision_log_writer
from features.online import factory as online_factory
from features.online.base import OnlineStore
from models.pricing import load_pricing_policy
from serving.access import AccessLayer, configure_access_log
from serving.console import routes as console
from serving.console.session import SessionSigner
from serving.errors import install_error_handlers
from serving.guards import install_request_guards
from serving.metrics import ServiceMetrics
from serving.programmes import ProgrammeDesk
from serving.routes import (
    admin,
    audits,
    decisions,
    events,
    health,
    members,
    metrics,
    model,
    monitoring,
    outcomes,
    programmes,
    score,
)
from serving.state import AppState, ModelHolder, ScorerLoader

if TYPE_CHECKING:
    from features.ingest import RecordIngest

log = logging.getLogger("coopscore.serving")


_MAX_CACHED_LABELS = 512


class RequestMetrics:
    """Count and time every request by route template and status (a pure ASGI layer: cheap)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # Labelled children looked up once per (route, method, status), not on every request.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            key = (route, scope["method"], status)
            children = self._children.get(key)
            if children is None:
                children = (
                    self.metrics.requests.labels(route=route, method=key[1], status=str(status)),
                    self.metrics.latency.labels(route=route),
                )
                if len(self._children) < _MAX_CACHED_LABELS:  # methods come from clients: stay bounded
                    self._children[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - started)


def _record_ingest(settings: Settings) -> RecordIngest:
    """POST /v1/events' ingest path, with its key index loading in the background: a CLI ingest holding
    the writer lock, or a large log, never delays the start (the first POST waits for it instead)."""
    from features.event_log import EventLog
    from features.ingest import RecordIngest
    from features.ledger import IngestLedger

    events = RecordIngest(
        EventLog(settings.events_dir, settings.tables_dir),
        IngestLedger(settings.ledger_path),
        settings.quarantine_dir,
    )

    def warm() -> None:
        try:
            events.warm()
        except Exception:  # the first POST opens the index again and reports the problem
            log.exception("could not load the event key index")

    threading.Thread(target=warm, name="events-index-warm", daemon=True).start()
    return events


def _default_loader() -> ScorerLoader:
    from serving.champion import load_champion

    loader: ScorerLoader = load_champion
    return loader


def create_app(
    settings: Settings | None = None,
    *,
    scorer_loader: ScorerLoader | None = None,
    online_store: OnlineStore | None = None,
) -> FastAPI:
    """Build the API. Tests pass their own settings, loader or store; `coopscore serve` passes none."""
    settings = settings or get_settings()
    service_metrics = ServiceMetrics()
    # Before anything starts: a bad policy file stops the server with one line naming the field.
    pricing = load_pricing_policy(settings.pricing_policy)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _private_data(settings)
        store = online_store or online_factory.online_store(settings)
        decision_log = decision_log_writer(settings)
        holder = ModelHolder(scorer_loader or _default_loader(), settings, store)
        try:
            _, current = holder.reload()
        except Exception:  # start anyway: /readyz says why, /v1/score answers 503
            log.exception("could not load the champion model")
            current = None
        if current is not None:
            service_metrics.set_model(current.scorer.name, current.scorer.version)
        events = _record_ingest(settings)
        programmes = ProgrammeDesk.open(settings, decision_log)
        app.state.coopscore = AppState(
            settings,
            store,
            decision_log,
            holder,
            service_metrics,
            events=events,
            programmes=programmes,
            pricing=pricing,
            console_sessions=SessionSigner(settings),
        )
        try:
            yield
        finally:
            events.close()
            app.state.coopscore.scoring_pool.shutdown(wait=True)
            decision_log.close()
            if online_store is None:
                store.close()

    docs: dict[str, Any] = (
        {}
        if settings.docs_enabled and not settings.production
        else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    )
    app = FastAPI(
        title="coopscore",
        summary="Credit scores with reasons for thin-file rural borrowers",
        version="0.1.0",
        lifespan=lifespan,
        **docs,
    )
    for router in (
        health.router,
        score.router,
        members.router,
        events.router,
        outcomes.router,
        model.router,
        admin.router,
        decisions.router,
        metrics.router,
        monitoring.router,
        audits.router,
        programmes.router,
        console.router,
    ):
        app.include_router(router)
    install_error_handlers(app)
    # Innermost: the key, then the body size, are checked before a route reads the body (serving/guards).
    install_request_guards(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type", "Idempotency-Key"],
        )
    app.add_middleware(RequestMetrics, metrics=service_metrics)
    _add_access_layer(app, settings, service_metrics)
    return app


# ---- Access log, rate limits and private files (issue 14: items 2, 5, 6) ----


def _add_access_layer(app: FastAPI, settings: Settings, service_metrics: ServiceMetrics) -> None:
    """The outermost layer: request ids, the JSON access log and the rate limits (`serving.access`),
    so a refused request costs no routing, no body and no other middleware."""
    configure_access_log(settings.access_log)
    app.add_middleware(AccessLayer, settings=settings, metrics=service_metrics)


def _private_data(settings: Settings) -> None:
    """The data folder 0700 (tightened, with a warning, if it was looser) and the SQLite decision log
    created 0600, whatever the umask of the process serving the app."""
    private_dir(settings.data_dir)
    url = settings.decision_log_url
    if url.scheme == "sqlite":
        private_file(url.sqlite_path())
