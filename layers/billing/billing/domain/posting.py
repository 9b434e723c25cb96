"""Posting: turning charge lines into ledger entries, one account and one event at a time.

A :class:`Book` wraps an :class:`~billing.domain.account.Account` (the balance item and the
containers loaded) for one event. Its ``event_id``
seeds the id of every ledger entry it writes, so a retried event writes the very same entries.
Settlement code adds charge lines (:meth:`Book.charge`) and corrections (:meth:`Book.correct`);
:meth:`Book.flush` deducts them (one deduction per month, each paid as of that month) through the
burn-down rules of :mod:`billing.domain.lots`, the only writer of lots and totals. What the event asks
of the outside world (outbound events, mails) is collected in :attr:`Book.effects`: the ledger writes
them in the same transaction as the change, and the outbox dispatcher delivers them afterwards. Each
effect has an id derived from the account, the event and its place among the event's effects, so a
recomputed change asks for the very same effects.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from billing.domain import attribution, forecast, lots
from billing.domain.account import Account, Containers
from billing.domain.catalog import PriceCatalog
from billing.domain.clock import SECOND, month_key, month_start_of_key, next_month_start
from billing.domain.model import (
    AccountState,
    ChargeLine,
    Container,
    CreditLot,
    EntryType,
    LedgerEntry,
    LotAmount,
    LotKind,
    Mail,
    OutboundEvent,
    PaymentCall,
    PaymentCallKind,
    Purchase,
    Work,
    WorkKind,
)
from billing.domain.roster import Activity

Effect = OutboundEvent | Mail | Work | PaymentCall


def effect_id(account_id: str, event_id: str, number: int) -> str:
    """The stable id of an event's ``number``-th effect (length-prefixed parts, hashed)."""
    text = f"{len(account_id)}:{account_id}|{len(event_id)}:{event_id}|{number}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Book:
    """One account's state being changed by one event: the entries and effects it produces."""

    def __init__(self, account: Account | AccountState, catalog: PriceCatalog, event_id: str) -> None:
        self.account = account if isinstance(account, Account) else Account(account)
        self.catalog = catalog
        self.event_id = event_id
        self.entries: list[LedgerEntry] = []
        self.effects: list[Effect] = []
        self.purchases: list[Purchase] = []  # purchase records this change creates
        self.activities: list[Activity] = []  # what a person changed: written with the change
        self._lines: list[ChargeLine] = []
        self._corrections: list[ChargeLine] = []

    @property
    def state(self) -> AccountState:
        return self.account.state

    @property
    def containers(self) -> Containers:
        return self.account.containers

    def sync(self) -> list[Container]:
        """Bring the balance's aggregates in step with the containers changed so far (before any
        decision on them, and before the change is written); returns the changed containers."""
        return self.containers.sync(self.state, self.catalog, self.state.as_of)

    def accrued(self, at: datetime) -> int:
        self.sync()
        return forecast.accrued(self.state, self.catalog, at)

    def hourly_burn(self, at: datetime) -> int:
        self.sync()
        return forecast.hourly_burn(self.state, self.catalog, at)

    # ------------------------------------------------------------------ lines

    def charge(self, lines: Iterable[ChargeLine]) -> None:
        """Usage to deduct at the next :meth:`flush`."""
        self._lines.extend(lines)

    def correct(self, lines: Iterable[ChargeLine]) -> None:
        """Usage billed before that should not have been: given back at the next :meth:`flush`."""
        self._corrections.extend(lines)

    @property
    def pending(self) -> int:
        """µcr of the lines collected and not flushed yet, less the corrections."""
        return sum(line.amount for line in self._lines) - sum(line.amount for line in self._corrections)

    def flush(self, at: datetime, reason: str) -> None:
        """Deduct the collected lines: one deduction per month, each paid as of that month; a
        correction is given back first (debt first, then the lots)."""
        self._flush_corrections(at, reason)
        by_month: dict[str, list[ChargeLine]] = defaultdict(list)
        for line in self._lines:
            by_month[line.month].append(line)
        self._lines = []
        for month in sorted(by_month):
            month_lines = by_month[month]
            total = sum(line.amount for line in month_lines)
            if total == 0 and not any(line.resource == "container" for line in month_lines):
                continue  # nothing to deduct and nothing for the container log
            as_of = min(at, next_month_start(month_start_of_key(month)) - SECOND)
            self._count_charged(as_of, total)
            self._count_members(month_lines, 1)
            paid_by, debt = lots.pay(self.state, total, as_of, max(self.state.as_of, at))
            self.record("deduction", total - debt, as_of, reason, lines=month_lines, paid_by=paid_by)
            if debt:
                self.record("debt", debt, as_of, "insufficient_credits")

    def _flush_corrections(self, at: datetime, reason: str) -> None:
        total = sum(line.amount for line in self._corrections)
        if total:
            for line in self._corrections:  # a month's charges less what was corrected of that month
                self.state.month_charged[line.month] = self.state.month_charged.get(line.month, 0) - line.amount
            self._count_members(self._corrections, -1)
            back, _forgiven, written_off = lots.give_back(self.state, total, at)
            self.record("correction", total, at, reason, lines=self._corrections, paid_by=back)
            if written_off:
                self.record("expiry", written_off, at, "corrected_credits_of_expired_lots")
        self._corrections = []

    def _count_charged(self, at: datetime, amount: int) -> None:
        """What the month of ``at`` has charged (spend caps and alerts read it)."""
        month = month_key(at)
        self.state.month_charged[month] = self.state.month_charged.get(month, 0) + amount

    def _count_members(self, lines: list[ChargeLine], sign: int) -> None:
        """What each user's usage deducted in its month (member limits and the member list read it):
        every line that names a user, a member's or one who has left since, like the ledger's."""
        for line in lines:
            if not line.user_id or not line.amount:
                continue
            month = self.state.member_spent.setdefault(line.month, {})
            month[line.user_id] = month.get(line.user_id, 0) + sign * line.amount
            if not month[line.user_id]:
                del month[line.user_id]

    def note(self, actor: str, action: str, at: datetime, **details: object) -> None:
        """Record a change a person made (the account's activity), written with this change."""
        self.activities.append(Activity(at=at, actor=actor, action=action, details=details))

    def create_purchase(self, purchase: Purchase) -> None:
        """A purchase record to write with this change (auto top-up)."""
        self.purchases.append(purchase)

    # ------------------------------------------------------------------ grants and entries

    def grant(
        self,
        kind: LotKind,
        amount: int,
        at: datetime,
        expires_at: datetime | None,
        reason: str,
        *,
        lot_id: str | None = None,
        purchase_id: str | None = None,
    ) -> CreditLot:
        """A new lot; it repays debt first."""
        lot = CreditLot(
            lot_id=lot_id or f"{kind}-{self.event_id}",
            kind=kind,
            granted=amount,
            remaining=amount,
            granted_at=at,
            expires_at=expires_at,
            purchase_id=purchase_id,
            reason=reason,
        )
        repaid = lots.add_lot(self.state, lot)
        self.record("grant", amount, at, reason, lot_id=lot.lot_id)
        if repaid:
            self.record("debt", repaid, at, "debt_repaid", paid_by=[LotAmount(lot_id=lot.lot_id, amount=repaid)])
        return lot

    def record(
        self,
        type_: EntryType,
        amount: int,
        at: datetime,
        reason: str,
        *,
        lines: list[ChargeLine] | None = None,
        paid_by: list[LotAmount] | None = None,
        lot_id: str | None = None,
    ) -> LedgerEntry:
        """Write a ledger entry; its id is the event's id and the entry's number within the event."""
        entry = LedgerEntry(
            entry_id=f"{self.event_id}:{len(self.entries) + 1:03d}",
            type=type_,
            amount=amount,
            at=at,
            reason=reason,
            event_id=self.event_id,
            lines=attribution.bounded_lines(self.state, at, lines or []),
            paid_by=list(paid_by or []),
            lot_id=lot_id,
        )
        self.entries.append(entry)
        return entry

    def _next_effect_id(self) -> str:
        return effect_id(self.state.account_id, self.event_id, len(self.effects) + 1)

    def emit(self, detail_type: str, **detail: object) -> None:
        """Publish an outbound event about this account once this change commits."""
        detail = {"account_id": self.state.account_id, **detail, "effect_id": self._next_effect_id()}
        self.effects.append(OutboundEvent(detail_type=detail_type, detail=detail))

    def mail(self, template: str, to: str | None = None, **data: object) -> None:
        """Send a mail of ``template`` to the account's address (or ``to``) once this change commits."""
        self.effects.append(Mail(effect_id=self._next_effect_id(), template=template, to=to or self.state.email,
                                 data=data, locale=self.state.locale or "en", time_zone=self.state.time_zone))

    def work(self, kind: WorkKind, at: datetime, skip: list[str] | None = None, user_id: str | None = None) -> None:
        """Have the work queue settle the account's containers up to ``at`` in chunks (once this
        change commits): for accounts whose accruing containers are too many to list. ``skip``: the
        containers this change settled and asked about already (not asked about twice); ``user_id``:
        the member whose containers alone the work is about (a member limit)."""
        self.effects.append(Work(effect_id=self._next_effect_id(), kind=kind, account_id=self.state.account_id, at=at,
                                 skip=sorted(skip or []), user_id=user_id))

    def payment_call(self, kind: PaymentCallKind, purchase: Purchase, idempotency_key: str,
                     customer_id: str | None = None, amount_minor: int | None = None) -> None:
        """Ask the payment provider for a charge or a refund after the commit (the outbox)."""
        self.effects.append(PaymentCall(
            effect_id=self._next_effect_id(), kind=kind, account_id=self.state.account_id,
            purchase_id=purchase.purchase_id, currency=purchase.currency, idempotency_key=idempotency_key,
            amount_minor=purchase.price_cents if amount_minor is None else amount_minor,
            customer_id=customer_id, payment_intent_id=purchase.payment_intent_id))

    def emitted(self, detail_type: str) -> bool:
        return any(isinstance(e, OutboundEvent) and e.detail_type == detail_type for e in self.effects)

    @property
    def outbox(self) -> list[OutboundEvent]:
        """The outbound events among the effects."""
        return [e for e in self.effects if isinstance(e, OutboundEvent)]
