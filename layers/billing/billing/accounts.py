"""Account operations: purchases and their payment webhook, refunds, daily check-in, coupons,
settings and operator grants (the low-credit mail is in :mod:`billing.low_balance`).

Every credit movement goes through :meth:`Ledger.apply`, so it is one transaction with the
account's state, its ledger entries and the idempotency record of the request. Purchases and
coupons are other items of the table (``PURCHASE#<id>`` / ``COUPON#<code>``), re-read inside the
settlement's action and written in the same transaction with a condition on their version: a lost
race re-reads everything and decides again.

Decisions where the rules are silent (also in the README):
- ``Idempotency-Key`` uses the ledger's own event record (``idem:<account>:<key>``), written in the
  same transaction as the effect, with a fingerprint (SHA-256 of method, path and canonical JSON
  body) and the response. A repeat first looks the record up, so it replays even when the request
  could not run again (a second refund, a second check-in). Failed requests store nothing: a repeat
  is evaluated anew. Without a key every request is new.
- A purchase is priced at credits x price per credit, rounded once half-up to the cent (only a custom
  price finer than 1/100 cent per credit can round). Credits are added, and the purchase is paid, at
  the time the webhook is processed (``paid_at``; the refund window runs from it); the provider's
  ``created_at`` is kept as ``payment_created_at``. ``payment.succeeded`` is accepted for a pending
  or failed purchase; ``payment.failed`` for a paid or refunded purchase is acknowledged and ignored.
- A refund needs unused purchased credits (422 otherwise). "Promotional credits received with that
  purchase" are the granted amounts of the ``promotional`` lots carrying its ``purchase_id``
  (operators grant them with ``purchase_id`` in ``POST /v1/admin/grants``). The refunded lot and the
  promotional lots are closed; promotional remainders are written off with an ``expiry`` entry.
- Coupon codes are case-insensitive (stored upper-case), 1-64 of ``A-Z 0-9 _ -``. A coupon lot is
  valid ``valid_days`` x 24 h from redemption, never past the coupon's ``expires_at``.
- Operator grants: kinds ``event``, ``coupon``, ``promotional``; ``expires_at`` is required and must
  be in the future; ``credits`` > 0 (an integer or a decimal string exact to the µcr).
- A keyed purchase gets a purchase id derived from account and key (``pur_`` + 32 hex of SHA-256), so a
  client that lost the response can still find it; an unkeyed one a random id. A refund answers 200.
- A request that loses the optimistic-lock race ``max_attempts`` times in a row is a 409 (retry), never
  a 5xx. The webhook answers 200 ``{purchase_id, status, duplicate[, lot]}`` for every notice it
  accepted, also a repeated or ignored one, so the provider stops retrying.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from functools import lru_cache
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from billing import engine
from billing.amounts import MICRO, ceil_cents, cents_of_micro, format_credits, micro_of_credits, money
from billing.clock import add_one_month, format_time, parse_time
from billing.engine import Book
from billing.errors import ConcurrentUpdate, Conflict, InvalidInput, NotFound, RuleViolation
from billing.ledger import Applied, Ledger, TableModels
from billing.model import AccountState, CreditLot, LotKind, OutboundEvent, Record, from_json, to_json
from billing.observability import logger
from billing.views import lot_view, time_or_none

SIGNATURE_TOLERANCE_SECONDS = 300
GRANTABLE_KINDS: dict[str, LotKind] = {"event": "event", "coupon": "coupon", "promotional": "promotional"}
MAX_GRANT_MICRO = 1_000_000_000 * MICRO
MAX_VALID_DAYS = 3650
CODE_PATTERN = re.compile(r"^[A-Z0-9_-]{1,64}$")
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
PURCHASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
PurchaseStatus = Literal["pending", "paid", "failed", "refunded"]
M = TypeVar("M", bound=BaseModel)  # an HTTP request model
R = TypeVar("R", bound=Record)  # a stored record


# ---------------------------------------------------------------------- requests


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class PurchaseRequest(_Request):
    credits: int


class RedeemRequest(_Request):
    code: str


class SettingsRequest(_Request):
    credit_mail: bool


class GrantRequest(_Request):
    account_id: str = Field(min_length=1, max_length=128)
    credits: int | str
    kind: str
    expires_at: str
    reason: str = Field(min_length=1, max_length=500)
    purchase_id: str | None = None


class CouponRequest(_Request):
    code: str
    credits: int | str
    valid_days: int
    expires_at: str
    max_redemptions: int


class MoneyIn(_Request):
    currency: str
    cents: int


class PaymentNotice(_Request):
    id: str = Field(min_length=1, max_length=255)
    type: Literal["payment.succeeded", "payment.failed"]
    purchase_id: str = Field(min_length=1, max_length=255)
    amount: MoneyIn
    created_at: str


def parse_request(model: type[M], body: Any) -> M:
    """Validate a JSON body against a strict model: wrong types, missing fields -> 400."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
            for err in exc.errors()
        )
        raise InvalidInput(reasons or "invalid body") from None


def parse_credits(value: int | str, name: str = "credits") -> int:
    """An integer or a decimal string exact to the µcr, as µcr (> 0)."""
    try:
        micro = micro_of_credits(value)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}") from None
    if micro <= 0 or micro > MAX_GRANT_MICRO:
        raise RuleViolation(f"{name} must be more than 0 and at most {MAX_GRANT_MICRO // MICRO}")
    return micro


def parse_when(value: str, name: str) -> datetime:
    try:
        return parse_time(value)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}") from None


def normalize_code(code: str) -> str:
    return code.strip().upper()


# ---------------------------------------------------------------------- stored records


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


class Coupon(Record, kw_only=True):
    code: str
    credits: int  # µcr per redemption
    valid_days: int
    expires_at: datetime
    max_redemptions: int
    redemptions: int = 0
    created_at: datetime
    created_by: str


def purchase_pk(purchase_id: str) -> str:
    return f"PURCHASE#{purchase_id}"


def coupon_pk(code: str) -> str:
    return f"COUPON#{code}"


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


Write = tuple[Model, Any]  # an item and the condition it is saved with


def saving(writes: list[Write]) -> Callable[[Book, TransactWrite], None]:
    """The settlement's extra writes: each pending item saved with its condition (the list is read
    at commit time, after the action has filled it)."""

    def extra(book: Book, tx: TransactWrite) -> None:
        for item, condition in writes:
            tx.save(item, condition=condition)

    return extra


def _load(models: TableModels, pk: str, sk: str, record: type[R]) -> tuple[R, int] | None:
    try:
        item = models.Item.get(pk, sk, consistent_read=True)
    except DoesNotExist:
        return None
    return from_json(item.body, record), int(item.version)


def load_purchase(models: TableModels, purchase_id: str) -> tuple[Purchase, int] | None:
    return _load(models, purchase_pk(purchase_id), "PURCHASE", Purchase)


def _purchase_write(models: TableModels, p: Purchase, read_version: int | None) -> Write:
    item = models.Item(
        purchase_pk(p.purchase_id),
        "PURCHASE",
        body=to_json(p),
        version=(read_version or 0) + 1,
        gsi1pk=purchases_index_key(p.account_id),
        gsi1sk=format_time(p.created_at) + "#" + p.purchase_id,
    )
    cond = models.Item.pk.does_not_exist() if read_version is None else models.Item.version == read_version
    return item, cond


def _coupon_write(models: TableModels, c: Coupon, read_version: int | None) -> Write:
    item = models.Item(coupon_pk(c.code), "COUPON", body=to_json(c), version=(read_version or 0) + 1)
    cond = models.Item.pk.does_not_exist() if read_version is None else models.Item.version == read_version
    return item, cond


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


# ---------------------------------------------------------------------- idempotency


@dataclass(frozen=True)
class RequestKey:
    """Who a request is (its ledger event id) and what it asks (its fingerprint)."""

    event_id: str
    fingerprint: str
    keyed: bool


def request_key(scope: str, idempotency_key: str | None, method: str, path: str, body: Any) -> RequestKey:
    canonical = json.dumps(
        {"method": method, "path": path, "body": body}, sort_keys=True, separators=(",", ":")
    )
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
    if idempotency_key is None:
        return RequestKey(f"req:{uuid.uuid4().hex}", fingerprint, keyed=False)
    if not KEY_PATTERN.match(idempotency_key):
        raise InvalidInput("Idempotency-Key must be 1 to 255 printable ASCII characters")
    return RequestKey(f"idem:{scope}:{idempotency_key}", fingerprint, keyed=True)


def _replay(stored: dict[str, Any], req: RequestKey) -> dict[str, Any]:
    if stored.get("fingerprint") != req.fingerprint:
        raise RuleViolation("this Idempotency-Key was used with another request")
    response = stored.get("response")
    return response if isinstance(response, dict) else {}


@dataclass
class Outcome:
    response: dict[str, Any]
    replayed: bool = False
    outbox: list[OutboundEvent] = field(default_factory=list)
    applied: Applied | None = None


Step = tuple[Book, dict[str, Any], list[Write]]


def run_request(
    ledger: Ledger, account_id: str, req: RequestKey, action: Callable[[AccountState | None], Step]
) -> Outcome:
    """Apply ``action`` once for the request: a keyed repeat replays the stored response (or 422)."""
    if req.keyed:
        record = ledger.event_record(account_id, req.event_id)
        if record is not None:
            outbox = from_json(record.outbox, list[OutboundEvent])
            return Outcome(_replay(json.loads(record.result), req), replayed=True, outbox=outbox)
    result: dict[str, Any] = {}
    writes: list[Write] = []

    def wrapped(state: AccountState | None) -> Book:
        book, response, extra_writes = action(state)
        result.clear()
        result.update(fingerprint=req.fingerprint, response=response)
        writes[:] = extra_writes
        return book

    try:
        applied = ledger.apply(account_id, req.event_id, wrapped, result=result, extra=saving(writes))
    except ConcurrentUpdate:
        raise Conflict("the account kept changing during the request; retry it") from None
    if applied.duplicate:  # a concurrent repeat of the same key committed first
        return Outcome(_replay(applied.result, req), replayed=True, outbox=applied.outbox, applied=applied)
    return Outcome(result["response"], outbox=applied.outbox, applied=applied)


# ---------------------------------------------------------------------- purchases


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


# ---------------------------------------------------------------------- payment webhook


def verify_signature(header: str | None, raw_body: str, secret: str, now: datetime) -> None:
    """``Billing-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``, within 5 minutes."""
    from billing.http import Unauthorized

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


# ---------------------------------------------------------------------- refunds


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


# ---------------------------------------------------------------------- free credits


def check_in(ledger: Ledger, account_id: str, req: RequestKey, now: datetime) -> Outcome:
    day = now.date().isoformat()

    def action(state: AccountState | None) -> Step:
        state = engine.require(state, account_id)
        if day in state.check_ins:
            raise Conflict("already checked in today (UTC)")
        book = Book(state, ledger.catalog, req.event_id)
        amount = ledger.catalog.at(now).check_in_micro
        lot = engine.grant_credits(book, now, "event", amount, add_one_month(now), "daily_check_in")
        state.check_ins.append(day)
        return book, {"lot": lot_view(lot)}, []

    return run_request(ledger, account_id, req, action)


def create_coupon(
    ledger: Ledger,
    body: CouponRequest,
    operator: str,
    idempotency_key: str | None,
    fingerprint: str,
    now: datetime,
) -> dict[str, Any]:
    code = normalize_code(body.code)
    if not CODE_PATTERN.match(code):
        raise InvalidInput("code must be 1 to 64 letters, digits, '_' or '-'")
    credits = parse_credits(body.credits)
    expires_at = parse_when(body.expires_at, "expires_at")
    if not 1 <= body.valid_days <= MAX_VALID_DAYS:
        raise RuleViolation(f"valid_days must be from 1 to {MAX_VALID_DAYS}")
    if body.max_redemptions < 1:
        raise RuleViolation("max_redemptions must be at least 1")
    if expires_at <= now:
        raise RuleViolation("expires_at must be in the future")
    models = ledger.models
    idem_pk = f"IDEM#admin#{idempotency_key}" if idempotency_key is not None else None
    if idempotency_key is not None and not KEY_PATTERN.match(idempotency_key):
        raise InvalidInput("Idempotency-Key must be 1 to 255 printable ASCII characters")
    if idem_pk:
        stored = _stored_idempotent(models, idem_pk)
        if stored is not None:
            return _replay(stored, RequestKey(idem_pk, fingerprint, keyed=True))
    coupon = Coupon(
        code=code,
        credits=credits,
        valid_days=body.valid_days,
        expires_at=expires_at,
        max_redemptions=body.max_redemptions,
        created_at=now,
        created_by=operator,
    )
    response = coupon_view(coupon)
    try:
        with TransactWrite(connection=models.connection) as tx:
            item, condition = _coupon_write(models, coupon, None)
            tx.save(item, condition=condition)
            if idem_pk:
                record = models.Item(
                    idem_pk, "IDEM", body=json.dumps({"fingerprint": fingerprint, "response": response})
                )
                tx.save(record, condition=models.Item.pk.does_not_exist())
    except TransactWriteError:
        if idem_pk:
            stored = _stored_idempotent(models, idem_pk)
            if stored is not None:
                return _replay(stored, RequestKey(idem_pk, fingerprint, keyed=True))
        raise Conflict(f"a coupon {code} exists already") from None
    logger.info("coupon created", code=code, operator=operator)
    return response


def _stored_idempotent(models: TableModels, pk: str) -> dict[str, Any] | None:
    try:
        item = models.Item.get(pk, "IDEM", consistent_read=True)
    except DoesNotExist:
        return None
    stored = json.loads(item.body)
    return stored if isinstance(stored, dict) else None


def coupon_view(c: Coupon) -> dict[str, Any]:
    return {
        "code": c.code,
        "credits": format_credits(c.credits),
        "valid_days": c.valid_days,
        "expires_at": format_time(c.expires_at),
        "max_redemptions": c.max_redemptions,
        "redemptions": c.redemptions,
    }


def redeem_coupon(ledger: Ledger, account_id: str, raw_code: str, req: RequestKey, now: datetime) -> Outcome:
    code = normalize_code(raw_code)
    if not CODE_PATTERN.match(code):
        raise NotFound("no such coupon")

    def action(state: AccountState | None) -> Step:
        state = engine.require(state, account_id)
        found = _load(ledger.models, coupon_pk(code), "COUPON", Coupon)
        if found is None:
            raise NotFound("no such coupon")
        coupon, version = found
        if code in state.coupons:
            raise Conflict("this coupon was redeemed by this account already")
        if now >= coupon.expires_at:
            raise RuleViolation("this coupon has expired")
        if coupon.redemptions >= coupon.max_redemptions:
            raise RuleViolation("this coupon has been used up")
        book = Book(state, ledger.catalog, req.event_id)
        expires = min(now + timedelta(days=coupon.valid_days), coupon.expires_at)
        lot = engine.grant_credits(book, now, "coupon", coupon.credits, expires, f"coupon_{code}")
        state.coupons.append(code)
        coupon.redemptions += 1
        return book, {"lot": lot_view(lot)}, [_coupon_write(ledger.models, coupon, version)]

    outcome = run_request(ledger, account_id, req, action)
    logger.info("coupon redeemed", account_id=account_id, code=code, replayed=outcome.replayed)
    return outcome


def operator_grant(
    ledger: Ledger, body: GrantRequest, operator: str, req: RequestKey, now: datetime
) -> Outcome:
    amount = parse_credits(body.credits)
    expires_at = parse_when(body.expires_at, "expires_at")
    if body.kind not in ("monthly", "purchased", *GRANTABLE_KINDS):
        raise InvalidInput("kind must be one of event, coupon, promotional")
    if body.kind not in GRANTABLE_KINDS:
        raise RuleViolation(f"{body.kind} credits are not granted by operators")
    if expires_at <= now:
        raise RuleViolation("expires_at must be in the future")
    if body.purchase_id is not None and body.kind != "promotional":
        raise RuleViolation("only promotional credits are tied to a purchase")
    account_id = body.account_id

    def action(state: AccountState | None) -> Step:
        state = engine.require(state, account_id)
        if body.purchase_id is not None:
            found = load_purchase(ledger.models, body.purchase_id)
            if found is None or found[0].account_id != account_id:
                raise NotFound(f"no purchase {body.purchase_id} of account {account_id}")
            if found[0].status != "paid":
                raise RuleViolation("promotional credits go with a paid purchase")
        book = Book(state, ledger.catalog, req.event_id)
        lot = engine.grant_credits(
            book,
            now,
            GRANTABLE_KINDS[body.kind],
            amount,
            expires_at,
            body.reason,
            purchase_id=body.purchase_id,
        )
        return book, {"lot": lot_view(lot)}, []

    outcome = run_request(ledger, account_id, req, action)
    logger.info(
        "operator grant", account_id=account_id, operator=operator, kind=body.kind, replayed=outcome.replayed
    )
    return outcome


def set_credit_mail(ledger: Ledger, account_id: str, enabled: bool) -> dict[str, Any]:
    def action(state: AccountState | None) -> Book:
        state = engine.require(state, account_id)
        state.credit_mail = enabled
        return Book(state, ledger.catalog, "settings")

    ledger.apply(account_id, f"settings:{uuid.uuid4().hex}", action)
    logger.info("settings changed", account_id=account_id, credit_mail=enabled)
    return {"credit_mail": enabled}


__all__ = [
    "Coupon",
    "CreditLot",
    "Outcome",
    "Purchase",
    "check_in",
    "create_coupon",
    "create_purchase",
    "handle_payment",
    "list_purchases",
    "operator_grant",
    "redeem_coupon",
    "refund_purchase",
    "request_key",
    "set_credit_mail",
    "verify_signature",
]
