"""Credits granted outside purchases: the daily check-in, coupons, and operator grants.

Decisions where the rules are silent (also in the README):
- Coupon codes are case-insensitive (stored upper-case), 1-64 of ``A-Z 0-9 _ -``. A coupon lot is
  valid ``valid_days`` x 24 h from redemption, never past the coupon's ``expires_at``.
- Operator grants: kinds ``event``, ``coupon``, ``promotional``; ``expires_at`` is required and must
  be in the future; ``credits`` > 0 (an integer or a decimal string exact to the µcr).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from billing import engine
from billing.accounts import (
    CouponRequest,
    GrantRequest,
    Outcome,
    RequestKey,
    Step,
    Write,
    load_record,
    parse_credits,
    parse_when,
    record_write,
    replay,
    run_request,
)
from billing.amounts import format_credits
from billing.clock import add_one_month, format_time
from billing.engine import Book
from billing.errors import Conflict, InvalidInput, NotFound, RuleViolation
from billing.ledger import Ledger, TableModels
from billing.model import AccountState, LotKind, Record
from billing.observability import logger
from billing.purchases import load_purchase
from billing.views import lot_view

GRANTABLE_KINDS: dict[str, LotKind] = {"event": "event", "coupon": "coupon", "promotional": "promotional"}
MAX_VALID_DAYS = 3650
CODE_PATTERN = re.compile(r"^[A-Z0-9_-]{1,64}$")


def normalize_code(code: str) -> str:
    return code.strip().upper()


class Coupon(Record, kw_only=True):
    code: str
    credits: int  # µcr per redemption
    valid_days: int
    expires_at: datetime
    max_redemptions: int
    redemptions: int = 0
    created_at: datetime
    created_by: str


def coupon_pk(code: str) -> str:
    return f"COUPON#{code}"


def _coupon_write(models: TableModels, c: Coupon, read_version: int | None) -> Write:
    return record_write(models, coupon_pk(c.code), "COUPON", c, read_version)


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
    req: RequestKey,
    now: datetime,
) -> dict[str, Any]:
    """A coupon, once per ``Idempotency-Key``: coupons are no account's, so the key's record is an
    item of its own (``IDEM#<event id>``) written in the coupon's transaction."""
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
    idem_pk = f"IDEM#{req.event_id}" if req.keyed else None
    if idem_pk:
        stored = _stored_idempotent(models, idem_pk)
        if stored is not None:
            return replay(stored, req)
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
                    idem_pk, "IDEM", body=json.dumps({"fingerprint": req.fingerprint, "response": response})
                )
                tx.save(record, condition=models.Item.pk.does_not_exist())
    except TransactWriteError:
        if idem_pk:
            stored = _stored_idempotent(models, idem_pk)
            if stored is not None:
                return replay(stored, req)
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
        found = load_record(ledger.models, coupon_pk(code), "COUPON", Coupon)
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
