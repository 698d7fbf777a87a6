"""Month-by-month behaviour of the simulated world, generated from the members' latent traits.

Each month: stress moves with county weather and personal shocks; active members deliver produce
(seasonally, by product), buy inputs, save and withdraw, attend meetings and trainings, pay by mobile,
adopt green practices, take and repay small cooperative loans; some apply to the lender. Everything is
a per-month vector operation over members (numpy), never a loop over events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from features.contracts import (
    GREEN_PRACTICES,
    INPUT_CATEGORIES,
    LOAN_PURPOSES,
    QUALITY_GRADES,
    TRAINING_TOPICS,
)
from simulator.events import EventBatch
from simulator.interventions import MemberActions, action_log_odds, expected_shock
from simulator.population import (
    ANNUAL_DELIVERIES,
    HARVEST_SEASON,
    HOGS,
    NULL_TIME,
    PRICE_PER_KG,
    SECONDS_PER_DAY,
    BoolArray,
    Calendar,
    FloatArray,
    IntArray,
    Population,
)

# Share of a member's annual income that comes through produce deliveries to the cooperative.
_DELIVERED_INCOME_SHARE: Final = 0.6
_QUALITY_PRICE: Final = np.array([1.1, 1.0, 0.85])  # A, B, C
assert len(_QUALITY_PRICE) == len(QUALITY_GRADES)

# Input purchases: category mix for crop farms vs livestock, and relative ticket size.
_INPUT_MIX: Final = np.array(
    [
        [0.25, 0.4, 0.2, 0.0, 0.05, 0.1],  # crops
        [0.02, 0.05, 0.05, 0.7, 0.08, 0.1],  # livestock
    ]
)
_INPUT_TICKET: Final = np.array([0.6, 1.0, 0.5, 1.2, 3.5, 0.6])
_LAND_INPUTS: Final = np.array([True, True, True, False, False, False])  # seed, fertilizer, pesticide
assert _INPUT_MIX.shape[1] == len(INPUT_CATEGORIES)
_INPUT_SEASON: Final = np.array([0.5, 1.2, 1.6, 1.4, 0.9, 0.7, 0.6, 1.0, 1.1, 0.9, 0.6, 0.5])
_GREEN_SEASON: Final = np.array([0.4, 0.6, 1.5, 1.6, 1.2, 0.7, 0.6, 0.7, 1.3, 1.4, 0.8, 0.4])

_TOPIC_MIX: Final = np.array(
    [
        [0.3, 0.12, 0.12, 0.1, 0.18, 0.18],  # everyone
        [0.15, 0.2, 0.35, 0.05, 0.15, 0.1],  # returning youth
        [0.15, 0.1, 0.08, 0.4, 0.15, 0.12],  # hog farmers
    ]
)
assert _TOPIC_MIX.shape[1] == len(TRAINING_TOPICS)
_PRACTICE_MIX: Final = np.array([[0.35, 0.2, 0.25, 0.2]])
assert _PRACTICE_MIX.shape[1] == len(GREEN_PRACTICES)

_PURPOSE_MIX: Final = np.array(
    [
        [0.45, 0.08, 0.15, 0.08, 0.1, 0.14],  # crop farms
        [0.2, 0.55, 0.08, 0.05, 0.05, 0.07],  # hog farms
        [0.15, 0.05, 0.2, 0.25, 0.28, 0.07],  # micro-enterprises
    ]
)
assert _PURPOSE_MIX.shape[1] == len(LOAN_PURPOSES)
_TERMS: Final = np.array([6, 12, 24, 36])
_TERM_P: Final = np.array([0.2, 0.5, 0.2, 0.1])
_COOP_LOAN_TERMS: Final = np.array([3, 6, 12])
_COOP_LOAN_TERM_P: Final = np.array([0.3, 0.4, 0.3])

# Left-behind women: share of their records filed under the proxy household's id.
_PROXY_DELIVERY_SHARE: Final = 0.6
_PROXY_LAND_SHARE: Final = 0.5

# True PD (log-odds) of a lender application. Discipline dominates; income, stress at application
# time and loan size relative to income matter; nothing depends on gender, age or group.
_PD_DISCIPLINE: Final = -1.0
_PD_INCOME: Final = -0.45
_PD_STRESS: Final = 1.1
_PD_SIZE: Final = 0.8
_PD_LONG_TERM: Final = 0.25
_PD_ENGAGEMENT: Final = -0.15
_TYPICAL_SIZE: Final = 0.22  # amount / annual income of a typical application
_DAYS_TO_DEFAULT: Final = 90


@dataclass(frozen=True)
class ActivityParams:
    """Behavioural knobs; defaults are tuned to a ~7% default rate and a thin-file majority."""

    seed: int
    months: int
    application_rate: float = 0.015
    coop_loan_rate: float = 0.018
    pd_intercept: float = -3.5
    new_coop_index: int = -1
    proxy_delivery_share: float = _PROXY_DELIVERY_SHARE
    proxy_land_share: float = _PROXY_LAND_SHARE
    proxy_savings_share: float = 0.0  # group-fund deposits and withdrawals booked under the proxy
    drought_county: int = -1  # county index hit by the `drought` scenario (-1: no drought)
    drought_start: int = 0  # the drought's first month


@dataclass
class ApplicationLedger:
    """Lender applications accumulated month by month, truth columns included."""

    member: list[IntArray] = field(default_factory=list)
    applied_at: list[IntArray] = field(default_factory=list)
    amount: list[FloatArray] = field(default_factory=list)
    term: list[IntArray] = field(default_factory=list)
    purpose: list[IntArray] = field(default_factory=list)
    true_pd: list[FloatArray] = field(default_factory=list)
    defaulted: list[BoolArray] = field(default_factory=list)
    observed_at: list[IntArray] = field(default_factory=list)
    prior_loan: list[BoolArray] = field(default_factory=list)
    recent_join: list[BoolArray] = field(default_factory=list)
    stress: list[FloatArray] = field(default_factory=list)
    size_to_income: list[FloatArray] = field(default_factory=list)

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        """Each column concatenated over months."""
        return {name: np.concatenate(parts) if parts else np.empty(0) for name, parts in vars(self).items()}


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


def _categorical(rng: np.random.Generator, mix: FloatArray, row: IntArray) -> IntArray:
    """One categorical draw per event, each from its own row of the probability table `mix`."""
    cumulative = np.cumsum(mix / mix.sum(axis=1, keepdims=True), axis=1)
    u = rng.random(len(row))
    codes: IntArray = np.minimum((u[:, None] > cumulative[row]).sum(axis=1), mix.shape[1] - 1)
    return codes.astype(np.int64)


def application_log_odds(
    intercept: float,
    discipline_z: FloatArray,
    income_z: FloatArray,
    stress: FloatArray,
    size_to_income: FloatArray,
    term: IntArray | FloatArray,
    engagement_z: FloatArray,
) -> FloatArray:
    """True log-odds of default of a lender application (before any effect of advice)."""
    return np.asarray(
        intercept
        + _PD_DISCIPLINE * discipline_z
        + _PD_INCOME * income_z
        + _PD_STRESS * stress
        + _PD_SIZE * np.log(size_to_income / _TYPICAL_SIZE)
        + _PD_LONG_TERM * (term >= 24)
        + _PD_ENGAGEMENT * engagement_z
    )


def hypothetical_true_pd(
    states: dict[str, FloatArray], amount_cny: FloatArray, term_months: FloatArray
) -> FloatArray:
    """True PD of applications (amount, term) made by members in recorded states
    (`truth/member_states.parquet` columns), advice effects included: what the recourse evaluation
    compares with and without the advised actions."""
    income = states["income"]
    log_odds = application_log_odds(
        ActivityParams(seed=0, months=1).pd_intercept,
        states["discipline_z"],
        states["income_z"],
        states["stress"],
        amount_cny / (income * 12),
        term_months,
        states["engagement_z"],
    ) + action_log_odds(
        np.minimum(states["saved_on_advice"], np.maximum(states["savings_balance"], 0.0)),
        amount_cny / term_months,
        states["exposure"],
        states["base_exposure"],
        states["mean_shock"],
        _PD_STRESS,
    )
    return _sigmoid(log_odds)


class WorldActivity:
    """The world's mutable state (stress, savings, loans, applications) and its monthly step.

    With `actions` (interventions), the members' traits in `population` change as advice takes effect:
    pass a copy whose trait arrays may be written. `record_states_from` keeps every member's state at
    the end of each month from that month on (`states`), for the recourse evaluation.
    """

    def __init__(
        self,
        population: Population,
        calendar: Calendar,
        weather: FloatArray,
        params: ActivityParams,
        *,
        actions: MemberActions | None = None,
        record_states_from: int | None = None,
    ) -> None:
        self.pop = population
        self.actions = actions
        self.record_states_from = record_states_from
        self.states: dict[str, list[np.ndarray[Any, Any]]] = {}
        self.base_exposure = population.exposure.copy()
        self.calendar = calendar
        self.weather = weather  # shock severity per (county, month), 0 = normal month
        self.params = params
        n = population.size
        self.stress = np.zeros(n)
        self.savings = population.initial_savings.copy()
        self.last_applied = np.full(n, -(10**6), dtype=np.int64)
        self.first_loan_time = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        self.loan_busy_until = np.full(n, -1, dtype=np.int64)
        self.loans: dict[str, IntArray | FloatArray] = {
            "number": np.empty(0, dtype=np.int64),
            "member": np.empty(0, dtype=np.int64),
            "month": np.empty(0, dtype=np.int64),
            "day": np.empty(0, dtype=np.int64),
            "term": np.empty(0, dtype=np.int64),
            "installment": np.empty(0, dtype=np.float64),
        }
        self.next_seq = 0
        self.next_application = 0
        self.applications = ApplicationLedger()
        coops = population.coops
        self.meeting_offset = np.array(
            [(c.meeting_day - 1) * SECONDS_PER_DAY + c.meeting_hour * 3600 for c in coops]
        )

    # --- the monthly step -------------------------------------------------------------------------

    def simulate_month(self, month: int) -> EventBatch:
        """Advance the world by one month and return every event that happened in it."""
        rng = np.random.default_rng([self.params.seed, 1, month])
        pop = self.pop
        month_start = int(self.calendar.month_start(month))
        month_end = int(self.calendar.month_start(month + 1))
        season = self.calendar.calendar_month(month)

        shock = self.weather[pop.county, month]
        personal = (rng.random(pop.size) < 0.012) * rng.exponential(0.7, pop.size)
        self.stress = 0.6 * self.stress + pop.exposure * shock + personal

        # Each member's window of membership inside this month: events only happen inside it.
        leave = np.where(pop.leave_time == NULL_TIME, month_end, pop.leave_time)
        lo = np.maximum(month_start, pop.join_time)
        hi = np.minimum(month_end, leave)
        active = np.flatnonzero(hi > lo)
        frac = np.zeros(pop.size)
        frac[active] = (hi - lo)[active] / (month_end - month_start)
        window = _Window(lo, hi, rng)

        crop_loss = self._crop_loss(month)
        batches = [
            self._membership(month, month_start, rng),
            self._deliveries(active, frac, shock, crop_loss, season, window, rng),
            self._inputs(active, frac, season, window, rng),
            *self._savings(active, frac, crop_loss, season, window, rng),
            self._meetings(active, lo, hi, month, month_start, rng),
            self._trainings(active, frac, window, rng),
            self._mobile_payments(active, frac, window, rng),
            self._green_practices(active, frac, season, window, rng),
            self._coop_loans(active, lo, hi, month, month_start, month_end, rng),
            self._repayments(month, rng),
        ]
        if self.actions is not None:
            advised, deposits = self.actions.events(month, lo, hi)
            batches += advised
            self.savings += deposits
        self._applications(active, lo, hi, month, month_start, month_end, rng)
        if self.actions is not None:
            self.actions.after_month(month)
        if self.record_states_from is not None and month >= self.record_states_from:
            self._record_states(month)
        events = EventBatch.concat(batches)
        events.cols["seq"] = self.next_seq + np.arange(len(events), dtype=np.int64)
        self.next_seq += len(events)
        return events

    def _record_states(self, month: int) -> None:
        """Every member's traits, stress and savings at the end of `month`."""
        pop = self.pop
        saved = self.actions.saved if self.actions is not None else np.zeros(pop.size)
        columns = {
            "member": np.arange(pop.size, dtype=np.int64),
            "month": np.full(pop.size, month, dtype=np.int64),
            "stress": self.stress,
            "income": pop.income,
            "income_z": pop.income_z,
            "discipline_z": pop.discipline_z,
            "engagement_z": pop.engagement_z,
            "exposure": pop.exposure,
            "base_exposure": self.base_exposure,
            "savings_balance": self.savings,
            "saved_on_advice": saved,
            "mean_shock": expected_shock(self.weather, month)[pop.county],
        }
        for name, values in columns.items():
            self.states.setdefault(name, []).append(np.array(values, copy=True))

    def _crop_loss(self, month: int) -> FloatArray:
        """Share of each member's harvest income lost to the `drought` scenario this month (else 0).

        A weather shock (a bad month) makes deliveries fewer and smaller for everyone alike. A
        persistent drought is more: the crop fails on the share of the livelihood exposed to the
        weather (`exposure`, the trait that also drives stress), from its first month. Hog farms
        (low exposure) lose little, rain-fed grain most. The group-fund deposits paid out of those
        sales stop with them (`_savings`). Zero everywhere in worlds without a drought.
        """
        loss = np.zeros(self.pop.size)
        county, start = self.params.drought_county, self.params.drought_start
        if county >= 0 and month >= start:
            hit = self.pop.county == county
            loss[hit] = np.clip(self.pop.exposure[hit] * self.weather[county, month], 0.0, 1.0)
        return loss

    # --- event types --------------------------------------------------------------------------

    def _membership(self, month: int, month_start: int, rng: np.random.Generator) -> EventBatch:
        """Joins this month; in month 0 also the digitised roll of everyone who joined before."""
        pop = self.pop
        joins = np.flatnonzero(pop.join_month == month)
        if month == 0:
            joins = np.concatenate([np.flatnonzero(pop.join_month < 0), joins])
        backfill = pop.join_month[joins] < 0
        digitised_at = month_start + rng.integers(0, 28 * 24 * 60, size=len(joins)) * 60
        leaves = np.flatnonzero(pop.leave_month == month)
        members = np.concatenate([joins, leaves])
        return EventBatch.build(
            "membership",
            member=members,
            coop=pop.coop[members],
            event_time=np.concatenate([pop.join_time[joins], pop.leave_time[leaves]]),
            recorded_at=np.concatenate(
                [np.where(backfill, digitised_at, NULL_TIME), np.full(len(leaves), NULL_TIME)]
            ),
            backfill=np.concatenate([backfill, np.zeros(len(leaves), dtype=bool)]),
            action=np.concatenate([np.zeros(len(joins)), np.ones(len(leaves))]),
            role=pop.role[members],
            village=pop.village[members],
        )

    def _deliveries(
        self,
        active: IntArray,
        frac: FloatArray,
        shock: FloatArray,
        crop_loss: FloatArray,
        season: int,
        window: _Window,
        rng: np.random.Generator,
    ) -> EventBatch:
        """Produce deliveries: seasonal by product, fewer and smaller in a weather shock, and fewer
        still where a drought fails the crop (`_crop_loss`)."""
        pop = self.pop
        product = pop.primary_product[active]
        rate = (
            ANNUAL_DELIVERIES[product]
            * HARVEST_SEASON[product, season]
            * np.exp(0.15 * pop.engagement_z[active])
            * (1.0 - 0.5 * shock[active])
            * (1.0 - crop_loss[active])
            * frac[active]
        )
        who = np.repeat(active, rng.poisson(rate))
        product = pop.primary_product[who]
        hit = shock[who]
        value = (
            pop.income[who]
            * 12
            * _DELIVERED_INCOME_SHARE
            / ANNUAL_DELIVERIES[product]
            * rng.lognormal(0.0, 0.35, len(who))
            * (1.0 - 0.55 * hit)
        )
        # Bad weather shifts the grade mix towards C.
        p_a = 0.3 * (1.0 - hit)
        p_c = 0.2 + 0.4 * hit
        u = rng.random(len(who))
        quality = np.where(u < p_a, 0, np.where(u < 1.0 - p_c, 1, 2))
        unit_price = PRICE_PER_KG[product] * _QUALITY_PRICE[quality] * rng.lognormal(0, 0.08, len(who))
        quantity = np.maximum(0.5, np.round(value / unit_price * 2) / 2)
        recorded_as, proxied = self._proxy(who, self.params.proxy_delivery_share, rng)
        return EventBatch.build(
            "produce_delivery",
            member=recorded_as,
            coop=pop.coop[who],
            event_time=window.times(who),
            proxied=proxied,
            product=product,
            quantity=quantity,
            amount=np.round(quantity * unit_price, 2),
            quality=quality,
        )

    def _inputs(
        self,
        active: IntArray,
        frac: FloatArray,
        season: int,
        window: _Window,
        rng: np.random.Generator,
    ) -> EventBatch:
        """Input purchases before planting; on credit when liquidity is tight."""
        pop = self.pop
        livestock = pop.primary_product[active] == HOGS
        rate = (
            0.5
            * np.where(livestock, 1.0, _INPUT_SEASON[season])
            * np.exp(0.1 * pop.engagement_z[active])
            * frac[active]
        )
        who = np.repeat(active, rng.poisson(rate))
        category = _categorical(rng, _INPUT_MIX, (pop.primary_product[who] == HOGS).astype(np.int64))
        amount = (
            pop.income[who]
            * 0.3
            * _INPUT_TICKET[category]
            * rng.lognormal(0.0, 0.6, len(who))
            * np.where(pop.micro_enterprise[who], 1.5, 1.0)
        )
        p_credit = _sigmoid(
            -1.6 - 0.6 * pop.discipline_z[who] + 1.0 * self.stress[who] - 0.3 * pop.income_z[who]
        )
        on_credit = rng.random(len(who)) < p_credit
        recorded_as, proxied = self._proxy(who, self.params.proxy_land_share, rng, _LAND_INPUTS[category])
        return EventBatch.build(
            "input_purchase",
            member=recorded_as,
            coop=pop.coop[who],
            event_time=window.times(who),
            proxied=proxied,
            category=category,
            amount=np.maximum(1.0, np.round(amount, 2)),
            on_credit=on_credit,
        )

    def _savings(
        self,
        active: IntArray,
        frac: FloatArray,
        crop_loss: FloatArray,
        season: int,
        window: _Window,
        rng: np.random.Generator,
    ) -> tuple[EventBatch, EventBatch]:
        """Group-fund deposits (regular for the disciplined, bigger after harvest, paid out of
        produce sales: a failed crop stops them) and withdrawals (when stressed), keeping each
        member's balance non-negative."""
        pop = self.pop
        harvest = HARVEST_SEASON[pop.primary_product[active], season] * 12
        rate = (
            0.4
            * np.exp(0.45 * pop.discipline_z[active] + 0.35 * pop.engagement_z[active])
            * (0.6 + 0.4 * harvest)
            * (1.0 - 0.3 * np.minimum(self.stress[active], 1.0))
            * (1.0 - crop_loss[active])
            * frac[active]
        )
        depositors = np.repeat(active, rng.poisson(rate))
        deposit = np.maximum(
            10.0, np.round(pop.income[depositors] * 0.2 * rng.lognormal(0, 0.5, len(depositors)), -1)
        )
        self.savings += np.bincount(depositors, weights=deposit, minlength=pop.size)
        deposits = EventBatch.build(
            "savings_deposit",
            member=self._booked(depositors, rng),
            coop=pop.coop[depositors],
            event_time=window.times(depositors),
            amount=deposit,
        )

        can_withdraw = active[self.savings[active] > 100]
        p_withdraw = 1.0 - np.exp(
            -0.06
            * np.exp(0.8 * self.stress[can_withdraw] - 0.2 * pop.discipline_z[can_withdraw])
            * frac[can_withdraw]
        )
        withdrawers = can_withdraw[rng.random(len(can_withdraw)) < p_withdraw]
        wanted = np.round(pop.income[withdrawers] * 0.35 * rng.lognormal(0, 0.6, len(withdrawers)), -1)
        withdrawal = np.minimum(self.savings[withdrawers], np.maximum(10.0, wanted))
        self.savings[withdrawers] -= withdrawal
        withdrawals = EventBatch.build(
            "savings_withdrawal",
            member=self._booked(withdrawers, rng),
            coop=pop.coop[withdrawers],
            event_time=window.times(withdrawers),
            amount=np.round(withdrawal, 2),
        )
        return deposits, withdrawals

    def _meetings(
        self,
        active: IntArray,
        lo: IntArray,
        hi: IntArray,
        month: int,
        month_start: int,
        rng: np.random.Generator,
    ) -> EventBatch:
        """The cooperative's monthly meeting: engaged members come."""
        pop = self.pop
        when = month_start + self.meeting_offset[pop.coop[active]]
        member_then = (lo[active] <= when) & (when < hi[active])
        p_attend = _sigmoid(-0.2 + 0.9 * pop.engagement_z[active] + 0.3 * pop.discipline_z[active])
        attends = member_then & (rng.random(len(active)) < p_attend)
        if self.actions is not None:  # advised members come too
            attends |= member_then & self.actions.attending(month)[active]
        who = active[attends]
        return EventBatch.build(
            "meeting_attendance", member=who, coop=pop.coop[who], event_time=when[attends]
        )

    def _trainings(
        self, active: IntArray, frac: FloatArray, window: _Window, rng: np.random.Generator
    ) -> EventBatch:
        """Completed trainings; topics follow the member's situation."""
        pop = self.pop
        rate = 0.05 * np.exp(0.6 * pop.engagement_z[active]) * frac[active]
        who = np.repeat(active, rng.poisson(rate))
        row = np.where(pop.returning_youth[who], 1, np.where(pop.primary_product[who] == HOGS, 2, 0))
        return EventBatch.build(
            "training_completed",
            member=who,
            coop=pop.coop[who],
            event_time=window.times(who),
            topic=_categorical(rng, _TOPIC_MIX, row),
        )

    def _mobile_payments(
        self, active: IntArray, frac: FloatArray, window: _Window, rng: np.random.Generator
    ) -> EventBatch:
        """Mobile payments: frequent for the young and for micro-enterprises, rare for the old."""
        pop = self.pop
        born = pop.birth_year[active]
        age_factor = np.where(born < 1962, 0.35, np.where(born < 1972, 0.7, 1.0))
        rate = (
            2.0
            * np.exp(
                0.4 * pop.engagement_z[active]
                + 0.5 * pop.returning_youth[active]
                + 0.3 * pop.micro_enterprise[active]
            )
            * age_factor
            * frac[active]
        )
        who = np.repeat(active, rng.poisson(rate))
        incoming = rng.random(len(who)) < 0.45 + 0.15 * pop.micro_enterprise[who]
        amount = pop.income[who] * 0.06 * rng.lognormal(0.0, 1.0, len(who))
        return EventBatch.build(
            "mobile_payment",
            member=who,
            coop=pop.coop[who],
            event_time=window.times(who),
            direction=np.where(incoming, 0, 1),
            amount=np.maximum(1.0, np.round(amount, 2)),
        )

    def _green_practices(
        self,
        active: IntArray,
        frac: FloatArray,
        season: int,
        window: _Window,
        rng: np.random.Generator,
    ) -> EventBatch:
        """Green practices reported in the planting seasons; about half get verified."""
        pop = self.pop
        new_coop = pop.coop[active] == self.params.new_coop_index
        rate = (
            0.02
            * np.exp(0.5 * pop.engagement_z[active])
            * _GREEN_SEASON[season]
            * np.where(new_coop, 2.0, 1.0)
            * frac[active]
        )
        who = np.repeat(active, rng.poisson(rate))
        recorded_as, proxied = self._proxy(who, self.params.proxy_land_share, rng)
        return EventBatch.build(
            "green_practice",
            member=recorded_as,
            coop=pop.coop[who],
            event_time=window.times(who),
            proxied=proxied,
            practice=_categorical(rng, _PRACTICE_MIX, np.zeros(len(who), dtype=np.int64)),
            verified=rng.random(len(who)) < 0.55,
        )

    def _coop_loans(
        self,
        active: IntArray,
        lo: IntArray,
        hi: IntArray,
        month: int,
        month_start: int,
        month_end: int,
        rng: np.random.Generator,
    ) -> EventBatch:
        """Small mutual-fund loans from the cooperative to members of three months' standing."""
        pop = self.pop
        eligible = active[
            (lo[active] == month_start)
            & (hi[active] == month_end)
            & (pop.join_time[active] <= month_start - 90 * SECONDS_PER_DAY)
            & (self.loan_busy_until[active] < month)
        ]
        p_borrow = (
            self.params.coop_loan_rate
            * np.exp(0.3 * pop.engagement_z[eligible] + 0.4 * self.stress[eligible])
            * np.where(pop.micro_enterprise[eligible], 1.5, 1.0)
        )
        who = eligible[rng.random(len(eligible)) < p_borrow]
        count = len(who)
        amount = np.round(np.clip(pop.income[who] * rng.lognormal(np.log(1.5), 0.4, count), 1000, 30000), -2)
        term = rng.choice(_COOP_LOAN_TERMS, size=count, p=_COOP_LOAN_TERM_P)
        day = rng.integers(1, 29, size=count)
        disbursed = month_start + (day - 1) * SECONDS_PER_DAY + rng.integers(60, 600, count) * 60
        final_due = self.calendar.month_start(month + term) + (day - 1) * SECONDS_PER_DAY
        number = self._loan_count() + np.arange(count, dtype=np.int64)
        self.first_loan_time[who] = np.minimum(self.first_loan_time[who], disbursed)
        self.loan_busy_until[who] = month + term
        for name, values in (
            ("number", number),
            ("member", who),
            ("month", np.full(count, month, dtype=np.int64)),
            ("day", day),
            ("term", term),
            ("installment", np.round(amount * (1 + 0.004 * term) / term, 2)),
        ):
            self.loans[name] = np.concatenate([self.loans[name], values])
        return EventBatch.build(
            "loan_disbursement",
            member=who,
            coop=pop.coop[who],
            event_time=disbursed,
            loan=number,
            amount=amount,
            due=final_due,
        )

    def _loan_count(self) -> int:
        return len(self.loans["number"])

    def _repayments(self, month: int, rng: np.random.Generator) -> EventBatch:
        """Monthly installments of outstanding cooperative loans; lateness follows discipline and
        stress. Very late installments are never paid (no record at all)."""
        pop = self.pop
        age = month - self.loans["month"]
        due_now = np.flatnonzero((age >= 1) & (age <= self.loans["term"]))
        member = self.loans["member"][due_now].astype(np.int64)
        count = len(due_now)
        due = self.calendar.month_start(month) + (self.loans["day"][due_now] - 1) * SECONDS_PER_DAY
        disc = pop.discipline_z[member]
        stress = self.stress[member]
        on_time = rng.random(count) < _sigmoid(1.6 + 1.1 * disc - 1.0 * stress)
        late_days = np.clip(
            np.ceil(rng.exponential(6.0 * np.exp(-0.5 * disc + 0.6 * stress))), 1, 400
        ).astype(np.int64)
        days_late = np.where(on_time, 0, late_days)
        time_of_day = rng.integers(0, 12 * 60, size=count) * 60
        early_days = rng.integers(0, 5, size=count)
        paid = np.where(
            on_time,
            due - early_days * SECONDS_PER_DAY + time_of_day,
            due + days_late * SECONDS_PER_DAY + time_of_day,
        )
        # Early payers of an installment due on the 1st still pay inside this month.
        paid = np.maximum(paid, self.calendar.month_start(month))
        paid_ok = days_late <= 150
        keep = due_now[paid_ok]
        member = member[paid_ok]
        return EventBatch.build(
            "loan_repayment",
            member=member,
            coop=pop.coop[member],
            event_time=paid[paid_ok],
            loan=self.loans["number"][keep],
            amount=self.loans["installment"][keep],
            due=due[paid_ok],
            days_late=days_late[paid_ok],
        )

    # --- lender applications ----------------------------------------------------------------

    def _applications(
        self,
        active: IntArray,
        lo: IntArray,
        hi: IntArray,
        month: int,
        month_start: int,
        month_end: int,
        rng: np.random.Generator,
    ) -> None:
        """Loan applications to the lender, each with its true PD and a default drawn from it."""
        pop = self.pop
        year = 365 * SECONDS_PER_DAY
        eligible = active[
            (lo[active] == month_start)
            & (pop.join_time[active] < month_start)
            & (hi[active] == month_end)
            & (month - self.last_applied[active] >= 12)
        ]
        recent = pop.join_time[eligible] > month_start - year
        p_apply = (
            self.params.application_rate
            * np.exp(0.35 * self.stress[eligible])
            * np.where(pop.returning_youth[eligible], 1.6, 1.0)
            * np.where(pop.micro_enterprise[eligible], 1.4, 1.0)
            * np.where(recent, 1.3, 1.0)
        )
        who = eligible[rng.random(len(eligible)) < p_apply]
        count = len(who)
        applied_at = month_start + (
            np.floor(rng.random(count) * (month_end - month_start) / 60).astype(np.int64) * 60
        )
        annual_income = pop.income[who] * 12
        wanted = annual_income * rng.lognormal(np.log(_TYPICAL_SIZE), 0.45, count)
        wanted *= np.where(pop.micro_enterprise[who], 1.5, 1.0)
        amount = np.clip(np.round(wanted / 1000) * 1000, 2000, 300_000)
        size_to_income = amount / annual_income
        term = rng.choice(_TERMS, size=count, p=_TERM_P)
        purpose_row = np.where(pop.micro_enterprise[who], 2, np.where(pop.primary_product[who] == HOGS, 1, 0))
        purpose = _categorical(rng, _PURPOSE_MIX, purpose_row)
        stress = self.stress[who]
        logit = application_log_odds(
            self.params.pd_intercept,
            pop.discipline_z[who],
            pop.income_z[who],
            stress,
            size_to_income,
            term,
            pop.engagement_z[who],
        )
        if self.actions is not None:
            logit = logit + action_log_odds(
                self.actions.buffer(who, self.savings),
                amount / term,
                pop.exposure[who],
                self.base_exposure[who],
                expected_shock(self.weather, month)[pop.county[who]],
                _PD_STRESS,
            )
        true_pd = _sigmoid(logit)
        defaulted = rng.random(count) < true_pd
        # A default is observed when the first missed installment reaches 90 days past due.
        first_missed = rng.integers(1, np.minimum(term, 9) + 1)
        default_seen = applied_at + np.round(first_missed * 30.4375 * SECONDS_PER_DAY).astype(np.int64)
        observed_at = np.where(
            defaulted, default_seen + _DAYS_TO_DEFAULT * SECONDS_PER_DAY, applied_at + year
        )
        self.last_applied[who] = month
        ledger = self.applications
        ledger.member.append(who)
        ledger.applied_at.append(applied_at)
        ledger.amount.append(amount)
        ledger.term.append(term)
        ledger.purpose.append(purpose)
        ledger.true_pd.append(true_pd)
        ledger.defaulted.append(defaulted)
        ledger.observed_at.append(observed_at)
        ledger.prior_loan.append(self.first_loan_time[who] < applied_at)
        ledger.recent_join.append(pop.join_time[who] > applied_at - year)
        ledger.stress.append(stress)
        ledger.size_to_income.append(size_to_income)

    # --- helpers ----------------------------------------------------------------------------------

    def _booked(self, who: IntArray, rng: np.random.Generator) -> IntArray:
        """Whose savings book a group-fund record goes into: the household head's under the
        `household` proxy trap (the draw is skipped otherwise, keeping default worlds unchanged)."""
        if self.params.proxy_savings_share <= 0.0:
            return who
        recorded_as, _ = self._proxy(who, self.params.proxy_savings_share, rng)
        return recorded_as

    def _proxy(
        self,
        who: IntArray,
        share: float,
        rng: np.random.Generator,
        applies: BoolArray | None = None,
    ) -> tuple[IntArray, BoolArray]:
        """Member ids the records are filed under: for left-behind women, part of their records go
        under the proxy household's id. Returns (recorded member, filed-under-proxy flag)."""
        proxy = self.pop.proxy[who]
        moved = (proxy >= 0) & (rng.random(len(who)) < share)
        if applies is not None:
            moved &= applies
        return np.where(moved, proxy, who), moved


class _Window:
    """Draws event times uniformly inside each member's window of membership this month."""

    def __init__(self, lo: IntArray, hi: IntArray, rng: np.random.Generator) -> None:
        self.lo = lo
        self.span = hi - lo
        self.rng = rng

    def times(self, who: IntArray) -> IntArray:
        """One minute-aligned instant per row of `who`, inside that member's window."""
        offset = np.floor(self.rng.random(len(who)) * self.span[who] / 60).astype(np.int64) * 60
        return self.lo[who] + offset
