"""The payment provider's callbacks, verified before anything is read (the route's guard), then
applied once: the provider-neutral notice (``Billing-Signature``, validated by its struct;
:func:`billing.services.purchases.handle_payment`) and Stripe's events (``Stripe-Signature``, verified
with Stripe's library; :func:`billing.services.stripe_events.handle_event`)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.api.http import header, make_resolver, parse_json, raw_body
from billing.api.requests import PaymentNoticeBody, parse_when
from billing.api.signatures import verify_signature, verify_stripe_event
from billing.api.views import payment_outcome_view
from billing.domain.errors import InvalidInput
from billing.observability import logger, metrics, tracer
from billing.services import stripe_events
from billing.services.purchases import PaymentNotice, handle_payment

app = make_resolver()
deps = wiring.Wiring()


def verify() -> None:
    """A 401 unless the raw body is signed with a valid secret within the last 5 minutes."""
    now = deps.get(wiring.clock)()
    # raw_body: at most 64 KiB of UTF-8 (else a 400) before any HMAC is computed over it.
    verify_signature(header(app, "billing-signature"), raw_body(app), deps.get(wiring.webhook_secrets), now)


@app.serves("POST /v1/webhooks/payments", guard=verify)
def payment_notice(body: PaymentNoticeBody) -> dict[str, Any]:
    notice = PaymentNotice(
        id=body.id, type=body.type, purchase_id=body.purchase_id, currency=body.amount.currency,
        cents=body.amount.cents, created_at=parse_when(body.created_at, "created_at"),
    )
    outcome = handle_payment(deps.get(wiring.ledger), notice, deps.get(wiring.clock)())
    metrics.add_metric(name="PaymentNotices", unit="Count", value=1)
    return payment_outcome_view(outcome)


def verify_stripe() -> None:
    """A 400 unless Stripe signed the raw body with the endpoint's secret within the last 300 s."""
    now = deps.get(wiring.clock)()
    verify_stripe_event(header(app, "stripe-signature"), raw_body(app), deps.get(wiring.stripe_webhook_secrets), now)


@app.serves("POST /v1/webhooks/stripe", guard=verify_stripe)
def stripe_event() -> dict[str, Any]:
    event = parse_json(raw_body(app))
    if not isinstance(event, dict):
        raise InvalidInput("the body must be a Stripe event object")
    result = stripe_events.handle_event(deps.get(wiring.ledger), event, deps.get(wiring.clock)())
    metrics.add_metric(name="StripeEvents", unit="Count", value=1)
    return result


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
