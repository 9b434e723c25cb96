"""What the account asks of the payment provider besides a purchase's payment: saving a card (a
SetupIntent, ``POST /v1/payment-methods``), and, as the outbox's consumer, the calls committed
changes asked for (:class:`~billing.domain.model.PaymentCall`): an auto purchase charged off-session
and an API refund made at the provider.

A call is idempotent at the provider by its key (the auto purchase's id, the refund's id), and the
outbox remembers it once made, so a redelivered change never charges or refunds twice. Stripe
unreachable or throttling raises :class:`~billing.domain.errors.ServiceBusy`: the dispatcher's batch
is retried from there. A declined or authentication-requiring charge (or no saved card) is a
failed auto payment, applied at once (three in a row turn auto top-up off).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing.domain import settle
from billing.domain.account import Account
from billing.domain.errors import RuleViolation, UnknownAccount
from billing.domain.model import PaymentCall
from billing.domain.posting import Book
from billing.observability import logger, metrics
from billing.payments import PaymentProvider
from billing.services.purchases import PaymentNotice, handle_payment, load_purchase
from billing.store.ledger import Change, Ledger


def save_card(ledger: Ledger, account_id: str, payments: PaymentProvider) -> dict[str, Any]:
    """A SetupIntent on the account's customer (created once, its id kept); the card it saves becomes
    the customer's default when auto top-up next charges it."""
    state = ledger.load(account_id)
    if state is None:
        raise UnknownAccount(f"no account {account_id}")
    customer = state.payment_customer_id or payments.customer(account_id, state.email)
    if customer is None:
        raise RuleViolation("saving a card needs the Stripe payment provider, which this deployment does not use")
    setup_id, client_secret = payments.setup_card(account_id, customer)

    def action(account: Account | None) -> Change:
        book = Book(settle.require(account, account_id), ledger.catalog, f"payment-method:{setup_id}")
        book.state.payment_customer_id = book.state.payment_customer_id or customer
        book.state.payment_setup_id = setup_id
        return Change(book)

    ledger.apply(account_id, f"payment-method:{setup_id}", action)
    logger.info("card setup started", account_id=account_id, setup_intent_id=setup_id)
    return {"provider": payments.name, "setup_intent_id": setup_id, "client_secret": client_secret}


def carry_out(call: PaymentCall, ledger: Ledger, payments: PaymentProvider, now: datetime) -> None:
    """Make one committed change's call at the provider."""
    if call.kind == "refund":
        payments.refund(call.payment_intent_id, call.amount_minor, call.idempotency_key, call.purchase_id)
        logger.info("refund made at the provider", purchase_id=call.purchase_id, refund_id=call.idempotency_key)
        return
    found = load_purchase(ledger.models, call.purchase_id)
    state = ledger.load(call.account_id)
    if found is None or state is None or found[0].status != "pending":
        return  # paid, failed or refunded meanwhile (a confirmation came first): nothing to charge
    purchase = found[0]
    outcome = payments.charge_saved_card(purchase, call.customer_id or state.payment_customer_id,
                                         state.payment_setup_id, call.idempotency_key)
    if outcome is None or outcome.paid:
        # Paid: Stripe's payment_intent.succeeded confirms it, as any purchase; None: the platform's
        # payment integration charges it (Auto Top-up Requested) and the signed webhook confirms it.
        logger.info("auto purchase charged", purchase_id=purchase.purchase_id, provider=payments.name,
                    payment_intent_id=outcome.payment_intent_id if outcome else None)
        return
    metrics.add_metric(name="AutoPaymentsRefused", unit="Count", value=1)
    logger.warning("auto purchase refused", purchase_id=purchase.purchase_id, reason=outcome.reason)
    notice = PaymentNotice(id=outcome.payment_intent_id or purchase.purchase_id, type="payment.failed",
                           purchase_id=purchase.purchase_id, currency=purchase.currency,
                           cents=purchase.price_cents, created_at=now)
    handle_payment(ledger, notice, now)
