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
from models.registry import CHALLENGER, CHAMPION, MODEL_NAME, load_model, sign_version
from models.signing import UNSIGNED_RISK, Keyring
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
    # Feature-catalog versions the two were trained on ("" for a table-trained model, None if absent).
    challenger_feature_set: str | None = None
    champion_feature_set: str | None = None
    # Set when promoted: signed with which key, the manifest digest, or why it is unsigned.
    signature: dict[str, Any] | None = None

    @property
    def signed(self) -> bool:
        """True when the promoted version was signed."""
        return bool(self.signature and self.signature.get("signed"))

    @property
    def promoted(self) -> bool:
        """True when the challenger is now the champion."""
        return self.status in ("promoted", "forced")

    @property
    def reasons(self) -> list[str]:
        """One line per gate: name, pass/FAIL/skipped, reason."""
        return [f"{g.gate}: {g.verdict} - {g.reason}" for g in self.gates]

    @property
    def kept_champion_cannot_serve(self) -> str | None:
        """When the champion was kept but cannot score the challenger's (the current) features: why,
        and what to do. Serving refuses to score with it (503) rather than answer with wrong PDs."""
        if self.promoted or not self.champion_feature_set or not self.challenger_feature_set:
            return None
        if self.champion_feature_set == self.challenger_feature_set:
            return None
        return (
            f"champion v{self.champion_after} was trained on feature set {self.champion_feature_set}, "
            f"not on the current {self.challenger_feature_set}: the API will not score with it "
            f"(503) until a version trained on the current features is champion (fix what failed and "
            f"run `coopscore retrain`, or sign v{self.challenger_version} off with `coopscore promote "
            f"--version {self.challenger_version} --force --by NAME --reason TEXT`)"
        )

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
            "feature_sets": {
                "challenger": self.challenger_feature_set,
                "champion": self.champion_feature_set,
            },
            "kept_champion_cannot_serve": self.kept_champion_cannot_serve,
            "signed": self.signed,
            "signature": self.signature,
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
        if result.skipped:
            tags[f"gate.{result.gate}.skipped"] = "true"
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
    keyring: Keyring | None = None,
) -> PromotionResult:
    """Judge the challenger (or `version`) with the gates; make it champion if all pass or forced.

    A promoted version is signed (before the alias moves, so serving never sees it unsigned) with
    the current key of `keyring` (default: the settings'); without a key it stays unsigned.

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
    champion_set = context.champion.catalog_feature_set if context.champion is not None else None
    tags = {
        **_gate_tags(results),
        "promotion.status": status,
        "promotion.decided_at": now,
        "promotion.champion_before": champion_before or "",
        "promotion.challenger_feature_set": challenger.catalog_feature_set,
        "promotion.champion_feature_set": champion_set or "",
    }
    if status == "forced":
        tags.update({"promotion.forced_by": str(forced_by), "promotion.force_reason": str(force_reason)})
    champion_after = champion_before
    signature: dict[str, Any] | None = None
    if status in ("promoted", "forced"):
        signature = _sign(tracking_uri, model_name, candidate, keyring, now)
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
        challenger_feature_set=challenger.catalog_feature_set,
        champion_feature_set=champion_set,
        signature=signature,
    )


def _sign(
    tracking_uri: str, model_name: str, version: str, keyring: Keyring | None, now: str
) -> dict[str, Any]:
    """Sign `version` with the current key; without one, say what that gives up."""
    if keyring is None:
        from coopscore.settings import get_settings

        keyring = Keyring.from_settings(get_settings())
    if keyring.current is None:
        return {"signed": False, "key_id": None, "note": f"no signing key configured: {UNSIGNED_RISK}"}
    check = sign_version(tracking_uri, model_name, version, keyring.current, signed_at=now)
    return check.to_dict()
