"""The payment provider's callback: ``Billing-Signature`` is verified before anything is read, then
a confirmation adds the purchased credits exactly once (:func:`billing.purchases.handle_payment`)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import purchases
from billing.accounts import PaymentNotice, parse_request
from billing.collaborators import Collaborators
from billing.http import header, json_body, make_resolver
from billing.observability import logger, metrics, tracer
from billing.settings import get_settings

app = make_resolver()
deps = Collaborators()  # tests replace it with real fakes


@app.post("/v1/webhooks/payments")
def payment_notice() -> Response[Any]:
    now = deps.clock()
    purchases.verify_signature(
        header(app, "billing-signature"), app.current_event.decoded_body or "", get_settings().webhook_secret, now
    )
    notice = parse_request(PaymentNotice, json_body(app))
    result = purchases.handle_payment(deps.ledger, notice, now)
    metrics.add_metric(name="PaymentNotices", unit="Count", value=1)
    return Response(status_code=200, content_type="application/json", body=json.dumps(result))


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
