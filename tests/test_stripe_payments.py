"""Payments through Stripe, against DynamoDB Local and the Stripe stand-in (localstripe), through the
handlers: a PaymentIntent per purchase on the account's customer, the card payment confirmed by the
stand-in's signed webhook, saved cards charged off-session by the outbox, refunds made at Stripe after
the commit, and every Stripe event applied exactly once whatever the order and the repeats.

localstripe has no disputes and sends no ``charge.refunded``: those events are built here in the shape
Stripe documents (Dispute and Charge objects) and signed with ``Stripe-Signature`` the way the library
verifies. Times: the tests that relay a webhook the stand-in sent take its signed ``t`` as the handler's
clock and place the account relative to the stand-in's own clock; the others use a fixed clock.
"""

from __future__ import annotations

import json
import queue
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from billing.api.signatures import sign_stripe
from billing.config import get_config
from billing.domain.errors import ServiceBusy
from billing.payments import StripePayments
from billing.secrets import parse_secret
from billing.services.outbox import PaymentSide
from billing.services.reconcile import reconcile
from billing.store.ledger import Ledger
from localsam.dynamodb_local import free_port
from localsam.stripe_local import SECRET_KEY, LocalStripe
from tests.helpers import C, Outbox, Platform, RecordingMailer, assert_conserved, load_handler
from tests.test_account_api import Api, Context, FixedClock, http_event, snapshot

WHSEC = "whsec_test_current_0123456789"
OLD_WHSEC = "whsec_test_previous_0123456789"  # still valid during a rotation
CARD_OK, CARD_DECLINED, CARD_3DS = "4242424242424242", "4000000000000341", "4000002500003155"
START = "2026-01-10T10:00:00Z"


class StripeApi(Api):
    """The account API, the webhook and the outbox, with Stripe (the stand-in) as the payment provider."""

    def __init__(self, ledger: Ledger, clock: FixedClock, provider: StripePayments) -> None:
        super().__init__(ledger, clock)
        self.provider = provider
        self.outbox = Outbox(ledger, self.publisher, RecordingMailer(), payments=PaymentSide(provider, clock))
        self.accounts = load_handler("account_api", ledger=ledger, clock=clock, payments=provider)
        self.webhook = load_handler("payment_webhook", ledger=ledger, clock=clock,
                                    stripe_webhook_secrets=[WHSEC, OLD_WHSEC])

    @property
    def stripe(self) -> Any:
        return self.provider.client

    def event(self, event: dict[str, Any], secret: str = WHSEC, t: int | None = None) -> tuple[int, Any]:
        raw = json.dumps(event)
        stamp = int(self.clock().timestamp()) if t is None else t
        return self.stripe_raw(raw, sign_stripe(raw, secret, stamp))

    def stripe_raw(self, raw: str, signature: str | None) -> tuple[int, Any]:
        headers = {"stripe-signature": signature} if signature is not None else {}
        return self._call(self.webhook, http_event("POST", "/v1/webhooks/stripe", raw=raw, sub=None,
                                                   headers=headers))

    def drain(self, rounds: int = 10) -> None:
        """The outbox, as the stream delivers it, until no change asks for more."""
        for _ in range(rounds):
            before = len(self.outbox.seen)
            self.outbox.drain()
            if len(self.outbox.seen) == before:
                return

    def pay_with_card(self, intent_id: str, number: str = CARD_OK) -> Any:
        """What Stripe.js does in the browser: a card, then the PaymentIntent confirmed with it."""
        card = self.card(number)
        self.stripe.payment_intents.update(intent_id, params={"payment_method": card})
        return self.stripe.payment_intents.confirm(intent_id)

    def card(self, number: str) -> str:
        method = self.stripe.payment_methods.create(params={"type": "card", "card": {
            "number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
        return str(method.id)


def intent_event(kind: str, intent: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {"id": event_id or f"evt_{uuid.uuid4().hex[:14]}", "object": "event", "type": kind,
            "data": {"object": intent}}


def intent_of(purchase: dict[str, Any], account_id: str = "acct-1", **over: Any) -> dict[str, Any]:
    """A PaymentIntent as Stripe sends it in payment_intent.* events (the fields read)."""
    return {"id": purchase["payment"]["payment_intent_id"], "object": "payment_intent",
            "amount": purchase["price"]["amount_minor"], "currency": purchase["price"]["currency"].lower(),
            "created": 1768039200, "status": "succeeded",
            "metadata": {"purchase_id": purchase["purchase_id"], "account_id": account_id}, **over}


def charge_refunded(purchase: dict[str, Any], refunded: int, refund_id: str | None = None) -> dict[str, Any]:
    """Stripe's ``charge.refunded``: a Charge object with ``amount_refunded`` and its refunds."""
    intent = purchase["payment"]["payment_intent_id"]
    charge = {"id": f"ch_{intent[3:]}", "object": "charge", "amount": purchase["price"]["amount_minor"],
              "amount_refunded": refunded, "currency": purchase["price"]["currency"].lower(),
              "payment_intent": intent, "paid": True, "refunded": True,
              "refunds": {"object": "list", "data": [{"id": "re_1", "object": "refund", "amount": refunded,
                                                      "metadata": {"refund_id": refund_id} if refund_id else {}}]}}
    return intent_event("charge.refunded", charge)


def dispute(purchase: dict[str, Any], kind: str, status: str = "needs_response", dispute_id: str = "dp_1",
            amount: int | None = None) -> dict[str, Any]:
    """Stripe's ``charge.dispute.*``: a Dispute object (``charge``, ``payment_intent``, ``status``)."""
    intent = purchase["payment"]["payment_intent_id"]
    obj = {"id": dispute_id, "object": "dispute", "amount": purchase["price"]["amount_minor"] if amount is None
           else amount, "currency": purchase["price"]["currency"].lower(), "charge": f"ch_{intent[3:]}",
           "payment_intent": intent, "reason": "fraudulent", "status": status, "created": 1768039200}
    return intent_event(kind, obj)


@pytest.fixture()
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture()
def provider(local_stripe: LocalStripe) -> StripePayments:
    return StripePayments(SECRET_KEY, get_config().stripe_api_base)  # STRIPE_API_BASE: the stand-in


@pytest.fixture()
def api(ledger: Ledger, clock: FixedClock, provider: StripePayments) -> StripeApi:
    for account in ("acct-1", "acct-2"):
        Platform(ledger, account).send("Account Created", "2026-01-01T00:00:00Z", email=f"{account}@example.com",
                                       plan="free")
    return StripeApi(ledger, clock, provider)


class Deliveries:
    """Where the stand-in sends its webhooks (registered with it): what it sent, raw and signed."""

    def __init__(self) -> None:
        self.received: queue.Queue[tuple[str, str]] = queue.Queue()
        inbox = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                inbox.put((body, self.headers.get("Stripe-Signature") or ""))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, kind: str, intent_id: str, timeout: float = 20.0) -> tuple[str, str]:
        """The stand-in's delivery of ``kind`` for the PaymentIntent (others are set aside)."""
        deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        while datetime.now(UTC) < deadline:
            try:
                raw, signature = self.received.get(timeout=1)
            except queue.Empty:
                continue
            event = json.loads(raw)
            if event["type"] == kind and event["data"]["object"].get("id") == intent_id:
                return raw, signature
        raise AssertionError(f"the stand-in sent no {kind} for {intent_id}")


@pytest.fixture(scope="module")
def deliveries(local_stripe: LocalStripe) -> Iterator[Deliveries]:
    inbox = Deliveries()
    local_stripe.register_webhook(f"tests-{uuid.uuid4().hex[:8]}", inbox.url, WHSEC)
    yield inbox
    inbox.server.shutdown()


def intents_of(api: StripeApi, purchase_id: str) -> list[Any]:
    """Every PaymentIntent at the stand-in made for the purchase (all pages) on this test's customer
    (the stand-in lives for the session; auto purchase ids repeat across tests' tables)."""
    customer = api.ledger.load("acct-1").payment_customer_id
    listed = api.stripe.payment_intents.list(params={"limit": 100}).auto_paging_iter()
    return [i for i in listed if i.metadata.to_dict().get("purchase_id") == purchase_id and i.customer == customer]


def signed_at(signature: str) -> datetime:
    [stamp] = [part[2:] for part in signature.split(",") if part.startswith("t=")]
    return datetime.fromtimestamp(int(stamp), UTC)


def stand_in_now(provider: StripePayments) -> datetime:
    """The stand-in's clock (the ``created`` of an object it makes): what its signatures are dated by."""
    probe = provider.client.customers.create(params={"description": "clock probe"})
    return datetime.fromtimestamp(int(probe.created), UTC)


@pytest.fixture()
def live(ledger: Ledger, provider: StripePayments) -> StripeApi:
    """An account created an hour before the stand-in's present, and the API's clock at that present."""
    now = stand_in_now(provider)
    Platform(ledger, "acct-1").send("Account Created", (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                    email="acct-1@example.com", plan="free")
    return StripeApi(ledger, FixedClock(now.strftime("%Y-%m-%dT%H:%M:%SZ")), provider)


def relay(api: StripeApi, delivery: tuple[str, str]) -> tuple[int, Any]:
    """Hand the stand-in's signed delivery to the webhook handler, received a second after it was signed."""
    raw, signature = delivery
    api.clock.now = signed_at(signature) + timedelta(seconds=1)
    return api.stripe_raw(raw, signature)


def purchased(ledger: Ledger, account_id: str = "acct-1") -> list[tuple[int, int, bool]]:
    """(granted, remaining, closed) of the account's purchased lots."""
    return [(lot.granted, lot.remaining, lot.closed) for lot in ledger.load(account_id).lots if lot.kind == "purchased"]


def reconciled(ledger: Ledger) -> int:
    return reconcile(ledger.models, ledger.catalog, sleep=lambda _: None).differences


# ---------------------------------------------------------------------- a card payment, end to end


def test_a_purchase_is_paid_by_card_at_the_stand_in_and_confirmed_by_its_webhook(
        live: StripeApi, deliveries: Deliveries, ledger: Ledger) -> None:
    status, purchase = live.call("POST", "/v1/purchases", {"credits": 100})
    assert status == 201, purchase
    # 100 credits x $0.02 = $2.00: 200 cents
    assert purchase["price"] == {"currency": "USD", "amount_minor": 200, "cents": 200}
    payment = purchase["payment"]
    assert payment["provider"] == "stripe" and payment["client_secret"].startswith(payment["payment_intent_id"])
    intent = live.stripe.payment_intents.retrieve(payment["payment_intent_id"])
    customer = ledger.load("acct-1").payment_customer_id
    assert (intent.amount, intent.currency, intent.customer) == (200, "usd", customer)
    assert intent.metadata.to_dict() == {"purchase_id": purchase["purchase_id"], "account_id": "acct-1"}
    # the customer is created once: a second purchase is on the same one
    second = live.call("POST", "/v1/purchases", {"credits": 50})[1]
    assert live.stripe.payment_intents.retrieve(second["payment"]["payment_intent_id"]).customer == customer

    assert live.pay_with_card(payment["payment_intent_id"]).status == "succeeded"
    delivery = deliveries.wait_for("payment_intent.succeeded", payment["payment_intent_id"])
    status, body = relay(live, delivery)
    assert (status, body["handled"], body["duplicate"], body["status"]) == (200, True, False, "paid"), body
    assert purchased(ledger) == [(100 * C, 100 * C, False)]
    detail = live.call("GET", f"/v1/purchases/{purchase['purchase_id']}")[1]
    assert detail["receipt"]["payment_reference"] == payment["payment_intent_id"]
    assert detail["receipt"]["price"] == {"currency": "USD", "amount_minor": 200, "cents": 200}
    # Stripe delivers again: nothing more
    assert relay(live, delivery)[1]["duplicate"] is True
    assert purchased(ledger) == [(100 * C, 100 * C, False)]
    assert_conserved(ledger.load("acct-1"))
    assert reconciled(ledger) == 0


def test_the_same_event_delivered_five_times_at_once_adds_the_credits_once(api: StripeApi, ledger: Ledger) -> None:
    purchase = api.buy(100)
    event = intent_event("payment_intent.succeeded", intent_of(purchase), event_id="evt_same")
    results = deliver_five_at_once(api, event)
    assert [status for status, _ in results] == [200] * 5
    assert sum(1 for _, body in results if not body["duplicate"]) == 1
    assert purchased(ledger) == [(100 * C, 100 * C, False)]
    state = ledger.load("acct-1")
    assert state.available() == 150 * C  # 50 monthly + 100 purchased
    assert_conserved(state)


def test_a_failed_payment_then_a_success_is_paid_and_a_late_failure_changes_nothing(
        api: StripeApi, ledger: Ledger) -> None:
    purchase = api.buy(100)
    assert api.event(intent_event("payment_intent.payment_failed", intent_of(purchase)))[1]["status"] == "failed"
    assert api.event(intent_event("payment_intent.succeeded", intent_of(purchase)))[1]["status"] == "paid"
    late = api.event(intent_event("payment_intent.payment_failed", intent_of(purchase), event_id="evt_late"))
    assert (late[1]["status"], late[1]["duplicate"]) == ("paid", True)
    assert purchased(ledger) == [(100 * C, 100 * C, False)]


def test_other_event_types_are_acknowledged_and_ignored(api: StripeApi, ledger: Ledger) -> None:
    before = snapshot(ledger)
    status, body = api.event({"id": "evt_c", "type": "customer.created", "data": {"object": {"id": "cus_1"}}})
    assert (status, body["handled"]) == (200, False)
    assert snapshot(ledger) == before


# ---------------------------------------------------------------------- bad input


def test_unverifiable_requests_are_400_and_change_nothing(api: StripeApi, ledger: Ledger) -> None:
    purchase = api.buy(100)
    raw = json.dumps(intent_event("payment_intent.succeeded", intent_of(purchase)))
    now = int(api.clock().timestamp())
    before = snapshot(ledger)
    cases = {
        "missing": None,
        "malformed": "v1=abc",
        "forged (another secret)": sign_stripe(raw, "whsec_forged_0123456789", now),
        "tampered body": sign_stripe(raw.replace('"amount": 200', '"amount": 2'), WHSEC, now),
        "replayed after 301 s": sign_stripe(raw, WHSEC, now - 301),
        "dated 301 s ahead": sign_stripe(raw, WHSEC, now + 301),
        "re-signed with a later t": sign_stripe(raw, WHSEC, now - 400).replace(f"t={now - 400}", f"t={now}"),
    }
    for name, signature in cases.items():
        status, body = api.stripe_raw(raw, signature)
        assert (status, body["error"]["code"]) == (400, "bad_signature"), name
    assert snapshot(ledger) == before
    # the previous secret (a rotation) and the edge of the tolerance still verify
    assert api.stripe_raw(raw, sign_stripe(raw, OLD_WHSEC, now - 300))[0] == 200


def test_events_that_do_not_match_a_purchase_are_refused_and_change_nothing(api: StripeApi, ledger: Ledger) -> None:
    purchase = api.buy(100)
    before = snapshot(ledger)
    unknown = {**intent_of(purchase), "metadata": {"purchase_id": "pur_nope", "account_id": "acct-1"}}
    other_account = {**intent_of(purchase), "metadata": {"purchase_id": purchase["purchase_id"],
                                                         "account_id": "acct-2"}}
    cases = [
        (intent_event("payment_intent.succeeded", unknown), 404),
        (intent_event("payment_intent.succeeded", other_account), 404),
        (intent_event("payment_intent.succeeded", intent_of(purchase, amount=199)), 422),
        (intent_event("payment_intent.succeeded", intent_of(purchase, currency="eur")), 422),
        (intent_event("payment_intent.succeeded", intent_of(purchase, amount="200")), 400),
        (intent_event("payment_intent.succeeded", {"id": 5}), 400),
        (charge_refunded({**purchase, "payment": {"payment_intent_id": "pi_unknown"}}, 200), 404),
        ({"id": "evt_x", "type": "charge.refunded", "data": "nope"}, 400),
    ]
    for event, expected in cases:
        assert api.event(event)[0] == expected, event
    assert snapshot(ledger) == before


def test_stripe_unreachable_or_throttling_when_buying_is_a_503_and_nothing_is_written(
        ledger: Ledger, clock: FixedClock) -> None:
    Platform(ledger, "acct-1").send("Account Created", "2026-01-01T00:00:00Z", email="a@example.com", plan="free")
    throttling = Throttling()
    try:
        for base in (f"http://127.0.0.1:{free_port()}", throttling.url):  # nothing listening; 429s
            api = StripeApi(ledger, clock, StripePayments(SECRET_KEY, base))
            before = snapshot(ledger)
            response = api.accounts.lambda_handler(
                http_event("POST", "/v1/purchases", {"credits": 100}, headers={"idempotency-key": "k1"}), Context())
            assert response["statusCode"] == 503, response
            assert int(response["headers"]["Retry-After"]) > 0
            assert snapshot(ledger) == before
    finally:
        throttling.server.shutdown()
    assert throttling.requests >= 1  # it was asked (and retried by the library) before the 503


class Throttling:
    """Stripe answering 429 (rate limited) to everything."""

    def __init__(self) -> None:
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.requests += 1
                body = json.dumps({"error": {"type": "invalid_request_error", "code": "rate_limit",
                                             "message": "Too many requests"}}).encode()
                self.send_response(429)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


# ---------------------------------------------------------------------- refunds and disputes


def paid(api: StripeApi, credits: int = 100) -> dict[str, Any]:
    """A purchase paid by card at the stand-in and confirmed."""
    purchase = api.buy(credits)
    assert api.pay_with_card(purchase["payment"]["payment_intent_id"]).status == "succeeded"
    assert api.event(intent_event("payment_intent.succeeded", intent_of(purchase)))[0] == 200
    return purchase


def test_an_api_refund_takes_credits_back_at_commit_and_refunds_at_stripe_after_it(
        api: StripeApi, ledger: Ledger) -> None:
    purchase = paid(api)
    # 50 monthly credits are spent first: the 100 purchased are unused; refund 200 x 100/100 = 200 cents
    status, refund = api.call("POST", f"/v1/purchases/{purchase['purchase_id']}/refund")
    assert status == 200, refund
    assert refund["refund"] == {"currency": "USD", "amount_minor": 200, "cents": 200}
    assert purchased(ledger) == [(100 * C, 0, True)]
    intent = purchase["payment"]["payment_intent_id"]
    [made] = api.stripe.refunds.list(params={"payment_intent": intent}).data  # the outbox made it
    assert made.amount == 200 and made.metadata["refund_id"].startswith("rf_")
    api.outbox.seen.clear()  # the stream hands the record again: no second refund
    api.drain()
    assert len(api.stripe.refunds.list(params={"payment_intent": intent}).data) == 1
    # Stripe's charge.refunded for it is recognised as ours
    before = snapshot(ledger)
    status, body = api.event(charge_refunded(purchase, 200, made.metadata["refund_id"]))
    assert (status, body["duplicate"], body["status"]) == (200, True, "refunded")
    assert snapshot(ledger) == before
    assert reconciled(ledger) == 0


def test_a_dashboard_refund_takes_back_the_unused_credits(api: StripeApi, ledger: Ledger) -> None:
    purchase = paid(api)
    assert api.event(charge_refunded(purchase, 201))[0] == 422  # larger than the purchase
    status, body = api.event(charge_refunded(purchase, 150))
    assert (status, body["status"], body["duplicate"]) == (200, "refunded", False)
    assert purchased(ledger) == [(100 * C, 0, True)]
    listed = api.call("GET", "/v1/purchases")[1]["purchases"][0]
    assert listed["refund"] == {"currency": "USD", "amount_minor": 150, "cents": 150}
    assert [e.reason for e in Platform(ledger).entries() if e.type == "refund"] == ["refunded_in_stripe"]
    [issued] = api.publisher.of_type("Refund Issued")
    assert issued["credits"] == "100.000000"
    assert api.event(charge_refunded(purchase, 150))[1]["duplicate"] is True
    assert_conserved(ledger.load("acct-1"))
    assert reconciled(ledger) == 0


def test_a_refund_before_the_payment_event_pays_then_refunds_once(api: StripeApi, ledger: Ledger) -> None:
    purchase = api.buy(100)
    assert api.event(charge_refunded(purchase, 200))[1]["status"] == "refunded"
    assert api.event(intent_event("payment_intent.succeeded", intent_of(purchase)))[1]["duplicate"] is True
    assert purchased(ledger) == [(100 * C, 0, True)]  # granted once, taken back once
    assert_conserved(ledger.load("acct-1"))


def test_a_dispute_takes_back_the_unused_credits_and_a_won_dispute_returns_them(
        api: StripeApi, ledger: Ledger) -> None:
    purchase = paid(api)
    status, body = api.event(dispute(purchase, "charge.dispute.created"))
    assert (status, body["duplicate"]) == (200, False)
    state = ledger.load("acct-1")
    assert state.disputed == [purchase["purchase_id"]] and state.available() == 50 * C  # 150 - 100 taken back
    assert api.publisher.of_type("Payment Disputed") == [
        {"account_id": "acct-1", "purchase_id": purchase["purchase_id"], "credits": "100.000000"}]
    assert api.event(dispute(purchase, "charge.dispute.created"))[1]["duplicate"] is True
    status, body = api.event(dispute(purchase, "charge.dispute.closed", status="won"))
    assert (status, body["duplicate"]) == (200, False)
    state = ledger.load("acct-1")
    assert state.disputed == [] and state.available() == 150 * C  # the 100 are back, in a lot of the purchase
    assert api.event(dispute(purchase, "charge.dispute.closed", status="won"))[1]["duplicate"] is True
    reasons = [(e.type, e.reason) for e in Platform(ledger).entries() if e.reason in
               ("purchase_disputed", "dispute_won")]
    assert sorted(reasons) == [("grant", "dispute_won"), ("refund", "purchase_disputed")]
    assert_conserved(state)
    assert reconciled(ledger) == 0


def test_a_dispute_lost_before_its_opening_arrives_takes_the_credits_once(api: StripeApi, ledger: Ledger) -> None:
    purchase = paid(api)
    assert api.event(dispute(purchase, "charge.dispute.closed", status="lost"))[0] == 200
    assert api.event(dispute(purchase, "charge.dispute.created"))[1]["duplicate"] is True
    assert purchased(ledger) == [(100 * C, 0, True)]
    assert len(api.publisher.of_type("Payment Disputed")) == 1


def test_a_dispute_of_a_refunded_purchase_is_refused_and_changes_nothing(api: StripeApi, ledger: Ledger) -> None:
    purchase = paid(api)
    assert api.call("POST", f"/v1/purchases/{purchase['purchase_id']}/refund")[0] == 200
    before = snapshot(ledger)
    assert api.event(dispute(purchase, "charge.dispute.created"))[0] == 409
    assert api.event(dispute(purchase, "charge.dispute.created", amount=201))[0] == 422  # larger than it
    assert snapshot(ledger) == before


# ---------------------------------------------------------------------- saved cards and auto top-up


def save_card(api: StripeApi, number: str) -> str:
    """POST /v1/payment-methods, then what Stripe.js does: the SetupIntent confirmed with a card. A
    card that asks for authentication is saved after the cardholder passed it (the stand-in cannot
    authenticate a SetupIntent): attached and made the default directly."""
    status, setup = api.call("POST", "/v1/payment-methods")
    assert status == 201, setup
    assert setup["client_secret"].startswith(setup["setup_intent_id"])
    card = api.card(number)
    api.stripe.setup_intents.confirm(setup["setup_intent_id"], params={"payment_method": card})
    if number == CARD_3DS:
        customer = api.ledger.load("acct-1").payment_customer_id
        api.stripe.payment_methods.attach(card, params={"customer": customer})
        api.stripe.customers.update(customer, params={"invoice_settings": {"default_payment_method": card}})
    return card


def auto_top_up(api: StripeApi, below: str = "100", per_month: int = 5) -> None:
    settings = {"auto_top_up": {"enabled": True, "below": below, "credits": 100, "max_per_month": per_month}}
    assert api.call("PUT", "/v1/settings", settings)[0] == 200


def test_auto_top_up_is_charged_off_session_and_confirmed_by_the_webhook(
        live: StripeApi, deliveries: Deliveries, ledger: Ledger) -> None:
    card = save_card(live, CARD_OK)
    auto_top_up(live)  # 50 remaining < 100: an auto purchase at once, charged by the outbox
    live.drain()
    [requested] = live.publisher.of_type("Auto Top-up Requested")
    intents = intents_of(live, requested["purchase_id"])
    assert [(i.amount, i.status, i.payment_method) for i in intents] == [(200, "succeeded", card)]
    customer = live.stripe.customers.retrieve(ledger.load("acct-1").payment_customer_id)
    assert customer.invoice_settings.default_payment_method == card  # the saved card is the default
    status, body = relay(live, deliveries.wait_for("payment_intent.succeeded", intents[0].id))
    assert (status, body["purchase_id"], body["status"]) == (200, requested["purchase_id"], "paid")
    assert purchased(ledger) == [(100 * C, 100 * C, False)]
    assert reconciled(ledger) == 0


@pytest.mark.parametrize("number", [CARD_DECLINED, CARD_3DS])
def test_declined_or_authentication_requiring_cards_are_failed_auto_payments(
        api: StripeApi, ledger: Ledger, number: str) -> None:
    save_card(api, number)
    auto_top_up(api)
    api.drain()  # each failure frees the next auto purchase, charged and refused in turn
    settings = api.call("GET", "/v1/settings")[1]
    assert settings["auto_top_up"]["enabled"] is False  # three failed in a row turn it off
    assert settings["auto_top_up"]["failed_payments_in_a_row"] == 3
    statuses = [p["status"] for p in api.call("GET", "/v1/purchases")[1]["purchases"]]
    assert statuses == ["failed"] * 3
    assert len(api.publisher.of_type("Auto Top-up Disabled")) == 1
    assert purchased(ledger) == []


def test_an_auto_top_up_without_a_saved_card_is_a_failed_payment(api: StripeApi, ledger: Ledger) -> None:
    auto_top_up(api, per_month=1)
    api.drain()
    [p] = api.call("GET", "/v1/purchases")[1]["purchases"]
    assert (p["auto"], p["status"]) == (True, "failed")


def test_stripe_down_when_charging_is_retried_from_the_outbox_and_never_charges_twice(
        api: StripeApi, ledger: Ledger, clock: FixedClock, provider: StripePayments) -> None:
    save_card(api, CARD_OK)
    down = StripePayments(SECRET_KEY, f"http://127.0.0.1:{free_port()}")
    api.outbox.payments = PaymentSide(down, clock)
    with pytest.raises(ServiceBusy, match="not reachable"):  # the dispatcher's batch fails: retried
        auto_top_up(api, per_month=1)  # (the settings committed; their outbox is delivered after)
    [requested] = api.publisher.of_type("Auto Top-up Requested")
    api.outbox.payments = PaymentSide(provider, clock)
    api.outbox.seen.clear()  # the stream hands the failed record again
    api.drain()
    api.outbox.seen.clear()  # and once more: the effect is remembered as made
    api.drain()
    assert len(intents_of(api, requested["purchase_id"])) == 1


# ---------------------------------------------------------------------- currencies


def test_prices_follow_the_accounts_currency_rounded_up_to_its_minor_unit(api: StripeApi, ledger: Ledger) -> None:
    assert api.call("GET", "/v1/settings")[1]["currency"] == "USD"
    assert api.call("PUT", "/v1/settings", {"currency": "KRW"})[1]["currency"] == "KRW"
    won = api.buy(100)
    # KRW has no minor unit: 100 credits x 28 won = 2,800 won
    assert won["price"] == {"currency": "KRW", "amount_minor": 2800}
    intent = api.stripe.payment_intents.retrieve(won["payment"]["payment_intent_id"])
    assert (intent.amount, intent.currency) == (2800, "krw")
    before = snapshot(ledger)
    assert api.call("PUT", "/v1/settings", {"currency": "EUR"})[0] == 409  # a purchase is pending
    assert api.call("PUT", "/v1/settings", {"currency": "GBP"})[0] == 400
    assert snapshot(ledger) == before
    assert api.pay_with_card(won["payment"]["payment_intent_id"]).status == "succeeded"
    assert api.event(intent_event("payment_intent.succeeded", intent_of(won)))[1]["status"] == "paid"
    assert api.call("PUT", "/v1/settings", {"currency": "EUR"})[1]["currency"] == "EUR"
    # 51 credits x EUR 0.019 = EUR 0.969 = 96.9 cents: rounded up to 97
    assert api.buy(51)["price"] == {"currency": "EUR", "amount_minor": 97}
    # the KRW purchase refunded in KRW: 150 available, 100 unused of it: 2,800 x 100/100 = 2,800 won
    status, refund = api.call("POST", f"/v1/purchases/{won['purchase_id']}/refund")
    assert (status, refund["refund"]) == (200, {"currency": "KRW", "amount_minor": 2800})


# ---------------------------------------------------------------------- exactly once without Stripe's idempotency


class LosingAnswers:
    """A pass-through to the stand-in that loses the answer of the first ``POST <path>``: the request
    reaches Stripe and is carried out, then the connection drops (a timeout, as the library sees
    it). localstripe ignores idempotency keys, so only our own look-up keeps a retry from doing it again."""

    def __init__(self, target: str, path: str) -> None:
        self.lost = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(target + self.path, data=body, headers=headers, method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        status, payload = answer.status, answer.read()
                except urllib.error.HTTPError as refused:  # Stripe's 4xx (a declined card is a 402)
                    status, payload = refused.code, refused.read()
                if self.command == "POST" and self.path.split("?")[0] == path and outer.lost == 0:
                    outer.lost += 1
                    self.close_connection = True  # done at Stripe, the answer never arrives
                    return
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.mark.parametrize("number", [CARD_OK, CARD_DECLINED])
def test_an_auto_top_up_whose_answer_was_lost_is_not_charged_again_on_the_retry(
        api: StripeApi, clock: FixedClock, local_stripe: LocalStripe, number: str) -> None:
    save_card(api, number)
    losing = LosingAnswers(local_stripe.url, "/v1/payment_intents")
    try:
        api.outbox.payments = PaymentSide(StripePayments(SECRET_KEY, losing.url), clock)
        with pytest.raises(ServiceBusy):  # the charge was made, its answer lost: the batch is retried
            auto_top_up(api, per_month=1)
        [requested] = api.publisher.of_type("Auto Top-up Requested")
        assert losing.lost == 1 and len(intents_of(api, requested["purchase_id"])) == 1
        api.outbox.seen.clear()  # the stream hands the record again; the answers arrive now
        api.drain()
    finally:
        losing.server.shutdown()
    [intent] = intents_of(api, requested["purchase_id"])  # found by its metadata, not made again
    [p] = api.call("GET", "/v1/purchases")[1]["purchases"]
    if number == CARD_OK:
        assert intent.status == "succeeded" and p["status"] == "pending"  # payment_intent.succeeded confirms it
    else:  # the declined charge found is the failed auto payment, applied once
        assert intent.status == "requires_payment_method" and p["status"] == "failed"
        assert api.call("GET", "/v1/settings")[1]["auto_top_up"]["failed_payments_in_a_row"] == 1


def test_an_api_refund_whose_answer_was_lost_is_not_refunded_again_on_the_retry(
        api: StripeApi, clock: FixedClock, local_stripe: LocalStripe, provider: StripePayments) -> None:
    purchase = paid(api)
    losing = LosingAnswers(local_stripe.url, "/v1/refunds")
    try:
        api.outbox.payments = PaymentSide(StripePayments(SECRET_KEY, losing.url), clock)
        with pytest.raises(ServiceBusy):
            api.call("POST", f"/v1/purchases/{purchase['purchase_id']}/refund")
        api.outbox.seen.clear()
        api.drain()
    finally:
        losing.server.shutdown()
    intent = purchase["payment"]["payment_intent_id"]
    [made] = api.stripe.refunds.list(params={"payment_intent": intent}).data  # made once, found on the retry
    assert losing.lost == 1 and made.amount == 200  # 100 unused of 100: 200 cents back


# ---------------------------------------------------------------------- the rest of every path, and all of it at once


def test_a_dispute_lost_after_it_opened_keeps_the_credits_taken(api: StripeApi, ledger: Ledger) -> None:
    purchase = paid(api)
    assert api.event(dispute(purchase, "charge.dispute.created"))[0] == 200
    assert ledger.load("acct-1").available() == 50 * C  # 150 - the purchase's 100 unused
    status, body = api.event(dispute(purchase, "charge.dispute.closed", status="lost"))
    assert (status, body["duplicate"]) == (200, False)
    state = ledger.load("acct-1")
    assert state.disputed == [] and state.available() == 50 * C  # lost: nothing comes back
    assert purchased(ledger) == [(100 * C, 0, True)]
    assert api.event(dispute(purchase, "charge.dispute.closed", status="lost"))[1]["duplicate"] is True
    assert not [e for e in Platform(ledger).entries() if e.reason == "dispute_won"]
    assert_conserved(state)
    assert reconciled(ledger) == 0


def test_the_endpoint_secret_rotates_both_verify_during_the_rotation_then_only_the_new(
        ledger: Ledger, clock: FixedClock, provider: StripePayments) -> None:
    Platform(ledger, "acct-1").send("Account Created", "2026-01-01T00:00:00Z", email="a@example.com", plan="free")
    api = StripeApi(ledger, clock, provider)
    purchase = api.buy(100)
    raw = json.dumps(intent_event("payment_intent.succeeded", intent_of(purchase), event_id="evt_rot"))
    now = int(clock().timestamp())
    # Stripe's "roll secret": the secret's value in Secrets Manager holds the new and the old one
    rolling = parse_secret(json.dumps({"current": WHSEC, "previous": OLD_WHSEC}))
    api.webhook = load_handler("payment_webhook", ledger=ledger, clock=clock, stripe_webhook_secrets=rolling)
    assert api.stripe_raw(raw, sign_stripe(raw, OLD_WHSEC, now))[1]["status"] == "paid"  # the old one
    assert api.stripe_raw(raw, sign_stripe(raw, WHSEC, now))[1]["duplicate"] is True  # the new one
    # the rotation done: the new secret alone, and the old one no longer verifies
    api.webhook = load_handler("payment_webhook", ledger=ledger, clock=clock,
                               stripe_webhook_secrets=parse_secret(WHSEC))
    before = snapshot(ledger)
    status, body = api.stripe_raw(raw, sign_stripe(raw, OLD_WHSEC, now))
    assert (status, body["error"]["code"]) == (400, "bad_signature")
    assert api.stripe_raw(raw, sign_stripe(raw, WHSEC, now))[0] == 200
    assert snapshot(ledger) == before


def deliver_five_at_once(api: StripeApi, event: dict[str, Any]) -> list[tuple[int, Any]]:
    results: list[tuple[int, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(api.event(event))) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_every_stripe_path_at_once_leaves_the_books_reconciled(api: StripeApi, ledger: Ledger) -> None:
    """Each path of the webhook and the outbox on two accounts (USD and KRW), then reconciliation."""
    # off-session refusals: three declined auto purchases turn auto top-up off (50 credits stay)
    save_card(api, CARD_DECLINED)
    auto_top_up(api)
    api.drain()
    assert api.call("GET", "/v1/settings")[1]["auto_top_up"]["enabled"] is False
    # a good card, auto top-up on again: charged off-session, confirmed by its event -> 50 + 100 = 150
    save_card(api, CARD_OK)
    auto_top_up(api)
    api.drain()
    [*_, requested] = api.publisher.of_type("Auto Top-up Requested")
    [auto] = intents_of(api, requested["purchase_id"])
    assert api.event(intent_event("payment_intent.succeeded", auto.to_dict()))[1]["status"] == "paid"
    # A: paid by card, its event delivered five times at once: +100 once -> 250
    a = api.buy(100)
    assert api.pay_with_card(a["payment"]["payment_intent_id"]).status == "succeeded"
    results = deliver_five_at_once(api, intent_event("payment_intent.succeeded", intent_of(a), "evt_a"))
    assert sorted(body["duplicate"] for _, body in results) == [False] + [True] * 4
    # B: failed, then paid -> 350; unknown types and unverifiable requests change nothing
    b = api.buy(100)
    assert api.event(intent_event("payment_intent.payment_failed", intent_of(b)))[1]["status"] == "failed"
    assert api.event(intent_event("payment_intent.succeeded", intent_of(b)))[1]["status"] == "paid"
    assert api.event({"id": "evt_o", "type": "invoice.paid", "data": {"object": {"id": "in_1"}}})[0] == 200
    assert api.event(intent_event("payment_intent.succeeded", intent_of(b)), secret="whsec_forged_0123456789")[0] == 400
    # A refunded through the API: its 100 unused back at the commit (250), at Stripe after it; the
    # charge.refunded that follows is ours and takes nothing more
    assert api.call("POST", f"/v1/purchases/{a['purchase_id']}/refund")[0] == 200
    [made] = api.stripe.refunds.list(params={"payment_intent": a["payment"]["payment_intent_id"]}).data
    assert api.event(charge_refunded(a, made.amount, made.metadata["refund_id"]))[1]["duplicate"] is True
    # C: paid (350), refunded in the dashboard (250)
    c = paid(api)
    assert api.event(charge_refunded(c, 200))[1]["status"] == "refunded"
    # D: paid (350), disputed (250), won (350); E: paid (450), disputed (350), lost (350)
    d, e = paid(api), paid(api)
    for p, outcome in ((d, "won"), (e, "lost")):
        dispute_id = f"dp_{p['purchase_id'][-6:]}"
        assert api.event(dispute(p, "charge.dispute.created", dispute_id=dispute_id))[0] == 200
        assert api.event(dispute(p, "charge.dispute.closed", status=outcome, dispute_id=dispute_id))[0] == 200
    assert ledger.load("acct-1").available() == 350 * C
    # acct-2 in KRW: 100 credits x 28 won = 2,800 won, paid (150), disputed and lost (50)
    assert api.call("PUT", "/v1/settings", {"currency": "KRW"}, sub="acct-2")[0] == 200
    won = api.buy(100, sub="acct-2")
    assert won["price"] == {"currency": "KRW", "amount_minor": 2800}
    assert api.pay_with_card(won["payment"]["payment_intent_id"]).status == "succeeded"
    assert api.event(intent_event("payment_intent.succeeded", intent_of(won, "acct-2")))[1]["status"] == "paid"
    assert api.event(dispute(won, "charge.dispute.created", dispute_id="dp_krw"))[0] == 200
    assert api.event(dispute(won, "charge.dispute.closed", status="lost", dispute_id="dp_krw"))[0] == 200
    assert ledger.load("acct-2").available() == 50 * C
    for account in ("acct-1", "acct-2"):
        assert_conserved(ledger.load(account))
    result = reconcile(ledger.models, ledger.catalog, sleep=lambda _: None)
    assert (result.accounts_checked, result.differences) == (2, 0)


def test_a_krw_refund_of_a_partly_used_purchase_is_rounded_up_to_the_whole_won(
        api: StripeApi, ledger: Ledger) -> None:
    platform = Platform(ledger, "acct-1")
    platform.send("Container Created", "2026-01-10T05:00:00Z", container_id="c1", storage_gb=5)  # within 5 GB free
    platform.send("Container Started", "2026-01-10T06:00:00Z", container_id="c1", run_id="r1", tier="large",
                  code_supporter=False)
    platform.send("Container Stopped", "2026-01-10T09:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    # 3 h large = 3 x 27.20 = 81.60 credits against 50 monthly: 31.60 owed
    assert ledger.load("acct-1").debt == 31_600_000
    assert api.call("PUT", "/v1/settings", {"currency": "KRW"})[0] == 200
    won = paid(api)  # 100 credits x 28 won = 2,800 won; the debt is repaid first: 68.40 of them left
    assert won["price"] == {"currency": "KRW", "amount_minor": 2800}
    status, refund = api.call("POST", f"/v1/purchases/{won['purchase_id']}/refund")
    # 2,800 / 100 x 68.4 = 1,915.2 won, rounded up to the whole won (KRW has no minor unit): 1,916
    assert (status, refund["refund"], refund["credits"]) == (200, {"currency": "KRW", "amount_minor": 1916},
                                                             "68.400000")
    [made] = api.stripe.refunds.list(params={"payment_intent": won["payment"]["payment_intent_id"]}).data
    assert (made.amount, made.currency) == (1916, "krw")
    assert_conserved(ledger.load("acct-1"))
    assert reconciled(ledger) == 0
