"""Purchases, the payment provider's notices, and refunds.

Every change goes through :meth:`Ledger.request` / :meth:`Ledger.apply`, so the purchase record is
saved in the same transaction as the account's credits and the change's idempotency record.
Decisions where the rules are silent are in the README ("Purchases, refunds, grants, mail").
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from billing.domain import accrual, controls, credits, overuse, rollover, settle
from billing.domain.account import Account
from billing.domain.amounts import format_credits, money, price_minor
from billing.domain.errors import Conflict, NotFound, RuleViolation, UnknownAccount
from billing.domain.model import CreditLot, Purchase, PurchaseStatus, Record, clone, from_json
from billing.domain.posting import Book
from billing.observability import logger
from billing.payments import PaymentProvider, PaymentStarted, SignedWebhookPayments
from billing.store import keys, queries
from billing.store.idempotency import Rendered, RequestKey, keep, kept
from billing.store.ledger import Change, Ledger
from billing.store.records import load_record, payment_reference_write, purchase_write
from billing.store.tables import TableModels

PURCHASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,100}$")

class PaymentNotice(Record, kw_only=True):
    """A verified payment notice of the provider (its body, validated by the API layer)."""

    id: str
    type: Literal["payment.succeeded", "payment.failed"]
    purchase_id: str
    currency: str
    cents: int
    created_at: datetime


class PaymentOutcome(Record, kw_only=True):
    """How a payment notice was applied: the purchase's status, whether the notice changed nothing,
    and the lot a confirmation added."""

    purchase_id: str
    status: PurchaseStatus
    duplicate: bool
    lot: CreditLot | None = None


def load_purchase(models: TableModels, purchase_id: str) -> tuple[Purchase, int] | None:
    if not PURCHASE_ID_PATTERN.match(purchase_id):
        return None
    return load_record(models, keys.purchase_pk(purchase_id), keys.PURCHASE, Purchase)


def create_purchase(
    ledger: Ledger, account_id: str, credits_wanted: int, req: RequestKey, now: datetime,
    payments: PaymentProvider | None = None, actor: str | None = None,
) -> Purchase | Rendered:
    """A pending purchase in the account's currency (a keyed repeat gets the purchase as it was first
    answered). With Stripe, its PaymentIntent (idempotent by the purchase's id) on the account's
    customer is created first: Stripe unreachable is a 503 and nothing is written."""
    payments = payments or SignedWebhookPayments()
    version = ledger.catalog.at(now)
    if not version.purchase_min_credits <= credits_wanted <= version.purchase_max_credits:
        raise RuleViolation(
            f"credits must be a whole number from {version.purchase_min_credits} to {version.purchase_max_credits}"
        )
    # A keyed request gets a purchase id derived from its key (the same on every retry, and known to
    # whoever holds the key); an unkeyed one a random id.
    purchase_id = (
        f"pur_{hashlib.sha256(req.event_id.encode()).hexdigest()[:32]}" if req.keyed else f"pur_{uuid.uuid4().hex}"
    )
    draft: Purchase | None = None
    customer: str | None = None
    started: PaymentStarted | None = None
    if not (req.keyed and ledger.stored(account_id, req.event_id) is not None):  # a repeat is replayed below
        state = ledger.load(account_id)
        if state is None:
            raise UnknownAccount(f"no account {account_id}")
        unit_price = version.credit_price(state.currency, state.credit_price_usd)
        draft = Purchase(purchase_id=purchase_id, account_id=account_id, credits=credits_wanted,
                         price_cents=price_minor(credits_wanted, unit_price, state.currency),
                         currency=state.currency, created_at=now)
        customer = state.payment_customer_id or payments.customer(account_id, state.email)
        started = payments.start_payment(draft, customer)

    def action(account: Account | None) -> Change:
        book = Book(settle.require(account, account_id), ledger.catalog, req.event_id)
        if req.keyed and load_purchase(ledger.models, purchase_id) is not None:
            raise Conflict("this Idempotency-Key was used for a purchase before")
        assert draft is not None  # (a keyed repeat never gets here: its record is replayed)
        if book.state.currency != draft.currency:
            raise Conflict("the account's currency changed during the purchase; retry it")
        if customer and not book.state.payment_customer_id:
            book.state.payment_customer_id = customer
        p = clone(draft)
        writes = []
        if started is not None:
            p.payment_intent_id, p.payment_client_secret = started.payment_intent_id, started.client_secret
            writes.append(payment_reference_write(ledger.models, p))
        book.note(actor or account_id, "purchase_created", now, purchase_id=purchase_id, credits=credits_wanted,
                  price=money(p.price_cents, p.currency))
        return Change(book, keep(p), [purchase_write(ledger.models, p, None), *writes])

    response, applied = ledger.request(account_id, req, action)
    created = kept(response, Purchase)
    logger.info("purchase created", account_id=account_id, replayed=applied.duplicate, provider=payments.name,
                purchase_id=created.purchase_id if isinstance(created, Purchase) else created.get("purchase_id"))
    return created


def list_purchases(ledger: Ledger, account_id: str) -> list[Purchase]:
    purchases = (from_json(body, Purchase) for body in queries.purchase_bodies(ledger.models, account_id))
    return [p for p in purchases if p.account_id == account_id]


def get_purchase(ledger: Ledger, account_id: str, purchase_id: str) -> Purchase:
    """One of the account's purchases with its receipt; another account's is not found."""
    found = load_purchase(ledger.models, purchase_id)
    if found is None or found[0].account_id != account_id:
        raise NotFound(f"no purchase {purchase_id[:100]}")
    return found[0]


def handle_payment(ledger: Ledger, notice: PaymentNotice, now: datetime,
                   payment_intent_id: str | None = None) -> PaymentOutcome:
    """Apply a verified payment notice once (by its id and type). A confirmation adds the credits (to
    a pending or a failed purchase: a success after a failure is honoured); a failure marks a pending
    purchase failed (after a success it changes nothing). Notices that change nothing are acknowledged."""
    found = load_purchase(ledger.models, notice.purchase_id)
    if found is None:
        raise NotFound(f"no purchase {notice.purchase_id}")
    purchase, _ = found
    price = (purchase.currency, purchase.price_cents)
    if notice.type == "payment.succeeded" and (notice.currency, notice.cents) != price:
        raise RuleViolation("the amount differs from the purchase's price")

    event_id = keys.payment_event_id(notice.id, notice.type)

    def action(account: Account | None) -> Change:
        book = Book(settle.require(account, purchase.account_id), ledger.catalog, event_id)
        again = load_purchase(ledger.models, notice.purchase_id)
        assert again is not None  # purchases are never deleted
        p, version = again
        unchanged = Change(None, _outcome(PaymentOutcome(purchase_id=p.purchase_id, status=p.status, duplicate=True)))
        if notice.type == "payment.failed":
            if p.status != "pending":
                return unchanged
            p.status, p.failed_at = "failed", now
            controls.auto_payment_settled(book, p, paid=False)
            failed = PaymentOutcome(purchase_id=p.purchase_id, status="failed", duplicate=False)
            return Change(book, _outcome(failed), [purchase_write(ledger.models, p, version)])
        if p.status in ("paid", "refunded"):
            return unchanged
        learned = payment_intent_id is not None and p.payment_intent_id is None  # an auto purchase's
        if learned:
            p.payment_intent_id = payment_intent_id
        lot = mark_paid(book, p, now, notice.id, notice.created_at)
        paid = PaymentOutcome(purchase_id=p.purchase_id, status="paid", duplicate=False, lot=lot)
        writes = [purchase_write(ledger.models, p, version)]
        if learned:
            writes.append(payment_reference_write(ledger.models, p))
        return Change(book, _outcome(paid), writes)

    applied = ledger.apply(purchase.account_id, event_id, action)
    outcome = kept(applied.result, PaymentOutcome)
    assert isinstance(outcome, PaymentOutcome)  # (records keyed by id and type are all new: none is rendered)
    outcome.duplicate = outcome.duplicate or applied.duplicate
    logger.info("payment notice applied", purchase_id=notice.purchase_id, payment_id=notice.id,
                type=notice.type, status=outcome.status, duplicate=outcome.duplicate)
    return outcome


def mark_paid(book: Book, p: Purchase, now: datetime, payment_id: str, payment_created_at: datetime) -> CreditLot:
    """A confirmed payment: the purchase's credits (repaying debt first), and the auto top-up's row."""
    lot = credits.purchased(book, now, p.purchase_id, p.credits)
    controls.auto_payment_settled(book, p, paid=True)
    p.status, p.paid_at, p.payment_id, p.payment_created_at = "paid", now, payment_id, payment_created_at
    return lot


def _outcome(outcome: PaymentOutcome) -> dict[str, Any]:
    return keep(outcome)


def refund_id_of(purchase_id: str) -> str:
    """The id of a purchase's refund (a purchase is refunded at most once): the provider's
    idempotency key, so the outbox's redelivery never refunds twice."""
    return f"rf_{hashlib.sha256(purchase_id.encode()).hexdigest()[:24]}"


def settle_usage_so_far(book: Book, at: datetime) -> None:
    """A refund counts the usage accrued so far as used: the running containers are settled up to
    ``at`` first (as the spend cap does), so the purchase's unused credits are what is left after
    them and no debt is left for usage that happened before the refund."""
    debt_before = book.state.debt
    accrual.settle_everything(book, at)
    overuse.flush_event(book, at, "refund_settlement", debt_before)


def refund_purchase(
    ledger: Ledger, account_id: str, purchase_id: str, req: RequestKey, now: datetime, actor: str | None = None
) -> dict[str, Any]:
    """Refund a purchase's unused credits (``Refund Issued`` leaves through the outbox)."""
    if not PURCHASE_ID_PATTERN.match(purchase_id):
        raise NotFound(f"no purchase {purchase_id[:100]}")

    def action(account: Account | None) -> Change:
        book = Book(settle.require(account, account_id), ledger.catalog, req.event_id)
        state = book.state
        found = load_purchase(ledger.models, purchase_id)
        if found is None or found[0].account_id != account_id:
            raise NotFound(f"no purchase {purchase_id}")
        p, version = found
        if p.status == "refunded":
            raise Conflict("the purchase was refunded already")
        if p.status != "paid" or p.paid_at is None:
            raise RuleViolation(f"only a paid purchase can be refunded (this one is {p.status})")
        window = ledger.catalog.at(p.paid_at).refund_window_days
        if now > p.paid_at + timedelta(days=window):
            raise RuleViolation(f"the refund window of {window} days has passed")
        rollover.advance_if_current(book, now)
        settle_usage_so_far(book, max(now, state.as_of))
        if state.available(max(now, state.as_of)) < credits.promotional_credits(book, purchase_id):
            raise RuleViolation("the available balance is lower than the promotional credits of this purchase")
        # Usage of containers the settlement above could not reach (more than the balance lists) is
        # still owed: the credits of this purchase it would take stay with the account.
        withheld = credits.owed_from_purchase(book, purchase_id, max(now, state.as_of))
        unused = credits.refund(book, purchase_id, now, withheld)
        if unused <= 0:
            raise RuleViolation("no unused credits of this purchase are left to refund")
        cents = credits.refund_cents(p.price_cents, p.credits, unused)
        p.status, p.refund_cents, p.refunded_credits, p.refunded_at = "refunded", cents, unused, now
        p.refund_id, p.refund_source = refund_id_of(purchase_id), "api"
        response = {"purchase_id": purchase_id, "refund": money(cents, p.currency), "credits": format_credits(unused)}
        book.emit("Refund Issued", **response)
        if p.payment_intent_id is not None:  # paid at Stripe: the money goes back there, after the commit
            book.payment_call("refund", p, p.refund_id, amount_minor=cents)
        book.note(actor or account_id, "purchase_refunded", now, **response)
        return Change(book, response, [purchase_write(ledger.models, p, version)])

    response, applied = ledger.request(account_id, req, action)
    logger.info("purchase refunded", account_id=account_id, purchase_id=purchase_id, replayed=applied.duplicate)
    return response

