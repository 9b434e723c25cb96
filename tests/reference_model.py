"""The reference model of the model-based test (tests/test_model_based.py): billing-rules.md written
the plain way, with exact amounts, for one account.

It extends the container model of tests/test_settlement_stateful.py (lots, the burn order, debt paid
first by arriving credits, expiry, the month boundary, the final settlement on running into debt)
with what the rest of the product does to a balance: AI use, purchases paid, refunds (running usage
settled first), grants of every kind, the month's charges and the spend cap that settles running
usage when they reach it, the periodic check's overuse; members (what each one's usage deducted in
the month, counted while they are a member, and the member limit that settles their running usage
when it is reached), and credits taken back by a refund or a dispute made at Stripe (and given back
when the dispute is won).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime

from billing.domain.clock import month_key
from tests.test_settlement_stateful import MLot, Model, MRun

NANO_IN, NANO_OUT = 4, 32  # gpt-5-nano: 0.000004 / 0.000032 credits per token = 4 / 32 µcr


@dataclass
class RLot(MLot):
    refunded: int = 0
    purchase_id: str | None = None  # a purchased lot's purchase, or the purchase a promotional lot goes with


@dataclass
class RRun(MRun):
    pending: int = 0  # µcr of traffic reported during the run, deducted with the run's next settlement
    pending_month: str = ""  # the month that traffic was reported in (its charge line's month)
    user: str | None = None  # who ran it (user_id on its start): its time and traffic are their usage


@dataclass
class MMember:
    role: str
    limit: int | None = None  # µcr a calendar month
    reached: str | None = None  # the month the limit was reached in


@dataclass
class RefModel(Model):
    refunded: int = 0
    month_charged: dict[str, int] = field(default_factory=dict)
    cap: int | None = None
    cap_reached: str | None = None
    members: dict[str, MMember] = field(default_factory=dict)
    # (month, user): every line of theirs, a member's or not (the member list and the limit read it)
    user_spent: dict[tuple[str, str], int] = field(default_factory=dict)
    limits_reached: list[tuple[str, int]] = field(default_factory=list)  # (user, limit), in order
    limit_stops: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # (user, containers asked)

    # what the month has charged (spend caps and alerts read it) -------------------------------
    def pay(self, amount: int, as_of: datetime, now: datetime) -> None:
        self.month_charged[month_key(as_of)] = self.month_charged.get(month_key(as_of), 0) + amount
        super().pay(amount, as_of, now)

    def give_back(self, amount: int, as_of: datetime) -> None:
        self.month_charged[month_key(as_of)] = self.month_charged.get(month_key(as_of), 0) - amount
        # A refunded lot takes nothing back (its credits went back to the buyer).
        refunded = [lot for lot in self.lots if getattr(lot, "refunded", 0)]
        for lot in refunded:
            self.lots.remove(lot)
        try:
            super().give_back(amount, as_of)
        finally:
            self.lots.extend(refunded)

    def run_time(self, run: MRun, until: datetime) -> int:
        """A run's time, and its reported traffic not deducted yet (accrual.settle_run charges both);
        both are the run's user's usage (the model deducts every amount it computes)."""
        since = run.billed or run.start
        user = run.user if isinstance(run, RRun) else None
        due = super().run_time(run, until)
        if due and since is not None:
            self.attribute(user, month_key(since), due)
        if isinstance(run, RRun) and run.pending:
            self.attribute(user, run.pending_month, run.pending)
            due, run.pending = due + run.pending, 0
        return due

    def attribute(self, user: str | None, month: str, amount: int) -> None:
        """A charge line of ``user`` (negative: a correction): the user's figure of the month."""
        if user is None or not amount:
            return
        self.user_spent[(month, user)] = self.user_spent.get((month, user), 0) + amount

    # reads ---------------------------------------------------------------------------------------
    def available(self, at: datetime) -> int:
        return sum(x.remaining for x in self.lots if not x.closed and x.usable(at))

    def accrued(self, at: datetime) -> int:
        """Usage accrued but not deducted up to ``at`` (a copy settles it)."""
        return copy.deepcopy(self).settle_all(at)

    # credits in and out -------------------------------------------------------------------------
    def grant_lot(self, lot_id: str, kind: str, amount: int, at: datetime, expires: datetime | None,
                  purchase_id: str | None = None) -> None:
        self.advance(at)
        self.grant(RLot(lot_id, kind, amount, at, expires, purchase_id=purchase_id))

    def ai_use(self, at: datetime, input_tokens: int, output_tokens: int, user: str | None = None) -> None:
        self.advance(at)
        amount = input_tokens * NANO_IN + output_tokens * NANO_OUT
        self.attribute(user, month_key(at), amount)
        self.deduct(amount, at)

    def settle_running(self, at: datetime) -> None:
        """Everything accrued deducted now (the spend cap and the refund do this)."""
        debt_before = self.debt
        due = self.settle_all(at)
        if due:
            self.pay(due, at, max(self.as_of, at))
        if self.debt > debt_before and not self.exhausted:
            self.exhausted = True

    def traffic_reported(self, at: datetime, units: int, run: RRun | None, user: str | None = None) -> None:
        """``Container Traffic Reported``: bytes beyond the month's allowance are billable; of a
        running run they wait for its next settlement (its stop, the boundary, a relabel, the final
        settlement), of a run closed already they are deducted at once (the user the event names)."""
        self.advance(at)
        due = self.record_traffic(at, units)
        if run is not None:
            if not run.pending:
                run.pending_month = month_key(at)
            run.pending += due
        else:
            self.attribute(user, month_key(at), due)
            self.deduct(due, at)

    def promotional(self, purchase_id: str) -> int:
        """µcr of promotional credits granted with a purchase (a refund needs that much available)."""
        return sum(x.granted for x in self.lots
                   if x.kind == "promotional" and getattr(x, "purchase_id", None) == purchase_id)

    def unused(self, purchase_id: str) -> int:
        """µcr left in the purchase's open lots (its own, and one a won dispute gave back)."""
        return sum(x.remaining for x in self.lots
                   if x.kind == "purchased" and getattr(x, "purchase_id", None) == purchase_id and not x.closed)

    def refund(self, purchase_id: str, at: datetime) -> int:
        """The purchase's unused credits go back to the buyer (a refund, at the API or in Stripe's
        dashboard, or a dispute); its promotional lots expire now."""
        taken = 0
        for lot in self.lots:
            if lot.kind != "purchased" or getattr(lot, "purchase_id", None) != purchase_id or lot.closed:
                continue
            part = lot.remaining
            lot.remaining, lot.closed = 0, True
            lot.refunded = part  # type: ignore[attr-defined]
            taken += part
        self.refunded += taken
        for promo in self.lots:
            if promo.kind == "promotional" and getattr(promo, "purchase_id", None) == purchase_id and not promo.closed:
                promo.expired, promo.remaining, promo.closed = promo.remaining, 0, True
                self.expired += promo.expired
        return taken

    # the controls' effect on the books ----------------------------------------------------------
    def spend_cap(self, at: datetime) -> None:
        """After every change, as of the account's clock: once the month's charges and what is
        accrued reach the cap, running usage is deducted (controls._spend_cap). A cap reached ends
        with the month, when the cap is removed, or when the month's charges are under the cap again
        (the user raised it above them, or corrections brought them back under it)."""
        month = month_key(at)
        if self.cap_reached and (self.cap_reached != month or self.cap is None):
            self.cap_reached = None
        if self.cap is not None and self.cap_reached == month and self.month_charged.get(month, 0) < self.cap:
            self.cap_reached = None
        if self.cap is None or self.cap_reached == month:
            return
        if self.month_charged.get(month, 0) + self.accrued(at) < self.cap:
            return
        self.settle_running(at)
        if self.month_charged.get(month, 0) >= self.cap:
            self.cap_reached = month

    def overuse_check(self, at: datetime) -> None:
        """The periodic check: running usage that reached the available balance ends the credits."""
        if self.exhausted or not self.running():
            return
        if self.accrued(at) >= self.available(at):
            self.settle_running(at)
            self.exhausted = True

    # members ---------------------------------------------------------------------------------------
    def member_accrued(self, user: str, at: datetime) -> int:
        """µcr of time the member's running containers accrued and not deducted yet (their reported
        traffic is not counted: forecast.member_accrued reads the runs' time)."""
        probe = copy.deepcopy(self)
        total = 0
        for runs in probe.runs.values():
            for run in runs.values():
                if isinstance(run, RRun) and run.user == user and run.start and not run.stop:
                    run.pending = 0
                    total += probe.run_time(run, at)
        return total

    def member_limits(self, at: datetime) -> None:
        """After every change, as of the account's clock (after the spend cap): a limit reached ends
        with the month, with no limit, or when the member's month is under it again; once what the
        member's usage deducted in the month and their running time reach it, their running usage
        is deducted now and, at or above the limit, it is reached: their running containers are
        asked to stop and ``Member Limit Reached`` is published (once)."""
        month = month_key(at)
        for user, member in list(self.members.items()):
            spent = self.user_spent.get((month, user), 0)
            if member.reached and (member.reached != month or member.limit is None or spent < member.limit):
                member.reached = None
            if member.limit is None or member.reached == month:
                continue
            if spent + self.member_accrued(user, at) < member.limit:
                continue
            mine = [run for runs in self.runs.values() for run in runs.values()
                    if isinstance(run, RRun) and run.user == user and run.start and not run.stop]
            self.deduct(sum(self.run_time(run, at) for run in mine), at)
            if self.user_spent.get((month, user), 0) < member.limit:
                continue
            member.reached = month
            running = tuple(sorted(cid for cid, runs in self.runs.items()
                                   if any(isinstance(r, RRun) and r.user == user and r.start and not r.stop
                                          for r in runs.values())))
            if running:
                self.limit_stops.append((user, running))
            self.limits_reached.append((user, member.limit))
