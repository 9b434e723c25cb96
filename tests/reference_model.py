"""The reference model of the model-based test (tests/test_model_based.py): billing-rules.md written
the plain way, with exact amounts, for one account.

It extends the container model of tests/test_settlement_stateful.py (lots, the burn order, debt paid
first by arriving credits, expiry, the month boundary, the final settlement on running into debt)
with what the rest of the product does to a balance: AI use, purchases paid, refunds (running usage
settled first), grants of every kind, the month's charges and the spend cap that settles running
usage when they reach it, and the periodic check's overuse.
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


@dataclass
class RefModel(Model):
    refunded: int = 0
    month_charged: dict[str, int] = field(default_factory=dict)
    cap: int | None = None
    cap_reached: str | None = None

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
        """A run's time, and its reported traffic not deducted yet (accrual.settle_run charges both)."""
        due = super().run_time(run, until)
        if isinstance(run, RRun) and run.pending:
            due, run.pending = due + run.pending, 0
        return due

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

    def ai_use(self, at: datetime, input_tokens: int, output_tokens: int) -> None:
        self.advance(at)
        self.deduct(input_tokens * NANO_IN + output_tokens * NANO_OUT, at)

    def settle_running(self, at: datetime) -> None:
        """Everything accrued deducted now (the spend cap and the refund do this)."""
        debt_before = self.debt
        due = self.settle_all(at)
        if due:
            self.pay(due, at, max(self.as_of, at))
        if self.debt > debt_before and not self.exhausted:
            self.exhausted = True

    def traffic_reported(self, at: datetime, units: int, run: RRun | None) -> None:
        """``Container Traffic Reported``: bytes beyond the month's allowance are billable; of a
        running run they wait for its next settlement (its stop, the boundary, a relabel, the final
        settlement), of a run closed already they are deducted at once."""
        self.advance(at)
        due = self.record_traffic(at, units)
        if run is not None:
            run.pending += due
        else:
            self.deduct(due, at)

    def promotional(self, purchase_id: str) -> int:
        """µcr of promotional credits granted with a purchase (a refund needs that much available)."""
        return sum(x.granted for x in self.lots
                   if x.kind == "promotional" and getattr(x, "purchase_id", None) == purchase_id)

    def refund(self, lot_id: str, purchase_id: str, at: datetime) -> int:
        """The purchase's unused credits go back to the buyer; its promotional lots expire now."""
        [lot] = [x for x in self.lots if x.lot_id == lot_id]
        taken = lot.remaining
        lot.remaining, lot.closed = 0, True
        lot.refunded = taken  # type: ignore[attr-defined]
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
