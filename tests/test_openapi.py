"""The OpenAPI document (``GET /v1/openapi.json``) against the real API.

* It is a valid OpenAPI 3.1 document (openapi-spec-validator), generated from the route table.
* The route table is the template's: every HttpApi event of the three API functions, with its
  authorization, and each handler module serves exactly its function's routes.
* Every real response of a scenario that calls every route through the template's routing (DynamoDB
  Local, the local stand-ins), successes and refusals alike, has a status the document lists for
  that route and a body that validates against the schema it gives (jsonschema, draft 2020-12:
  OpenAPI 3.1's schema dialect).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from billing.api.openapi import build_document
from billing.api.routes import BY_KEY, ROUTES, routes_of
from billing.api.signatures import sign, sign_stripe
from localsam.aws import LOCAL_PARAMETERS
from localsam.http_api import ApiResponse
from localsam.http_api import routes as template_routes
from localsam.runner import StackRunner
from localsam.stripe_local import WEBHOOK_SECRET
from localsam.template import load_template
from tests.helpers import load_handler
from tests.travel import mid_month

FUNCTIONS = {"UsageApiFunction": "usage_api", "AccountApiFunction": "account_api",
             "PaymentWebhookFunction": "payment_webhook"}
AUTH = {"jwt": "JWT", "iam": "AWS_IAM", "signature": "NONE", "none": "NONE"}
USER, OTHER, NOBODY, FRIEND = "oa-user", "oa-other", "oa-nobody", "oa-friend"
OPERATOR = "arn:aws:iam::123456789012:role/operator"
SECRET = LOCAL_PARAMETERS["PaymentWebhookSecret"]


@pytest.fixture(scope="module", autouse=True)
def _mid_month() -> Iterator[None]:
    """This module's stories happen "now": at a fixed moment mid-month, so that no month, day or year
    boundary changes their figures whatever the date the suite runs at."""
    with mid_month():
        yield


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document()


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    errors = [str(e) for e in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []
    assert document["openapi"] == "3.1.0"
    assert set(document["components"]["securitySchemes"]) == {"userJwt", "operatorIam"}


def test_the_route_table_is_the_templates() -> None:
    template = {(r.method, r.path, r.function, r.auth) for r in template_routes(load_template())
                if r.function in FUNCTIONS}
    table = {(r.method, r.path, r.function, AUTH[r.auth]) for r in ROUTES}
    assert table == template
    assert len(BY_KEY) == len(ROUTES)


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_each_handler_serves_exactly_its_routes(function: str) -> None:
    module = load_handler(FUNCTIONS[function])
    assert sorted(module.app.bound) == sorted(r.key for r in routes_of(function))


def test_every_user_route_declares_its_role_and_the_document_shows_it(document: dict[str, Any]) -> None:
    """Organizations: each JWT route needs a role in the account acted on (the route table's, nowhere else)."""
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        if route.auth == "jwt":
            assert route.role in ("owner", "admin", "billing", "member"), route.key
            assert operation["x-billing-role"] == route.role, route.key
            assert f"Needs the role `{route.role}`" in operation["description"], route.key
            assert any(p["name"] == "Billing-Account" for p in operation["parameters"]), route.key
            assert {"403", "404"} <= set(operation["responses"]), route.key
        else:
            assert route.role is None and "x-billing-role" not in operation, route.key


def test_every_route_is_documented_with_its_statuses(document: dict[str, Any]) -> None:
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        assert [int(s) for s in operation["responses"]] == route.statuses(), route.key
        assert operation["operationId"] == route.operation
    creations = {r.key for r in ROUTES if r.status == 201}
    assert creations == {"POST /v1/purchases", "POST /v1/check-in", "POST /v1/coupons/redeem",
                         "POST /v1/admin/grants", "POST /v1/admin/coupons", "POST /v1/alerts",
                         "POST /v1/payment-methods"}
    webhook = document["paths"]["/v1/webhooks/payments"]["post"]
    assert webhook["security"] == [] and any(p["name"] == "Billing-Signature" for p in webhook["parameters"])
    assert document["paths"]["/v1/admin/grants"]["post"]["security"] == [{"operatorIam": []}]
    assert document["paths"]["/v1/balance"]["get"]["security"] == [{"userJwt": []}]
    ledger = document["paths"]["/v1/ledger"]["get"]
    assert {p["name"] for p in ledger["parameters"]} == {"from", "to", "limit", "cursor", "format", "Billing-Account"}
    assert set(ledger["responses"]["200"]["content"]) == {"application/json", "text/csv"}


class Scenario:
    """Calls routes through the local HTTP API and checks each response against the document."""

    def __init__(self, stack: StackRunner, document: dict[str, Any]) -> None:
        self.stack, self.document = stack, document
        self.seen: dict[str, set[int]] = {}

    def call(self, key: str, path: str | None = None, **request: Any) -> ApiResponse:
        method, template = key.split(" ", 1)
        response = self.stack.api_request(method, path or template, **request)
        self.check(key, response)
        self.seen.setdefault(key, set()).add(response.status)
        return response

    def check(self, key: str, response: ApiResponse) -> None:
        method, template = key.split(" ", 1)
        operation = self.document["paths"][template][method.lower()]
        documented = operation["responses"].get(str(response.status))
        assert documented is not None, (key, response.status, response.body)
        media = response.headers.get("content-type", "").split(";")[0]
        assert media in documented["content"], (key, media)
        schema = documented["content"][media]["schema"]
        value = response.json() if media == "application/json" else response.body
        validator = Draft202012Validator({**schema, "components": self.document["components"]})
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(value)]
        assert errors == [], (key, response.status, errors, value)

    def ok(self, key: str, path: str | None = None, **request: Any) -> Any:
        response = self.call(key, path, **request)
        assert response.status == BY_KEY[key].status, (key, response.status, response.body)
        return response.json() if response.headers.get("content-type", "").startswith("application/json") else None

    def refused(self, status: int, key: str, path: str | None = None, **request: Any) -> None:
        response = self.call(key, path, **request)
        assert response.status == status, (key, status, response.status, response.body)

    def pay(self, purchase: dict[str, Any], payment_id: str, cents: int | None = None,
            purchase_id: str | None = None, secret: str = SECRET) -> ApiResponse:
        amount = {"currency": "USD", "cents": purchase["price"]["cents"] if cents is None else cents}
        body = json.dumps({"id": payment_id, "type": "payment.succeeded",
                           "purchase_id": purchase_id or purchase["purchase_id"], "amount": amount,
                           "created_at": iso(datetime.now(UTC))})
        headers = {"Billing-Signature": sign(body, secret, int(datetime.now(UTC).timestamp())),
                   "content-type": "application/json"}
        return self.call("POST /v1/webhooks/payments", body=body, headers=headers)


@pytest.fixture(scope="module")
def stripe_stack(dynamodb_endpoint: str) -> Iterator[StackRunner]:
    """The template with Stripe configured (UsesStripe), answered by the local stand-in: every route,
    the Stripe ones included, can answer its success."""
    with StackRunner(dynamodb_endpoint=dynamodb_endpoint, stripe=True) as stack:
        yield stack


@pytest.fixture(scope="module")
def stack(stripe_stack: StackRunner) -> Iterator[StackRunner]:
    """Two accounts; the user ran a container for an hour and used AI today."""
    local_stack = stripe_stack
    now = datetime.now(UTC).replace(microsecond=0)
    events = [
        (USER, "platform.accounts", "Account Created", now - timedelta(hours=3), {"email": "u@example.com",
                                                                                  "plan": "free"}),
        (OTHER, "platform.accounts", "Account Created", now - timedelta(hours=3), {"email": "o@example.com",
                                                                                   "plan": "free"}),
        (USER, "platform.containers", "Container Created", now - timedelta(hours=2, minutes=30),
         {"container_id": "c1", "storage_gb": 6}),
        (USER, "platform.containers", "Container Started", now - timedelta(hours=2),
         {"container_id": "c1", "run_id": "r1", "tier": "small", "code_supporter": True}),
        (USER, "platform.containers", "Container Stopped", now - timedelta(hours=1),
         {"container_id": "c1", "run_id": "r1", "traffic_bytes": 1000}),
        (USER, "platform.ai", "AI Usage Recorded", now - timedelta(minutes=40),
         {"feature": "chat", "model": "claude-haiku-4.5", "input_tokens": 1000, "output_tokens": 500,
          "container_id": "c1"}),
        (USER, "platform.ai", "AI Usage Recorded", now - timedelta(minutes=30),
         {"feature": "snap", "model": "gpt-5-mini", "input_tokens": 100, "output_tokens": 100}),
        (USER, "platform.accounts", "Member Added", now - timedelta(minutes=20),
         {"user_id": FRIEND, "role": "member", "email": "f@example.com"}),
    ]
    for i, (account, source, detail_type, at, fields) in enumerate(events):
        detail = {"event_id": f"oa-{i}", "account_id": account, "occurred_at": iso(at), **fields}
        assert local_stack.put_event(source, detail_type, detail).ok
        local_stack.drain()
    yield local_stack


def test_every_real_response_matches_the_document(stack: StackRunner, document: dict[str, Any]) -> None:
    s = Scenario(stack, document)
    now = datetime.now(UTC)
    stop_day = (now - timedelta(hours=1)).date().isoformat()

    # ---------------------------------------------------------------- the usage page's reads
    balance = s.ok("GET /v1/balance", sub=USER)
    assert balance["account_id"] == USER and balance["lots"]
    s.refused(404, "GET /v1/balance", sub=NOBODY)
    s.refused(401, "GET /v1/balance")  # API Gateway's authorizer
    s.refused(400, "GET /v1/balance", sub=USER, query={"month": "2026-01"})  # no parameters here
    usage = s.ok("GET /v1/usage", sub=USER)
    assert usage["total"] != "0.000000"
    s.ok("GET /v1/usage", sub=USER, query={"unit": "usd", "cumulative": "true", "resource": "ai"})
    s.ok("GET /v1/usage", sub=USER, query={"month": now.strftime("%Y-%m"), "container_id": "c1"})
    s.refused(400, "GET /v1/usage", sub=USER, query={"month": "2026-13"})
    s.refused(400, "GET /v1/usage", sub=USER, query={"group": "tier"})
    s.refused(404, "GET /v1/usage", sub=NOBODY)
    first = (now - timedelta(days=2)).date().isoformat()
    by_tier = s.ok("GET /v1/usage", sub=USER, query={"from": first, "to": now.date().isoformat(),
                                                     "granularity": "hour", "group_by": "tier"})
    assert {g["key"] for g in by_tier["groups"]} >= {"small"}
    s.ok("GET /v1/usage", sub=USER, query={"label.team": "ml", "group_by": "label:team"})
    s.refused(400, "GET /v1/usage", sub=USER, query={"label.Team": "ml"})
    s.ok("GET /v1/usage.csv", sub=USER, query={"group_by": "resource", "unit": "usd"})
    s.refused(400, "GET /v1/usage.csv", sub=USER, query={"granularity": "week"})
    s.refused(404, "GET /v1/usage.csv", sub=NOBODY)
    log = s.ok("GET /v1/usage/containers", sub=USER, query={"date": stop_day})
    assert "r1" in [e["run_id"] for e in log["entries"]]
    s.refused(400, "GET /v1/usage/containers", sub=USER)
    page = s.ok("GET /v1/usage/ai", sub=USER, query={"limit": "1"})
    assert page["next_cursor"]
    s.ok("GET /v1/usage/ai", sub=USER, query={"limit": "1", "cursor": page["next_cursor"]})
    s.refused(400, "GET /v1/usage/ai", sub=USER, query={"limit": "0"})
    s.refused(400, "GET /v1/usage/ai", sub=USER, query={"cursor": "garbage"})
    ledger = s.ok("GET /v1/ledger", sub=USER, query={"limit": "2"})
    assert ledger["entries"][0]["type"] == "grant" and ledger["next_cursor"]
    s.ok("GET /v1/ledger", sub=USER, query={"from": stop_day})
    s.ok("GET /v1/ledger", sub=USER, query={"format": "csv", "limit": "1"})
    s.refused(400, "GET /v1/ledger", sub=USER, query={"format": "xml"})
    served = s.ok("GET /v1/openapi.json")  # no identity: public
    assert served == json.loads(json.dumps(document))

    # ---------------------------------------------------------------- purchases, the webhook, refunds
    purchase = s.ok("POST /v1/purchases", sub=USER, body={"credits": 100})
    s.refused(400, "POST /v1/purchases", sub=USER, body={"credits": "100"})
    s.refused(422, "POST /v1/purchases", sub=USER, body={"credits": 49})
    s.refused(404, "POST /v1/purchases", sub=NOBODY, body={"credits": 100})
    key = {"Idempotency-Key": "oa-key-1"}
    s.ok("POST /v1/purchases", sub=USER, body={"credits": 60}, headers=key)
    s.refused(422, "POST /v1/purchases", sub=USER, body={"credits": 70}, headers=key)
    s.refused(400, "POST /v1/purchases", sub=USER, body={"credits": 70}, headers={"Idempotency-Key": "x" * 300})
    one = f"/v1/purchases/{purchase['purchase_id']}"
    pending = s.ok("GET /v1/purchases/{purchase_id}", one, sub=USER)
    assert pending["receipt"] is None
    s.refused(404, "GET /v1/purchases/{purchase_id}", one, sub=OTHER)
    s.refused(422, "POST /v1/purchases/{purchase_id}/refund", one + "/refund", sub=USER)  # not paid
    paid = s.pay(purchase, "oa-pay-1")
    assert paid.status == 200 and paid.json()["lot"]["kind"] == "purchased"
    again = s.pay(purchase, "oa-pay-1")
    assert again.status == 200 and again.json()["duplicate"] is True
    assert s.pay(purchase, "oa-pay-2", secret="another-secret-0123456789").status == 401
    assert s.pay(purchase, "oa-pay-3", cents=1).status == 422
    assert s.pay(purchase, "oa-pay-4", purchase_id="pur_unknown").status == 404
    bad = json.dumps({"id": "oa-pay-5", "type": "payment.refunded"})
    signature = sign(bad, SECRET, int(datetime.now(UTC).timestamp()))
    s.refused(400, "POST /v1/webhooks/payments", body=bad, headers={"Billing-Signature": signature})
    receipt = s.ok("GET /v1/purchases/{purchase_id}", one, sub=USER)["receipt"]
    assert receipt["payment_reference"] == "oa-pay-1" and receipt["number"].startswith("R-")
    listed = s.ok("GET /v1/purchases", sub=USER)["purchases"]
    assert len(listed) == 2 and {p["auto"] for p in listed} == {False}
    s.refused(400, "GET /v1/purchases", sub=USER, query={"page": "2"})
    refund = s.ok("POST /v1/purchases/{purchase_id}/refund", one + "/refund", sub=USER)
    assert refund["purchase_id"] == purchase["purchase_id"]
    s.refused(409, "POST /v1/purchases/{purchase_id}/refund", one + "/refund", sub=USER)
    s.refused(404, "POST /v1/purchases/{purchase_id}/refund", "/v1/purchases/pur_unknown/refund", sub=USER)

    # ---------------------------------------------------------------- free credits and settings
    s.ok("POST /v1/check-in", sub=USER)
    s.refused(409, "POST /v1/check-in", sub=USER)
    expires = iso(now + timedelta(days=30))
    coupon = {"code": "OA-WELCOME", "credits": 10, "valid_days": 7, "expires_at": expires, "max_redemptions": 5}
    s.ok("POST /v1/admin/coupons", iam=OPERATOR, body=coupon)
    s.refused(409, "POST /v1/admin/coupons", iam=OPERATOR, body=coupon)
    s.refused(400, "POST /v1/admin/coupons", iam=OPERATOR, body={**coupon, "valid_days": "7"})
    s.refused(422, "POST /v1/admin/coupons", iam=OPERATOR, body={**coupon, "code": "OA-NONE", "max_redemptions": 0})
    s.refused(403, "POST /v1/admin/coupons", sub=USER, body=coupon)  # API Gateway: not signed
    s.ok("POST /v1/coupons/redeem", sub=USER, body={"code": "oa-welcome"})
    s.refused(409, "POST /v1/coupons/redeem", sub=USER, body={"code": "OA-WELCOME"})
    s.refused(404, "POST /v1/coupons/redeem", sub=USER, body={"code": "OA-NOPE"})
    s.refused(400, "POST /v1/coupons/redeem", sub=USER, body={"code": 5})
    grant = {"account_id": OTHER, "credits": "2.5", "kind": "event", "expires_at": expires, "reason": "survey"}
    s.ok("POST /v1/admin/grants", iam=OPERATOR, body=grant)
    s.refused(404, "POST /v1/admin/grants", iam=OPERATOR, body={**grant, "account_id": NOBODY})
    s.refused(422, "POST /v1/admin/grants", iam=OPERATOR, body={**grant, "kind": "purchased"})
    s.refused(400, "POST /v1/admin/grants", iam=OPERATOR, body={**grant, "credits": 2.5})
    settings = s.ok("GET /v1/settings", sub=USER)
    assert settings == {"credit_mail": True, "auto_top_up": None, "spend_cap": None, "spend_cap_reached": False,
                        "locale": None, "time_zone": None, "currency": "USD"}
    s.refused(404, "GET /v1/settings", sub=NOBODY)
    assert s.ok("PUT /v1/settings", sub=USER, body={"credit_mail": False})["credit_mail"] is False
    s.refused(400, "PUT /v1/settings", sub=USER, body={"credit_mail": "no"})
    s.refused(404, "PUT /v1/settings", sub=NOBODY, body={"credit_mail": False})
    s.refused(400, "PUT /v1/settings", sub=USER, body={})
    auto = {"enabled": True, "below": "5", "credits": 100, "max_per_month": 2}
    changed = s.ok("PUT /v1/settings", sub=USER, body={"auto_top_up": auto, "spend_cap": "500"})
    assert changed["auto_top_up"]["below"] == "5.000000" and changed["spend_cap"] == "500.000000"
    s.refused(422, "PUT /v1/settings", sub=USER, body={"auto_top_up": {**auto, "credits": 49}})
    s.refused(400, "PUT /v1/settings", sub=USER, body={"auto_top_up": {**auto, "colour": "red"}})
    assert s.ok("PUT /v1/settings", sub=USER, body={"auto_top_up": None, "spend_cap": None})["spend_cap"] is None
    alert = s.ok("POST /v1/alerts", sub=USER, body={"kind": "remaining_below", "threshold": "20"})
    assert alert["threshold"] == "20.000000" and alert["armed"] is True
    s.refused(400, "POST /v1/alerts", sub=USER, body={"kind": "colour", "threshold": "20"})
    s.refused(422, "POST /v1/alerts", sub=USER, body={"kind": "remaining_below", "threshold": "0"})
    s.refused(404, "POST /v1/alerts", sub=NOBODY, body={"kind": "remaining_below", "threshold": "20"})
    assert [a["alert_id"] for a in s.ok("GET /v1/alerts", sub=USER)["alerts"]] == [alert["alert_id"]]
    s.refused(404, "GET /v1/alerts", sub=NOBODY)
    gone = f"/v1/alerts/{alert['alert_id']}"
    assert s.ok("DELETE /v1/alerts/{alert_id}", gone, sub=USER) == {"alert_id": alert["alert_id"], "deleted": True}
    s.refused(404, "DELETE /v1/alerts/{alert_id}", gone, sub=USER)

    # ---------------------------------------------------------------- Stripe (the local stand-in)
    setup = s.ok("POST /v1/payment-methods", sub=USER)
    assert setup["provider"] == "stripe" and setup["client_secret"].startswith(setup["setup_intent_id"])
    s.refused(404, "POST /v1/payment-methods", sub=NOBODY)
    ignored = json.dumps({"id": "evt_oa", "type": "customer.created", "data": {"object": {"id": "cus_oa"}}})
    stamp = int(datetime.now(UTC).timestamp())
    stripe_headers = {"content-type": "application/json"}
    answer = s.ok("POST /v1/webhooks/stripe", body=ignored,
                  headers={**stripe_headers, "Stripe-Signature": sign_stripe(ignored, WEBHOOK_SECRET, stamp)})
    assert answer["handled"] is False
    s.refused(400, "POST /v1/webhooks/stripe", body=ignored,
              headers={**stripe_headers, "Stripe-Signature": sign_stripe(ignored, "whsec_forged_0", stamp)})
    # ---------------------------------------------------------------- members and activity
    team = {"Billing-Account": USER}
    listed_members = s.ok("GET /v1/members", sub=USER)["members"]
    assert [m["user_id"] for m in listed_members] == [USER, FRIEND]
    s.refused(404, "GET /v1/members", sub=NOBODY)
    s.refused(403, "GET /v1/members", sub=FRIEND, headers=team)  # a member: billing needed
    s.refused(404, "GET /v1/members", sub=NOBODY, headers=team)  # not a member
    limit = s.ok("PUT /v1/members/{user_id}/limit", f"/v1/members/{FRIEND}/limit", sub=USER,
                 body={"monthly_limit": "200"})
    assert limit["monthly_limit"] == "200.000000"
    s.refused(400, "PUT /v1/members/{user_id}/limit", f"/v1/members/{FRIEND}/limit", sub=USER,
              body={"monthly_limit": "-1"})
    s.refused(404, "PUT /v1/members/{user_id}/limit", f"/v1/members/{NOBODY}/limit", sub=USER,
              body={"monthly_limit": None})
    activity = s.ok("GET /v1/activity", sub=USER, query={"limit": "2"})
    assert activity["next_cursor"]
    rest = s.ok("GET /v1/activity", sub=USER, query={"limit": "100", "cursor": activity["next_cursor"]})
    actions = [e["action"] for e in activity["entries"] + rest["entries"]]
    assert {"member_added", "purchase_created", "purchase_refunded", "checked_in", "coupon_redeemed",
            "settings_changed", "alert_created", "alert_deleted", "member_limit_changed"} == set(actions)
    s.refused(400, "GET /v1/activity", sub=USER, query={"cursor": "garbage"})

    # Every route was called, with its success and (but for the document itself) a refusal.
    assert {key for key, statuses in s.seen.items() if BY_KEY[key].status in statuses} == set(BY_KEY)
    refused = {key for key, statuses in s.seen.items() if any(status >= 400 for status in statuses)}
    assert refused == set(BY_KEY) - {"GET /v1/openapi.json"}
