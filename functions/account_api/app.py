"""Account API: purchases, refunds, daily check-in, coupons, settings, operator grants and coupons.

Each route reads the request (caller, body, ``Idempotency-Key``), calls one service and shapes the
response: purchases and refunds in :mod:`billing.services.purchases`, check-in, coupons and grants in
:mod:`billing.services.grants`, settings in :mod:`billing.services.account_settings`. Errors are
mapped once, in :func:`billing.api.http.make_resolver`.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.api.http import caller_account, header, json_body, make_resolver, operator_identity, optional_body
from billing.api.requests import (
    CouponRequest,
    GrantRequest,
    PurchaseRequest,
    RedeemRequest,
    SettingsRequest,
    parse_credits,
    parse_request,
    parse_when,
)
from billing.observability import logger, metrics, tracer
from billing.services import account_settings, grants, purchases
from billing.store.idempotency import RequestKey, request_key

app = make_resolver()
deps = wiring.Wiring()


def _json(status: int, body: dict[str, Any]) -> Response[Any]:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body))


def _request(scope: str, body: Any) -> RequestKey:
    event = app.current_event
    return request_key(scope, header(app, "idempotency-key"), event.http_method, event.path, body)


def _now() -> Any:
    return deps.get(wiring.clock)()


@app.post("/v1/purchases")
def create_purchase() -> Response[Any]:
    account_id = caller_account(app)
    body = json_body(app)
    request = parse_request(PurchaseRequest, body)
    response = purchases.create_purchase(
        deps.get(wiring.ledger), account_id, request.credits, _request(account_id, body), _now()
    )
    return _json(201, response)


@app.get("/v1/purchases")
def list_purchases() -> Response[Any]:
    return _json(200, {"purchases": purchases.list_purchases(deps.get(wiring.ledger), caller_account(app))})


@app.post("/v1/purchases/<purchase_id>/refund")
def refund(purchase_id: str) -> Response[Any]:
    account_id = caller_account(app)
    response = purchases.refund_purchase(
        deps.get(wiring.ledger), account_id, purchase_id, _request(account_id, optional_body(app)), _now()
    )
    metrics.add_metric(name="Refunds", unit="Count", value=1)
    return _json(200, response)


@app.post("/v1/check-in")
def check_in() -> Response[Any]:
    account_id = caller_account(app)
    response = grants.check_in(deps.get(wiring.ledger), account_id, _request(account_id, optional_body(app)), _now())
    return _json(201, response)


@app.post("/v1/coupons/redeem")
def redeem_coupon() -> Response[Any]:
    account_id = caller_account(app)
    body = json_body(app)
    request = parse_request(RedeemRequest, body)
    response = grants.redeem_coupon(
        deps.get(wiring.ledger), account_id, request.code, _request(account_id, body), _now()
    )
    return _json(201, response)


@app.put("/v1/settings")
def update_settings() -> Response[Any]:
    account_id = caller_account(app)
    request = parse_request(SettingsRequest, json_body(app))
    return _json(200, account_settings.set_credit_mail(deps.get(wiring.ledger), account_id, request.credit_mail))


@app.post("/v1/admin/grants")
def admin_grant() -> Response[Any]:
    operator = operator_identity(app)
    body = json_body(app)
    r = parse_request(GrantRequest, body)
    response = grants.operator_grant(
        deps.get(wiring.ledger), r.account_id, parse_credits(r.credits), r.kind, parse_when(r.expires_at, "expires_at"),
        r.reason, r.purchase_id, operator, _request("admin", body), _now(),
    )
    return _json(201, response)


@app.post("/v1/admin/coupons")
def admin_coupon() -> Response[Any]:
    operator = operator_identity(app)
    body = json_body(app)
    r = parse_request(CouponRequest, body)
    response = grants.create_coupon(
        deps.get(wiring.ledger), r.code, parse_credits(r.credits), r.valid_days, parse_when(r.expires_at, "expires_at"),
        r.max_redemptions, operator, _request("admin", body), _now(),
    )
    return _json(201, response)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
