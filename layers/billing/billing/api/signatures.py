"""The payment provider's ``Billing-Signature``: ``t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``.

Every part must be plain ASCII of the expected shape (digits, lower-case hex) before anything is
computed: a malformed header is a 401 like a wrong one. Any of the valid secrets (two during a
rotation) may have signed, and a provider may send several ``v1`` signatures.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime

from billing.domain.errors import BadSignature, Unauthorized

TOLERANCE_SECONDS = 300
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


def verify_signature(header: str | None, raw_body: str, secrets: list[str], now: datetime) -> None:
    """Unauthorized unless a ``v1`` signature of the body matches and ``t`` is within 5 minutes."""
    if not header:
        raise Unauthorized("missing Billing-Signature")
    if len(header) > 2000:
        raise Unauthorized("malformed Billing-Signature")
    timestamp: str | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            timestamp = value
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not _TIMESTAMP.fullmatch(timestamp) or not signatures:
        raise Unauthorized("malformed Billing-Signature")
    if not all(_SIGNATURE.fullmatch(s) for s in signatures):
        raise Unauthorized("malformed Billing-Signature")
    if abs(now.timestamp() - int(timestamp)) > TOLERANCE_SECONDS:
        raise Unauthorized("Billing-Signature timestamp outside the tolerance")
    message = f"{timestamp}.".encode() + raw_body.encode()
    expected = [hmac.new(secret.encode(), message, hashlib.sha256).hexdigest().encode() for secret in secrets]
    if not any(hmac.compare_digest(e, s.encode()) for e in expected for s in signatures):
        raise Unauthorized("wrong Billing-Signature")


def sign(raw_body: str, secret: str, timestamp: int) -> str:
    """The header the provider sends (used by tests and the samples)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{raw_body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_stripe_event(header: str | None, raw_body: str, secrets: list[str], now: datetime) -> None:
    """A 400 unless ``Stripe-Signature`` verifies with one of the endpoint's secrets (Stripe's library,
    ``stripe.Webhook.construct_event``) and its ``t`` is within 300 s of ``now``.

    The library compares ``t`` with the wall clock; the tolerance is checked here against the
    injected clock instead (the same time on Lambda), and the library is asked for the signature."""
    import stripe

    if not header or len(header) > 2000:
        raise BadSignature("missing or malformed Stripe-Signature")
    stamps = [value for name, _, value in (p.strip().partition("=") for p in header.split(",")) if name == "t"]
    if len(stamps) != 1 or not _TIMESTAMP.fullmatch(stamps[0]):
        raise BadSignature("malformed Stripe-Signature")
    if abs(now.timestamp() - int(stamps[0])) > TOLERANCE_SECONDS:
        raise BadSignature("Stripe-Signature timestamp outside the tolerance")
    for secret in secrets:
        try:
            stripe.Webhook.construct_event(raw_body, header, secret, tolerance=None)  # type: ignore[arg-type]
        except stripe.SignatureVerificationError:
            continue
        except ValueError:  # verified, but not JSON
            raise BadSignature("the body is not a JSON event") from None
        return
    raise BadSignature("wrong Stripe-Signature")


def sign_stripe(raw_body: str, secret: str, timestamp: int) -> str:
    """``Stripe-Signature`` as Stripe sends it (tests and the samples; the scheme the library verifies)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{raw_body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"
