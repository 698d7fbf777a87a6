"""Cooperative and village (`peer`): peer default rates, outcome counts, cooperative size."""

from __future__ import annotations

from features.catalog.declare import _feature
from features.catalog.schema import REFERENCE_TABLE_SOURCES, Feature


def declarations() -> list[Feature]:
    """The `peer` module's features, in declaration order."""
    tables = REFERENCE_TABLE_SOURCES
    return [
        _feature(
            "coop_past_default_rate",
            entity="cooperative",
            sources=tables,
            aggregation="peer_default_rate",
            direction=1,
            group="peer",
            zh="所在合作社此前贷款的违约率（截至当时已知的结果，不含本笔申请）",
            en="Default rate of earlier loans in the member's cooperative, as known at the time",
        ),
        _feature(
            "coop_past_outcome_count",
            entity="cooperative",
            sources=tables,
            aggregation="peer_outcome_count",
            direction=0,
            group="peer",
            zh="所在合作社截至当时已知结果的贷款笔数",
            en="Earlier loans in the member's cooperative with a known outcome at the time",
        ),
        _feature(
            "village_past_default_rate",
            entity="village",
            sources=tables,
            aggregation="peer_default_rate",
            direction=1,
            group="peer",
            zh="所在村此前贷款的违约率（截至当时已知的结果，不含本笔申请）",
            en="Default rate of earlier loans in the member's village, as known at the time",
        ),
        _feature(
            "village_past_outcome_count",
            entity="village",
            sources=tables,
            aggregation="peer_outcome_count",
            direction=0,
            group="peer",
            zh="所在村截至当时已知结果的贷款笔数",
            en="Earlier loans in the member's village with a known outcome at the time",
        ),
        _feature(
            "coop_member_count",
            entity="cooperative",
            sources=("membership",),
            aggregation="member_count",
            direction=0,
            group="peer",
            zh="合作社规模：截至当时已入社的社员人数",
            en="Cooperative size: members who had joined by the time",
        ),
    ]
