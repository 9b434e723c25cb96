"""Account API: purchases, refunds, daily check-in, coupons, settings, operator grants and coupons.

Business rules live in :mod:`billing.accounts`; this module only reads the request (caller, body,
``Idempotency-Key``) and shapes the response. Errors are mapped once, in :func:`make_resolver`.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import accounts, grants, purchases
from billing.accounts import (
    CouponRequest,
    GrantRequest,
    PurchaseRequest,
    RedeemRequest,
    RequestKey,
    SettingsRequest,
    parse_request,
    request_key,
)
from billing.collaborators import Collaborators
from billing.http import caller_account, header, json_body, make_resolver, operator_identity
from billing.observability import logger, metrics, tracer

app = make_resolver()
deps = Collaborators()  # tests replace it with real fakes (ledger on DynamoDB Local, fixed clock...)


def _json(status: int, body: dict[str, Any]) -> Response[Any]:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body))


def _request(scope: str, body: Any) -> RequestKey:
    event = app.current_event
    return request_key(scope, header(app, "idempotency-key"), event.http_method, event.path, body)


def _raw_body() -> Any:
    raw = app.current_event.decoded_body
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


@app.post("/v1/purchases")
def create_purchase() -> Response[Any]:
    account_id = caller_account(app)
    body = json_body(app)
    request = parse_request(PurchaseRequest, body)
    outcome = purchases.create_purchase(
        deps.ledger, account_id, request.credits, _request(account_id, body), deps.clock()
    )
    return _json(201, outcome.response)


@app.get("/v1/purchases")
def list_purchases() -> Response[Any]:
    account_id = caller_account(app)
    return _json(200, {"purchases": purchases.list_purchases(deps.ledger, account_id)})


@app.post("/v1/purchases/<purchase_id>/refund")
def refund(purchase_id: str) -> Response[Any]:
    account_id = caller_account(app)
    outcome = purchases.refund_purchase(
        deps.ledger, account_id, purchase_id, _request(account_id, _raw_body()), deps.clock()
    )
    if outcome.outbox:
        deps.publisher.publish(outcome.outbox)
    metrics.add_metric(name="Refunds", unit="Count", value=1)
    return _json(200, outcome.response)


@app.post("/v1/check-in")
def check_in() -> Response[Any]:
    account_id = caller_account(app)
    outcome = grants.check_in(deps.ledger, account_id, _request(account_id, _raw_body()), deps.clock())
    return _json(201, outcome.response)


@app.post("/v1/coupons/redeem")
def redeem_coupon() -> Response[Any]:
    account_id = caller_account(app)
    body = json_body(app)
    request = parse_request(RedeemRequest, body)
    outcome = grants.redeem_coupon(
        deps.ledger, account_id, request.code, _request(account_id, body), deps.clock()
    )
    return _json(201, outcome.response)


@app.put("/v1/settings")
def update_settings() -> Response[Any]:
    account_id = caller_account(app)
    request = parse_request(SettingsRequest, json_body(app))
    return _json(200, accounts.set_credit_mail(deps.ledger, account_id, request.credit_mail))


@app.post("/v1/admin/grants")
def admin_grant() -> Response[Any]:
    operator = operator_identity(app)
    body = json_body(app)
    request = parse_request(GrantRequest, body)
    outcome = grants.operator_grant(deps.ledger, request, operator, _request("admin", body), deps.clock())
    return _json(201, outcome.response)


@app.post("/v1/admin/coupons")
def admin_coupon() -> Response[Any]:
    operator = operator_identity(app)
    body = json_body(app)
    request = parse_request(CouponRequest, body)
    response = grants.create_coupon(deps.ledger, request, operator, _request("admin", body), deps.clock())
    return _json(201, response)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
