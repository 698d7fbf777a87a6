"""Console pages beyond scoring, in a real browser on the session's world and server.

The monitoring page draws the latest fairness audit (approval ratio and approval among those who
repaid, by group, with 95% intervals) as an SVG chart with the numbers the audit stored, and shows the
champion and the challenger with their promotion gates and model cards; the data officer's onboarding
page lists the ingest ledger's batches file by file and counts the quarantine by cooperative and rule;
the member view charts a member's monthly deliveries, savings, repayments, trainings and green
practices from the event log. Each page: both languages, axe 0 serious/critical, no sideways scroll at
360 px (screenshots under artifacts/console/).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from features.ledger import IngestLedger
from serving.console.text import catalogue
from tests.journeys.conftest import JourneyServer, JourneyWorld
from tests.journeys.test_console import CJK, _judge, _page, _shot, _visible_text, browser

__all__ = ["browser"]  # the module-scoped browser fixture, shared


def _both_languages(page: Any, path: str) -> None:
    """zh shows no English interface text; en shows no Chinese (data excepted)."""
    english_only = {v["en"] for v in catalogue().values() if v["en"] != v["zh"] and len(v["en"]) > 3}
    sep = "&" if "?" in path else "?"
    page.goto(f"{path}{sep}lang=zh")
    zh = _visible_text(page)
    assert CJK.search(zh), path
    assert not [s for s in english_only if s in zh and s != "English"], path
    page.goto(f"{path}{sep}lang=en")
    en = _visible_text(page).replace("中文", "")
    assert not CJK.search(en), (path, CJK.findall(en)[:20])
    page.goto(f"{path}{sep}lang=zh")


def _check_page(
    browser: Any, server: JourneyServer, key: str, path: str, name: str
) -> list[tuple[str, int, int]]:
    """axe and horizontal scroll at desktop and 360 px in both languages, with screenshots."""
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    states: list[tuple[str, int, int]] = []
    for width in (1280, 360):
        page = _page(browser, server, key, width=width)
        for lang in ("zh", "en"):
            page.goto(f"{path}{'&' if '?' in path else '?'}lang={lang}")
            _judge(page, axe, states, f"{name}-{lang}-{width}")
            _shot(page, f"{name}-{lang}-{'desktop' if width == 1280 else '360'}")
        page.goto(f"{path}{'&' if '?' in path else '?'}lang=zh")
        page.context.close()
    print(f"\naxe {name}: {len(states)} page states, serious/critical: {sum(s[1] for s in states)}")
    assert not [s for s in states if s[1]], states
    assert not [s for s in states if s[2]], states
    return states


def test_monitoring_shows_fairness_and_models(
    journey_world: JourneyWorld, journey_server: JourneyServer, browser: Any
) -> None:
    _, audit = journey_world.cli.json(
        "audit", "fairness", "--data", "oot", "--model", "champion", "--n-boot", "50", expect=(0, 3)
    )
    stored = json.loads(Path(audit["outputs"]["directory"], "audit.json").read_text(encoding="utf-8"))
    page = _page(browser, journey_server, journey_server.keys["read"])
    page.goto("/console/monitoring?lang=en")
    assert page.get_attribute("#fairness-state", "class") == (
        "light s_ok" if stored["passed"] else "light s_alert"
    )
    whiskers_seen = 0
    for name, attribute in stored["attributes"].items():
        for metric in ("approval_ratio", "approval_if_repaid"):
            chart = page.locator(
                f"figure[data-metric={metric}]:has(title:text-is('{name}: "
                f"{catalogue()['f_' + metric]['en']}'))"
            )
            assert chart.count() == 1, (name, metric)
            drawn = [
                float(v) for v in chart.locator("rect").evaluate_all("rs => rs.map(r => r.dataset.value)")
            ]
            whiskers = chart.locator("path.ci").evaluate_all(
                "ps => ps.map(p => [Number(p.dataset.low), Number(p.dataset.high)])"
            )
            judged = [
                g
                for g in attribute["groups"]
                if g["status"] == "judged" and g["values"].get(metric) is not None
            ]
            assert drawn == pytest.approx([g["values"][metric] for g in judged], abs=1e-4), (name, metric)
            with_ci = [g["ci"][metric] for g in judged if g["ci"].get(metric) and None not in g["ci"][metric]]
            flat = [v for pair in whiskers for v in pair]
            assert flat == pytest.approx([v for pair in with_ci for v in pair], abs=1e-4), (name, metric)
            whiskers_seen += len(with_ci)
        ratio = page.locator("figure[data-metric=approval_ratio] line[data-limit]").first
        assert float(ratio.get_attribute("data-limit") or "nan") == stored["thresholds"]["min_approval_ratio"]

    assert whiskers_seen > 0  # n_boot 50: the intervals are drawn
    # The champion with the gates its promotion ran; no challenger in this world (the first model
    # was made champion), which the page says rather than leaving a gap.
    champion = page.locator("#panel-champion")
    assert f" {journey_world.champion_version} " in f" {champion.inner_text()} "
    verdicts = champion.locator("[data-verdict]").evaluate_all("es => es.map(e => e.dataset.verdict)")
    assert verdicts and set(verdicts) <= {"pass", "fail", "skipped"}
    promotion = journey_world.retrain_summary.get("promotion") or {}
    if promotion.get("gates"):
        assert len(verdicts) == len(promotion["gates"])
    champion.locator("details.model-card summary").click()
    assert "v" + journey_world.champion_version in champion.locator("details.model-card pre").inner_text()
    assert page.locator("#panel-challenger .none").count() == 1
    page.context.close()
    _check_page(
        browser, journey_server, journey_server.keys["read"], "/console/monitoring", "monitoring-audit"
    )
    page = _page(browser, journey_server, journey_server.keys["read"])
    _both_languages(page, "/console/monitoring")
    page.context.close()


def _quarantine_by_coop(quarantine_dir: Path) -> Counter[tuple[str, str]]:
    """The quarantine counted by (coop_id, rule), read here with pyarrow and json."""
    counts: Counter[tuple[str, str]] = Counter()
    for part in quarantine_dir.glob("batch=*/part-*.parquet"):
        table = pq.read_table(part, columns=["raw", "reasons"])
        for raw, reasons in zip(table["raw"].to_pylist(), table["reasons"].to_pylist(), strict=True):
            try:
                coop = json.loads(raw).get("coop_id") or "?"
            except (ValueError, AttributeError):
                coop = "?"
            for reason in reasons.split("; "):
                counts[(coop, reason)] += 1
    return counts


def test_data_officer_sees_batches_and_quarantine(
    journey_world: JourneyWorld, journey_server: JourneyServer, browser: Any
) -> None:
    refused = _page(browser, journey_server, journey_server.keys["score"])
    assert refused.goto("/console/onboarding").status == 403  # the page needs the `ingest` scope
    refused.context.close()

    ledger = IngestLedger(journey_world.data_dir / "ledger.sqlite")
    try:
        batches = ledger.batches()
        files = ledger.batch_sources([str(b["batch_id"]) for b in batches])
    finally:
        ledger.close()
    page = _page(browser, journey_server, journey_server.keys["ingest"])
    page.goto("/console/onboarding?lang=en")
    shown = page.locator("article.batch").evaluate_all("as => as.map(a => a.dataset.batch)")
    assert shown == [str(b["batch_id"]) for b in batches][::-1][:20]  # newest first
    statuses = Counter(page.locator("li.file").evaluate_all("ls => ls.map(l => l.dataset.status)"))
    more = sum(int(m) for m in page.locator("[data-more]").evaluate_all("ms => ms.map(m => m.dataset.more)"))
    newest = {str(b["batch_id"]) for b in batches[-20:]}
    recorded = [str(f["status"]) for f in files if str(f["batch_id"]) in newest]
    assert sum(statuses.values()) + more == len(recorded)  # every file listed or counted
    # Listed: per batch, the files needing attention first (failed, quarantined rows, empty), 60 at most.
    priority = {"failed": 0, "stored with quarantined rows": 1, "empty": 2, "stored": 3}
    listed: Counter[str] = Counter()
    for batch_id in newest:
        own = sorted(
            (str(f["status"]) for f in files if str(f["batch_id"]) == batch_id), key=priority.__getitem__
        )
        listed.update(own[:60])
    assert statuses == listed

    expected = _quarantine_by_coop(journey_world.data_dir / "quarantine")
    assert expected, "the simulator's exports carry malformed rows: the quarantine should not be empty"
    rows = page.locator("#quarantine tbody tr").evaluate_all(
        "rs => rs.map(r => Array.from(r.cells).map(c => c.innerText))"
    )
    top = expected.most_common(1)[0]
    first = rows[0]
    assert int(first[2].replace(",", "")) == top[1]
    assert first[1] == top[0][1]
    for coop, reason, count in rows:
        key = ("?" if coop == "Unparseable line" else coop, reason)
        assert expected[key] == int(count.replace(",", "")), key
    page.context.close()
    _check_page(browser, journey_server, journey_server.keys["ingest"], "/console/onboarding", "onboarding")
    page = _page(browser, journey_server, journey_server.keys["ingest"])
    _both_languages(page, "/console/onboarding")
    page.context.close()


def _monthly(data_dir: Path, event_type: str, member_id: str, measure: str) -> dict[str, float]:
    """A member's events of one type summed by month, read here with pyarrow."""
    folder = data_dir / "events" / f"event_type={event_type}"
    if not folder.is_dir():
        return {}
    columns = ["member_id", "event_time"] + (["amount_cny"] if measure == "amount" else [])
    table = ds.dataset(folder, format="parquet").to_table(
        columns=columns, filter=pc.field("member_id") == member_id
    )
    out: dict[str, float] = {}
    for i, when in enumerate(table["event_time"].to_pylist()):
        month = when.strftime("%Y-%m")
        out[month] = out.get(month, 0.0) + (table["amount_cny"][i].as_py() if measure == "amount" else 1.0)
    return out


def test_member_activity_charts(
    journey_world: JourneyWorld, journey_server: JourneyServer, browser: Any
) -> None:
    from serving.console.views import ACTIVITY

    member = journey_world.member_ids(1, offset=11)[0]
    page = _page(browser, journey_server, journey_server.keys["read"])
    page.goto(f"/console/member?member_id={member}&lang=en")
    kinds = page.locator("figure.activity-chart").evaluate_all("fs => fs.map(f => f.dataset.kind)")
    assert kinds == [key for key, _, _ in ACTIVITY]
    checked = 0
    for key, (event_type,), measure in ACTIVITY:
        expected = _monthly(journey_world.data_dir, event_type, member, measure)
        drawn = page.locator(f"figure[data-kind={key}] rect").evaluate_all(
            "rs => rs.map(r => [r.dataset.month, Number(r.dataset.value)])"
        )
        assert len(drawn) == 24, key
        for month, value in drawn:
            assert value == pytest.approx(expected.get(month, 0.0), abs=0.01), (key, month)
        checked += sum(1 for _, v in drawn if v > 0)
    assert checked > 0, "the member has no activity in the last 24 months: pick another"
    _shot(page, "member-en-desktop")
    page.context.close()
    _check_page(
        browser, journey_server, journey_server.keys["read"], f"/console/member?member_id={member}", "member"
    )
    page = _page(browser, journey_server, journey_server.keys["read"])
    _both_languages(page, f"/console/member?member_id={member}")
    page.context.close()


def test_review_requests_and_the_queue(
    journey_world: JourneyWorld, journey_server: JourneyServer, browser: Any
) -> None:
    from tests.journeys.test_console import _score_in_console, _strong_and_weak

    strong, weak = _strong_and_weak(journey_world, journey_server)
    application = {"amount_cny": 8000, "term_months": 12, "purpose": "farm_inputs"}
    with journey_server.client("score") as client:
        declined = client.post("/v1/score", json={"member_id": weak, **application}).json()
        approved = client.post("/v1/score", json={"member_id": strong, **application}).json()
        # A member the online store does not know: sent to a person (flagged), on no record (thin).
        newcomer = client.post(
            "/v1/score", json={"member_id": "console-newcomer-1", "allow_new_member": True, **application}
        ).json()
        url = "/v1/decisions/{}/review-request"
        assert declined["decision"] == "decline"
        extra = client.post(url.format(declined["request_id"]), json={"note": "please", "channel": "phone"})
        assert extra.status_code == 422, extra.text  # a strict body: unknown fields refused
        assert client.post(url.format(declined["request_id"]), json={"note": 5}).status_code == 422
        if approved["decision"] != "decline":
            conflict = client.post(url.format(approved["request_id"]), json={"note": "why?"})
            assert conflict.status_code == 409, conflict.text
        assert client.post(url.format("0" * 32), json={"note": "hello"}).status_code == 404
    with journey_server.client("read") as client:  # a read key cannot record one
        assert client.post(url.format(declined["request_id"]), json={"note": "hello"}).status_code == 403
    with journey_server.client("score") as client:
        stored = client.post(url.format(declined["request_id"]), json={"note": "I repaid my last loan early"})
    assert stored.status_code == 201, stored.text
    assert stored.json()["requested_by_key"] == "journey-score"
    assert newcomer["decision"] == "review", newcomer

    # The officer records a request on the console too, after scoring the weak applicant again.
    officer = _page(browser, journey_server, journey_server.keys["score"])
    _score_in_console(officer, weak)
    officer.fill("#note", "申请人说去年的欠款已还清")
    officer.click("#request-form button[type=submit]")
    officer.wait_for_selector("#requested")
    officer.context.close()

    page = _page(browser, journey_server, journey_server.keys["review"])
    page.goto("/console/reviews?lang=en")
    cards = page.locator("li.queue-item").evaluate_all(
        "ls => ls.map(l => [l.dataset.request, l.dataset.queue.split(' ')])"
    )
    tags = dict(cards)
    requested = [rid for rid, q in cards if "requested" in q]
    assert len(requested) >= 2 and declined["request_id"] in requested
    assert [q[0] == "requested" for _, q in cards] == sorted(
        (q[0] == "requested" for _, q in cards), reverse=True
    )  # requested reviews first
    assert {"requested", "declined"} <= set(tags[declined["request_id"]])
    assert {"flagged", "thin"} <= set(tags[newcomer["request_id"]])
    page.locator(f"li[data-request='{declined['request_id']}'] a").click()
    page.wait_for_selector("#review-requests")
    assert "I repaid my last loan early" in page.inner_text("#review-requests")
    assert page.locator("figure.activity-chart").count() >= 1  # the member's recent activity
    _shot(page, "review-en-desktop")
    page.context.close()
    with journey_server.client("read") as client:
        logged = client.get(f"/v1/decisions/{declined['request_id']}").json()
    assert logged["review_requests"][0]["note"] == "I repaid my last loan early"
    _check_page(browser, journey_server, journey_server.keys["review"], "/console/reviews", "reviews-queue")
