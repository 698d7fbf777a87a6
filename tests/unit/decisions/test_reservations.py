"""Subsidy reservations in the real decision log, SQLite and PostgreSQL (when reachable): reserved in
the decision's own transaction, never oversubscribed under concurrency (threads, two writers, two
processes), given back when an offer is declined, expires or is overturned on review, never reserved
twice for an idempotent duplicate."""

from __future__ import annotations

import json
import multiprocessing
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from decisions.base import (
    BudgetLine,
    DecisionLogWriter,
    DecisionRecord,
    LossCeilingLine,
    ProfileUse,
    ReservationOutcome,
    ReservationRequest,
    ReservationStateError,
    SubsidyClaim,
)
from tests.unit.decisions.conftest import LogBackend, open_writer
from tests.unit.decisions.test_sqlite import record as decision_record

PROGRAMME = "green"
COST_FEN = 17_544  # one subsidy: 175.44 CNY
BUDGET_FOR_FIVE = 5 * COST_FEN + COST_FEN // 2


def request(
    member: str, *, expires_in: timedelta = timedelta(days=30), loss_fen: int = 1_000
) -> ReservationRequest:
    return ReservationRequest(
        programme_id=PROGRAMME,
        programme_version=1,
        period="P1",
        county_id="c1",
        member_id=member,
        subsidy_fen=COST_FEN,
        expected_loss_fen=loss_fen,
        expires_at=datetime.now(UTC) + expires_in,
    )


def claim(member: str, **kwargs: object) -> SubsidyClaim:
    def respond(outcome: ReservationOutcome) -> str:
        status = (
            "reserved" if outcome.granted else (outcome.refused[0][1] if outcome.refused else "not_eligible")
        )
        return json.dumps({"member": member, "subsidy": status})

    uses = (ProfileUse(PROGRAMME, 1, "county_budget", "county_id"),)
    return SubsidyClaim((request(member, **kwargs),), respond, uses)  # type: ignore[arg-type]


def record(i: int, subsidy: SubsidyClaim | None, *, key: str | None = None) -> DecisionRecord:
    """The decision-log tests' record, for member m<i>, carrying a subsidy claim."""
    plain = decision_record(i, key=key, sha="s" if key else None, caller="lender")
    return replace(
        plain, member_id=f"m{i}", application={"amount_cny": 8000, "term_months": 12}, subsidy=subsidy
    )


def open_log(
    backend: LogBackend, budget_fen: int = BUDGET_FOR_FIVE, ceiling_fen: int = 10**9
) -> DecisionLogWriter:
    log = backend.writer()
    log.register_programme(
        [BudgetLine(PROGRAMME, "P1", "c1", budget_fen)], [LossCeilingLine(PROGRAMME, "P1", ceiling_fen)]
    )
    return log


def counters(backend: LogBackend) -> tuple[int, int, int]:
    [(reserved,)] = backend.query("SELECT reserved_fen FROM programme_budgets")
    [(loss,)] = backend.query("SELECT expected_loss_fen FROM programme_loss")
    [(open_rows,)] = backend.query(
        "SELECT count(*) FROM subsidy_reservations WHERE status IN ('reserved','accepted')"
    )
    return reserved, loss, open_rows


def test_sixteen_concurrent_requests_against_a_budget_for_five_subsidise_exactly_five(
    backend: LogBackend,
) -> None:
    log = open_log(backend)
    claims = [claim(f"m{i}") for i in range(16)]
    barrier = threading.Barrier(16)
    futures: list[object] = [None] * 16

    def send(i: int) -> None:
        barrier.wait()  # all sixteen at once
        futures[i] = log.submit(record(i, claims[i]))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [f.result(timeout=30) for f in futures] == [None] * 16  # type: ignore[attr-defined]
    log.close()
    granted = [c for c in claims if c.outcome is not None and c.outcome.granted is not None]
    assert len(granted) == 5
    assert (
        sorted(json.loads(c.response_json or "")["subsidy"] for c in claims)
        == ["budget_exhausted"] * 11 + ["reserved"] * 5
    )
    assert counters(backend) == (5 * COST_FEN, 5 * 1_000, 5)
    # The stored response is the one the writer built for the outcome, row by row.
    stored = {
        r[0]: json.loads(r[1])["subsidy"] for r in backend.query("SELECT member_id, response FROM decisions")
    }
    assert sorted(stored.values()) == ["budget_exhausted"] * 11 + ["reserved"] * 5
    # Every decision logged its protected read with it.
    assert backend.query("SELECT count(*) FROM programme_profile_uses") == [(16,)]


def test_two_writers_on_one_file_never_oversubscribe(backend: LogBackend) -> None:
    # `coopscore serve --workers 2`: one writer per process, each with its own connection.
    first, second = open_log(backend), backend.writer()
    claims = [claim(f"m{i}") for i in range(16)]
    futures = [(first if i % 2 else second).submit(record(i, claims[i])) for i in range(16)]
    assert [f.result(timeout=30) for f in futures] == [None] * 16
    first.close()
    second.close()
    assert sum(c.outcome is not None and c.outcome.granted is not None for c in claims) == 5
    assert counters(backend) == (5 * COST_FEN, 5_000, 5)


def _process_sends(target: str, start: int, ready: multiprocessing.synchronize.Barrier) -> None:  # type: ignore[name-defined]
    log = open_writer(target)
    ready.wait()
    futures = [log.submit(record(i, claim(f"m{i}"))) for i in range(start, start + 8)]
    for future in futures:
        future.result(timeout=60)
    log.close()


def test_two_processes_sending_eight_each_subsidise_exactly_five(backend: LogBackend) -> None:
    open_log(backend).close()
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(2)
    workers = [context.Process(target=_process_sends, args=(backend.target, s, ready)) for s in (0, 8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    assert counters(backend) == (5 * COST_FEN, 5_000, 5)
    assert backend.query("SELECT count(*) FROM decisions") == [(16,)]


def test_a_declined_offer_gives_its_budget_back_and_the_next_applicant_gets_it(backend: LogBackend) -> None:
    log = open_log(backend)
    claims = [claim(f"m{i}") for i in range(6)]
    for i, c in enumerate(claims):
        log.submit(record(i, c)).result(timeout=10)
    assert [c.outcome.granted is not None for c in claims if c.outcome] == [True] * 5 + [False]
    declined = log.settle_reservation(PROGRAMME, f"{2:032x}", "decline", "the applicant borrowed elsewhere")
    assert declined is not None and declined["status"] == "released"
    assert declined["settled_reason"] == "the applicant borrowed elsewhere"
    assert counters(backend) == (4 * COST_FEN, 4_000, 4)
    accepted = log.settle_reservation(PROGRAMME, f"{1:032x}", "accept", "offer accepted")
    assert accepted is not None and accepted["status"] == "accepted"
    again = claim("m6")
    log.submit(record(6, again)).result(timeout=10)
    assert again.outcome is not None and again.outcome.granted is not None
    # Declining twice is the same answer; accepting a released one is refused; unknown ids are None.
    assert log.settle_reservation(PROGRAMME, f"{2:032x}", "decline", "again")["status"] == "released"  # type: ignore[index]
    with pytest.raises(ReservationStateError, match="released"):
        log.settle_reservation(PROGRAMME, f"{2:032x}", "accept", "too late")
    assert log.settle_reservation(PROGRAMME, f"{99:032x}", "accept", "x") is None
    log.close()


def test_an_expired_offer_is_released_before_the_next_reservation(backend: LogBackend) -> None:
    log = open_log(backend, budget_fen=COST_FEN)  # room for one
    first = claim("m0", expires_in=timedelta(seconds=-1))  # already past its expiry
    log.submit(record(0, first)).result(timeout=10)
    assert first.outcome is not None and first.outcome.granted is not None
    with backend.reader() as reader:
        [row] = reader.programme_reservations(PROGRAMME, datetime.now(UTC))
        assert row["status"] == "expired"  # as of now, before any sweep
    second = claim("m1")
    log.submit(record(1, second)).result(timeout=10)
    assert second.outcome is not None and second.outcome.granted is not None
    with pytest.raises(ReservationStateError, match="expired"):
        log.settle_reservation(PROGRAMME, f"{0:032x}", "accept", "too late")
    log.close()
    statuses = dict(backend.query("SELECT member_id, status FROM subsidy_reservations"))
    assert statuses == {"m0": "expired", "m1": "reserved"}
    assert counters(backend) == (COST_FEN, 1_000, 1)


def test_the_loss_ceiling_and_one_subsidy_per_household_are_kept(backend: LogBackend) -> None:
    log = open_log(backend, ceiling_fen=2_500)  # room for two loans' expected loss
    outcomes = []
    for i, member in enumerate(["m0", "m0", "m1", "m2"]):
        c = claim(member)
        log.submit(record(i, c)).result(timeout=10)
        outcomes.append(c.outcome)
    log.close()
    assert [o.granted is not None for o in outcomes if o] == [True, False, True, False]
    assert [o.refused for o in outcomes if o][1] == ((PROGRAMME, "already_subsidised"),)
    assert [o.refused for o in outcomes if o][3] == ((PROGRAMME, "loss_ceiling_reached"),)
    assert counters(backend) == (2 * COST_FEN, 2_000, 2)  # the refused loss reservation was undone


def test_an_idempotent_duplicate_reserves_nothing(backend: LogBackend) -> None:
    log = open_log(backend)
    first, duplicate = claim("m0"), claim("m0")
    assert log.submit(record(0, first, key="k1")).result(timeout=10) is None
    stored = log.submit(record(1, duplicate, key="k1")).result(timeout=10)
    assert stored is not None  # answered with the first row
    assert duplicate.outcome is None and duplicate.response_json is None
    log.close()
    assert counters(backend) == (COST_FEN, 1_000, 1)
    # both requests read the county: both reads are logged
    assert backend.query("SELECT count(*) FROM programme_profile_uses") == [(2,)]


def test_a_review_that_overturns_an_approval_releases_its_subsidy(backend: LogBackend) -> None:
    log = open_log(backend)
    log.submit(record(0, claim("m0"))).result(timeout=10)
    log.add_review(
        f"{0:032x}", "officer li", "override", "decline", "income not verified", reviewed_by_key="admin"
    )
    log.close()
    assert counters(backend) == (0, 0, 0)
    assert backend.query("SELECT status, settled_reason FROM subsidy_reservations")[0] == (
        "released",
        "review changed the decision to decline",
    )


def test_latest_decisions_give_each_applications_final_word(backend: LogBackend) -> None:
    log = backend.writer()
    log.submit(record(0, None)).result(timeout=10)
    log.submit(record(1, None)).result(timeout=10)
    log.add_review(f"{1:032x}", "li", "override", "review", "check", reviewed_by_key="admin")
    log.close()
    with backend.reader() as reader:
        rows = {r["application_id"]: r for r in reader.latest_decisions(("has_prior_loan",))}
    assert rows["app-0"]["decision"] == "approve" and rows["app-1"]["decision"] == "review"
    assert rows["app-0"]["amount_cny"] == 8000 and rows["app-0"]["has_prior_loan"] is None
    assert rows["app-0"]["offer_principal_cny"] is None  # no offer logged: nothing to price on


def test_latest_decisions_carry_the_logged_offers_terms(backend: LogBackend) -> None:
    log = backend.writer()
    offer = {"principal_cny": 6500.0, "annual_rate": 0.0925, "term_months": 12, "limit_cny": 6500.0}
    log.submit(replace(record(0, None), offer=offer)).result(timeout=10)
    log.close()
    with backend.reader() as reader:
        (row,) = reader.latest_decisions(())
    assert (row["amount_cny"], row["offer_principal_cny"]) == (8000, 6500.0)
    assert (row["offer_annual_rate"], row["offer_term_months"]) == (0.0925, 12)
