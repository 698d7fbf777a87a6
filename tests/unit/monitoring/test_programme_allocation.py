"""The batch allocation job on a file of applications: every application left out is counted with its
reason, each rule keeps the budgets, the report (JSON, HTML, chart, list) is written offline in zh/en
without a protected value per person, and the protected reads are appended to the ledger."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coopscore.settings import Settings
from models.programmes.eligibility import NO_PROFILE, OUTSIDE_PERIODS, RULES_UNMET
from models.programmes.programme import Programme, load_programme
from monitoring.programme_allocation import (
    DUPLICATE,
    NOT_APPROVED,
    UNREADABLE,
    AllocationInputError,
    allocate,
    file_candidates,
    profile_book,
)
from monitoring.programme_report import USES_LEDGER, write_report

N = 400


def world(tmp_path: Path) -> tuple[Path, Path, Path, Settings]:
    rng = np.random.default_rng(4)
    members = [f"m{i}" for i in range(N)]
    profiles = pd.DataFrame(
        {
            "member_id": members,
            "gender": rng.choice(["female", "male"], N),
            "birth_year": rng.integers(1960, 2004, N),
            "returning_youth": rng.random(N) < 0.3,
            "left_behind_woman": rng.random(N) < 0.2,
            "county_id": rng.choice(["c1", "c2"], N),
        }
    )
    applications = pd.DataFrame(
        {
            "application_id": [f"a{i}" for i in range(N)],
            "member_id": members,
            "applied_at": pd.date_range("2026-01-02", periods=N, freq="6h", tz="UTC").astype(str),
            "amount_cny": rng.uniform(3_000, 30_000, N).round(0),
            "term_months": rng.choice([6, 12, 24], N),
            "pd": rng.beta(2, 25, N),
            "decision": ["approve"] * N,
            "has_prior_loan": rng.choice([0, 1], N),
        }
    )
    applications.loc[0:9, "decision"] = "decline"
    applications.loc[10, "pd"] = np.nan
    extra = applications.iloc[[20]].copy()  # the same application id again: the later row is kept
    extra["pd"] = 0.01
    applications = pd.concat([applications, extra], ignore_index=True)
    applications.loc[len(applications) - 2, "applied_at"] = "2025-12-01T00:00:00+00:00"  # outside
    profiles = profiles[profiles["member_id"] != "m30"]  # one member without a profile
    apps_path, profiles_path = tmp_path / "applications.csv", tmp_path / "profiles.parquet"
    applications.to_csv(apps_path, index=False)
    profiles.to_parquet(profiles_path)
    programme = tmp_path / "programme.yaml"
    programme.write_text(
        """
id: youth-women
version: 3
name: {zh: 返乡青年与留守妇女贴息, en: Returning youth and left-behind women}
periods: [{id: Q1, start: 2026-01-01, end: 2026-04-01}]
budgets:
  - {county_id: c1, period: Q1, amount_cny: 8000}
  - {county_id: c2, period: Q1, amount_cny: 6000}
subsidy: {share: 0.6, reference_annual_rate: 0.07}
loss_ceiling: {lgd: 0.5, max_expected_loss_cny: 9000}
eligibility:
  any_of: [returning_youth, left_behind_woman, first_formal_loan]
""",
        encoding="utf-8",
    )
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    return programme, apps_path, profiles_path, settings


def test_a_file_allocation_counts_every_application_left_out_and_keeps_every_limit(tmp_path: Path) -> None:
    programme, apps, profiles, settings = world(tmp_path)
    loaded = load_programme(programme)
    candidates = file_candidates(apps, settings)
    run = allocate(loaded, candidates, profile_book(settings, profiles))
    excluded = candidates.excluded
    assert excluded[NOT_APPROVED] == 10 and excluded[UNREADABLE] == 1 and excluded[DUPLICATE] == 1
    assert excluded[OUTSIDE_PERIODS] >= 1 and excluded[NO_PROFILE] == 1 and excluded[RULES_UNMET] > 0
    assert candidates.read == N + 1
    assert candidates.read == len(run.eligible) + sum(excluded.values())  # nothing dropped silently
    solver, fcfs, lowest = run.allocations
    assert solver.objective >= max(fcfs.objective, lowest.objective)
    p: Programme = loaded.programme
    for allocation in run.allocations:
        chosen = run.eligible[allocation.chosen]
        for b in p.budgets:
            assert chosen.loc[chosen["county_id"] == b.county_id, "subsidy_cny"].sum() <= b.amount_cny + 1e-9
        assert chosen["expected_loss_cny"].sum() <= p.loss_ceiling.max_expected_loss_cny + 1e-9
        assert chosen["member_id"].is_unique
    # Subsidy is the programme's share of the equal-instalment interest at its reference rate.
    row = run.eligible.iloc[0]
    r = 0.07 / 12
    payment = row["amount_cny"] * r / (1 - (1 + r) ** -row["term_months"])
    assert row["subsidy_cny"] == pytest.approx(
        0.6 * (payment * row["term_months"] - row["amount_cny"]), abs=0.011
    )
    uses = {(u["rule"], u["field"]) for u in run.profile_uses}
    assert ("county_budget", "county_id") in uses and ("returning_youth", "returning_youth") in uses


def test_subsidies_are_priced_on_the_loan_as_offered_where_an_offer_was_logged(tmp_path: Path) -> None:
    programme, apps, profiles, settings = world(tmp_path)
    frame = pd.read_csv(apps)
    half = frame.index % 2 == 0
    frame["offer_principal_cny"] = np.where(half, (frame["amount_cny"] * 0.5).round(0), np.nan)
    frame["offer_annual_rate"] = np.where(half, 0.12, np.nan)
    frame["offer_term_months"] = np.where(half, 6, np.nan)
    frame.to_csv(apps, index=False)
    candidates = file_candidates(apps, settings)
    run = allocate(load_programme(programme), candidates, profile_book(settings, profiles))
    e = run.eligible
    offered = e["rate_source"] == "offer"
    assert offered.any() and (~offered).any()
    assert (e.loc[offered, "annual_rate"] == 0.12).all() and (e.loc[~offered, "annual_rate"] == 0.07).all()
    assert (e.loc[offered, "principal_cny"] < e.loc[offered, "amount_cny"]).all()
    row = e[offered].iloc[0]
    r = 0.12 / 12
    payment = row["principal_cny"] * r / (1 - (1 + r) ** -6)
    assert row["subsidy_cny"] == pytest.approx(0.6 * (payment * 6 - row["principal_cny"]), abs=0.011)
    assert row["expected_loss_cny"] == pytest.approx(0.5 * row["pd"] * row["principal_cny"])
    notes = candidates.notes
    assert any("the loan as offered" in note and f"of {len(e):,} eligible" in note for note in notes)
    # A programme that fixes its cost per loan prices the amount asked at its reference rate.
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(
        programme.read_text(encoding="utf-8").replace(
            "reference_annual_rate: 0.07}", "reference_annual_rate: 0.07, interest_at: reference_rate}"
        ),
        encoding="utf-8",
    )
    again = allocate(load_programme(fixed), file_candidates(apps, settings), profile_book(settings, profiles))
    assert (again.eligible["rate_source"] == "programme_reference_rate").all()
    assert (again.eligible["principal_cny"] == again.eligible["amount_cny"]).all()


def test_the_report_is_offline_bilingual_and_lists_no_protected_value(tmp_path: Path) -> None:
    programme, apps, profiles, settings = world(tmp_path)
    run = allocate(
        load_programme(programme), file_candidates(apps, settings), profile_book(settings, profiles)
    )
    payload, folder = write_report(run, settings.data_dir)
    stored = json.loads((folder / "allocation.json").read_text(encoding="utf-8"))
    assert stored["programme"]["version"] == 3 and [r["rule"] for r in stored["rules"]] == [
        "integer program (HiGHS)",
        "first come first served",
        "lowest PD first",
    ]
    for rule in stored["rules"]:
        assert {"households", "subsidy_cny", "expected_loss_cny", "by_county", "by_group"} <= set(rule)
        shares = [g["share"] for g in rule["by_group"] if g["attribute"] == "county"]
        assert sum(shares) == pytest.approx(1.0)
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "覆盖户数" in page and "households reached" in page and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page  # no CDN: opens offline
    listed = pd.read_csv(folder / "subsidised.csv")
    assert len(listed) == stored["rules"][0]["households"]
    assert not set(listed.columns) & {
        "gender",
        "birth_year",
        "returning_youth",
        "left_behind_woman",
        "county_id",
    }
    ledger = [
        json.loads(line) for line in (settings.data_dir / "programmes" / USES_LEDGER).read_text().splitlines()
    ]
    assert {(u["rule"], u["field"], u["count"]) for u in ledger} == {
        (u["rule"], u["field"], u["count"]) for u in stored["profile_uses"]
    }
    assert payload["files"]["html"].endswith("report.html")


def test_an_applications_file_without_a_required_column_names_it(tmp_path: Path) -> None:
    _, apps, _, settings = world(tmp_path)
    frame = pd.read_csv(apps).drop(columns=["pd"])
    frame.to_csv(apps, index=False)
    with pytest.raises(AllocationInputError, match=r"no column 'pd'"):
        file_candidates(apps, settings)


def test_evidence_a_file_lacks_is_read_from_the_members_live_vectors(tmp_path: Path) -> None:
    from tests.utils.api import fill_online_store

    programme, apps, profiles, settings = world(tmp_path)
    frame = pd.read_csv(apps)
    prior = dict(zip(frame["member_id"], frame["has_prior_loan"], strict=False))
    frame.drop(columns=["has_prior_loan"]).to_csv(apps, index=False)
    fill_online_store(settings, ("has_prior_loan",), {m: [float(v)] for m, v in list(prior.items())[:300]})
    candidates = file_candidates(apps, settings)
    assert "has_prior_loan" in candidates.notes[0] and "read from the online store" in candidates.notes[0]
    vectors = candidates.frame.set_index("member_id")["has_prior_loan"]
    assert vectors["m50"] == prior["m50"] and np.isnan(vectors["m350"])  # no vector: unknown, not 0
    run = allocate(load_programme(programme), candidates, profile_book(settings, profiles))
    assert len(run.eligible) > 0
