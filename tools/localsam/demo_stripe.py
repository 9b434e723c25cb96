"""The demo's payments through Stripe: the stack with the Stripe stand-in (localstripe), end to end.

``frank`` buys 100 credits with a test card: ``POST /v1/purchases`` creates the PaymentIntent at the
stand-in, the browser's part (Stripe.js) is played here with the same test card, the stand-in sends
``payment_intent.succeeded`` signed with ``Stripe-Signature``, and the webhook route verifies it with
Stripe's library and adds the credits; the receipt is read back. (The stand-in posts to a local inbox
that hands each delivery, unchanged, to ``POST /v1/webhooks/stripe`` in this thread: the local runner
runs one function at a time, as its process environment is each function's.) He then saves a card
(``POST /v1/payment-methods``, the SetupIntent confirmed) and turns auto top-up on below 200 credits:
the auto purchase is charged off-session by the outbox's consumer and confirmed by the stand-in's
webhook. Then his first purchase is refunded in Stripe's dashboard (a refund made at the stand-in
directly, not through our API) and the auto top-up's charge is disputed: both take the purchase's
unused credits back; the dispute is won and they return. localstripe sends no ``charge.refunded``
and has no disputes: those two events are built here from the stand-in's own Charge (a Dispute
object of Stripe's documented shape) and signed with the endpoint's secret, as Stripe signs them.
The stack's clock is the stand-in's present (the signatures it makes are dated by it).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from billing.api.signatures import sign_stripe
from localsam.dynamodb_local import free_port
from localsam.runner import StackRunner
from localsam.stripe_local import WEBHOOK_SECRET

ACCOUNT = "frank"
TEST_CARD = "4242424242424242"


def _stand_in_clock(stack: StackRunner) -> Callable[[], datetime]:
    """The stand-in's present (a process of its own, on the machine's clock), on this process's clock."""
    client = _client(stack)
    probe = client.customers.create(params={"description": "clock probe"})
    offset = datetime.fromtimestamp(int(probe.created), UTC) - datetime.now(UTC)
    return lambda: (datetime.now(UTC) + offset).replace(microsecond=0)


def _client(stack: StackRunner) -> Any:
    import stripe

    assert stack.stripe is not None
    return stripe.StripeClient("sk_test_local_stand_in", base_addresses={"api": stack.stripe.url}).v1


class Inbox:
    """Where the stand-in posts its webhooks: each delivery (raw body, Stripe-Signature) kept as sent."""

    def __init__(self) -> None:
        self.deliveries: queue.Queue[tuple[bytes, str]] = queue.Queue()
        inbox = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                inbox.put((self.rfile.read(int(self.headers.get("Content-Length") or 0)),
                           self.headers.get("Stripe-Signature") or ""))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"


def _until(what: str, check: Callable[[], Any], stack: StackRunner, inbox: Inbox, timeout: float = 30.0) -> Any:
    """Hand the stand-in's deliveries to the webhook route (and drain the outbox) until ``check``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            raw, signature = inbox.deliveries.get(timeout=0.5)
            stack.api_request("POST", "/v1/webhooks/stripe", body=raw,
                              headers={"content-type": "application/json", "stripe-signature": signature})
        except queue.Empty:
            pass
        stack.drain()
        found = check()
        if found:
            return found
    raise RuntimeError(f"the Stripe stand-in's webhook did not {what} in {timeout:.0f} s")


def run(dynamodb_endpoint: str | None) -> list[str]:
    """Buy credits by card and get an auto top-up charged, through the stand-in; the lines to print."""
    lines: list[str] = []
    holder: dict[str, Callable[[], datetime]] = {}
    with StackRunner(dynamodb_endpoint=dynamodb_endpoint, stripe=True, clock=lambda: holder["clock"]()) as stack:
        holder["clock"] = _stand_in_clock(stack)
        now = holder["clock"]()
        inbox = Inbox()
        assert stack.stripe is not None
        stack.stripe.register_webhook("demo", inbox.url)
        created = stack.put_event("platform.accounts", "Account Created", {
            "event_id": "frank-created", "account_id": ACCOUNT, "occurred_at": (now - timedelta(minutes=5)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"), "email": "frank@example.com", "plan": "free"})
        assert created.ok, created
        stack.drain()
        stripe = _client(stack)

        bought = stack.api_request("POST", "/v1/purchases", sub=ACCOUNT, body={"credits": 100}).json()
        intent_id = bought["payment"]["payment_intent_id"]
        lines.append(f"frank buys 100 credits: {bought['price']}, PaymentIntent {intent_id} at the stand-in")
        # Stripe.js's part in the browser: the card, then the PaymentIntent confirmed with it
        card = stripe.payment_methods.create(params={"type": "card", "card": {
            "number": TEST_CARD, "exp_month": 12, "exp_year": now.year + 3, "cvc": "123"}})
        stripe.payment_intents.update(intent_id, params={"payment_method": card.id})
        lines.append(f"  card {TEST_CARD[-4:]} confirmed: {stripe.payment_intents.confirm(intent_id).status}")

        def receipt() -> Any:
            detail = stack.api_request("GET", f"/v1/purchases/{bought['purchase_id']}", sub=ACCOUNT).json()
            return detail if detail["status"] == "paid" else None

        detail = _until("confirm the card payment", receipt, stack, inbox)
        lines.append(f"  payment_intent.succeeded delivered and verified: paid, receipt {detail['receipt']}")

        setup = stack.api_request("POST", "/v1/payment-methods", sub=ACCOUNT).json()
        saved = stripe.payment_methods.create(params={"type": "card", "card": {
            "number": TEST_CARD, "exp_month": 12, "exp_year": now.year + 3, "cvc": "123"}})
        stripe.setup_intents.confirm(setup["setup_intent_id"], params={"payment_method": saved.id})
        lines.append(f"frank saves a card (SetupIntent {setup['setup_intent_id']}) and turns auto top-up on "
                     "below 200 credits (he has 150)")
        stack.api_request("PUT", "/v1/settings", sub=ACCOUNT, body={"auto_top_up": {
            "enabled": True, "below": "200", "credits": 100, "max_per_month": 1}})

        def auto_paid() -> Any:
            listed = stack.api_request("GET", "/v1/purchases", sub=ACCOUNT).json()["purchases"]
            return [p for p in listed if p["auto"] and p["status"] == "paid"]

        [auto] = _until("confirm the auto top-up", auto_paid, stack, inbox)
        lines.append(f"  charged off-session by the outbox, confirmed by the webhook: {auto['purchase_id']} "
                     f"{auto['status']}, {auto['price']}")
        balance = stack.api_request("GET", "/v1/balance", sub=ACCOUNT).json()
        lines.append(f"  frank's balance: {balance['available']} available ({balance['purchased']} purchased)")

        # A refund made in Stripe's dashboard (not through our API): the stand-in refunds the charge;
        # Stripe would then send charge.refunded, which the stand-in does not: built from its Charge.
        refund = stripe.refunds.create(params={"payment_intent": intent_id})
        charge = stripe.charges.retrieve(_id(stripe.payment_intents.retrieve(intent_id).latest_charge))
        answer = _deliver(stack, "charge.refunded", charge.to_dict(), holder["clock"]())
        balance = stack.api_request("GET", "/v1/balance", sub=ACCOUNT).json()
        lines.append(f"frank's first purchase is refunded in Stripe's dashboard ({refund.id}, {refund.amount} cents): "
                     f"charge.refunded {answer['status']}, balance {balance['available']} available")
        # A dispute of the auto top-up's charge (the stand-in has none: Stripe's Dispute object)
        auto_detail = stack.api_request("GET", f"/v1/purchases/{auto['purchase_id']}", sub=ACCOUNT).json()
        auto_intent = stripe.payment_intents.retrieve(auto_detail["receipt"]["payment_reference"])
        disputed = {"id": "dp_demo_frank", "object": "dispute", "amount": auto_intent.amount,
                    "currency": auto_intent.currency, "charge": _id(auto_intent.latest_charge),
                    "payment_intent": auto_intent.id, "reason": "fraudulent", "status": "needs_response",
                    "created": int(holder["clock"]().timestamp())}
        _deliver(stack, "charge.dispute.created", disputed, holder["clock"]())
        stack.drain()
        balance = stack.api_request("GET", "/v1/balance", sub=ACCOUNT).json()
        lines.append(f"the auto top-up's charge is disputed: Payment Disputed "
                     f"{stack.published_events('Payment Disputed')[-1]['detail']['credits']} credits taken back, "
                     f"balance {balance['available']} available")
        _deliver(stack, "charge.dispute.closed", {**disputed, "status": "won"}, holder["clock"]())
        balance = stack.api_request("GET", "/v1/balance", sub=ACCOUNT).json()
        lines.append(f"  the dispute is won: the credits return, balance {balance['available']} available")
        stack.fire_schedule("ReconciliationFunction", "Daily")
        done = [e["detail"] for e in stack.published_events("Reconciliation Finished")][-1]  # this table's run
        lines.append(f"  reconciliation: {done['accounts_checked']} accounts checked, "
                     f"{done['differences']} differences")
        inbox.server.shutdown()
    return lines


def _id(obj: Any) -> str:
    """An object's id, whether the stand-in expanded it or not."""
    return str(getattr(obj, "id", obj))


def _deliver(stack: StackRunner, kind: str, obj: dict[str, Any], now: datetime) -> Any:
    """An event the stand-in cannot send, in Stripe's shape, signed with the endpoint's secret and
    posted to the webhook route as Stripe would."""
    raw = json.dumps({"id": f"evt_demo_{kind.replace('.', '_')}", "object": "event", "type": kind,
                      "created": int(now.timestamp()), "data": {"object": obj}})
    answer = stack.api_request("POST", "/v1/webhooks/stripe", body=raw.encode(), headers={
        "content-type": "application/json", "stripe-signature": sign_stripe(raw, WEBHOOK_SECRET, int(now.timestamp()))})
    assert answer.status == 200, answer.json()
    return answer.json()
