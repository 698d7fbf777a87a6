"""What a member can do to change the answer (recourse): the declared `Action`s.

Each action is priced (`cost_cny_per_unit`: money spent or set aside, or the value of the working
days it takes), timed, bounded, and flagged `causal` or not: whether doing it changes the member's
risk, or only what the cooperative records about them. The features it moves, and how, are declared
on the features themselves (`Feature.levers`, in `features.catalog.groups`). The simulator gives
each action its effect in the world (`simulator.interventions`), and the recourse evaluation checks
the `causal` flags against the members' true PD there.

Costs are a declared valuation, not a price list: a working day is valued at 100 CNY; money saved
stays the member's, so it counts at a quarter of its amount (the cost of not having it at hand).
"""

from __future__ import annotations

from features.catalog.schema import Action


def declarations() -> tuple[Action, ...]:
    """The member actions, in the order `features.contracts.MEMBER_ACTIONS` lists them."""
    return (
        Action(
            name="save_group_fund",
            label_zh="存入互助储蓄",
            label_en="Save in the group fund",
            unit="cny",
            unit_zh="元",
            unit_en="CNY",
            minimum=100.0,
            step=10.0,
            maximum=20_000.0,
            cost_cny_per_unit=0.25,
            months=3,
            causal=True,
            mechanism_zh="存款留在互助储蓄中，遇到困难时可用来还款，降低违约风险",
            mechanism_en="the money stays in the fund as a buffer that can meet instalments in a bad month",
            instruction_zh="在合作社互助储蓄中存入共{units:,.0f}元，分{months}个月每月存入",
            instruction_en="Save {units:,.0f} CNY in the group fund, in {months} monthly deposits",
        ),
        Action(
            name="complete_training",
            label_zh="完成合作社培训",
            label_en="Complete cooperative trainings",
            unit="count",
            unit_zh="次培训",
            unit_en="trainings",
            minimum=1.0,
            step=1.0,
            maximum=3.0,
            cost_cny_per_unit=200.0,
            causal=True,
            mechanism_zh="每次培训都会提高收入能力；金融知识与记账培训还能提升还款规划能力",
            mechanism_en="every training raises income; the finance topics also improve repayment planning",
            instruction_zh="完成{units:.0f}次合作社培训（依次为金融知识、记账、农业技术），每月一次",
            instruction_en=(
                "Complete {units:.0f} cooperative training(s), one a month "
                "(financial literacy, then bookkeeping, then agronomy)"
            ),
        ),
        Action(
            name="adopt_green_practice",
            label_zh="采用经核验的绿色生产实践",
            label_en="Adopt verified green practices",
            unit="count",
            unit_zh="项实践",
            unit_en="practices",
            minimum=1.0,
            step=1.0,
            maximum=3.0,
            cost_cny_per_unit=600.0,
            causal=True,
            mechanism_zh="有机肥、病虫害综合防治、滴灌等实践降低天气冲击造成的损失",
            mechanism_en="organic fertilizer, pest management and drip irrigation soften weather shocks",
            instruction_zh="采用{units:.0f}项新的绿色生产实践并经合作社核验（每月一项）",
            instruction_en="Adopt {units:.0f} new green practice(s) verified by the cooperative, one a month",
        ),
        Action(
            name="deliver_through_coop",
            label_zh="通过合作社交售农产品",
            label_en="Deliver produce through the cooperative",
            unit="months",
            unit_zh="个月",
            unit_en="months",
            minimum=1.0,
            step=1.0,
            maximum=6.0,
            cost_cny_per_unit=100.0,
            causal=False,
            mechanism_zh="把原本在别处出售的农产品交给合作社：记录变厚，收入本身不变",
            mechanism_en=(
                "selling through the cooperative what would be sold elsewhere: the record grows, the income "
                "does not"
            ),
            instruction_zh="连续{units:.0f}个月每月通过合作社交售一次农产品（按平时的交售量）",
            instruction_en=(
                "Deliver produce through the cooperative once a month for {units:.0f} month(s), at your "
                "usual size"
            ),
        ),
        Action(
            name="attend_meetings",
            label_zh="参加合作社会议",
            label_en="Attend cooperative meetings",
            unit="months",
            unit_zh="个月",
            unit_en="months",
            minimum=1.0,
            step=1.0,
            maximum=6.0,
            cost_cny_per_unit=50.0,
            causal=False,
            mechanism_zh="参会记录反映参与程度，但参会本身不改变收入或还款能力",
            mechanism_en="attendance reflects engagement, but attending changes neither income nor repayment",
            instruction_zh="连续{units:.0f}个月参加合作社每月例会",
            instruction_en="Attend the cooperative's monthly meeting for {units:.0f} month(s)",
        ),
    )
