"""The console's pages under /console: sign-in, score, review queue, member view and monitoring.

Each page checks the scope of the API calls behind it with the API's own rule (`serving.auth`), and
calls the same code as the API (`score_application`, `serving.reviews`), so nothing is decided twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from coopscore.settings import ApiKeyEntry, Scope
from features.catalog import REASON_GROUPS, default_registry
from monitoring.fairness_report import latest_fairness_audit
from monitoring.monitor import latest_drift_report_path, latest_drift_summary
from serving import reviews
from serving.auth import find_key, key_has_scope
from serving.console.charts import bars, interval_bars, waterfall
from serving.console.session import COOKIE, Session, SessionSigner, csrf_ok, session_key
from serving.console.text import Lang, Texts, language
from serving.console.views import ACTIVITY, ModelPanels, member_activity, onboarding
from serving.deps import StateDep
from serving.routes.score import score_application
from serving.schemas import Purpose, ScoreRequest
from serving.state import AppState

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
LANG_COOKIE = "cs_lang"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
PURPOSES: tuple[str, ...] = get_args(Purpose)
_ID = r"^[0-9a-f]{32}$"

router = APIRouter(prefix="/console", include_in_schema=False)


def _signer(state: AppState) -> SessionSigner:
    if state.console_sessions is None:  # a state built without the lifespan (tests): one per state
        state.console_sessions = SessionSigner(state.settings)
    return state.console_sessions


def _lang(request: Request) -> Lang:
    return language(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE))


def _secure(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def _page(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    session: Session | None = None,
    key: ApiKeyEntry | None = None,
    status_code: int = 200,
) -> Response:
    lang = _lang(request)
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "t": Texts(lang),
            "lang": lang,
            "other_lang": "en" if lang == "zh" else "zh",
            "csrf": session.csrf if session else "",
            "key": key,
            **context,
        },
        status_code=status_code,
    )
    if "lang" in request.query_params:
        response.set_cookie(LANG_COOKIE, lang, httponly=True, samesite="strict", max_age=365 * 86400)
    return _secure(response)


class _Gate:
    """The signed-in key for a page needing `scope`, or the response to send instead."""

    def __init__(self, request: Request, state: AppState, scope: Scope) -> None:
        self.session = _signer(state).read(request.cookies.get(COOKIE))
        self.key = session_key(self.session, state.settings.api_keys) if self.session else None
        self.refusal: Response | None = None
        if self.key is None or self.session is None:
            self.refusal = _secure(RedirectResponse("/console/login", status_code=303))
        else:
            request.scope.setdefault("state", {})["console_key"] = self.key.name  # the access log's key
            if not key_has_scope(self.key, scope):
                self.refusal = _page(
                    request,
                    "forbidden.html",
                    {"scope": scope},
                    session=self.session,
                    key=self.key,
                    status_code=403,
                )


@router.get("", response_class=RedirectResponse)
def home() -> Response:
    """The score page is the console's front door."""
    return _secure(RedirectResponse("/console/score", status_code=303))


@router.get("/static/console.css", response_class=FileResponse)
def stylesheet() -> FileResponse:
    """The one stylesheet (written here; nothing is loaded from elsewhere)."""
    return FileResponse(HERE / "static" / "console.css", media_type="text/css")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    """Sign-in with an API key."""
    return _page(request, "login.html", {"error": False})


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, state: StateDep, api_key: Annotated[str, Form(max_length=200)]) -> Response:
    """Exchange an API key for a session cookie holding its SHA-256 (never the key)."""
    entry = find_key(api_key, state.settings.api_keys)
    if entry is None:  # 401: the access layer counts it against the address's failure budget
        return _page(request, "login.html", {"error": True}, status_code=401)
    cookie, _ = _signer(state).issue(entry.sha256)
    response = _secure(RedirectResponse("/console/score", status_code=303))
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=state.settings.console_session_minutes * 60,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/console",
    )
    return response


@router.post("/logout", response_class=RedirectResponse)
def logout(request: Request, state: StateDep, csrf: Annotated[str, Form()] = "") -> Response:
    """End the session (the cookie is dropped)."""
    session = _signer(state).read(request.cookies.get(COOKIE))
    response = _secure(RedirectResponse("/console/login", status_code=303))
    if session is not None and csrf_ok(session, csrf):
        response.delete_cookie(COOKIE, path="/console")
    return response


def _group_labels(lang: Lang) -> dict[str, str]:
    return {name: (zh if lang == "zh" else en) for name, zh, en in REASON_GROUPS}


def _score_view(result: dict[str, Any], lang: Lang, texts: Texts) -> dict[str, Any]:
    labels = _group_labels(lang)
    groups = sorted((result.get("group_points") or {}).items(), key=lambda kv: kv[1])
    steps = [(labels.get(code, code), points) for code, points in groups]
    chart = waterfall(result["base_points"], steps, result["score"], texts("waterfall"))
    chart = chart.replace('data-label="base">base<', f'data-label="base">{texts("base_points")}<')
    chart = chart.replace('data-label="score">score<', f'data-label="score">{texts("score")}<')
    return {"result": result, "chart": chart, "steps": steps}


@router.get("/score", response_class=HTMLResponse)
def score_page(request: Request, state: StateDep, member_id: str = "") -> Response:
    """The score form (with a member lookup through the online store)."""
    gate = _Gate(request, state, "score")
    if gate.refusal:
        return gate.refusal
    found = None
    if member_id:
        found = state.online_store.online_read([member_id[:64]])[0] is not None
    return _page(
        request,
        "score.html",
        {"form": {"member_id": member_id}, "purposes": PURPOSES, "found": found},
        session=gate.session,
        key=gate.key,
    )


@router.post("/score", response_class=HTMLResponse)
async def score(
    request: Request,
    state: StateDep,
    member_id: Annotated[str, Form(max_length=64)],
    amount_cny: Annotated[float, Form()],
    term_months: Annotated[int, Form()],
    purpose: Annotated[str, Form(max_length=32)],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Score one applicant through the API's own path (logged under the signed-in key's name)."""
    gate = _Gate(request, state, "score")
    if gate.refusal or gate.session is None or gate.key is None:
        return gate.refusal or _secure(RedirectResponse("/console/login", status_code=303))
    form = {"member_id": member_id, "amount_cny": amount_cny, "term_months": term_months, "purpose": purpose}
    context: dict[str, Any] = {"form": form, "purposes": PURPOSES, "found": None}
    if not csrf_ok(gate.session, csrf):
        context["error"] = "csrf"
        return _page(request, "score.html", context, session=gate.session, key=gate.key, status_code=403)
    lang = _lang(request)
    try:
        body = ScoreRequest.model_validate({**form, "explain": "all", "recourse": True})
        if state.models.current is None:
            raise HTTPException(503, state.models.last_error or "no model")
        answer = await score_application(
            state, state.models.current, body, gate.key.name, None, getattr(request.state, "request_id", None)
        )
    except ValidationError as error:
        context["error_detail"] = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in error.errors())
        return _page(request, "score.html", context, session=gate.session, key=gate.key, status_code=422)
    except HTTPException as error:
        context["error_detail"] = str(error.detail)
        return _page(
            request, "score.html", context, session=gate.session, key=gate.key, status_code=error.status_code
        )
    result = json.loads(bytes(answer.body))
    context.update(_score_view(result, lang, Texts(lang)), can_request=True)
    return _page(request, "score.html", context, session=gate.session, key=gate.key)


@router.get("/reviews", response_class=HTMLResponse)
def review_queue(request: Request, state: StateDep) -> Response:
    """Decisions awaiting a person: unreviewed reviews and declines, newest first."""
    gate = _Gate(request, state, "review")
    if gate.refusal:
        return gate.refusal
    queue = state.decision_log.review_queue(limit=100)
    return _page(request, "reviews.html", {"queue": queue}, session=gate.session, key=gate.key)


def _review_context(state: AppState, request_id: str, lang: Lang) -> dict[str, Any]:
    found = state.decision_log.get(request_id) if len(request_id) == 32 else None
    if found is None:
        raise HTTPException(404, f"no decision {request_id!r}")
    response = found["response"]
    view = _score_view(response, lang, Texts(lang)) if "base_points" in response else {"result": response}
    member = str(response.get("member_id", ""))
    history = state.decision_log.member_decisions(member, limit=10)
    activity = _activity_charts(state, member, Texts(lang))
    return {**view, "decision_row": found, "history": history, "activity": activity}


@router.get("/reviews/{request_id}", response_class=HTMLResponse)
def review_page(request: Request, state: StateDep, request_id: str) -> Response:
    """One decision as the officer saw it, the member's past decisions, and the review form."""
    gate = _Gate(request, state, "review")
    if gate.refusal:
        return gate.refusal
    context = _review_context(state, request_id, _lang(request))
    return _page(request, "review.html", context, session=gate.session, key=gate.key)


@router.post("/reviews/{request_id}", response_class=HTMLResponse)
def submit_review(
    request: Request,
    state: StateDep,
    request_id: str,
    reviewer: Annotated[str, Form(min_length=1, max_length=128)],
    action: Annotated[str, Form()],
    reason: Annotated[str, Form(min_length=3, max_length=2_000)],
    decision: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Record the review through the API's own path, under the signed-in key's name."""
    gate = _Gate(request, state, "review")
    if gate.refusal or gate.session is None or gate.key is None:
        return gate.refusal or _secure(RedirectResponse("/console/login", status_code=303))
    context = _review_context(state, request_id, _lang(request))
    if not csrf_ok(gate.session, csrf) or action not in ("confirm", "override"):
        context["error"] = "csrf"
        return _page(request, "review.html", context, session=gate.session, key=gate.key, status_code=403)
    new = decision if decision in ("approve", "review", "decline") else None
    reviews.review_decision(
        state,
        request_id,
        reviewer=reviewer,
        action="override" if action == "override" else "confirm",
        decision=new,  # type: ignore[arg-type]
        reason=reason,
        key_name=gate.key.name,
    )
    return _secure(RedirectResponse(f"/console/reviews/{request_id}?saved=1", status_code=303))


@router.post("/review-request/{request_id}", response_class=HTMLResponse)
def record_review_request(
    request: Request,
    state: StateDep,
    request_id: str,
    note: Annotated[str, Form(min_length=3, max_length=2_000)],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """The officer records that a declined applicant asks for a human review (the API's own path)."""
    gate = _Gate(request, state, "score")
    if gate.refusal or gate.session is None or gate.key is None:
        return gate.refusal or _secure(RedirectResponse("/console/login", status_code=303))
    if not csrf_ok(gate.session, csrf) or len(request_id) != 32:
        context: dict[str, Any] = {"form": {}, "purposes": PURPOSES, "found": None, "error": "csrf"}
        return _page(request, "score.html", context, session=gate.session, key=gate.key, status_code=403)
    reviews.request_review(state, request_id, note=note.strip(), key_name=gate.key.name)
    return _secure(RedirectResponse("/console/score?requested=1", status_code=303))


@router.get("/member", response_class=HTMLResponse)
def member_page(request: Request, state: StateDep, member_id: str = "") -> Response:
    """A member's past decisions and current feature values."""
    gate = _Gate(request, state, "read")
    if gate.refusal:
        return gate.refusal
    vector = state.online_store.online_read([member_id[:64]])[0] if member_id else None
    history = state.decision_log.member_decisions(member_id[:64], limit=20) if member_id else []
    return _page(
        request,
        "member.html",
        {
            "member_id": member_id,
            "vector": vector,
            "history": history,
            "activity": _activity_charts(state, member_id[:64], Texts(_lang(request))),
        },
        session=gate.session,
        key=gate.key,
    )


_ACTIVITY_COLOURS = {"deliveries": "#3b5b8c", "savings": "#1d6b3f", "repayments": "#24324a"}


def _activity_charts(state: AppState, member_id: str, texts: Texts) -> list[dict[str, str]]:
    """One monthly bar chart per kind of activity (see `views.ACTIVITY`), from the event log."""
    series = member_activity(state.settings, member_id) if member_id else {}
    charts = []
    for key, _, measure in ACTIVITY:
        if key not in series:
            continue
        title = f"{texts('act_' + key)} ({texts('per_month_' + measure)})"
        charts.append(
            {
                "key": key,
                "title": title,
                "total": f"{sum(v for _, v in series[key]):,.0f}",
                "chart": bars(series[key], title, _ACTIVITY_COLOURS.get(key, "#6b3f8a")),
            }
        )
    return charts


_TRAFFIC = {"none": "s_ok", "stable": "s_ok", "watch": "s_warn", "drift": "s_alert"}
_RANK = {"none": 0, "stable": 0, "watch": 1, "drift": 2}


@router.get("/monitoring", response_class=HTMLResponse)
def monitoring_page(request: Request, state: StateDep) -> Response:
    """The latest drift check as a traffic light per reason group, and the model in service."""
    gate = _Gate(request, state, "read")
    if gate.refusal:
        return gate.refusal
    summary = latest_drift_summary(state.settings.data_dir)
    groups: dict[str, str] = {}
    if summary is not None:
        group_of = {f.name: f.reason_group for f in default_registry().features}
        for name, item in summary.get("features", {}).items():
            group = group_of.get(name, "other")
            band = str(item.get("alarm", item.get("band", "none")))
            band = band if band in _RANK else "none"
            if _RANK[band] >= _RANK.get(groups.get(group, "none"), 0):
                groups[group] = band
    labels = _group_labels(_lang(request))
    lights = [{"group": labels.get(g, g), "state": _TRAFFIC[b], "band": b} for g, b in sorted(groups.items())]
    current = state.models.current
    if state.console_models is None:
        state.console_models = ModelPanels(state.settings)
    champion, challenger = state.console_models.read()
    context = {
        "summary": summary,
        "lights": lights,
        "overall": _TRAFFIC.get(str(summary.get("status")), "s_ok") if summary else None,
        "model": current.scorer if current else None,
        "fairness": _fairness_view(latest_fairness_audit(state.settings.data_dir), Texts(_lang(request))),
        "panels": [("champion", champion), ("challenger", challenger)],
    }
    return _page(request, "monitoring.html", context, session=gate.session, key=gate.key)


def _fairness_view(audit: dict[str, Any] | None, texts: Texts) -> dict[str, Any] | None:
    """The latest fairness audit as charts: per attribute, the approval ratio (four-fifths line) and
    the approval rate among members who repaid (equal opportunity), each group with its 95% CI."""
    if audit is None:
        return None
    limits = audit.get("thresholds", {})
    attributes = []
    for name, attribute in audit.get("attributes", {}).items():
        groups = attribute["groups"]
        charts = []
        for metric, limit in (
            ("approval_ratio", limits.get("min_approval_ratio")),
            ("approval_if_repaid", None),
        ):
            rows = []
            for g in groups:
                value = g["values"].get(metric)
                low, high = (g.get("ci", {}).get(metric) or [None, None])[:2]
                label = f"{g['group']} (n={g['n']})"
                rows.append((label, value if g["status"] == "judged" else None, low, high))
            title = f"{name}: {texts('f_' + metric)}"
            charts.append(
                {"metric": metric, "chart": interval_bars(rows, title, limit=limit), "title": title}
            )
        attributes.append(
            {
                "name": name,
                "ratio_min": attribute.get("approval_ratio_min"),
                "eo_difference": attribute.get("equal_opportunity_difference"),
                "charts": charts,
            }
        )
    return {
        "passed": audit.get("passed"),
        "created_at": str(audit.get("created_at", ""))[:16],
        "source": audit.get("source", ""),
        "n": audit.get("n"),
        "flags": audit.get("flags", []),
        "attributes": attributes,
    }


@router.get("/onboarding", response_class=HTMLResponse)
def onboarding_page(request: Request, state: StateDep) -> Response:
    """For the data officer (scope `ingest`): ingest batches with each file's status, and the
    quarantine's reasons counted by cooperative."""
    gate = _Gate(request, state, "ingest")
    if gate.refusal:
        return gate.refusal
    return _page(request, "onboarding.html", onboarding(state.settings), session=gate.session, key=gate.key)


@router.get("/monitoring/drift-report", response_class=FileResponse)
def drift_report(request: Request, state: StateDep) -> Response:
    """The latest drift check's HTML (ours and Evidently's)."""
    gate = _Gate(request, state, "read")
    if gate.refusal:
        return gate.refusal
    path = latest_drift_report_path(state.settings.data_dir)
    if path is None:
        raise HTTPException(404, "no drift check has run yet")
    return FileResponse(path, media_type="text/html")
