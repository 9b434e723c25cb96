"""The payment provider's ``Billing-Signature``: ``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from billing.domain.errors import Unauthorized

TOLERANCE_SECONDS = 300


def verify_signature(header: str | None, raw_body: str, secret: str, now: datetime) -> None:
    """Unauthorized unless a ``v1`` signature of the body matches and ``t`` is within 5 minutes."""
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
    if abs(now.timestamp() - int(timestamp)) > TOLERANCE_SECONDS:
        raise Unauthorized("Billing-Signature timestamp outside the tolerance")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw_body.encode(), hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in signatures):
        raise Unauthorized("wrong Billing-Signature")


def sign(raw_body: str, secret: str, timestamp: int) -> str:
    """The header the provider sends (used by tests and the samples)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{raw_body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"
