"""What handlers work with, and the one way they get it.

Each collaborator has a provider here (a function of no arguments that builds it from the
configuration). A handler module holds a :class:`Wiring` and asks it for what it needs
(``wiring.get(ledger)``); tests replace a provider in ``wiring.dependency_overrides`` with one that
returns a real fake (a ledger on DynamoDB Local, a fixed clock, a recording publisher), the same
idiom as Powertools' ``Depends``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from billing.adapters import EventPublisher, FunctionInvoker, MailSender, MessageQueue
from billing.config import get_config
from billing.domain.catalog import PriceCatalog, load_catalog
from billing.domain.clock import Clock, utc_now
from billing.payments import PaymentProvider, SignedWebhookPayments, StripePayments
from billing.store.cursors import CursorCodec
from billing.store.ledger import Ledger

T = TypeVar("T")


def ledger() -> Ledger:
    return Ledger()


def clock() -> Clock:
    return utc_now


def publisher() -> EventPublisher:
    return EventPublisher(get_config().event_bus_name)


def mail_sender() -> MailSender:
    config = get_config()
    return MailSender(config.sender_address, configuration_set=config.ses_configuration_set)


def cursor_codec() -> CursorCodec:
    from billing.secrets import secret_values  # Powertools Parameters: loaded by the functions that read a secret

    return CursorCodec(secret_values(get_config().cursor_secret_arn, "CURSOR_SECRET_ARN"))


def webhook_secrets() -> list[str]:
    """The payment provider's signing secrets that are valid now (two during a rotation)."""
    from billing.secrets import secret_values

    return secret_values(get_config().webhook_secret_arn, "PAYMENT_WEBHOOK_SECRET_ARN")


def payments() -> PaymentProvider:
    """Stripe when the deployment gives it a secret key (template.yaml's UsesStripe), else the
    provider-neutral signed webhook."""
    config = get_config()
    if not config.stripe_secret_key_arn:
        return SignedWebhookPayments()
    from billing.secrets import secret_values

    key = secret_values(config.stripe_secret_key_arn, "STRIPE_SECRET_KEY_ARN")[0]
    return StripePayments(key, config.stripe_api_base)


def stripe_webhook_secrets() -> list[str]:
    """Stripe's endpoint signing secrets that are valid now (two during a rotation)."""
    from billing.secrets import secret_values

    return secret_values(get_config().stripe_webhook_secret_arn, "STRIPE_WEBHOOK_SECRET_ARN")


def work_queue() -> MessageQueue:
    return MessageQueue(get_config().work_queue_url)


def settlement_queue() -> MessageQueue:
    return MessageQueue(get_config().settlement_queue_url)


def dead_letters() -> MessageQueue:
    """Where refused platform events go, with their reason."""
    return MessageQueue(get_config().dead_letter_queue_url)


def outbox_dead_letters() -> MessageQueue:
    """Where effects refused for good go, alone, with their reason (OutboxDLQ)."""
    return MessageQueue(get_config().outbox_dead_letter_queue_url)


def catalog() -> PriceCatalog:
    return load_catalog(get_config().catalog_path)


def function_invoker() -> FunctionInvoker:
    """Asynchronous invocations of a function (a job continuing in a fresh invocation)."""
    return FunctionInvoker()


def reconciliation_read_rate() -> float:
    """Read capacity units a second the reconciliation may consume."""
    return get_config().reconcile_read_rate


class Wiring:
    """A handler's collaborators: each built by its provider unless a test overrides it."""

    def __init__(self) -> None:
        self.dependency_overrides: dict[Callable[[], Any], Callable[[], Any]] = {}

    def get(self, provider: Callable[[], T]) -> T:
        return self.dependency_overrides.get(provider, provider)()
