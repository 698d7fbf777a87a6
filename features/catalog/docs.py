"""The generated feature reference (`docs/features.md`) and the `features list --json` rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from features.catalog.schema import Feature, FeatureRegistry


def _direction_label(direction: int) -> str:
    return {1: "+1 (raises risk)", -1: "−1 (lowers risk)", 0: "none"}[direction]


def _aggregation_label(feature: Feature) -> str:
    """Compact description of how a feature is computed, for the reference table."""
    parts: list[str] = [feature.aggregation]
    if feature.column:
        parts.append(f"({feature.column})")
    if feature.inputs:
        parts.append("(" + ", ".join(feature.inputs) + ")")
    if feature.values:
        parts.append(" in " + "/".join(feature.values))
    label = "".join(parts)
    for cond in feature.where:
        value = "/".join(cond.value) if isinstance(cond.value, tuple) else cond.value
        label += f" where {cond.column} {cond.op}" + ("" if value is None else f" {value}")
    return label


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _lever_label(feature: Feature, moved: set[str]) -> str:
    """What recourse may do with a feature: the actions that move it, immutable, or following inputs."""
    if feature.immutable:
        return "immutable"
    if feature.levers:
        return ", ".join(sorted({lever.action for lever in feature.levers}))
    if set(feature.inputs) & moved:
        return "follows its inputs"
    return "—"


def _moved_features(registry: FeatureRegistry) -> set[str]:
    """Features some action moves, directly or through their inputs."""
    moved: set[str] = set()
    for f in registry.features:
        if f.levers or set(f.inputs) & moved:
            moved.add(f.name)
    return moved


def _action_lines(registry: FeatureRegistry) -> list[str]:
    """The member actions recourse may suggest, as a table."""
    if not registry.actions:
        return []
    lines = [
        "## Member actions (recourse) · 可采取的行动",
        "",
        "What a declined or reviewed member may do to reach approval (`features/catalog/actions.py`). "
        "The recourse column of each feature table says which actions move the feature (its `levers`: "
        "how much, all else equal, right after the action), `immutable` for what no action changes, and "
        "`follows its inputs` for derived features. Non-causal actions change the record, not the risk: "
        "recourse leaves them out unless asked, and then offers them last.",
        "",
        "| action | unit | sizes | cost (CNY per unit) | months | causal | why (en) | 说明 (zh) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in registry.actions:
        months = f"{a.months}" if a.months is not None else "1 per unit"
        cells = [
            f"`{a.name}` ({a.label_en} · {a.label_zh})",
            a.unit_en,
            f"{a.minimum:g} to {a.maximum:g} by {a.step:g}",
            f"{a.cost_cny_per_unit:g}",
            months,
            "yes" if a.causal else "no",
            a.mechanism_en,
            a.mechanism_zh,
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return [*lines, ""]


def render_feature_reference(registry: FeatureRegistry) -> str:
    """Markdown reference of every feature, grouped by reason group (`docs/features.md`)."""
    lines = [
        "# Feature reference",
        "",
        "Generated from `features/catalog/` by `features.catalog.render_feature_reference`",
        "(`coopscore features list --markdown > docs/features.md`); do not edit by hand.",
        "",
        f"Feature-set version `{registry.version}`: {len(registry.features)} features in "
        f"{len({f.reason_group for f in registry.features})} reason groups.",
        "",
        "Point-in-time rule: a feature as of `t` uses only events with `event_time < t` and "
        "`recorded_at <= t`, each `event_id` once (the earliest-recorded of its copies visible at "
        "`t`); an N-day window covers `[t - N days, t)`; a month is 30.4375 days of elapsed time "
        "(timestamps read to the second): `months since` an event counts the whole months elapsed "
        "until `t`, and a count of months in a window counts the month-long spans back from `t` "
        "that hold an event, so neither depends on the day of the month `t` falls on. The "
        "member's cooperative and village are those of their latest `join` event visible at `t`. "
        "Peer default rates use outcomes known by `t` (`max(observed_at, applied_at) <= t`), "
        "never the application being scored; an outcome counts for the village its applicant "
        "lived in when applying. Direction is the expected effect of a larger value on default "
        "risk (training turns it into a monotone constraint). Counts and flags are never missing; "
        "other features are empty (NaN) when undefined, e.g. a ratio over zero.",
        "",
    ]
    moved = _moved_features(registry)
    for group in registry.reason_groups:
        members = [f for f in registry.features if f.reason_group == group.name]
        if not members:
            continue
        lines += [
            f"## {group.label_en} · {group.label_zh} (`{group.name}`)",
            "",
            "| feature | entity | sources | computed as | window | dtype | direction "
            "| recourse | description (en) | 说明 (zh) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for f in members:
            sources = ", ".join(f.sources) if len(f.sources) < 4 else "all event types"
            cells = [
                f"`{f.name}`",
                f.entity,
                sources or "(features)",
                f"`{_aggregation_label(f)}`",
                f.window_label,
                f.dtype,
                _direction_label(f.direction),
                _lever_label(f, moved),
                f.description_en,
                f.description_zh,
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
    lines += _action_lines(registry)
    return "\n".join(lines)


def feature_table_rows(registry: FeatureRegistry) -> Iterable[dict[str, Any]]:
    """One plain dict per feature (the `coopscore features list --json` payload)."""
    moved = _moved_features(registry)
    for f in registry.features:
        yield {
            "name": f.name,
            "entity": f.entity,
            "sources": list(f.sources),
            "aggregation": f.aggregation,
            "window": f.window_label,
            "window_days": f.window_days,
            "dtype": f.dtype,
            "direction": f.direction,
            "reason_group": f.reason_group,
            "recourse": _lever_label(f, moved),
            "description_zh": f.description_zh,
            "description_en": f.description_en,
        }
