"""Credits that arrive and leave outside usage: grants of every kind, purchases, refunds.

Pure rules over a :class:`~billing.domain.posting.Book`; the services decide who may ask.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, localcontext

from billing.domain import lots, rollover
from billing.domain.amounts import MICRO, ceil_cents
from billing.domain.clock import add_one_month
from billing.domain.model import AccountState, CreditLot, LotKind, clone
from billing.domain.posting import Book


def grant(
    book: Book, at: datetime, kind: LotKind, amount: int, expires_at: datetime | None, reason: str,
    purchase_id: str | None = None,
) -> CreditLot:
    """A lot granted at ``at`` (the account is rolled there first); it repays debt first."""
    rollover.advance_if_current(book, at)
    return book.grant(kind, amount, at, expires_at, reason, purchase_id=purchase_id)


def check_in(book: Book, at: datetime) -> CreditLot:
    """The daily check-in: the catalog's amount, valid one calendar month (clamped)."""
    amount = book.catalog.at(at).check_in_micro
    lot = grant(book, at, "event", amount, add_one_month(at), "daily_check_in")
    book.state.check_ins.append(at.date().isoformat())
    return lot


def checked_in_on(book: Book, at: datetime) -> bool:
    return at.date().isoformat() in book.state.check_ins


def purchased(book: Book, at: datetime, purchase_id: str, credits: int) -> CreditLot:
    """A confirmed purchase: its credits, and a new low-credit mail cycle."""
    lot = grant(book, at, "purchased", credits * MICRO, None, "credits_purchased", purchase_id=purchase_id)
    book.state.mail_cycle += 1
    return lot


def promotional_credits(book: Book, purchase_id: str) -> int:
    """µcr of promotional credits granted with a purchase (they expire if it is refunded)."""
    return sum(
        lot.granted for lot in book.state.lots if lot.purchase_id == purchase_id and lot.kind == "promotional"
    )


def owed_from_purchase(book: Book, purchase_id: str, at: datetime) -> int:
    """µcr of the purchase's credits that usage accrued and not settled yet (containers an
    account-wide change cannot reach, beyond those the balance lists) would take, in burn order."""
    unsettled = book.accrued(at)
    if unsettled <= 0:
        return 0

    def left(state: AccountState) -> int:
        return sum(lot.remaining for lot in state.lots
                   if lot.purchase_id == purchase_id and lot.kind == "purchased" and not lot.closed)

    probe = clone(book.state)
    lots.pay(probe, unsettled, at, at)
    return left(book.state) - left(probe)


def refund(book: Book, purchase_id: str, at: datetime, withheld: int = 0, reason: str = "purchase_refunded") -> int:
    """Take back a purchase's unused credits (but ``withheld`` µcr, kept for usage not settled yet)
    and expire its promotional lots; returns the µcr taken back (the refunded lot, unless credits
    are withheld, and the promotional lots are closed)."""
    unused = 0
    for lot in book.state.lots:
        if lot.purchase_id != purchase_id or lot.closed:
            continue
        if lot.kind == "purchased":
            taken = lots.refund_lot(book.state, lot, withheld)
            unused += taken
            if taken:
                book.record("refund", taken, at, reason, lot_id=lot.lot_id)
        elif lot.kind == "promotional":
            written_off = lots.expire_lot_now(book.state, lot, at)
            if written_off:
                book.record("expiry", written_off, at, "promotional_credits_expired_on_refund", lot_id=lot.lot_id)
    return unused


def refund_cents(price_cents: int, credits_purchased: int, unused_micro: int) -> int:
    """ceil(total billed / credits purchased × credits unused): exact, rounded up to the cent."""
    with localcontext() as ctx:
        ctx.prec = 60
        value = Decimal(price_cents) * Decimal(unused_micro) / (Decimal(credits_purchased) * MICRO)
        return ceil_cents(value)
