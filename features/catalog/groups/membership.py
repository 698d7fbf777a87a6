"""Cooperative membership (`membership`): tenure, active status, leadership, departures."""

from __future__ import annotations

from features.catalog.declare import _feature
from features.catalog.schema import Condition, Feature


def declarations() -> list[Feature]:
    """The `membership` module's features, in declaration order."""
    src = ("membership",)
    return [
        _feature(
            "coop_tenure_months",
            sources=src,
            aggregation="months_since_first",
            where=(Condition(column="action", op="eq", value="join"),),
            direction=-1,
            group="membership",
            zh="入社月数（自首次入社起）",
            en="Months since first joining the cooperative",
            immutable=True,
        ),
        _feature(
            "membership_is_active",
            sources=src,
            aggregation="latest_in",
            column="action",
            values=("join",),
            direction=-1,
            group="membership",
            zh="当前是否为在册社员（最近一次社员记录为入社，1=是）",
            en="Currently a member: the latest membership record is a join (1 = yes)",
        ),
        _feature(
            "membership_is_leader",
            sources=src,
            aggregation="latest_in",
            column="role",
            values=("leader", "board"),
            direction=-1,
            group="membership",
            zh="是否担任合作社带头人或理事（1=是）",
            en="Holds a leader or board role in the cooperative (1 = yes)",
        ),
        _feature(
            "membership_leave_count",
            sources=src,
            aggregation="count",
            where=(Condition(column="action", op="eq", value="leave"),),
            direction=1,
            group="membership",
            zh="历史退社次数",
            en="Times the member has left a cooperative",
            immutable=True,
        ),
    ]
