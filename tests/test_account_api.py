"""Account API against DynamoDB Local: purchases, refunds, check-in, coupons, settings, operator grants,
Idempotency-Key, and every bad path with nothing written. Numbers are derived by hand in comments."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from billing.api.signatures import sign
from billing.domain import settle
from billing.domain.posting import Book
from billing.store.keys import account_pk, request_event_id
from billing.store.ledger import Change, Ledger
from tests.helpers import C, Outbox, Platform, RecordingMailer, RecordingPublisher, assert_conserved, load_handler

SECRET = "test-webhook-secret-0123"  # the webhook's secret in these tests (wired in, not configured)
OPERATOR = "arn:aws:iam::123456789012:user/operator"


class FixedClock:
    def __init__(self, now: str) -> None:
        self.now = parse(now)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class Context:
    function_name: str = "test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id: str = "req-1"


def http_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    sub: str | None = "acct-1",
    iam: bool = False,
    headers: dict[str, str] | None = None,
    raw: str | None = None,
) -> dict[str, Any]:
    authorizer: dict[str, Any] = {}
    if sub is not None:
        authorizer["jwt"] = {"claims": {"sub": sub}, "scopes": []}
    if iam:
        authorizer = {"iam": {"userArn": OPERATOR, "callerId": "AIDA"}}
    text = raw if raw is not None else (json.dumps(body) if body is not None else None)
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.example.com",
            "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1",
                     "userAgent": "tests"},
            "requestId": "r1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": 0,
            "authorizer": authorizer,
        },
        "body": text,
        "isBase64Encoded": False,
    }


class Api:
    """Calls the account API and payment webhook handlers like API Gateway would."""

    def __init__(self, ledger: Ledger, clock: FixedClock) -> None:
        self.ledger = ledger
        self.clock = clock
        self.publisher = RecordingPublisher()
        self.outbox = Outbox(ledger, self.publisher, RecordingMailer())
        self.accounts = load_handler("account_api", ledger=ledger, clock=clock)
        self.webhook = load_handler("payment_webhook", ledger=ledger, clock=clock, webhook_secrets=[SECRET])

    def _call(self, module: ModuleType, event: dict[str, Any]) -> tuple[int, Any]:
        response = module.lambda_handler(event, Context())
        body = json.loads(response["body"]) if response.get("body") else None
        self.outbox.drain()  # what the request committed is delivered, as the stream would
        return response["statusCode"], body

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return self._call(self.accounts, http_event(method, path, body, **kw))

    def pay(self, purchase_id: str, cents: int, payment_id: str = "pay-1", kind: str = "payment.succeeded",
            t: int | None = None, secret: str = SECRET, currency: str = "USD") -> tuple[int, Any]:
        body = json.dumps({"id": payment_id, "type": kind, "purchase_id": purchase_id,
                           "amount": {"currency": currency, "cents": cents}, "created_at": "2026-01-10T10:00:00Z"})
        stamp = int(self.clock().timestamp()) if t is None else t
        return self.webhook_raw(body, sign(body, secret, stamp))

    def webhook_raw(self, raw: str, signature: str | None) -> tuple[int, Any]:
        headers = {"billing-signature": signature} if signature is not None else {}
        return self._call(self.webhook, http_event("POST", "/v1/webhooks/payments", raw=raw, sub=None,
                                                   headers=headers))

    def buy(self, credits: int, sub: str = "acct-1") -> dict[str, Any]:
        status, body = self.call("POST", "/v1/purchases", {"credits": credits}, sub=sub)
        assert status == 201, body
        return body


@pytest.fixture()
def clock() -> FixedClock:
    return FixedClock("2026-01-10T10:00:00Z")


@pytest.fixture()
def api(ledger: Ledger, clock: FixedClock) -> Api:
    for account in ("acct-1", "acct-2"):
        Platform(ledger, account).send("Account Created", "2026-01-01T00:00:00Z", email=f"{account}@example.com",
                                       plan="free")
    return Api(ledger, clock)


def snapshot(ledger: Ledger) -> list[tuple[str, str, Any]]:
    """Every item of the table (to show that a refused request wrote nothing)."""
    items = ledger.models.connection.scan(ledger.models.table_name)["Items"]
    return sorted((i["pk"]["S"], i["sk"]["S"], json.dumps(i, sort_keys=True)) for i in items)


def spend(ledger: Ledger, account_id: str, credits_micro: int, at: str, event_id: str = "ai-1") -> None:
    """Spend exactly ``credits_micro`` with gpt-5-nano input tokens (0.000004 credits = 4 µcr each)."""
    assert credits_micro % 4 == 0
    moment = parse(at)

    def action(state: Any) -> Change:
        book = Book(settle.require(state, account_id), ledger.catalog, event_id)
        settle.ai_used(book, moment, "chat", "gpt-5-nano", credits_micro // 4, 0, None)
        return Change(book)

    ledger.apply(account_id, event_id, action)


# ---------------------------------------------------------------------- purchases


def test_purchase_is_priced_and_listed(api: Api) -> None:
    status, body = api.call("POST", "/v1/purchases", {"credits": 100})
    assert status == 201
    # 100 credits x $0.02 = $2.00 = 200 cents
    assert body["price"] == {"currency": "USD", "amount_minor": 200, "cents": 200}
    assert body["credits"] == "100.000000"
    assert body["status"] == "pending"
    assert body["created_at"] == "2026-01-10T10:00:00Z"
    assert body["purchase_id"]
    status, listed = api.call("GET", "/v1/purchases")
    assert status == 200
    assert listed["purchases"] == [
        {**{k: body[k] for k in ("purchase_id", "credits", "price", "status", "created_at")},
         "paid_at": None, "refund": None, "refunded_credits": None, "refunded_at": None, "auto": False}
    ]
    # the other account sees nothing of it
    assert api.call("GET", "/v1/purchases", sub="acct-2") == (200, {"purchases": []})


def test_purchase_limits(api: Api) -> None:
    # 50 credits = 100 cents; 1,000,000 credits = 2,000,000 cents
    assert api.buy(50)["price"]["cents"] == 100
    assert api.buy(1_000_000)["price"]["cents"] == 2_000_000


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("{not json", 400),
        ("[1, 2]", 400),
        ('"credits"', 400),
        ("{}", 400),
        ('{"credits": "100"}', 400),
        ('{"credits": 100.0}', 400),
        ('{"credits": 100.5}', 400),
        ('{"credits": true}', 400),
        ('{"credits": null}', 400),
        ('{"credits": 49}', 422),
        ('{"credits": 0}', 422),
        ('{"credits": -100}', 422),
        ('{"credits": 1000001}', 422),
    ],
)
def test_bad_purchases_write_nothing(api: Api, ledger: Ledger, raw: str, status: int) -> None:
    before = snapshot(ledger)
    got, body = api._call(api.accounts, http_event("POST", "/v1/purchases", raw=raw))
    assert got == status, body
    assert set(body["error"]) == {"code", "message"}
    assert snapshot(ledger) == before


def test_purchase_needs_an_account(api: Api, ledger: Ledger) -> None:
    before = snapshot(ledger)
    assert api.call("POST", "/v1/purchases", {"credits": 100}, sub=None)[0] == 401
    assert api.call("POST", "/v1/purchases", {"credits": 100}, sub="acct-unknown")[0] == 404
    assert snapshot(ledger) == before


def test_purchase_idempotency_key(api: Api) -> None:
    key = {"Idempotency-Key": "k-1"}
    first = api.call("POST", "/v1/purchases", {"credits": 100}, headers=key)
    again = api.call("POST", "/v1/purchases", {"credits": 100}, headers=key)
    assert first[0] == again[0] == 201
    assert first[1] == again[1]
    other = api.call("POST", "/v1/purchases", {"credits": 200}, headers=key)
    assert other[0] == 422
    assert len(api.call("GET", "/v1/purchases")[1]["purchases"]) == 1
    # the key is the caller's: another account using it gets its own purchase
    assert api.call("POST", "/v1/purchases", {"credits": 100}, sub="acct-2", headers=key)[1] != first[1]


def test_one_purchase_with_its_receipt(api: Api, ledger: Ledger) -> None:
    purchase = api.buy(100)
    path = f"/v1/purchases/{purchase['purchase_id']}"
    status, body = api.call("GET", path)
    assert status == 200, body
    listed = api.call("GET", "/v1/purchases")[1]["purchases"][0]
    assert body == {**listed, "receipt": None}  # as in the list; no receipt while it is not paid
    assert body["auto"] is False
    assert api.pay(purchase["purchase_id"], 200, payment_id="pay-42")[0] == 200
    status, body = api.call("GET", path)
    receipt = body["receipt"]
    digest = hashlib.sha256(purchase["purchase_id"].encode()).hexdigest()[:10].upper()
    assert receipt == {"number": f"R-20260110-{digest}", "credits": "100.000000",
                       "price": {"currency": "USD", "amount_minor": 200, "cents": 200},
                       "paid_at": "2026-01-10T10:00:00Z", "payment_reference": "pay-42"}
    api.clock.advance(days=1)
    assert api.call("GET", path)[1]["receipt"] == receipt  # the same number whenever it is asked for
    before = snapshot(ledger)
    assert api.call("GET", path, sub="acct-2")[0] == 404  # another account's purchase
    assert api.call("GET", "/v1/purchases/pur_nope")[0] == 404
    assert api.call("GET", "/v1/purchases/a%20b")[0] == 404
    assert api.call("GET", path, sub=None)[0] == 401
    assert snapshot(ledger) == before


def test_validation_messages_name_the_field(api: Api) -> None:
    cases = [
        ('{"credits": "100"}', "credits: Expected `int`, got `str`"),
        ("{}", "credits: required"),
        ("[1]", "the body must be a JSON object"),
    ]
    for raw, message in cases:
        status, body = api._call(api.accounts, http_event("POST", "/v1/purchases", raw=raw))
        assert (status, body["error"]) == (400, {"code": "invalid_input", "message": message})
    status, body = api.call("POST", "/v1/admin/grants", {"account_id": "", "credits": 1, "kind": "event",
                                                         "expires_at": "2026-02-10T00:00:00Z", "reason": "x"}, iam=True)
    assert (status, body["error"]["message"]) == (400, "account_id: Expected `str` of length >= 1")
    raw = json.dumps({"id": "p", "type": "payment.succeeded", "purchase_id": "x", "created_at": "2026-01-10T10:00:00Z",
                      "amount": {"currency": "USD", "cents": "1"}})
    status, body = api.webhook_raw(raw, sign(raw, SECRET, int(api.clock().timestamp())))
    assert (status, body["error"]["message"]) == (400, "amount.cents: Expected `int`, got `str`")
    event = http_event("GET", "/v1/purchases")
    event["rawQueryString"], event["queryStringParameters"] = "b=1&a=2", {"b": "1", "a": "2"}
    status, body = api._call(api.accounts, event)
    assert (status, body["error"]["message"]) == (400, "a, b: unknown query parameters")


# ---------------------------------------------------------------------- refunds


def paid_purchase(api: Api, credits: int = 100) -> dict[str, Any]:
    purchase = api.buy(credits)
    status, body = api.pay(purchase["purchase_id"], purchase["price"]["cents"], payment_id=f"pay-{credits}")
    assert status == 200, body
    return purchase


def test_refund_of_unused_credits(api: Api, ledger: Ledger) -> None:
    purchase = paid_purchase(api)  # 100 credits for 200 cents, paid 2026-01-10T10:00:00Z
    # the 50 monthly credits are spent first, then 62.5 purchased ones: 37.5 stay unused
    spend(ledger, "acct-1", 112_500_000, "2026-01-11T10:00:00Z")
    api.clock.advance(days=2)
    status, body = api.call("POST", f"/v1/purchases/{purchase['purchase_id']}/refund")
    assert status == 200, body
    # ceil(200 / 100 x 37.5) = 75 cents
    assert body == {"purchase_id": purchase["purchase_id"],
                    "refund": {"currency": "USD", "amount_minor": 75, "cents": 75}, "credits": "37.500000"}
    assert api.publisher.of_type("Refund Issued") == [{"account_id": "acct-1", **body}]
    state = ledger.load("acct-1")
    lot = next(lot for lot in state.lots if lot.kind == "purchased")
    assert (lot.remaining, lot.refunded, lot.closed) == (0, 37_500_000, True)
    assert state.totals.refunded == 37_500_000
    assert state.available() == 0
    assert_conserved(state)
    listed = api.call("GET", "/v1/purchases")[1]["purchases"][0]
    assert listed["status"] == "refunded"
    assert listed["refund"] == {"currency": "USD", "amount_minor": 75, "cents": 75}
    assert listed["paid_at"] == "2026-01-10T10:00:00Z"
    entries = [e for e in Platform(ledger, "acct-1").entries() if e.type == "refund"]
    assert [(e.amount, e.lot_id) for e in entries] == [(37_500_000, lot.lot_id)]
    # at most once: 409, nothing changes
    before = snapshot(ledger)
    assert api.call("POST", f"/v1/purchases/{purchase['purchase_id']}/refund")[0] == 409
    assert snapshot(ledger) == before


def test_refund_rounds_up_to_the_cent(api: Api, ledger: Ledger) -> None:
    purchase = paid_purchase(api, 300)  # 600 cents
    spend(ledger, "acct-1", 50 * C + 100 * C + 4, "2026-01-11T10:00:00Z")  # 199.999996 unused
    status, body = api.call("POST", f"/v1/purchases/{purchase['purchase_id']}/refund")
    # 600 / 300 x 199.999996 = 399.999992 -> 400 cents
    assert status == 200
    assert body["refund"]["cents"] == 400
    assert body["credits"] == "199.999996"


def test_refund_window(api: Api, ledger: Ledger) -> None:
    purchase = paid_purchase(api)
    api.clock.advance(days=7, seconds=1)
    before = snapshot(ledger)
    status, body = api.call("POST", f"/v1/purchases/{purchase['purchase_id']}/refund")
    assert status == 422, body
    assert snapshot(ledger) == before
    api.clock.advance(seconds=-1)  # exactly 7 days after the payment: still allowed
    status, body = api.call("POST", f"/v1/purchases/{purchase['purchase_id']}/refund")
    assert status == 200
    assert body["refund"]["cents"] == 200  # nothing spent: 100 credits unused


def test_refund_refusals_write_nothing(api: Api, ledger: Ledger) -> None:
    pending = api.buy(100)
    paid = paid_purchase(api, 60)
    before = snapshot(ledger)
    assert api.call("POST", f"/v1/purchases/{pending['purchase_id']}/refund")[0] == 422  # not paid
    assert api.call("POST", f"/v1/purchases/{paid['purchase_id']}/refund", sub="acct-2")[0] == 404
    assert api.call("POST", "/v1/purchases/pur_nope/refund")[0] == 404
    assert api.call("POST", f"/v1/purchases/{paid['purchase_id']}/refund", sub=None)[0] == 401
    assert snapshot(ledger) == before


def test_refund_with_nothing_unused_is_refused(api: Api, ledger: Ledger) -> None:
    purchase = paid_purchase(api, 50)
    spend(ledger, "acct-1", 100 * C, "2026-01-11T10:00:00Z")
    before = snapshot(ledger)
    assert api.call("POST", f"/v1/purchases/{purchase['purchase_id']}/refund")[0] == 422
    assert snapshot(ledger) == before


def test_promotional_credits_expire_on_refund_and_block_it_when_spent(api: Api, ledger: Ledger) -> None:
    purchase = paid_purchase(api)
    grant = {"account_id": "acct-1", "credits": 30, "kind": "promotional", "expires_at": "2026-03-01T00:00:00Z",
             "reason": "first_purchase_bonus", "purchase_id": purchase["purchase_id"]}
    status, body = api.call("POST", "/v1/admin/grants", grant, iam=True)
    assert status == 201, body
    # available: 50 monthly + 100 purchased + 30 promotional = 180; spend 160 -> 20 left < 30 promo
    spend(ledger, "acct-1", 160 * C, "2026-01-11T10:00:00Z")
    before = snapshot(ledger)
    assert api.call("POST", f"/v1/purchases/{purchase['purchase_id']}/refund")[0] == 422
    assert snapshot(ledger) == before


def test_promotional_lot_expires_with_the_refund(api: Api, ledger: Ledger) -> None:
    purchase = paid_purchase(api)
    grant = {"account_id": "acct-1", "credits": "30", "kind": "promotional", "expires_at": "2026-03-01T00:00:00Z",
             "reason": "first_purchase_bonus", "purchase_id": purchase["purchase_id"]}
    assert api.call("POST", "/v1/admin/grants", grant, iam=True)[0] == 201
    # 20 credits spent: from the monthly lot (expires first)
    spend(ledger, "acct-1", 20 * C, "2026-01-11T10:00:00Z")
    status, body = api.call("POST", f"/v1/purchases/{purchase['purchase_id']}/refund")
    assert status == 200, body
    assert body["refund"]["cents"] == 200 and body["credits"] == "100.000000"
    state = ledger.load("acct-1")
    promo = next(lot for lot in state.lots if lot.kind == "promotional")
    assert (promo.remaining, promo.expired, promo.closed) == (0, 30 * C, True)
    assert state.available() == 30 * C  # the monthly lot's rest
    assert_conserved(state)
    expiries = [e for e in Platform(ledger, "acct-1").entries() if e.type == "expiry"]
    assert [(e.amount, e.reason) for e in expiries] == [(30 * C, "promotional_credits_expired_on_refund")]


def test_refund_idempotency_key_replays(api: Api, ledger: Ledger) -> None:
    purchase = paid_purchase(api)
    key = {"Idempotency-Key": "refund-1"}
    path = f"/v1/purchases/{purchase['purchase_id']}/refund"
    first = api.call("POST", path, headers=key)
    assert first[0] == 200
    assert api.call("POST", path, headers=key) == first  # replayed, not a 409
    assert api.call("POST", path, {"other": 1}, headers=key)[0] == 422
    assert api.call("POST", path)[0] == 409
    assert ledger.load("acct-1").totals.refunded == 100 * C


# ---------------------------------------------------------------------- check-in


def test_check_in_once_per_utc_day_valid_one_month(api: Api, ledger: Ledger) -> None:
    api.clock.now = parse("2026-01-31T23:59:59Z")
    status, body = api.call("POST", "/v1/check-in")
    assert status == 201, body
    lot = body["lot"]
    assert (lot["kind"], lot["granted"], lot["remaining"]) == ("event", "5.000000", "5.000000")
    # one calendar month, clamped: Jan 31 -> Feb 28
    assert (lot["granted_at"], lot["expires_at"]) == ("2026-01-31T23:59:59Z", "2026-02-28T23:59:59Z")
    before = snapshot(ledger)
    assert api.call("POST", "/v1/check-in")[0] == 409
    assert snapshot(ledger) == before
    api.clock.advance(seconds=1)  # a new UTC day (and month)
    status, body = api.call("POST", "/v1/check-in")
    assert status == 201
    assert body["lot"]["expires_at"] == "2026-03-01T00:00:00Z"
    assert_conserved(ledger.load("acct-1"))


def test_check_in_idempotency_key(api: Api) -> None:
    key = {"Idempotency-Key": "ci-1"}
    first = api.call("POST", "/v1/check-in", headers=key)
    assert first[0] == 201
    assert api.call("POST", "/v1/check-in", headers=key) == first
    assert api.call("POST", "/v1/check-in", headers={"Idempotency-Key": "x" * 256})[0] == 400


# ---------------------------------------------------------------------- coupons


COUPON = {"code": "WELCOME10", "credits": 10, "valid_days": 14, "expires_at": "2026-02-01T00:00:00Z",
          "max_redemptions": 1}


def test_coupon_create_and_redeem(api: Api, ledger: Ledger) -> None:
    status, body = api.call("POST", "/v1/admin/coupons", COUPON, iam=True)
    assert status == 201, body
    assert body["credits"] == "10.000000"
    status, body = api.call("POST", "/v1/coupons/redeem", {"code": "welcome10"})
    assert status == 201, body
    # valid 14 days from redemption (2026-01-24T10:00:00Z), before the coupon's own expiry
    assert body["lot"]["kind"] == "coupon"
    assert body["lot"]["granted"] == "10.000000"
    assert body["lot"]["expires_at"] == "2026-01-24T10:00:00Z"
    before = snapshot(ledger)
    assert api.call("POST", "/v1/coupons/redeem", {"code": "WELCOME10"})[0] == 409  # this account again
    assert api.call("POST", "/v1/coupons/redeem", {"code": "WELCOME10"}, sub="acct-2")[0] == 422  # used up
    assert api.call("POST", "/v1/coupons/redeem", {"code": "NOPE"})[0] == 404
    assert api.call("POST", "/v1/coupons/redeem", {"code": 5})[0] == 400
    assert api.call("POST", "/v1/coupons/redeem", {})[0] == 400
    assert snapshot(ledger) == before
    stored = json.loads(ledger.models.Item.get("COUPON#WELCOME10", "COUPON").body)
    assert stored["redemptions"] == 1


def test_coupon_lot_never_outlives_the_coupon(api: Api, ledger: Ledger) -> None:
    coupon = {**COUPON, "code": "LATE", "max_redemptions": 5, "expires_at": "2026-01-15T00:00:00Z"}
    assert api.call("POST", "/v1/admin/coupons", coupon, iam=True)[0] == 201
    body = api.call("POST", "/v1/coupons/redeem", {"code": "LATE"})[1]
    assert body["lot"]["expires_at"] == "2026-01-15T00:00:00Z"
    api.clock.now = parse("2026-01-15T00:00:00Z")
    before = snapshot(ledger)
    assert api.call("POST", "/v1/coupons/redeem", {"code": "LATE"}, sub="acct-2")[0] == 422  # expired
    assert snapshot(ledger) == before


def test_coupon_admin_refusals(api: Api, ledger: Ledger) -> None:
    before = snapshot(ledger)
    assert api.call("POST", "/v1/admin/coupons", COUPON)[0] == 403  # a user token is not IAM
    assert api.call("POST", "/v1/admin/coupons", {**COUPON, "credits": 1.5}, iam=True)[0] == 400
    assert api.call("POST", "/v1/admin/coupons", {**COUPON, "valid_days": "14"}, iam=True)[0] == 400
    assert api.call("POST", "/v1/admin/coupons", {**COUPON, "code": "bad code!"}, iam=True)[0] == 400
    assert api.call("POST", "/v1/admin/coupons", {**COUPON, "expires_at": "tomorrow"}, iam=True)[0] == 400
    assert api.call("POST", "/v1/admin/coupons", {**COUPON, "expires_at": "2026-01-01T00:00:00Z"},
                    iam=True)[0] == 422
    assert api.call("POST", "/v1/admin/coupons", {**COUPON, "max_redemptions": 0}, iam=True)[0] == 422
    assert api.call("POST", "/v1/admin/coupons", {**COUPON, "credits": 0}, iam=True)[0] == 422
    assert snapshot(ledger) == before
    key = {"Idempotency-Key": "c-1"}
    first = api.call("POST", "/v1/admin/coupons", COUPON, iam=True, headers=key)
    assert first[0] == 201
    assert api.call("POST", "/v1/admin/coupons", COUPON, iam=True, headers=key) == first
    assert api.call("POST", "/v1/admin/coupons", {**COUPON, "credits": 11}, iam=True, headers=key)[0] == 422
    assert api.call("POST", "/v1/admin/coupons", COUPON, iam=True)[0] == 409  # exists


# ---------------------------------------------------------------------- settings and grants


def test_settings(api: Api, ledger: Ledger) -> None:
    status, body = api.call("PUT", "/v1/settings", {"credit_mail": False})
    assert (status, body["credit_mail"], body["auto_top_up"], body["spend_cap"]) == (200, False, None, None)
    assert ledger.load("acct-1").credit_mail is False
    before = snapshot(ledger)
    for bad in ({"credit_mail": "false"}, {"credit_mail": 0}, {}, None):
        assert api.call("PUT", "/v1/settings", bad)[0] == 400
    assert snapshot(ledger) == before
    assert api.call("PUT", "/v1/settings", {"credit_mail": True})[1]["credit_mail"] is True
    assert ledger.load("acct-1").credit_mail is True


def test_get_settings(api: Api, ledger: Ledger) -> None:
    status, body = api.call("GET", "/v1/settings")
    assert (status, body) == (200, {"credit_mail": True, "auto_top_up": None, "spend_cap": None,
                                    "spend_cap_reached": False, "locale": None, "time_zone": None,
                                    "currency": "USD"})
    api.call("PUT", "/v1/settings", {"credit_mail": False})
    assert api.call("GET", "/v1/settings")[1]["credit_mail"] is False
    assert api.call("GET", "/v1/settings", sub="acct-unknown")[0] == 404
    assert api.call("GET", "/v1/settings", sub=None)[0] == 401


def test_locale_and_time_zone_settings(api: Api, ledger: Ledger) -> None:
    """The page's and the mails' language and time zone: set, read back, cleared with null; a language
    the product does not speak or a time zone the tz database does not know is a 400 that writes nothing."""
    status, body = api.call("PUT", "/v1/settings", {"locale": "ko", "time_zone": "Asia/Seoul"})
    assert (status, body["locale"], body["time_zone"], body["credit_mail"]) == (200, "ko", "Asia/Seoul", True)
    assert api.call("GET", "/v1/settings")[1] == body
    state = ledger.load("acct-1")
    assert (state.locale, state.time_zone) == ("ko", "Asia/Seoul")
    before = snapshot(ledger)
    for bad in ({"locale": "fr"}, {"locale": "KO"}, {"locale": 1}, {"time_zone": "Mars/Olympus"},
                {"time_zone": "../etc/passwd"}, {"time_zone": "/usr/share/zoneinfo/UTC"}, {"time_zone": ""},
                {"time_zone": 9}, {"time_zone": "Asia/Seoul" * 10}, {"locale": "en", "time_zone": "Nowhere/Town"}):
        status, error = api.call("PUT", "/v1/settings", bad)
        assert status == 400, (bad, error)
        assert ("locale" in error["error"]["message"]) or ("time_zone" in error["error"]["message"]), error
    assert snapshot(ledger) == before
    status, body = api.call("PUT", "/v1/settings", {"time_zone": "America/Argentina/Buenos_Aires"})
    assert (status, body["locale"], body["time_zone"]) == (200, "ko", "America/Argentina/Buenos_Aires")
    status, body = api.call("PUT", "/v1/settings", {"locale": None, "time_zone": None})
    assert (status, body["locale"], body["time_zone"]) == (200, None, None)


def test_operator_grant(api: Api, ledger: Ledger) -> None:
    grant = {"account_id": "acct-2", "credits": "12.5", "kind": "event", "expires_at": "2026-02-10T00:00:00Z",
             "reason": "best_feedback"}
    status, body = api.call("POST", "/v1/admin/grants", grant, iam=True)
    assert status == 201, body
    assert body["lot"]["granted"] == "12.500000"
    assert body["lot"]["kind"] == "event"
    assert body["lot"]["expires_at"] == "2026-02-10T00:00:00Z"
    state = ledger.load("acct-2")
    assert state.available() == 50 * C + 12_500_000
    assert_conserved(state)


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"account_id": "acct-unknown"}, 404),
        ({"kind": "purchased"}, 422),
        ({"kind": "monthly"}, 422),
        ({"kind": "bogus"}, 400),
        ({"credits": 1.5}, 400),
        ({"credits": True}, 400),
        ({"credits": "0.0000001"}, 400),
        ({"credits": "abc"}, 400),
        ({"credits": 0}, 422),
        ({"credits": "-5"}, 422),
        ({"expires_at": "2026-01-01T00:00:00Z"}, 422),
        ({"expires_at": "2026-02-10T00:00:00"}, 400),
        ({"reason": ""}, 400),
        ({"purchase_id": "pur_x"}, 422),
    ],
)
def test_operator_grant_refusals(api: Api, ledger: Ledger, change: dict[str, Any], status: int) -> None:
    grant = {"account_id": "acct-1", "credits": 10, "kind": "event", "expires_at": "2026-02-10T00:00:00Z",
             "reason": "survey", **change}
    before = snapshot(ledger)
    got, body = api.call("POST", "/v1/admin/grants", grant, iam=True)
    assert got == status, body
    assert snapshot(ledger) == before


def test_operator_grant_needs_iam(api: Api, ledger: Ledger) -> None:
    grant = {"account_id": "acct-1", "credits": 10, "kind": "event", "expires_at": "2026-02-10T00:00:00Z",
             "reason": "survey"}
    before = snapshot(ledger)
    assert api.call("POST", "/v1/admin/grants", grant)[0] == 403
    assert snapshot(ledger) == before


def test_grant_repays_debt_and_ends_exhaustion(api: Api, ledger: Ledger) -> None:
    spend(ledger, "acct-1", 60 * C, "2026-01-11T10:00:00Z")  # 50 available: 10 of debt
    state = ledger.load("acct-1")
    assert (state.debt, state.exhausted) == (10 * C, True)
    grant = {"account_id": "acct-1", "credits": 15, "kind": "event", "expires_at": "2026-02-10T00:00:00Z",
             "reason": "goodwill"}
    status, body = api.call("POST", "/v1/admin/grants", grant, iam=True)
    assert status == 201
    assert body["lot"]["remaining"] == "5.000000"
    state = ledger.load("acct-1")
    assert (state.debt, state.exhausted) == (0, False)
    assert_conserved(state)


def test_unknown_route_is_404(api: Api) -> None:
    assert api.call("DELETE", "/v1/purchases")[0] in (404, 405)


def test_event_records_of_requests_are_in_the_account_partition(api: Api, ledger: Ledger) -> None:
    api.call("POST", "/v1/check-in", headers={"Idempotency-Key": "abc"})
    event_id = request_event_id("acct-1", "abc")
    # sha256("6:acct-1|3:abc"): the parts are length-prefixed, so no other (account, key) pair shares it
    assert event_id == "idem:" + hashlib.sha256(b"6:acct-1|3:abc").hexdigest()
    assert event_id != request_event_id("acct-1:a", "bc") != request_event_id("acct-1", "a:bc")
    record = ledger.models.EventRecord.get(account_pk("acct-1"), f"EVENT#{event_id}")
    assert record.pk == account_pk("acct-1")
    assert json.loads(record.result)["response"]["record"]["kind"] == "event"  # the lot, rendered by the API


def test_a_repeat_replays_the_first_response_rendered_from_the_kept_record(api: Api, ledger: Ledger) -> None:
    """The services keep the record a request answered with (a lot, a purchase, a coupon) and the API
    renders it: a repeat gets the very first response, even when the lot has changed since; a record
    an earlier version stored already rendered is replayed as it was."""
    key = {"Idempotency-Key": "day-1"}
    first = api.call("POST", "/v1/check-in", headers=key)
    assert first[0] == 201 and first[1]["lot"]["remaining"] == "5.000000"
    spend(ledger, "acct-1", 52 * C, "2026-01-10T10:30:00Z")  # 50 monthly, then 2 of the check-in's 5
    assert api.call("POST", "/v1/check-in", headers=key) == first
    bought = api.call("POST", "/v1/purchases", {"credits": 60}, headers={"Idempotency-Key": "buy-1"})
    assert bought[0] == 201 and set(bought[1]) == {"purchase_id", "credits", "price", "status", "created_at"}
    assert api.pay(bought[1]["purchase_id"], 120, payment_id="pay-60")[0] == 200
    assert api.call("POST", "/v1/purchases", {"credits": 60}, headers={"Idempotency-Key": "buy-1"}) == bought
    # A record of the earlier version: the rendered response itself.
    sk = f"EVENT#{request_event_id('acct-1', 'day-1')}"
    record = ledger.models.EventRecord.get(account_pk("acct-1"), sk)
    stored = json.loads(record.result)
    record.result = json.dumps({"fingerprint": stored["fingerprint"], "response": first[1]})
    record.save()
    assert api.call("POST", "/v1/check-in", headers=key) == first


def test_odd_purchase_ids_are_404(api: Api, ledger: Ledger) -> None:
    before = snapshot(ledger)
    for purchase_id in ("x" * 3000, "a%20b", "ü"):
        assert api.call("POST", f"/v1/purchases/{purchase_id}/refund")[0] == 404
    assert snapshot(ledger) == before


def run_together(calls: list[Any]) -> list[tuple[int, Any]]:
    import threading

    results: list[tuple[int, Any]] = []
    threads = [threading.Thread(target=lambda c=c: results.append(c())) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_check_ins_grant_once(api: Api, ledger: Ledger) -> None:
    results = run_together([lambda: api.call("POST", "/v1/check-in")] * 5)
    assert sorted(r[0] for r in results) == [201, 409, 409, 409, 409]
    assert len([lot for lot in ledger.load("acct-1").lots if lot.kind == "event"]) == 1


def test_last_coupon_redemption_goes_to_one_account(api: Api, ledger: Ledger) -> None:
    assert api.call("POST", "/v1/admin/coupons", {**COUPON, "code": "ONE"}, iam=True)[0] == 201
    results = run_together([lambda s=s: api.call("POST", "/v1/coupons/redeem", {"code": "ONE"}, sub=s)
                            for s in ("acct-1", "acct-2")])
    assert sorted(r[0] for r in results) == [201, 422]
    assert json.loads(ledger.models.Item.get("COUPON#ONE", "COUPON").body)["redemptions"] == 1
