"""The payment provider's callback: ``Billing-Signature`` is verified before anything is read, then
the notice is applied once (:func:`billing.services.purchases.handle_payment`)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.api.http import header, json_body, make_resolver
from billing.api.requests import PaymentNoticeBody, parse_request, parse_when
from billing.api.signatures import verify_signature
from billing.observability import logger, metrics, tracer
from billing.services.purchases import PaymentNotice, handle_payment

app = make_resolver()
deps = wiring.Wiring()


@app.post("/v1/webhooks/payments")
def payment_notice() -> Response[Any]:
    now = deps.get(wiring.clock)()
    verify_signature(
        header(app, "billing-signature"), app.current_event.decoded_body or "", deps.get(wiring.webhook_secrets), now
    )
    body = parse_request(PaymentNoticeBody, json_body(app))
    notice = PaymentNotice(
        id=body.id, type=body.type, purchase_id=body.purchase_id, currency=body.amount.currency,
        cents=body.amount.cents, created_at=parse_when(body.created_at, "created_at"),
    )
    result = handle_payment(deps.get(wiring.ledger), notice, now)
    metrics.add_metric(name="PaymentNotices", unit="Count", value=1)
    return Response(status_code=200, content_type="application/json", body=json.dumps(result))


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
