"""The payment provider: one port, two adapters, chosen by the deployment (template.yaml, UsesStripe).

* :class:`SignedWebhookPayments`: the provider-neutral path. A purchase is paid outside the stack
  and confirmed through the signed webhook (``POST /v1/webhooks/payments``); an auto purchase is
  charged by the platform's payment integration (``Auto Top-up Requested``); nothing is called here.
* :class:`StripePayments`: Stripe, through Stripe's own library (``stripe``, a ``StripeClient`` per
  adapter: no module-level key, so two configurations never share state). Every call that creates
  something carries an idempotency key (the purchase's id, the refund's id). Exactly-once does not
  rest on Stripe honouring those keys (the local stand-in ignores them): the calls that move money
  (an off-session charge, a refund) first look at Stripe for what an earlier attempt whose answer
  was lost made (:meth:`StripePayments.charge_made_before`, :meth:`StripePayments.refund_made_before`)
  and are sent once, without the library's own retries, so a retry is always ours and looks first.
  ``api_base`` is Stripe's address, or the local stand-in's (localstripe) in tests and ``make run``.

Stripe unreachable, throttling or failing on its side is a :class:`ServiceBusy` (a 503 with
Retry-After for a request; a retried batch for the outbox). A declined or authentication-requiring
off-session charge is a :class:`ChargeOutcome` with ``paid=False``: a failed auto payment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from billing.domain.errors import NotConfigured, ServiceBusy
from billing.domain.model import Purchase
from billing.observability import logger

STRIPE_API_BASE = "https://api.stripe.com"


class PaymentRefused(Exception):
    """The provider refused a call for good (Stripe's 4xx: a refund of a charge refunded or disputed
    already...): no retry gets past it, so the outbox dead-letters it alone, with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PaymentStarted:
    """What a client needs to pay a purchase (``payment`` in ``POST /v1/purchases``)."""

    provider: str
    payment_intent_id: str
    client_secret: str

    def view(self) -> dict[str, str]:
        return {"provider": self.provider, "payment_intent_id": self.payment_intent_id,
                "client_secret": self.client_secret}


@dataclass(frozen=True)
class ChargeOutcome:
    """An off-session charge: paid, or refused (``reason``: Stripe's decline code); None of either
    when the provider leaves the charge to someone else."""

    paid: bool
    payment_intent_id: str | None
    reason: str = ""


class PaymentProvider(Protocol):
    name: str

    def customer(self, account_id: str, email: str) -> str | None:
        """The provider's customer for the account (created, idempotently by the account), or None."""
        ...

    def start_payment(self, purchase: Purchase, customer_id: str | None) -> PaymentStarted | None:
        """A payment the client confirms (a PaymentIntent), or None: paid elsewhere."""
        ...

    def setup_card(self, account_id: str, customer_id: str) -> tuple[str, str]:
        """(SetupIntent id, client_secret) to save a card for off-session charges."""
        ...

    def charge_saved_card(self, purchase: Purchase, customer_id: str | None, setup_id: str | None,
                          idempotency_key: str) -> ChargeOutcome | None:
        """Charge the account's saved card off-session, or None: the platform charges it."""
        ...

    def refund(self, payment_intent_id: str | None, amount_minor: int, idempotency_key: str,
               purchase_id: str) -> None:
        """Give money back at the provider (nothing to do without one)."""
        ...


class SignedWebhookPayments:
    """The provider-neutral path: the platform takes the money, the signed webhook tells us."""

    name = "signed_webhook"

    def customer(self, account_id: str, email: str) -> str | None:
        return None

    def start_payment(self, purchase: Purchase, customer_id: str | None) -> PaymentStarted | None:
        return None

    def setup_card(self, account_id: str, customer_id: str) -> tuple[str, str]:
        raise NotConfigured("saving a card needs the Stripe payment provider (StripeSecretKey)")

    def charge_saved_card(self, purchase: Purchase, customer_id: str | None, setup_id: str | None,
                          idempotency_key: str) -> ChargeOutcome | None:
        return None

    def refund(self, payment_intent_id: str | None, amount_minor: int, idempotency_key: str,
               purchase_id: str) -> None:
        return None


# Off-session refusals that are a failed auto payment, not a failure of ours to retry.
CARD_REFUSALS = frozenset({"card_declined", "authentication_required", "expired_card", "incorrect_cvc",
                           "insufficient_funds", "no_saved_card"})


class StripePayments:
    """Stripe through its own library; every create is idempotent by our id."""

    name = "stripe"

    def __init__(self, secret_key: str, api_base: str = STRIPE_API_BASE, client: Any | None = None) -> None:
        import stripe  # loaded by the functions that use Stripe only

        self._stripe = stripe
        self.client = client or stripe.StripeClient(
            secret_key, base_addresses={"api": api_base}, max_network_retries=2).v1

    def _call(self, what: str, call: Any) -> Any:
        """A Stripe call; Stripe unreachable, throttling or failing on its side is a ServiceBusy."""
        stripe = self._stripe
        try:
            return call()
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            logger.warning("stripe unavailable", call=what, reason=type(exc).__name__)
            raise ServiceBusy("the payment provider is not reachable; retry shortly") from exc
        except stripe.APIError as exc:
            logger.warning("stripe failed", call=what, status=exc.http_status)
            raise ServiceBusy("the payment provider failed; retry shortly") from exc

    def customer(self, account_id: str, email: str) -> str | None:
        created = self._call("customers.create", lambda: self.client.customers.create(
            params={"email": email, "metadata": {"account_id": account_id}},
            options={"idempotency_key": f"customer-{account_id}"}))
        return str(created.id)

    def start_payment(self, purchase: Purchase, customer_id: str | None) -> PaymentStarted | None:
        params: Any = {"amount": purchase.price_cents, "currency": purchase.currency.lower(),
                       "metadata": {"purchase_id": purchase.purchase_id, "account_id": purchase.account_id}}
        if customer_id:
            params["customer"] = customer_id
        intent = self._call("payment_intents.create", lambda: self.client.payment_intents.create(
            params=params, options={"idempotency_key": f"purchase-{purchase.purchase_id}"}))
        return PaymentStarted(self.name, str(intent.id), str(intent.client_secret))

    def setup_card(self, account_id: str, customer_id: str) -> tuple[str, str]:
        intent = self._call("setup_intents.create", lambda: self.client.setup_intents.create(
            params={"customer": customer_id, "usage": "off_session", "metadata": {"account_id": account_id}}))
        return str(intent.id), str(intent.client_secret)

    def saved_card(self, customer_id: str, setup_id: str | None) -> str | None:
        """The card saved last (the latest SetupIntent's, made the customer's default here), else
        the customer's default."""
        if setup_id:
            setup = self._call("setup_intents.retrieve", lambda: self.client.setup_intents.retrieve(setup_id))
            card = setup.payment_method if setup.status == "succeeded" else None
            if card:
                card_id = str(getattr(card, "id", card))
                method = self._call("payment_methods.retrieve",
                                    lambda: self.client.payment_methods.retrieve(card_id))
                if method.customer != customer_id:
                    self._call("payment_methods.attach", lambda: self.client.payment_methods.attach(
                        card_id, params={"customer": customer_id}))
                self._call("customers.update", lambda: self.client.customers.update(
                    customer_id, params={"invoice_settings": {"default_payment_method": card_id}}))
                return card_id
        customer = self._call("customers.retrieve", lambda: self.client.customers.retrieve(customer_id))
        default = getattr(customer.invoice_settings, "default_payment_method", None)
        return str(default) if default else None

    def charge_saved_card(self, purchase: Purchase, customer_id: str | None, setup_id: str | None,
                          idempotency_key: str) -> ChargeOutcome | None:
        if customer_id is not None:
            earlier = self.charge_made_before(purchase, customer_id)
            if earlier is not None:  # an earlier attempt's answer was lost: its outcome, no new charge
                logger.info("off-session charge found", purchase_id=purchase.purchase_id, payment_intent_id=earlier.id)
                return _charge_outcome(earlier)
        card = self.saved_card(customer_id, setup_id) if customer_id else None
        if card is None or customer_id is None:
            return ChargeOutcome(False, None, "no_saved_card")
        try:
            intent = self._call("payment_intents.create", lambda: self.client.payment_intents.create(
                params={"amount": purchase.price_cents, "currency": purchase.currency.lower(),
                        "customer": customer_id, "payment_method": card, "confirm": True, "off_session": True,
                        "metadata": {"purchase_id": purchase.purchase_id, "account_id": purchase.account_id}},
                options={"idempotency_key": f"purchase-{idempotency_key}", "max_network_retries": 0}))
        except self._stripe.CardError as exc:
            intent_id = getattr(getattr(exc.error, "payment_intent", None), "id", None) if exc.error else None
            return ChargeOutcome(False, intent_id, str(exc.code or "card_declined"))
        return _charge_outcome(intent)

    def charge_made_before(self, purchase: Purchase, customer_id: str) -> Any | None:
        """The PaymentIntent an earlier attempt charged for the purchase, or None. Every charge that
        moved (or was refused) money is among the customer's charges, listed with their intents
        expanded (a page of 100 a call); the purchase's is the one whose intent's metadata names it.
        (A PaymentIntent list filtered by customer would do, but the stand-in has no such filter; an
        attempt that asked for authentication made no charge, and a second one charges nothing either.)"""
        currency = purchase.currency.lower()

        def find() -> Any | None:
            listed = self.client.charges.list(params={"customer": customer_id, "limit": 100,
                                                      "expand": ["data.payment_intent"]})
            for charge in listed.auto_paging_iter():
                intent = charge.payment_intent
                if intent is None or charge.amount != purchase.price_cents or charge.currency != currency:
                    continue
                if isinstance(intent, str):  # not expanded
                    intent = self.client.payment_intents.retrieve(intent)
                if _metadata(intent).get("purchase_id") == purchase.purchase_id:
                    return intent
            return None

        return self._call("charges.list", find)

    def refund(self, payment_intent_id: str | None, amount_minor: int, idempotency_key: str,
               purchase_id: str) -> None:
        if payment_intent_id is None:
            return  # paid through the signed webhook: nothing at Stripe to give back
        if self.refund_made_before(payment_intent_id, idempotency_key):
            logger.info("refund found", purchase_id=purchase_id, refund_id=idempotency_key)
            return
        try:
            self._call("refunds.create", lambda: self.client.refunds.create(
                params={"payment_intent": payment_intent_id, "amount": amount_minor,
                        "metadata": {"refund_id": idempotency_key, "purchase_id": purchase_id}},
                options={"idempotency_key": f"refund-{idempotency_key}", "max_network_retries": 0}))
        except self._stripe.InvalidRequestError as exc:
            raise PaymentRefused(str(exc.code or "refund_refused"), str(exc.user_message or exc)[:500]) from exc

    def refund_made_before(self, payment_intent_id: str, refund_id: str) -> bool:
        """Whether an earlier attempt made the refund (its answer lost): found by our id in its metadata."""

        def made() -> bool:
            listed = self.client.refunds.list(params={"payment_intent": payment_intent_id, "limit": 100})
            return any(_metadata(r).get("refund_id") == refund_id for r in listed.auto_paging_iter())

        return bool(self._call("refunds.list", made))


def _metadata(obj: Any) -> dict[str, Any]:
    metadata = getattr(obj, "metadata", None)
    return dict(metadata.to_dict()) if metadata is not None else {}


def _charge_outcome(intent: Any) -> ChargeOutcome:
    """An off-session PaymentIntent's outcome: paid, or a refusal with Stripe's code."""
    status = str(intent.status)
    if status in ("succeeded", "processing"):
        return ChargeOutcome(True, str(intent.id))
    if status == "requires_action":  # the bank wants the cardholder: off-session, a refusal
        return ChargeOutcome(False, str(intent.id), "authentication_required")
    error = getattr(intent, "last_payment_error", None)
    return ChargeOutcome(False, str(intent.id), str(getattr(error, "code", None) or status))
