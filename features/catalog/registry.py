"""The coopscore feature set: the reason groups, every group's declarations in one fixed order, and the
member actions recourse may suggest (`features.catalog.actions`).

The order below is the column order of every feature frame and of the model, and it is part of the
feature-set version: append new groups or features, do not reorder.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from features.catalog import actions
from features.catalog.groups import (
    application,
    deliveries,
    engagement,
    evidence,
    green_practices,
    inputs,
    membership,
    mobile_payments,
    peer,
    repayment,
    savings,
)
from features.catalog.schema import FeatureRegistry, ReasonGroup

REASON_GROUPS: Final = (
    ("deliveries", "农产品交售", "Produce deliveries"),
    ("inputs", "农资采购", "Farm input purchases"),
    ("savings", "互助储蓄", "Group savings"),
    ("repayment", "既往借款与还款", "Earlier loans and repayments"),
    ("late_repayment", "逾期还款", "Late repayments"),
    ("engagement", "会议与培训参与", "Meetings and training"),
    ("membership", "社员资格", "Cooperative membership"),
    ("mobile_payments", "移动支付", "Mobile payments"),
    ("green_practices", "绿色生产", "Green production practices"),
    ("evidence", "记录厚度", "Depth of the record"),
    ("peer", "合作社与村庄情况", "Cooperative and village"),
    ("application", "申请条件", "Loan terms requested"),
)


@lru_cache(maxsize=1)
def default_registry() -> FeatureRegistry:
    """The coopscore feature set (built on first use, then cached)."""
    features = (
        deliveries.declarations()
        + inputs.declarations()
        + savings.declarations()
        + repayment.declarations()
        + engagement.declarations()
        + membership.declarations()
        + mobile_payments.declarations()
        + green_practices.declarations()
        + evidence.declarations()
        + peer.declarations()
        + application.declarations()
    )
    groups = tuple(ReasonGroup(name=n, label_zh=zh, label_en=en) for n, zh, en in REASON_GROUPS)
    return FeatureRegistry(features=tuple(features), reason_groups=groups, actions=actions.declarations())
