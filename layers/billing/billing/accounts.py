"""What every account request shares: the HTTP request models and their validation, the
``Idempotency-Key`` machinery, the records' helpers, and the credit-mail setting. Purchases, the
payment webhook and refunds are in :mod:`billing.purchases`; check-in, coupons and operator grants in
:mod:`billing.grants`; the low-credit mail in :mod:`billing.low_balance`.

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
- A request that loses the optimistic-lock race ``max_attempts`` times in a row is a 409 (retry), never
  a 5xx.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pynamodb.exceptions import DoesNotExist
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from billing import engine
from billing.amounts import MICRO, micro_of_credits
from billing.clock import parse_time
from billing.engine import Book
from billing.errors import ConcurrentUpdate, Conflict, InvalidInput, RuleViolation
from billing.http import validation_reasons
from billing.ledger import Applied, Ledger, TableModels
from billing.model import AccountState, OutboundEvent, Record, from_json, to_json
from billing.observability import logger

MAX_GRANT_MICRO = 1_000_000_000 * MICRO
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
M = TypeVar("M", bound=BaseModel)  # an HTTP request model
R = TypeVar("R", bound=Record)  # a stored record


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
        reasons = validation_reasons(exc.errors())
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


Write = tuple[Model, Any]  # an item and the condition it is saved with


def saving(writes: list[Write]) -> Callable[[Book, TransactWrite], None]:
    """The settlement's extra writes: each pending item saved with its condition (the list is read
    at commit time, after the action has filled it)."""

    def extra(book: Book, tx: TransactWrite) -> None:
        for item, condition in writes:
            tx.save(item, condition=condition)

    return extra


def record_write(
    models: TableModels, pk: str, sk: str, record: Record, read_version: int | None, **attributes: Any
) -> Write:
    """A record saved with the next version, on condition that it is still the version read (absent
    when it was not read): a concurrent change fails the transaction, which re-reads and decides again."""
    item = models.Item(pk, sk, body=to_json(record), version=(read_version or 0) + 1, **attributes)
    cond = models.Item.pk.does_not_exist() if read_version is None else models.Item.version == read_version
    return item, cond


def load_record(models: TableModels, pk: str, sk: str, record: type[R]) -> tuple[R, int] | None:
    try:
        item = models.Item.get(pk, sk, consistent_read=True)
    except DoesNotExist:
        return None
    return from_json(item.body, record), int(item.version)


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


def replay(stored: dict[str, Any], req: RequestKey) -> dict[str, Any]:
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
            return Outcome(replay(json.loads(record.result), req), replayed=True, outbox=outbox)
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
        return Outcome(replay(applied.result, req), replayed=True, outbox=applied.outbox, applied=applied)
    return Outcome(result["response"], outbox=applied.outbox, applied=applied)


def set_credit_mail(ledger: Ledger, account_id: str, enabled: bool) -> dict[str, Any]:
    def action(state: AccountState | None) -> Book:
        state = engine.require(state, account_id)
        state.credit_mail = enabled
        return Book(state, ledger.catalog, "settings")

    ledger.apply(account_id, f"settings:{uuid.uuid4().hex}", action)
    logger.info("settings changed", account_id=account_id, credit_mail=enabled)
    return {"credit_mail": enabled}
