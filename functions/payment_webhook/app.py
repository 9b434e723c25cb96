"""The payment provider's callback: ``Billing-Signature`` is verified before anything is read (the
route's guard), then the notice, validated by its struct, is applied once
(:func:`billing.services.purchases.handle_payment`)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.api.http import header, make_resolver, raw_body
from billing.api.requests import PaymentNoticeBody, parse_when
from billing.api.signatures import verify_signature
from billing.api.views import payment_outcome_view
from billing.observability import logger, metrics, tracer
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


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
