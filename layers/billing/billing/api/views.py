"""How the API shows domain objects: credit strings with 6 decimals, ``Z`` times, money objects.

Plain functions to dicts (no pydantic), so the event-driven functions import nothing of the HTTP
stack. The services return records (and keep them to answer a repeated request); these render them,
for the first answer and every repeat alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from billing.domain.amounts import MICRO, format_credits, money
from billing.domain.clock import format_time
from billing.domain.model import ChargeLine, CreditLot, LedgerEntry, Purchase

if TYPE_CHECKING:  # the records are the services'; only their fields are read here
    from billing.services.grants import Coupon
    from billing.services.purchases import PaymentOutcome

T = TypeVar("T")


def rendered(result: T | dict[str, Any], view: Callable[[T], dict[str, Any]]) -> dict[str, Any]:
    """A service's record as the API shows it; a response an earlier version stored rendered (a
    repeat of a request made before the services returned records) as it was."""
    return result if isinstance(result, dict) else view(result)


def time_or_none(moment: datetime | None) -> str | None:
    return format_time(moment) if moment else None


def lot_view(lot: CreditLot) -> dict[str, Any]:
    """A lot as in ``GET /v1/balance`` and the grant routes."""
    return {
        "lot_id": lot.lot_id,
        "kind": lot.kind,
        "granted": format_credits(lot.granted),
        "remaining": format_credits(lot.remaining),
        "granted_at": format_time(lot.granted_at),
        "expires_at": time_or_none(lot.expires_at),
    }


def lot_grant_view(lot: CreditLot) -> dict[str, Any]:
    """A check-in, a redeemed coupon or an operator grant: the lot it added."""
    return {"lot": lot_view(lot)}


def purchase_created_view(p: Purchase) -> dict[str, Any]:
    """A new purchase as ``POST /v1/purchases`` answers it."""
    view = purchase_view(p)
    created = {k: view[k] for k in ("purchase_id", "credits", "price", "status", "created_at")}
    if p.payment_intent_id is not None and p.payment_client_secret is not None:
        created["payment"] = {"provider": "stripe", "payment_intent_id": p.payment_intent_id,
                              "client_secret": p.payment_client_secret}
    return created


def payment_outcome_view(outcome: PaymentOutcome) -> dict[str, Any]:
    """How a payment notice was applied (with the lot a confirmation added)."""
    view: dict[str, Any] = {"purchase_id": outcome.purchase_id, "status": outcome.status,
                            "duplicate": outcome.duplicate}
    if outcome.lot is not None:
        view["lot"] = lot_view(outcome.lot)
    return view


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
        "auto": p.auto,
    }


def receipt_number(p: Purchase) -> str:
    """A stable, human-readable receipt number: ``R-<payment day>-<10 characters of the purchase>``
    (the same for the purchase whenever it is asked for)."""
    assert p.paid_at is not None
    digest = hashlib.sha256(p.purchase_id.encode()).hexdigest()[:10].upper()
    return f"R-{format_time(p.paid_at)[:10].replace('-', '')}-{digest}"  # the UTC day


def purchase_detail_view(p: Purchase) -> dict[str, Any]:
    """One purchase as in the list, with its receipt once paid (a refunded purchase keeps it)."""
    receipt = None
    if p.paid_at is not None:
        receipt = {
            "number": receipt_number(p),
            "credits": format_credits(p.credits * MICRO),
            "price": money(p.price_cents, p.currency),
            "paid_at": format_time(p.paid_at),
            "payment_reference": p.payment_id,
        }
    return {**purchase_view(p), "receipt": receipt}


def coupon_view(c: Coupon) -> dict[str, Any]:
    return {
        "code": c.code,
        "credits": format_credits(c.credits),
        "valid_days": c.valid_days,
        "expires_at": format_time(c.expires_at),
        "max_redemptions": c.max_redemptions,
        "redemptions": c.redemptions,
    }


def line_view(line: ChargeLine) -> dict[str, Any]:
    """A charge line: its set fields, the amount as credits and times as ``Z`` strings."""
    fields = msgspec.structs.asdict(line).items()
    data = {k: v for k, v in fields if v is not None and k not in ("amount", "start", "end")}
    data["amount"] = format_credits(line.amount)
    if line.start:
        data["start"] = format_time(line.start)
    if line.end:
        data["end"] = format_time(line.end)
    return data


def entry_view(entry: LedgerEntry) -> dict[str, Any]:
    """A ledger entry as in ``GET /v1/ledger``."""
    return {
        "entry_id": entry.entry_id,
        "type": entry.type,
        "amount": format_credits(entry.amount),
        "at": format_time(entry.at),
        "reason": entry.reason,
        "event_id": entry.event_id,
        "lines": [line_view(line) for line in entry.lines],
        "paid_by": [{"lot_id": p.lot_id, "amount": format_credits(p.amount)} for p in entry.paid_by],
        "lot_id": entry.lot_id,
    }
