"""Account API: purchases, refunds, daily check-in, coupons, settings and alert rules, operator grants
and coupons.

Each route is an entry of :mod:`billing.api.routes` (identity, query and body structs, status): the
handler gets the caller and the validated body, calls one service and renders what it returns
(:mod:`billing.api.views`):
purchases and refunds in :mod:`billing.services.purchases`, check-in, coupons and grants in
:mod:`billing.services.grants`, settings in :mod:`billing.services.account_settings`, alert rules in
:mod:`billing.services.alerts`. Errors are
mapped once, in :func:`billing.api.http.make_resolver`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.api.http import Caller, header, make_resolver, request_json
from billing.api.requests import (
    AlertRequest,
    CouponRequest,
    GrantRequest,
    MemberLimitRequest,
    PurchaseRequest,
    RedeemRequest,
    SettingsRequest,
    parse_credits,
    parse_when,
)
from billing.api.views import (
    coupon_view,
    lot_grant_view,
    purchase_created_view,
    purchase_detail_view,
    purchase_view,
    rendered,
)
from billing.observability import logger, metrics, tracer
from billing.services import account_settings, alerts, grants, members, payment_calls, purchases
from billing.store.idempotency import RequestKey, request_key

deps = wiring.Wiring()
app = make_resolver(role_of=lambda account_id, user_id: members.role_of(deps.get(wiring.ledger), account_id, user_id))


def _request(scope: str) -> RequestKey:
    """The request's idempotency key and fingerprint (method, path and JSON body)."""
    event = app.current_event
    return request_key(scope, header(app, "idempotency-key"), event.http_method, event.path, request_json(app))


def _now() -> datetime:
    return deps.get(wiring.clock)()


@app.serves("POST /v1/purchases")
def create_purchase(account_id: str, body: PurchaseRequest, caller: Caller) -> dict[str, Any]:
    created = purchases.create_purchase(deps.get(wiring.ledger), account_id, body.credits, _request(account_id), _now(),
                                        deps.get(wiring.payments), caller.user_id)
    return rendered(created, purchase_created_view)


@app.serves("POST /v1/payment-methods")
def save_payment_method(account_id: str) -> dict[str, Any]:
    return payment_calls.save_card(deps.get(wiring.ledger), account_id, deps.get(wiring.payments))


@app.serves("GET /v1/purchases")
def list_purchases(account_id: str) -> dict[str, Any]:
    return {"purchases": [purchase_view(p) for p in purchases.list_purchases(deps.get(wiring.ledger), account_id)]}


@app.serves("GET /v1/purchases/{purchase_id}")
def get_purchase(purchase_id: str, account_id: str) -> dict[str, Any]:
    return purchase_detail_view(purchases.get_purchase(deps.get(wiring.ledger), account_id, purchase_id))


@app.serves("POST /v1/purchases/{purchase_id}/refund")
def refund(purchase_id: str, account_id: str, caller: Caller) -> dict[str, Any]:
    response = purchases.refund_purchase(deps.get(wiring.ledger), account_id, purchase_id, _request(account_id), _now(),
                                         caller.user_id)
    metrics.add_metric(name="Refunds", unit="Count", value=1)
    return response


@app.serves("POST /v1/check-in")
def check_in(account_id: str, caller: Caller) -> dict[str, Any]:
    lot = grants.check_in(deps.get(wiring.ledger), account_id, _request(account_id), _now(), caller.user_id)
    return rendered(lot, lot_grant_view)


@app.serves("POST /v1/coupons/redeem")
def redeem_coupon(account_id: str, body: RedeemRequest, caller: Caller) -> dict[str, Any]:
    lot = grants.redeem_coupon(deps.get(wiring.ledger), account_id, body.code, _request(account_id), _now(),
                               caller.user_id)
    return rendered(lot, lot_grant_view)


@app.serves("GET /v1/settings")
def get_settings(account_id: str) -> dict[str, Any]:
    return account_settings.get_settings(deps.get(wiring.ledger), account_id)


@app.serves("PUT /v1/settings")
def update_settings(account_id: str, body: SettingsRequest, caller: Caller) -> dict[str, Any]:
    return account_settings.update_settings(deps.get(wiring.ledger), account_id, **body.changes(),
                                            actor=caller.user_id, now=_now())


@app.serves("GET /v1/alerts")
def list_alerts(account_id: str) -> dict[str, Any]:
    return {"alerts": alerts.list_alerts(deps.get(wiring.ledger), account_id)}


@app.serves("POST /v1/alerts")
def create_alert(account_id: str, body: AlertRequest, caller: Caller) -> dict[str, Any]:
    return alerts.create_alert(deps.get(wiring.ledger), account_id, body.kind, body.threshold, _request(account_id),
                               _now(), caller.user_id)


@app.serves("DELETE /v1/alerts/{alert_id}")
def delete_alert(alert_id: str, account_id: str, caller: Caller) -> dict[str, Any]:
    return alerts.delete_alert(deps.get(wiring.ledger), account_id, alert_id, caller.user_id, _now())


@app.serves("GET /v1/members")
def list_members(account_id: str) -> dict[str, Any]:
    return {"members": members.list_members(deps.get(wiring.ledger), account_id, _now())}


@app.serves("PUT /v1/members/{user_id}/limit")
def set_member_limit(user_id: str, account_id: str, body: MemberLimitRequest, caller: Caller) -> dict[str, Any]:
    return members.set_limit(deps.get(wiring.ledger), account_id, user_id, body.limit(), caller.user_id, _now())


@app.serves("POST /v1/admin/grants")
def admin_grant(operator: str, body: GrantRequest) -> dict[str, Any]:
    lot = grants.operator_grant(
        deps.get(wiring.ledger), body.account_id, parse_credits(body.credits), body.kind,
        parse_when(body.expires_at, "expires_at"), body.reason, body.purchase_id, operator, _request("admin"), _now(),
    )
    return rendered(lot, lot_grant_view)


@app.serves("POST /v1/admin/coupons")
def admin_coupon(operator: str, body: CouponRequest) -> dict[str, Any]:
    coupon = grants.create_coupon(
        deps.get(wiring.ledger), body.code, parse_credits(body.credits), body.valid_days,
        parse_when(body.expires_at, "expires_at"), body.max_redemptions, operator, _request("admin"), _now(),
    )
    return rendered(coupon, coupon_view)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
