"""Console journeys in a real browser (Debian's Chromium through Playwright) on the session's server.

A loan officer scores a strong and a weak applicant and the waterfall adds up to the score; a reviewer
overrides a decline with a reason (in the decision log and in `decisions export`); the monitoring page
shows the drift state after a drifted window; the language switch changes every text; at 360 px no
page scrolls sideways (screenshots under artifacts/console/); axe-core finds no serious or critical
violation on any page.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from serving.console.text import catalogue
from tests.journeys.conftest import JourneyServer, JourneyWorld
from tests.journeys.test_monitoring import WINDOW, _applications, _check, _materialize, _score
from tests.utils.browser import launch_options

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"
CJK = re.compile(r"[\u4e00-\u9fff]")
PAGES = (
    "/console/score",
    "/console/reviews",
    "/console/member",
    "/console/monitoring",
    "/console/onboarding",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = launch_options()  # skips (or fails under COOPSCORE_REQUIRE_BROWSER=1) without Chromium
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(**options)
        try:
            yield launched
        finally:
            launched.close()


def _page(browser: Any, server: JourneyServer, key: str, width: int = 1280) -> Any:
    """A signed-in page (the key exchanged for a session cookie on the sign-in form)."""
    context = browser.new_context(base_url=server.url, viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto("/console/login")
    page.fill("#api_key", key)
    page.click("form.card button[type=submit]")
    page.wait_for_url("**/console/score")
    return page


def _score_in_console(page: Any, member_id: str) -> dict[str, Any]:
    page.goto("/console/score")
    page.fill("#member_id", member_id)
    page.fill("#amount_cny", "8000")
    page.fill("#term_months", "12")
    page.select_option("#purpose", "farm_inputs")
    page.click("#score-button")
    page.wait_for_selector("#waterfall")
    points = [
        float(p) for p in page.eval_on_selector_all("#waterfall rect", "rs => rs.map(r => r.dataset.points)")
    ]
    return {
        "score": float(page.inner_text("#score")),
        "decision": page.get_attribute("#decision", "class"),
        "base": float(page.get_attribute("#waterfall", "data-base") or "nan"),
        "exact_score": float(page.get_attribute("#waterfall", "data-score") or "nan"),
        "points": points,
    }


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _strong_and_weak(world: JourneyWorld, server: JourneyServer) -> tuple[str, str]:
    """The best of the first 500 members as the API scores them (a lender's shortlist), and the worst
    that the model declines, looking further through the members (500 at a time) until one is."""
    best: dict[str, Any] | None = None
    for offset in range(0, 4000, 500):
        body = {
            "applications": [
                {"member_id": m, "amount_cny": 8000, "term_months": 12, "purpose": "farm_inputs"}
                for m in world.member_ids(500, offset=offset)
            ]
        }
        with server.client("score") as client:
            response = client.post("/v1/score/batch", json=body)
        assert response.status_code == 200, response.text
        ranked = sorted(response.json()["results"], key=lambda r: r["score"])
        best = best or ranked[-1]
        declined = [r for r in ranked if r["decision"] == "decline"]
        if declined:
            return best["member_id"], declined[0]["member_id"]
    raise AssertionError("the model declined none of 4,000 members")


def test_officer_scores_and_points_add_up(
    journey_world: JourneyWorld, journey_server: JourneyServer, browser: Any
) -> None:
    strong, weak = _strong_and_weak(journey_world, journey_server)
    page = _page(browser, journey_server, journey_server.keys["score"])
    seen = {}
    for label, member in (("strong", strong), ("weak", weak)):
        shown = _score_in_console(page, member)
        base, *steps, total = shown["points"]
        assert base == pytest.approx(shown["base"], abs=1e-3)
        assert total == pytest.approx(shown["exact_score"], abs=1e-3)
        assert base + sum(steps) == pytest.approx(total, abs=0.01), shown  # the waterfall adds up
        assert shown["score"] == pytest.approx(total, abs=0.05)
        seen[label] = shown
        _shot(page, f"score-{label}-zh-desktop")
    assert seen["strong"]["score"] > seen["weak"]["score"]
    page.context.close()


def test_reviewer_overrides_a_decline(
    journey_world: JourneyWorld, journey_server: JourneyServer, browser: Any, tmp_path: Path
) -> None:
    _, weak = _strong_and_weak(journey_world, journey_server)
    officer = _page(browser, journey_server, journey_server.keys["score"])
    assert _score_in_console(officer, weak)["decision"] == "d-decline"  # the model declines this one
    officer.context.close()

    page = _page(browser, journey_server, journey_server.keys["review"])
    page.goto("/console/reviews")
    _shot(page, "reviews-zh-desktop")
    link = page.locator(f"li.queue-item:has-text('{weak}') a").first
    link.click()
    page.wait_for_selector("#review-form")
    request_id = page.url.rsplit("/", 1)[-1]
    page.fill("#reviewer", "Wang Li")
    page.select_option("#action", "override")
    page.select_option("#new-decision", "approve")
    reason = "cooperative chair vouches; harvest contract on file"
    page.fill("#reason", reason)
    page.click("#review-form button[type=submit]")
    page.wait_for_selector("#saved")
    assert reason in page.inner_text("#review-list")
    page.context.close()

    with journey_server.client("read") as client:
        logged = client.get(f"/v1/decisions/{request_id}").json()
    last = logged["reviews"][-1]
    assert (last["action"], last["final_decision"], last["reason"]) == ("override", "approve", reason)
    assert last["reviewed_by_key"] == "journey-review" and last["reviewer"] == "Wang Li"

    out = tmp_path / "export.csv"
    _, exported = journey_world.cli.json(
        "decisions", "export", "--from", "2000-01-01", "--to", "2100-01-01", "--out", str(out)
    )
    assert out.is_file(), exported
    with out.open(newline="", encoding="utf-8") as handle:
        row = next(r for r in csv.DictReader(handle) if r["request_id"] == request_id)
    assert (row["review_action"], row["review_decision"], row["reviewed_by_key"], row["review_reason"]) == (
        "override",
        "approve",
        "journey-review",
        reason,
    )
    # The access log names the console's key for the review it sent.
    assert '"key":"journey-review"' in journey_server.log_path.read_text(errors="replace").replace(" ", "")


def test_a_key_without_the_scope_is_refused(journey_server: JourneyServer, browser: Any) -> None:
    page = _page(browser, journey_server, journey_server.keys["score"])
    response = page.goto("/console/reviews")
    assert response.status == 403
    page.context.close()


def test_monitoring_shows_drift(
    journey_world: JourneyWorld, journey_server: JourneyServer, browser: Any
) -> None:
    world = journey_world
    drifted_as_of = (world.end - timedelta(days=1)).replace(day=15)
    try:
        _materialize(world, drifted_as_of)
        _score(journey_server, _applications(world, drifted_as_of, WINDOW, seed=5))
        checked = _check(world, expect=3)
    finally:
        _materialize(world, world.end)
    assert checked["status"] == "drift"
    page = _page(browser, journey_server, journey_server.keys["read"])
    page.goto("/console/monitoring")
    assert page.get_attribute("#drift-state", "class") == "light s_alert"
    assert page.locator(".light.s_alert[data-band=drift]").count() >= 1
    _shot(page, "monitoring-zh-desktop")
    page.goto("/console/monitoring?lang=en")
    _shot(page, "monitoring-en-desktop")
    report = page.context.request.get(f"{journey_server.url}/console/monitoring/drift-report")
    assert report.status == 200 and "html" in report.headers["content-type"]
    page.context.close()


def _visible_text(page: Any) -> str:
    """The page's text less what is data rather than interface (codes, stored reasons, model cards)."""
    return str(
        page.evaluate(
            """() => { const c = document.body.cloneNode(true);
                 c.querySelectorAll('[lang]:not(html), code, pre, .data').forEach(e => e.remove());
                 document.body.appendChild(c); const text = c.innerText; c.remove(); return text; }"""
        )
    )


def test_language_switch_changes_every_text(
    journey_world: JourneyWorld, journey_server: JourneyServer, browser: Any
) -> None:
    page = _page(browser, journey_server, journey_server.keys["all"])
    english_only = {v["en"] for v in catalogue().values() if v["en"] != v["zh"] and len(v["en"]) > 3}
    member = journey_world.member_ids(1, offset=7)[0]
    for path in (*PAGES, f"/console/member?member_id={member}"):
        page.goto(f"{path}{'&' if '?' in path else '?'}lang=zh")
        zh = _visible_text(page)
        assert CJK.search(zh), path
        assert not [s for s in english_only if s in zh and s != "English"], path
        page.click("#lang-switch")
        en = _visible_text(page)
        assert not CJK.search(en.replace("中文", "")), (path, CJK.findall(en)[:20])
        page.goto(f"{path}{'&' if '?' in path else '?'}lang=zh")  # back to the default
    # The score result in English, for the screenshot.
    page.goto("/console/score?lang=en")
    _score_in_console(page, member)
    assert not CJK.search(_visible_text(page).replace("中文", ""))
    _shot(page, "score-en-desktop")
    page.goto("/console/score?lang=zh")
    page.context.close()


def test_narrow_screens_and_accessibility(
    journey_world: JourneyWorld, journey_server: JourneyServer, browser: Any
) -> None:
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    member = journey_world.member_ids(1, offset=3)[0]
    states: list[tuple[str, int, int]] = []
    for width in (1280, 360):
        page = _page(browser, journey_server, journey_server.keys["all"], width=width)
        for lang in ("zh", "en"):
            page.goto(f"/console/score?lang={lang}")
            for path in PAGES:
                page.goto(path)
                _judge(page, axe, states, f"{path}-{lang}-{width}")
            page.goto("/console/score")
            _score_in_console(page, member)
            _judge(page, axe, states, f"score-result-{lang}-{width}")
            if width == 360:
                _shot(page, f"score-{lang}-360")
                page.goto("/console/reviews")
                _shot(page, f"reviews-{lang}-360")
                page.goto("/console/monitoring")
                _shot(page, f"monitoring-{lang}-360")
        page.context.close()
    bad = [s for s in states if s[1]]
    print(f"\naxe: {len(states)} page states, serious/critical violations: {sum(s[1] for s in states)}")
    assert not bad, bad
    overflow = [s for s in states if s[2]]
    assert not overflow, overflow


def _judge(page: Any, axe: Any, states: list[tuple[str, int, int]], name: str) -> None:
    results = axe.run(page)
    serious = [
        (v["id"], v["impact"], len(v["nodes"]))
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    scroll = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    states.append((name if not serious else f"{name}: {serious}", len(serious), int(scroll > 0)))
