"""Promotion: the challenger becomes champion only if every gate passes (or someone forces it).

The gates re-score the champion on the challenger's OOT rows. Results, reasons and who forced what
are written as tags on the challenger's model version, so the registry is the audit trail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from models import mlflow_io
from models.artifacts import ArtifactIntegrityError
from models.registry import CHALLENGER, CHAMPION, MODEL_NAME, load_model
from training.config import GateConfig
from training.gates import Gate, GateContext, GateResult, default_gates, run_gates
from training.tracking import read_oot_frame

PromotionStatus = Literal["promoted", "forced", "kept", "already_champion", "no_challenger"]


class NothingToPromoteError(LookupError):
    """There is no challenger to judge."""


@dataclass
class PromotionResult:
    """What promotion decided for one challenger, and why."""

    model_name: str
    status: PromotionStatus
    challenger_version: str | None
    champion_before: str | None
    champion_after: str | None
    gates: list[GateResult] = field(default_factory=list)
    forced_by: str | None = None
    force_reason: str | None = None

    @property
    def promoted(self) -> bool:
        """True when the challenger is now the champion."""
        return self.status in ("promoted", "forced")

    @property
    def reasons(self) -> list[str]:
        """One line per gate: name, pass/fail, reason."""
        return [f"{g.gate}: {'pass' if g.passed else 'FAIL'} - {g.reason}" for g in self.gates]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "model_name": self.model_name,
            "status": self.status,
            "promoted": self.promoted,
            "challenger_version": self.challenger_version,
            "champion_before": self.champion_before,
            "champion_after": self.champion_after,
            "gates": [g.to_dict() for g in self.gates],
            "forced_by": self.forced_by,
            "force_reason": self.force_reason,
        }


def _current(tracking_uri: str, model_name: str, alias: str) -> str | None:
    try:
        return mlflow_io.get_version(tracking_uri, model_name, alias).version
    except KeyError:
        return None


def _gate_tags(results: list[GateResult]) -> dict[str, str]:
    tags = {}
    for result in results:
        tags[f"gate.{result.gate}.passed"] = str(result.passed).lower()
        tags[f"gate.{result.gate}.reason"] = result.reason[:4000]
        tags[f"gate.{result.gate}.details"] = json.dumps(result.details, default=str)[:4000]
    return tags


def promote(
    tracking_uri: str,
    *,
    model_name: str = MODEL_NAME,
    version: str | None = None,
    gates: list[Gate] | None = None,
    gate_config: GateConfig | None = None,
    force: bool = False,
    forced_by: str | None = None,
    force_reason: str | None = None,
) -> PromotionResult:
    """Judge the challenger (or `version`) with the gates; make it champion if all pass or forced.

    Raises:
        NothingToPromoteError: no challenger alias and no version given.
        ValueError: `force` without `forced_by` and `force_reason`.
    """
    if force and not (forced_by and force_reason):
        raise ValueError("forcing a promotion needs who (forced_by) and why (force_reason)")
    champion_before = _current(tracking_uri, model_name, CHAMPION)
    candidate = version or _current(tracking_uri, model_name, CHALLENGER)
    if candidate is None:
        raise NothingToPromoteError(f"{model_name} has no '{CHALLENGER}' to promote")
    if candidate == champion_before:
        return PromotionResult(model_name, "already_champion", candidate, champion_before, champion_before)
    record = mlflow_io.get_version(tracking_uri, model_name, candidate)
    challenger = load_model(candidate, tracking_uri, model_name=model_name)
    context = GateContext(challenger=challenger, oot=read_oot_frame(tracking_uri, record.run_id))
    if champion_before is not None:
        try:
            context.champion = load_model(champion_before, tracking_uri, model_name=model_name)
        except (ArtifactIntegrityError, KeyError, OSError) as error:
            context.champion_error = f"v{champion_before}: {error}"
    results = run_gates(context, gates if gates is not None else default_gates(gate_config))
    passed = all(r.passed for r in results)
    status: PromotionStatus = "promoted" if passed else ("forced" if force else "kept")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    tags = {
        **_gate_tags(results),
        "promotion.status": status,
        "promotion.decided_at": now,
        "promotion.champion_before": champion_before or "",
    }
    if status == "forced":
        tags.update({"promotion.forced_by": str(forced_by), "promotion.force_reason": str(force_reason)})
    champion_after = champion_before
    if status in ("promoted", "forced"):
        mlflow_io.set_alias(tracking_uri, model_name, CHAMPION, candidate)
        if _current(tracking_uri, model_name, CHALLENGER) == candidate:
            mlflow_io.delete_alias(tracking_uri, model_name, CHALLENGER)
        champion_after = candidate
        if champion_before is not None:
            mlflow_io.set_version_tags(
                tracking_uri,
                model_name,
                champion_before,
                {"promotion.replaced_by": candidate, "promotion.replaced_at": now},
            )
    mlflow_io.set_version_tags(tracking_uri, model_name, candidate, tags)
    return PromotionResult(
        model_name=model_name,
        status=status,
        challenger_version=candidate,
        champion_before=champion_before,
        champion_after=champion_after,
        gates=results,
        forced_by=forced_by if status == "forced" else None,
        force_reason=force_reason if status == "forced" else None,
    )
