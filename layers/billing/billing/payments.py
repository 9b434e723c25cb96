"""The payment provider: one port, two adapters, chosen by the deployment (template.yaml, UsesStripe).

* :class:`SignedWebhookPayments`: the provider-neutral path. A purchase is paid outside the stack
  and confirmed through the signed webhook (``POST /v1/webhooks/payments``); an auto purchase is
  charged by the platform's payment integration (``Auto Top-up Requested``); nothing is called here.
* :class:`StripePayments`: Stripe, through Stripe's own library (``stripe``, a ``StripeClient`` per
  adapter: no module-level key, so two configurations never share state). Every call that creates
  something carries an idempotency key (the purchase's id, the refund's id), so a retried request
  or a redelivered outbox effect never charges or refunds twice. ``api_base`` is Stripe's address,
  or the local stand-in's (localstripe) in tests and ``make run``.

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
        card = self.saved_card(customer_id, setup_id) if customer_id else None
        if card is None or customer_id is None:
            return ChargeOutcome(False, None, "no_saved_card")
        try:
            intent = self._call("payment_intents.create", lambda: self.client.payment_intents.create(
                params={"amount": purchase.price_cents, "currency": purchase.currency.lower(),
                        "customer": customer_id, "payment_method": card, "confirm": True, "off_session": True,
                        "metadata": {"purchase_id": purchase.purchase_id, "account_id": purchase.account_id}},
                options={"idempotency_key": f"purchase-{idempotency_key}"}))
        except self._stripe.CardError as exc:
            intent_id = getattr(getattr(exc.error, "payment_intent", None), "id", None) if exc.error else None
            return ChargeOutcome(False, intent_id, str(exc.code or "card_declined"))
        if intent.status == "requires_action":  # the bank wants the cardholder: off-session, a refusal
            return ChargeOutcome(False, str(intent.id), "authentication_required")
        return ChargeOutcome(intent.status in ("succeeded", "processing"), str(intent.id),
                             "" if intent.status in ("succeeded", "processing") else str(intent.status))

    def refund(self, payment_intent_id: str | None, amount_minor: int, idempotency_key: str,
               purchase_id: str) -> None:
        if payment_intent_id is None:
            return  # paid through the signed webhook: nothing at Stripe to give back
        try:
            self._call("refunds.create", lambda: self.client.refunds.create(
                params={"payment_intent": payment_intent_id, "amount": amount_minor,
                        "metadata": {"refund_id": idempotency_key, "purchase_id": purchase_id}},
                options={"idempotency_key": f"refund-{idempotency_key}"}))
        except self._stripe.InvalidRequestError as exc:
            raise PaymentRefused(str(exc.code or "refund_refused"), str(exc.user_message or exc)[:500]) from exc
