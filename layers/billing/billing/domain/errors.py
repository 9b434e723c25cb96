"""Typed domain errors. The layer raises them; each entry point maps them in one place
(HTTP: :func:`billing.api.http.make_resolver`; events: the invocation fails and the event is
dead-lettered, unless the error is ``transient``, when it is retried)."""

from __future__ import annotations


class BillingError(Exception):
    """Base of every domain error; ``code`` is the API's error code."""

    code = "billing_error"
    http_status = 400
    transient = False  # True: the same input may succeed later (retry it)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(BillingError):
    """Malformed input: a missing field, a wrong type, an unparseable time."""

    code = "invalid_input"
    http_status = 400


class Unauthorized(BillingError):
    """No authenticated caller, or a webhook whose signature does not verify."""

    code = "unauthorized"
    http_status = 401


class BadSignature(InvalidInput):
    """A Stripe webhook that does not verify (a 400, as Stripe's own examples answer)."""

    code = "bad_signature"


class Forbidden(BillingError):
    code = "forbidden"
    http_status = 403


class UnknownAccount(BillingError):
    code = "unknown_account"
    http_status = 404


class NotFound(BillingError):
    code = "not_found"
    http_status = 404


class UnknownPriceItem(BillingError):
    """A tier or model the catalog does not price: reported, never billed as zero."""

    code = "unknown_price_item"
    http_status = 422


class Conflict(BillingError):
    """Conflicts with the current state (already checked in today, already refunded...)."""

    code = "conflict"
    http_status = 409


class RuleViolation(BillingError):
    """Well-formed but not allowed by the rules (below the purchase minimum, refund window passed...)."""

    code = "not_allowed"
    http_status = 422


class ConcurrentUpdate(Conflict):
    """The account changed between read and write: retried with a fresh read, and a 409 when it
    keeps happening."""

    transient = True

    def __init__(self, account_id: str) -> None:
        super().__init__("the account kept changing during the request; retry it")
        self.account_id = account_id


class EventTimeRefused(RuleViolation):
    """An event dated too far in the future, too far in the past, or before its account existed."""

    code = "event_time_refused"


class ServiceBusy(BillingError):
    """DynamoDB kept throttling (or timing out) through every retry: try again shortly."""

    code = "service_busy"
    http_status = 503
    transient = True
    retry_after_seconds = 2


class NotConfigured(BillingError):
    """A setting the deployment must provide is missing (an operator's mistake, never the caller's)."""

    code = "not_configured"
    http_status = 503
