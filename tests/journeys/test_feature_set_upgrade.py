"""Upgrade journey: a release changes what the features mean; the service never mixes the two.

An operator's data directory holds a champion trained by the previous release. The previous release
is this same code with an older `FEATURE_SEMANTICS_VERSION` (run through a small launcher, as an
installed older wheel would be), so everything it computes carries another feature-set version. After
the upgrade, `coopscore features materialize` writes vectors of the new version: the server (the
current release, real `coopscore serve`) is not ready and refuses to score, saying to retrain.
`coopscore retrain` does not compare the challenger with the old champion (not like-for-like) and
records why; once a model of the current features is champion, a reload makes the service ready.

The session world is not touched: its event log and tables are copied into this test's own folder
(with a fresh MLflow store), and everything after that runs there.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from tests.journeys.conftest import Cli, JourneyWorld, journey_env, start_server, stop_server

PREVIOUS_RELEASE = '''\
"""coopscore as the previous release shipped it: its features meant something else."""
import features.catalog.schema as schema

schema.FEATURE_SEMANTICS_VERSION = schema.FEATURE_SEMANTICS_VERSION - 1
from coopscore.cli.main import main

main()
'''


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _signed_off(cli: Cli, trained: dict[str, Any], why: str) -> str:
    """The trained version as champion: promoted by its gates, else signed off by an analyst (the
    gates are recorded either way; the fairness audit is left to the fairness journeys, for time)."""
    version = str(trained["version"])
    if trained["status"] != "promoted":
        cli.json(
            "promote", "--version", version, "--force", "--by", "journey-analyst", "--reason", why,
            "--no-fairness",
        )  # fmt: skip
    return version


@pytest.fixture(scope="module")
def upgraded(journey_world: JourneyWorld, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A copy of the world's data with a previous-release champion and current-release vectors."""
    root = tmp_path_factory.mktemp("feature-set-upgrade")
    shutil.copytree(
        journey_world.data_dir,
        root / "data",
        ignore=shutil.ignore_patterns("online", "decisions.sqlite*", "monitoring", "audits"),
    )
    launcher = root / "previous_release.py"
    launcher.write_text(PREVIOUS_RELEASE, encoding="utf-8")
    current = Cli(journey_env(root), root)
    previous = replace(current, command=[sys.executable, str(launcher)], history=[])

    as_of = _iso(journey_world.drift_onset)
    _, old = previous.json("train", "--as-of", as_of)  # registered; the analyst signs it off
    old_version = _signed_off(previous, old, "journey: the previous release's champion")
    _, materialized = current.json("features", "materialize", "--as-of", _iso(journey_world.end))
    return {
        "root": root,
        "cli": current,
        "world": replace(journey_world, root=root, data_dir=root / "data", cli=current),
        "old_version": old_version,
        "old_feature_set": old["data"]["feature_set_version"],
        "feature_set": materialized["feature_set_version"],
    }


def test_an_upgrade_is_not_served_until_a_model_of_the_new_features_is_champion(
    upgraded: dict[str, Any], journey_world: JourneyWorld
) -> None:
    cli: Cli = upgraded["cli"]
    old_set, new_set = upgraded["old_feature_set"], upgraded["feature_set"]
    assert old_set != new_set  # the launcher really is another release

    server = start_server(upgraded["world"], until="/healthz")
    try:
        with server.client() as client:
            member = next(
                m
                for m in journey_world.member_ids(50)
                if client.get(f"/v1/members/{m}/features").status_code == 200
            )
            application = {"member_id": member, "amount_cny": 8000, "term_months": 12, "purpose": "livestock"}
            # 1. Not ready, with one line that says what to run, and no hashes.
            ready = client.get("/readyz")
            assert ready.status_code == 503, ready.text
            detail = ready.json()["detail"]
            assert ready.json()["model_version"] == upgraded["old_version"]
            assert "`coopscore retrain`" in detail and "/v1/admin/reload" in detail
            assert old_set not in detail and new_set not in detail

            # 2. Scoring refuses with the same message, one application or a batch.
            one = client.post("/v1/score", json=application)
            batch = client.post("/v1/score/batch", json={"applications": [application, application]})
            assert one.status_code == 503 and one.json()["detail"] == detail
            assert batch.status_code == 503 and batch.json()["detail"] == detail

            # 3. Retrain on the new features: no like-for-like champion comparison, and it says so.
            _, retrain = cli.json("retrain", "--as-of", _iso(journey_world.drift_onset), expect=(0, 10))
            gates = {g["gate"]: g for g in retrain["promotion"]["gates"]}
            assert gates["oot_auc"]["skipped"] is True and gates["oot_auc"]["passed"] is True
            assert "not compared" in gates["oot_auc"]["reason"]
            assert "oot_auc: skipped" in retrain["message"]
            assert retrain["promotion"]["feature_sets"] == {"challenger": new_set, "champion": old_set}
            if retrain["exit_code"] == 10:  # kept: the old champion cannot serve, and the job says so
                assert f"champion v{upgraded['old_version']} was trained on feature set" in retrain["message"]
                assert "the API will not score with it (503)" in retrain["message"]
            new_version = _signed_off(cli, retrain, "journey: first model of the new feature set")

            # 4. Reload: ready again, and scores carry the new feature set.
            reloaded = client.post("/v1/admin/reload")
            assert reloaded.status_code == 200, reloaded.text
            assert reloaded.json()["model_version"] == new_version
            assert client.get("/readyz").status_code == 200
            scored = client.post("/v1/score", json=application)
            assert scored.status_code == 200, scored.text
            assert scored.json()["feature_set_version"] == new_set
            assert scored.json()["model_version"] == new_version
    finally:
        stop_server(server)
