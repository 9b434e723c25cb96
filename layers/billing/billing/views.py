"""How the API shows domain objects (credit strings with 6 decimals, ``Z`` times, money)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing.amounts import format_credits
from billing.clock import format_time
from billing.model import CreditLot


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
