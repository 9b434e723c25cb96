"""Purchases, the payment provider's webhook, and refunds.

Decisions where the rules are silent (also in the README):
- A purchase is priced at credits x price per credit, rounded once half-up to the cent (only a custom
  price finer than 1/100 cent per credit can round). Credits are added, and the purchase is paid, at
  the time the webhook is processed (``paid_at``; the refund window runs from it); the provider's
  ``created_at`` is kept as ``payment_created_at``. ``payment.succeeded`` is accepted for a pending
  or failed purchase; ``payment.failed`` for a paid or refunded purchase is acknowledged and ignored.
- The webhook answers 200 ``{purchase_id, status, duplicate[, lot]}`` for every notice it accepted,
  also a repeated or ignored one, so the provider stops retrying.
- A refund needs unused purchased credits (422 otherwise). "Promotional credits received with that
  purchase" are the granted amounts of the ``promotional`` lots carrying its ``purchase_id``
  (operators grant them with ``purchase_id`` in ``POST /v1/admin/grants``). The refunded lot and the
  promotional lots are closed; promotional remainders are written off with an ``expiry`` entry.
- A keyed purchase gets a purchase id derived from account and key (``pur_`` + 32 hex of SHA-256), so a
  client that lost the response can still find it; an unkeyed one a random id. A refund answers 200.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from functools import lru_cache
from typing import Any, Literal

from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from billing import engine
from billing.accounts import (
    Outcome,
    PaymentNotice,
    RequestKey,
    Step,
    Write,
    load_record,
    parse_when,
    record_write,
    run_request,
    saving,
)
from billing.amounts import MICRO, ceil_cents, cents_of_micro, format_credits, money
from billing.clock import format_time
from billing.engine import Book
from billing.errors import ConcurrentUpdate, Conflict, NotFound, RuleViolation, Unauthorized
from billing.ledger import Ledger, TableModels
from billing.model import AccountState, OutboundEvent, Record, from_json
from billing.observability import logger
from billing.views import lot_view, time_or_none

SIGNATURE_TOLERANCE_SECONDS = 300
PURCHASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


PurchaseStatus = Literal["pending", "paid", "failed", "refunded"]


class Purchase(Record, kw_only=True):
    purchase_id: str
    account_id: str
    credits: int  # whole credits purchased
    price_cents: int
    currency: str = "USD"
    status: PurchaseStatus = "pending"
    created_at: datetime
    paid_at: datetime | None = None
    payment_id: str | None = None
    payment_created_at: datetime | None = None
    failed_at: datetime | None = None
    refund_cents: int | None = None
    refunded_credits: int | None = None  # µcr taken back
    refunded_at: datetime | None = None


def purchase_pk(purchase_id: str) -> str:
    return f"PURCHASE#{purchase_id}"


def purchases_index_key(account_id: str) -> str:
    return f"ACCOUNT#{account_id}#PURCHASES"


class _Gsi1(GlobalSecondaryIndex):
    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


@lru_cache(maxsize=16)
def _indexed_item(item_model: type[Model]) -> type[Model]:
    """The table's generic Item with the GSI1 index attached (the purchase history query)."""
    return type("IndexedItem", (item_model,), {"by_gsi1": _Gsi1(), "_connection": None})


def load_purchase(models: TableModels, purchase_id: str) -> tuple[Purchase, int] | None:
    return load_record(models, purchase_pk(purchase_id), "PURCHASE", Purchase)


def _purchase_write(models: TableModels, p: Purchase, read_version: int | None) -> Write:
    return record_write(
        models, purchase_pk(p.purchase_id), "PURCHASE", p, read_version,
        gsi1pk=purchases_index_key(p.account_id), gsi1sk=format_time(p.created_at) + "#" + p.purchase_id,
    )


def purchase_view(p: Purchase) -> dict[str, Any]:
    return {
        "purchase_id": p.purchase_id,
        "credits": format_credits(p.credits * MICRO),
        "price": money(p.price_cents, p.currency),
        "status": p.status,
        "created_at": format_time(p.created_at),
        "paid_at": time_or_none(p.paid_at),
        "refund": money(p.refund_cents, p.currency) if p.refund_cents is not None else None,
        "refunded_credits": format_credits(p.refunded_credits) if p.refunded_credits is not None else None,
        "refunded_at": time_or_none(p.refunded_at),
    }


def create_purchase(ledger: Ledger, account_id: str, credits: int, req: RequestKey, now: datetime) -> Outcome:
    version = ledger.catalog.at(now)
    if not version.purchase_min_credits <= credits <= version.purchase_max_credits:
        raise RuleViolation(
            f"credits must be a whole number from {version.purchase_min_credits}"
            f" to {version.purchase_max_credits}"
        )
    # A keyed request gets a purchase id derived from its key (the same on every retry, and known to
    # whoever holds the key); an unkeyed one a random id.
    purchase_id = f"pur_{hashlib.sha256(req.event_id.encode()).hexdigest()[:32]}" if req.keyed else (
        f"pur_{uuid.uuid4().hex}"
    )

    def action(state: AccountState | None) -> Step:
        state = engine.require(state, account_id)
        if req.keyed and load_purchase(ledger.models, purchase_id) is not None:
            raise Conflict("this Idempotency-Key was used for a purchase before")
        price = cents_of_micro(credits * MICRO, Decimal(state.credit_price_usd))
        p = Purchase(
            purchase_id=purchase_id, account_id=account_id, credits=credits, price_cents=price, created_at=now
        )
        response = {
            k: v
            for k, v in purchase_view(p).items()
            if k in ("purchase_id", "credits", "price", "status", "created_at")
        }
        return Book(state, ledger.catalog, req.event_id), response, [_purchase_write(ledger.models, p, None)]

    outcome = run_request(ledger, account_id, req, action)
    logger.info(
        "purchase created",
        account_id=account_id,
        purchase_id=outcome.response.get("purchase_id"),
        replayed=outcome.replayed,
    )
    return outcome


def list_purchases(ledger: Ledger, account_id: str) -> list[dict[str, Any]]:
    model = _indexed_item(ledger.models.Item)
    items = model.by_gsi1.query(purchases_index_key(account_id), scan_index_forward=False)  # type: ignore[attr-defined]
    out = []
    for item in items:
        p = from_json(item.body, Purchase)
        if p.account_id == account_id:
            out.append(purchase_view(p))
    return out


def verify_signature(header: str | None, raw_body: str, secret: str, now: datetime) -> None:
    """``Billing-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``, within 5 minutes."""
    if not header:
        raise Unauthorized("missing Billing-Signature")
    timestamp: str | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            timestamp = value
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not timestamp.isdigit() or len(timestamp) > 12 or not signatures:
        raise Unauthorized("malformed Billing-Signature")
    if abs(now.timestamp() - int(timestamp)) > SIGNATURE_TOLERANCE_SECONDS:
        raise Unauthorized("Billing-Signature timestamp outside the tolerance")
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + raw_body.encode(), hashlib.sha256
    ).hexdigest()
    if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in signatures):
        raise Unauthorized("wrong Billing-Signature")


def sign(raw_body: str, secret: str, timestamp: int) -> str:
    """The header the provider sends (used by tests and the samples)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{raw_body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def handle_payment(ledger: Ledger, notice: PaymentNotice, now: datetime) -> dict[str, Any]:
    """Apply a verified payment notice. Confirmation adds the credits exactly once."""
    provider_time = parse_when(notice.created_at, "created_at")
    found = load_purchase(ledger.models, notice.purchase_id) if PURCHASE_ID_PATTERN.match(notice.purchase_id) else None
    if found is None:
        raise NotFound(f"no purchase {notice.purchase_id}")
    purchase, _ = found
    if notice.type == "payment.failed":
        return _payment_failed(ledger, notice, now)
    if notice.amount.currency != purchase.currency or notice.amount.cents != purchase.price_cents:
        raise RuleViolation("the amount differs from the purchase's price")
    account_id = purchase.account_id
    response: dict[str, Any] = {}
    writes: list[Write] = []

    def action(state: AccountState | None) -> Book | None:
        state = engine.require(state, account_id)
        again = load_purchase(ledger.models, notice.purchase_id)
        assert again is not None  # purchases are never deleted
        p, version = again
        writes.clear()
        response.clear()
        if p.status in ("paid", "refunded"):
            response.update(purchase_id=p.purchase_id, status=p.status, duplicate=True)
            return None
        book = Book(state, ledger.catalog, notice.id)
        lot = engine.grant_credits(
            book, now, "purchased", p.credits * MICRO, None, "credits_purchased", purchase_id=p.purchase_id
        )
        state.mail_cycle += 1  # a completed purchase starts a new low-credit mail cycle
        p.status, p.paid_at, p.payment_id, p.payment_created_at = "paid", now, notice.id, provider_time
        writes.append(_purchase_write(ledger.models, p, version))
        response.update(purchase_id=p.purchase_id, status="paid", duplicate=False, lot=lot_view(lot))
        return book

    try:
        applied = ledger.apply(account_id, notice.id, action, result=response, extra=saving(writes))
    except ConcurrentUpdate:
        raise Conflict("the purchase kept changing; retry the notice") from None
    if applied.duplicate:
        stored = dict(applied.result)
        stored["duplicate"] = True
        logger.info("payment confirmation repeated", purchase_id=notice.purchase_id, payment_id=notice.id)
        return stored
    logger.info(
        "payment confirmed",
        purchase_id=notice.purchase_id,
        payment_id=notice.id,
        duplicate=response.get("duplicate"),
    )
    return dict(response)


def _payment_failed(ledger: Ledger, notice: PaymentNotice, now: datetime) -> dict[str, Any]:
    for _ in range(ledger.max_attempts):
        found = load_purchase(ledger.models, notice.purchase_id)
        assert found is not None
        p, version = found
        if p.status != "pending":
            logger.info("payment failure ignored", purchase_id=p.purchase_id, status=p.status)
            return {"purchase_id": p.purchase_id, "status": p.status, "duplicate": True}
        p.status, p.failed_at = "failed", now
        item, condition = _purchase_write(ledger.models, p, version)
        try:
            with TransactWrite(connection=ledger.models.connection) as tx:
                tx.save(item, condition=condition)
        except TransactWriteError:
            continue  # changed meanwhile: decide again on a fresh read
        logger.info("payment failed", purchase_id=p.purchase_id, payment_id=notice.id)
        return {"purchase_id": p.purchase_id, "status": "failed", "duplicate": False}
    raise Conflict("the purchase keeps changing; retry")


def refund_lots(book: Book, purchase_id: str, at: datetime) -> tuple[int, int]:
    """Take back a purchase's unused credits and expire its promotional lots.

    Returns (µcr refunded, µcr of promotional credits written off). Ledger entries are written with
    ``book._entry``, the engine's own entry writer (ids derived from the event id).
    """
    state = book.state
    unused = 0
    written_off = 0
    for lot in state.lots:
        if lot.purchase_id != purchase_id or lot.closed:
            continue
        if lot.kind == "purchased":
            unused += lot.remaining
            lot.refunded += lot.remaining
            state.totals.refunded += lot.remaining
            if lot.remaining:
                book._entry("refund", lot.remaining, at, "purchase_refunded", lot_id=lot.lot_id)
            lot.remaining = 0
            lot.closed = True
        elif lot.kind == "promotional":
            part = lot.remaining
            lot.expired += part
            state.totals.expired += part
            lot.remaining = 0
            lot.closed = True
            lot.expires_at = min(lot.expires_at, at) if lot.expires_at else at
            written_off += part
            if part:
                book._entry("expiry", part, at, "promotional_credits_expired_on_refund", lot_id=lot.lot_id)
    return unused, written_off


def refund_cents(price_cents: int, credits_purchased: int, unused_micro: int) -> int:
    """ceil(total billed / credits purchased x credits unused), exact (decimal, ample precision)."""
    with localcontext() as ctx:
        ctx.prec = 60
        value = Decimal(price_cents) * Decimal(unused_micro) / (Decimal(credits_purchased) * MICRO)
        return ceil_cents(value)


def refund_purchase(
    ledger: Ledger, account_id: str, purchase_id: str, req: RequestKey, now: datetime
) -> Outcome:
    if not PURCHASE_ID_PATTERN.match(purchase_id):
        raise NotFound(f"no purchase {purchase_id[:100]}")

    def action(state: AccountState | None) -> Step:
        state = engine.require(state, account_id)
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
        book = Book(state, ledger.catalog, req.event_id)
        engine.begin(book, now)
        at = max(now, state.as_of)
        promotional = sum(
            lot.granted for lot in state.lots if lot.purchase_id == purchase_id and lot.kind == "promotional"
        )
        if state.available(at) < promotional:
            raise RuleViolation(
                "the available balance is lower than the promotional credits of this purchase"
            )
        unused, _ = refund_lots(book, purchase_id, now)
        if unused <= 0:
            raise RuleViolation("no unused credits of this purchase are left to refund")
        cents = refund_cents(p.price_cents, p.credits, unused)
        p.status, p.refund_cents, p.refunded_credits, p.refunded_at = "refunded", cents, unused, now
        response = {
            "purchase_id": purchase_id,
            "refund": money(cents, p.currency),
            "credits": format_credits(unused),
        }
        book.outbox.append(
            OutboundEvent(detail_type="Refund Issued", detail={"account_id": account_id, **response})
        )
        return book, response, [_purchase_write(ledger.models, p, version)]

    outcome = run_request(ledger, account_id, req, action)
    logger.info(
        "purchase refunded", account_id=account_id, purchase_id=purchase_id, replayed=outcome.replayed
    )
    return outcome
