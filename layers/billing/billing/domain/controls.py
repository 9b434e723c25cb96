"""Credit controls, what a user sets: alert rules, auto top-up and a monthly spend cap.

:func:`evaluate` runs at the end of every change of the account (and at the forecast's checks, when
time alone moves a condition): an alert fires once when its condition becomes true and re-arms when
it is false again; auto top-up asks for one purchase at a time when remaining credits fall below its
threshold, at most ``max_per_month`` in a calendar month; the spend cap, once the month's charges
reach it, stops the running containers (the account keeps its credits) until the month ends or the
cap is raised or removed. Everything leaves through the change's effects. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal

from billing.domain import accrual, forecast, members, overuse
from billing.domain.amounts import MICRO, format_credits, hours_left, money, price_minor
from billing.domain.clock import month_key
from billing.domain.model import AlertRule, Container, Purchase
from billing.domain.posting import Book

MAX_ALERTS = 10
AUTO_FAILURES_TO_DISABLE = 3
SPEND_CAP = "spend_cap"


def spent_this_month(book: Book, at: datetime) -> int:
    return book.state.month_charged.get(month_key(at), 0)


def _alert_value(book: Book, rule: AlertRule, at: datetime, remaining: int, burn: int) -> tuple[bool, object]:
    """(condition true?, the value shown) of a rule now."""
    if rule.kind == "remaining_below":
        return remaining < int(Decimal(rule.threshold) * MICRO), format_credits(remaining)
    if rule.kind == "hours_left_below":
        hours = hours_left(remaining, burn)
        return hours is not None and Decimal(str(hours)) < Decimal(rule.threshold), hours
    spent = spent_this_month(book, at)
    return spent > int(Decimal(rule.threshold) * MICRO), format_credits(spent)


def evaluate(book: Book, at: datetime) -> None:
    """Alerts, auto top-up, the spend cap and member limits after a change, as of ``at``."""
    state = book.state
    _spend_cap(book, at)
    if state.members:
        members.evaluate(book, at)
    if not state.alerts and not (state.auto_top_up and state.auto_top_up.enabled):
        return
    if state.month_closing is not None:
        return  # the aggregates still hold the old month's usage: the last month_close chunk evaluates
    remaining = state.available(at) - book.accrued(at)
    burn = book.hourly_burn(at)
    for rule in state.alerts:
        condition, value = _alert_value(book, rule, at, remaining, burn)
        if condition and rule.armed:
            rule.armed, rule.fired_at = False, at
            book.emit("Alert Triggered", alert_id=rule.alert_id, kind=rule.kind, threshold=rule.threshold, value=value)
            if state.credit_mail:
                book.mail("alert_triggered", alert_id=rule.alert_id, kind=rule.kind, threshold=rule.threshold,
                          value=value, remaining=format_credits(remaining))
        elif not condition and not rule.armed:
            rule.armed = True
    _auto_top_up(book, at, remaining)


def auto_purchase_id(account_id: str, number: int) -> str:
    """The id of the account's ``number``-th auto purchase. The number is the balance's own counter,
    which is written under the balance's version condition and never resets, so no two changes ever
    ask for the same id (an id that repeated would fail the purchase's write, and with it every
    settlement of the account). Its text differs from the old ``account|month|count`` ids."""
    digest = hashlib.sha256(f"{len(account_id)}:{account_id}|auto#{number}".encode()).hexdigest()
    return f"pur_auto_{digest[:28]}"


def _auto_top_up(book: Book, at: datetime, remaining: int) -> None:
    state = book.state
    auto = state.auto_top_up
    if auto is None or not auto.enabled or auto.pending or remaining >= auto.below:
        return
    month = month_key(at)
    count = auto.requested.get(month, 0)
    if count >= auto.max_per_month:
        return
    unit_price = book.catalog.at(at).credit_price(state.currency, state.credit_price_usd)
    purchase = Purchase(
        purchase_id=auto_purchase_id(state.account_id, state.auto_purchases + 1),
        account_id=state.account_id,
        credits=auto.credits,
        price_cents=price_minor(auto.credits, unit_price, state.currency),
        currency=state.currency,
        created_at=at,
        auto=True,
    )
    book.create_purchase(purchase)
    auto.pending = purchase.purchase_id
    auto.requested[month] = count + 1
    state.auto_purchases += 1
    book.emit("Auto Top-up Requested", purchase_id=purchase.purchase_id,
              credits=format_credits(purchase.credits * MICRO), price=money(purchase.price_cents, purchase.currency))
    # Charged off-session to the saved card by the outbox's consumer (with Stripe; the signed-webhook
    # provider leaves it to the platform's payment integration), idempotent by the purchase's id.
    book.payment_call("charge_off_session", purchase, purchase.purchase_id, customer_id=state.payment_customer_id)


def auto_payment_settled(book: Book, purchase: Purchase, paid: bool) -> None:
    """The payment of an auto purchase: paid ends the pending purchase and the run of failures;
    failed ends it too, and three failures in a row turn auto top-up off (and tell the user).

    A purchase whose payment failed and then went through was no failure: the row keeps only the
    failures of the purchases after it. Auto top-up that the row turned off stays off until the user
    turns it on again: a late success adds its credits, it does not start charging the card again."""
    auto = book.state.auto_top_up
    if auto is None or not purchase.auto:
        return
    if auto.pending == purchase.purchase_id:
        auto.pending = None
    if paid:
        row = auto.failed
        auto.failed = row[row.index(purchase.purchase_id) + 1 :] if purchase.purchase_id in row else []
        auto.failures = len(auto.failed)
        return
    auto.failed.append(purchase.purchase_id)
    auto.failures += 1
    if auto.failures >= AUTO_FAILURES_TO_DISABLE and auto.enabled:
        auto.enabled, auto.disabled_by_failures = False, True
        book.emit("Auto Top-up Disabled", reason="payment_failed")
        book.mail("auto_top_up_disabled", failures=auto.failures, credits=format_credits(auto.credits * MICRO))


def _spend_cap(book: Book, at: datetime) -> None:
    """Once the month's charges reach the cap: running containers are settled and asked to stop,
    ``Spend Cap Reached`` and one mail; a new month, a higher cap, or corrections that bring the
    month's deductions back under the cap end it (a later crossing reaches it again)."""
    state = book.state
    month = month_key(at)
    if state.cap_reached and (state.cap_reached != month or state.spend_cap is None):
        state.cap_reached = None  # a new month, or no cap any more
    cap = state.spend_cap
    if cap is not None and state.cap_reached == month and spent_this_month(book, at) < cap:
        state.cap_reached = None  # corrections brought the month's deductions back under the cap
    if cap is None or state.cap_reached == month:
        return
    if spent_this_month(book, at) + book.accrued(at) < cap:
        return
    # Running usage is deducted now, so the month's charges are what they are at the cap.
    debt_before = state.debt
    accrual.settle_everything(book, at)
    overuse.flush_event(book, at, "spend_cap_settlement", debt_before)
    spent = spent_this_month(book, at)
    if spent < cap:
        return
    state.cap_reached = month
    running = accrual.running_container_ids(book)
    if running:
        book.emit("Stop Containers Requested", container_ids=running, reason=SPEND_CAP)
    book.emit("Spend Cap Reached", cap=format_credits(cap), spent=format_credits(spent))
    book.mail("spend_cap_reached", cap=format_credits(cap), spent=format_credits(spent))


def capped(book: Book, at: datetime) -> bool:
    return book.state.cap_reached == month_key(at)


def close(book: Book) -> list[Container]:
    """The end of every change: the controls evaluated as of the account's clock, the aggregates
    brought in step, and when the account next needs a check; returns the changed containers."""
    evaluate(book, book.state.as_of)
    changed = book.sync()
    book.state.next_check_at = forecast.next_check(book.state, book.catalog)
    return changed
