"""A simulated world, ingested once and cached by its shape: what the training, quality and recourse
benchmarks measure on. Scripts import it after keeping their folder off the import path (their names
clash with the `training` and `features` packages), as `from benchmarks.worlds import prepare_world`."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from simulator.world import SimulationConfig


def prepare_world(
    work_dir: Path, config: SimulationConfig, *, label: str = ""
) -> tuple[Path, Path, dict[str, float]]:
    """The world's folder and its ingested data folder, simulated and ingested on the first call for
    this members/months/application-rate/seed and reused after; with the seconds each step took
    (empty when reused). An interrupted ingest is redone, never reused."""
    from datetime import UTC, datetime

    from features.event_log import EventLog
    from features.ingest import ingest_paths
    from features.ledger import IngestLedger
    from features.validation import Limits
    from simulator.world import simulate_world

    tag = f"m{config.members}-mo{config.months}-r{config.application_rate}-s{config.seed}"
    if config.interventions or config.record_states_from is not None:  # a re-simulated future
        described = json.dumps(config.to_dict(), sort_keys=True).encode()
        tag += "-" + hashlib.sha256(described).hexdigest()[:12]
    world, data = work_dir / f"world-{tag}", work_dir / f"data-{tag}"
    seconds: dict[str, float] = {}
    if (data / "ingested.ok").exists() and (world / "manifest.json").exists():
        return world, data, seconds
    shutil.rmtree(data, ignore_errors=True)
    began = time.perf_counter()
    summary = simulate_world(config, world, overwrite=True)
    seconds["simulate"] = round(time.perf_counter() - began, 1)
    print(
        f"{label}simulated {summary.applications:,} applications, {summary.valid_events:,} events "
        f"in {seconds['simulate']:.0f} s",
        file=sys.stderr,
    )
    began = time.perf_counter()
    ledger = IngestLedger(data / "ledger.sqlite")
    try:
        limits = Limits(
            max_amount_cny=5_000_000, max_quantity_kg=1_000_000, now=datetime.now(UTC), clock_skew_seconds=300
        )
        ingest_paths([world], EventLog(data / "events", data / "tables"), ledger, data / "quarantine", limits)
    finally:
        ledger.close()
    (data / "ingested.ok").touch()
    seconds["ingest"] = round(time.perf_counter() - began, 1)
    print(f"{label}ingested in {seconds['ingest']:.0f} s", file=sys.stderr)
    return world, data, seconds
