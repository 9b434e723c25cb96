"""Credits granted outside purchases: the daily check-in, coupons, and operator grants.

Decisions where the rules are silent are in the README ("Purchases, refunds, grants, mail").
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from billing.domain import credits, settle
from billing.domain.account import Account
from billing.domain.amounts import format_credits
from billing.domain.errors import Conflict, InvalidInput, NotFound, RuleViolation
from billing.domain.model import CreditLot, LotKind, Record
from billing.domain.posting import Book
from billing.observability import logger
from billing.services.purchases import load_purchase
from billing.store import keys
from billing.store.idempotency import Rendered, RequestKey, keep, kept
from billing.store.ledger import Change, Ledger, Write
from billing.store.records import load_record, record_write
from billing.store.tables import TableModels

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


def _coupon_write(models: TableModels, c: Coupon, read_version: int | None) -> Write:
    return record_write(models, keys.coupon_pk(c.code), keys.COUPON, c, read_version)


def check_in(
    ledger: Ledger, account_id: str, req: RequestKey, now: datetime, actor: str | None = None
) -> CreditLot | Rendered:
    def action(account: Account | None) -> Change:
        book = Book(settle.require(account, account_id), ledger.catalog, req.event_id)
        if credits.checked_in_on(book, now):
            raise Conflict("already checked in today (UTC)")
        lot = credits.check_in(book, now)
        book.note(actor or account_id, "checked_in", now, lot_id=lot.lot_id, credits=format_credits(lot.granted))
        return Change(book, keep(lot))

    response, _ = ledger.request(account_id, req, action)
    return kept(response, CreditLot)


def create_coupon(
    ledger: Ledger, code: str, amount: int, valid_days: int, expires_at: datetime, max_redemptions: int,
    operator: str, req: RequestKey, now: datetime,
) -> Coupon | Rendered:
    """A coupon, once per ``Idempotency-Key``; an existing code is a 409."""
    code = normalize_code(code)
    if not CODE_PATTERN.match(code):
        raise InvalidInput("code must be 1 to 64 letters, digits, '_' or '-'")
    if not 1 <= valid_days <= MAX_VALID_DAYS:
        raise RuleViolation(f"valid_days must be from 1 to {MAX_VALID_DAYS}")
    if max_redemptions < 1:
        raise RuleViolation("max_redemptions must be at least 1")
    if expires_at <= now:
        raise RuleViolation("expires_at must be in the future")
    coupon = Coupon(
        code=code, credits=amount, valid_days=valid_days, expires_at=expires_at,
        max_redemptions=max_redemptions, created_at=now, created_by=operator,
    )
    writes = [_coupon_write(ledger.models, coupon, None)]
    response = ledger.operator_request(req, writes, keep(coupon), conflict=f"a coupon {code} exists already")
    logger.info("coupon created", code=code, operator=operator)
    return kept(response, Coupon)


def redeem_coupon(
    ledger: Ledger, account_id: str, raw_code: str, req: RequestKey, now: datetime, actor: str | None = None
) -> CreditLot | Rendered:
    code = normalize_code(raw_code)
    if not CODE_PATTERN.match(code):
        raise NotFound("no such coupon")

    def action(account: Account | None) -> Change:
        book = Book(settle.require(account, account_id), ledger.catalog, req.event_id)
        state = book.state
        found = load_record(ledger.models, keys.coupon_pk(code), keys.COUPON, Coupon)
        if found is None:
            raise NotFound("no such coupon")
        coupon, version = found
        if code in state.coupons:
            raise Conflict("this coupon was redeemed by this account already")
        if now >= coupon.expires_at:
            raise RuleViolation("this coupon has expired")
        if coupon.redemptions >= coupon.max_redemptions:
            raise RuleViolation("this coupon has been used up")
        expires = min(now + timedelta(days=coupon.valid_days), coupon.expires_at)
        lot = credits.grant(book, now, "coupon", coupon.credits, expires, f"coupon_{code}")
        state.coupons.append(code)
        coupon.redemptions += 1
        book.note(actor or account_id, "coupon_redeemed", now, code=code, lot_id=lot.lot_id,
                  credits=format_credits(lot.granted))
        return Change(book, keep(lot), [_coupon_write(ledger.models, coupon, version)])

    response, applied = ledger.request(account_id, req, action)
    logger.info("coupon redeemed", account_id=account_id, code=code, replayed=applied.duplicate)
    return kept(response, CreditLot)


def operator_grant(
    ledger: Ledger, account_id: str, amount: int, kind: str, expires_at: datetime, reason: str,
    purchase_id: str | None, operator: str, req: RequestKey, now: datetime,
) -> CreditLot | Rendered:
    if kind not in ("monthly", "purchased", *GRANTABLE_KINDS):
        raise InvalidInput("kind must be one of event, coupon, promotional")
    if kind not in GRANTABLE_KINDS:
        raise RuleViolation(f"{kind} credits are not granted by operators")
    if expires_at <= now:
        raise RuleViolation("expires_at must be in the future")
    if purchase_id is not None and kind != "promotional":
        raise RuleViolation("only promotional credits are tied to a purchase")

    def action(account: Account | None) -> Change:
        book = Book(settle.require(account, account_id), ledger.catalog, req.event_id)
        if purchase_id is not None:
            found = load_purchase(ledger.models, purchase_id)
            if found is None or found[0].account_id != account_id:
                raise NotFound(f"no purchase {purchase_id} of account {account_id}")
            if found[0].status != "paid":
                raise RuleViolation("promotional credits go with a paid purchase")
        lot = credits.grant(book, now, GRANTABLE_KINDS[kind], amount, expires_at, reason, purchase_id=purchase_id)
        return Change(book, keep(lot))

    response, applied = ledger.request(account_id, req, action)
    logger.info("operator grant", account_id=account_id, operator=operator, kind=kind, replayed=applied.duplicate)
    return kept(response, CreditLot)
