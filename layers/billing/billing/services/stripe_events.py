"""Stripe's events (``POST /v1/webhooks/stripe``), verified by the API layer, applied exactly once.

Each handled event is one change of the account, keyed by its type and its object's id (a
PaymentIntent, a charge's PaymentIntent, a dispute), so Stripe's repeats and concurrent deliveries
change nothing more; the purchase's own state (paid, refunded, a dispute open, won or lost) makes the
order in which Stripe sends them irrelevant:

* ``payment_intent.succeeded`` / ``payment_intent.payment_failed``: the payment notice of the
  purchase named by the intent's metadata (:func:`billing.services.purchases.handle_payment`).
* ``charge.refunded``: ours (an API refund, already taken back at its commit) changes nothing; one
  made in Stripe's dashboard takes back the purchase's unused credits like an API refund.
* ``charge.dispute.created``: the purchase's unused credits are taken back, the account is marked,
  ``Payment Disputed`` is published; ``charge.dispute.closed``: won, they are given back (a new lot
  of the purchase); lost, they stay taken.

A refund or a dispute of a purchase whose ``payment_intent.succeeded`` has not arrived yet first
applies the payment (the charge they name was paid): that confirmation, arriving later, is a repeat.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from billing.domain import credits, settle
from billing.domain.account import Account
from billing.domain.amounts import format_credits, money
from billing.domain.errors import Conflict, InvalidInput, NotFound, RuleViolation
from billing.domain.model import Purchase
from billing.domain.posting import Book
from billing.observability import logger
from billing.services.purchases import (
    PaymentNotice,
    handle_payment,
    load_purchase,
    mark_paid,
    settle_usage_so_far,
)
from billing.store import keys
from billing.store.ledger import Change, Ledger
from billing.store.records import load_payment_reference, purchase_write

HANDLED = ("payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded",
           "charge.dispute.created", "charge.dispute.closed")
WON = ("won", "warning_closed")  # closed without the money lost (a warning closes with no chargeback)


def _text(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if isinstance(value, dict):  # an expanded object: its id
        value = value.get("id")
    if not isinstance(value, str) or not value or len(value) > 255:
        raise InvalidInput(f"data.object.{name}: expected an id")
    return value


def _amount(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**15:
        raise InvalidInput(f"data.object.{name}: expected an amount in the minor unit")
    return value


def _created(obj: dict[str, Any]) -> datetime:
    value = obj.get("created")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**11:
        raise InvalidInput("data.object.created: expected unix seconds")
    return datetime.fromtimestamp(value, UTC)


def _result(event: dict[str, Any], handled: bool, duplicate: bool = False, purchase: Purchase | None = None,
            ) -> dict[str, Any]:
    return {"event_id": str(event.get("id", "")), "type": str(event.get("type", "")), "handled": handled,
            "duplicate": duplicate, "purchase_id": purchase.purchase_id if purchase else None,
            "status": purchase.status if purchase else None}


def handle_event(ledger: Ledger, event: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Apply one verified Stripe event (its JSON); a type not handled is acknowledged and ignored."""
    kind = event.get("type")
    data = event.get("data")
    if kind not in HANDLED:
        logger.info("stripe event ignored", type=str(kind)[:100], stripe_event_id=str(event.get("id"))[:100])
        return _result(event, handled=False)
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise InvalidInput("data.object: expected the event's object")
    if kind.startswith("payment_intent."):
        return _payment_intent(ledger, event, obj, now)
    purchase = _purchase_of_intent(ledger, _text(obj, "payment_intent"))
    currency = _text(obj, "currency").upper()
    if currency != purchase.currency:
        raise RuleViolation(f"the currency {currency[:3]} differs from the purchase's ({purchase.currency})")
    if kind == "charge.refunded":
        refunded = _amount(obj, "amount_refunded")
        if not 0 < refunded <= purchase.price_cents:
            raise RuleViolation("the refund is larger than the purchase (or nothing was refunded)")
        return _apply(ledger, event, purchase, keys.payment_event_id(_text(obj, "payment_intent"), kind), now,
                      lambda book, p: _refunded_in_stripe(book, p, now, refunded))
    dispute_id = _text(obj, "id")
    if _amount(obj, "amount") > purchase.price_cents:
        raise RuleViolation("the dispute is larger than the purchase")
    if kind == "charge.dispute.created":
        return _apply(ledger, event, purchase, keys.payment_event_id(dispute_id, kind), now,
                      lambda book, p: _disputed(book, p, now, dispute_id))
    status = obj.get("status")
    if not isinstance(status, str):
        raise InvalidInput("data.object.status: expected the dispute's status")
    return _apply(ledger, event, purchase, keys.payment_event_id(dispute_id, kind), now,
                  lambda book, p: _dispute_closed(book, p, now, dispute_id, won=status in WON))


def _payment_intent(ledger: Ledger, event: dict[str, Any], obj: dict[str, Any], now: datetime) -> dict[str, Any]:
    intent_id = _text(obj, "id")
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    purchase_id, account_id = metadata.get("purchase_id"), metadata.get("account_id")
    found = load_purchase(ledger.models, purchase_id) if isinstance(purchase_id, str) else None
    if found is None:
        raise NotFound("the payment names no purchase of ours")
    purchase = found[0]
    if account_id != purchase.account_id:
        raise NotFound("the payment names another account than its purchase's")
    if purchase.payment_intent_id not in (None, intent_id):
        raise RuleViolation("the purchase is paid by another PaymentIntent")
    failed = event["type"] == "payment_intent.payment_failed"
    notice = PaymentNotice(id=intent_id, type="payment.failed" if failed else "payment.succeeded",
                           purchase_id=purchase.purchase_id, currency=_text(obj, "currency").upper(),
                           cents=_amount(obj, "amount"), created_at=_created(obj))
    if notice.currency != purchase.currency:
        raise RuleViolation(f"the currency {notice.currency[:3]} differs from the purchase's ({purchase.currency})")
    outcome = handle_payment(ledger, notice, now, payment_intent_id=intent_id)
    result = _result(event, handled=True, duplicate=outcome.duplicate)
    return {**result, "purchase_id": outcome.purchase_id, "status": outcome.status}


def _purchase_of_intent(ledger: Ledger, intent_id: str) -> Purchase:
    ref = load_payment_reference(ledger.models, intent_id)
    found = load_purchase(ledger.models, ref.purchase_id) if ref is not None else None
    if found is None:
        raise NotFound("the charge's PaymentIntent pays no purchase of ours")
    return found[0]


def _apply(ledger: Ledger, event: dict[str, Any], purchase: Purchase, event_id: str, now: datetime,
           decide: Any) -> dict[str, Any]:
    """One change of the purchase's account: ``decide(book, purchase)`` says whether it changed anything."""

    def action(account: Account | None) -> Change:
        book = Book(settle.require(account, purchase.account_id), ledger.catalog, event_id)
        again = load_purchase(ledger.models, purchase.purchase_id)
        assert again is not None  # purchases are never deleted
        p, version = again
        if not decide(book, p):
            return Change(None, _result(event, handled=True, duplicate=True, purchase=p))
        return Change(book, _result(event, handled=True, purchase=p), [purchase_write(ledger.models, p, version)])

    applied = ledger.apply(purchase.account_id, event_id, action)
    result = dict(applied.result)
    result["duplicate"] = bool(result.get("duplicate")) or applied.duplicate
    logger.info("stripe event applied", type=event["type"], purchase_id=purchase.purchase_id,
                duplicate=result["duplicate"])
    return result


def _paid_first(book: Book, p: Purchase, now: datetime) -> None:
    """The charge a refund or a dispute names was paid: a purchase still pending (or failed) is paid
    now, so its credits exist to be taken back (the succeeded event, later, is a repeat)."""
    if p.status in ("pending", "failed"):
        assert p.payment_intent_id is not None  # found through its PaymentIntent
        mark_paid(book, p, now, p.payment_intent_id, now)


def _take_back(book: Book, p: Purchase, now: datetime, reason: str) -> int:
    """The purchase's unused credits, after the usage accrued so far (as an API refund counts it)."""
    at = max(now, book.state.as_of)
    settle_usage_so_far(book, at)
    withheld = credits.owed_from_purchase(book, p.purchase_id, at)
    return credits.refund(book, p.purchase_id, now, withheld, reason=reason)


def _refunded_in_stripe(book: Book, p: Purchase, now: datetime, refunded_minor: int) -> bool:
    if p.status == "refunded":
        return False  # ours (taken back at the API refund's commit), or a second refund of the charge
    _paid_first(book, p, now)
    unused = _take_back(book, p, now, "refunded_in_stripe")
    p.status, p.refund_cents, p.refunded_credits, p.refunded_at = "refunded", refunded_minor, unused, now
    p.refund_source = "dashboard"
    book.emit("Refund Issued", purchase_id=p.purchase_id, refund=money(refunded_minor, p.currency),
              credits=format_credits(unused))
    return True


def _disputed(book: Book, p: Purchase, now: datetime, dispute_id: str) -> bool:
    if p.dispute_id == dispute_id:
        return False  # closed before it was seen open: nothing more to take
    if p.dispute_id is not None:
        raise Conflict("the purchase has another dispute")
    if p.status == "refunded":
        raise Conflict("the purchase was refunded: its credits were taken back already")
    _paid_first(book, p, now)
    taken = _take_back(book, p, now, "purchase_disputed")
    p.dispute_id, p.dispute_status, p.disputed_credits = dispute_id, "open", taken
    book.state.disputed.append(p.purchase_id)
    book.emit("Payment Disputed", purchase_id=p.purchase_id, credits=format_credits(taken))
    return True


def _dispute_closed(book: Book, p: Purchase, now: datetime, dispute_id: str, won: bool) -> bool:
    if p.dispute_id not in (None, dispute_id):
        raise Conflict("the purchase has another dispute")
    if p.dispute_status in ("won", "lost"):
        return False
    if p.dispute_status == "open":
        if won and p.disputed_credits:
            lot = credits.grant(book, now, "purchased", p.disputed_credits, None, "dispute_won",
                                purchase_id=p.purchase_id)
            p.dispute_lot_id = lot.lot_id
        if p.purchase_id in book.state.disputed:
            book.state.disputed.remove(p.purchase_id)
    elif not won:  # lost before its opening was seen: take the credits back now
        if p.status == "refunded":
            raise Conflict("the purchase was refunded: its credits were taken back already")
        _paid_first(book, p, now)
        p.disputed_credits = _take_back(book, p, now, "purchase_disputed")
        book.emit("Payment Disputed", purchase_id=p.purchase_id, credits=format_credits(p.disputed_credits))
    p.dispute_id, p.dispute_status = dispute_id, "won" if won else "lost"
    return True
