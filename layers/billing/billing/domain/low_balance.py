"""The low-credit mail: when remaining credits last less than one hour at the current burn.

Checked after every deduction, at every container start and by the periodic check, inside the
change that triggered it: the check claims the account's purchase cycle in the same transaction
as the change, so concurrent triggers still send one mail, and the mail and ``Low Balance Notified``
leave through the outbox. While credit mail is off nothing is sent and the cycle is not used up.
"""

from __future__ import annotations

from datetime import datetime

from billing.domain.amounts import MICRO, format_credits, hours_left
from billing.domain.posting import Book

TEMPLATE = "low_balance"
SUGGESTED_HOURS = 24  # the mail suggests buying what is owed plus a day at the current burn


def suggested_purchase(remaining: int, burn: int, minimum: int, maximum: int) -> int:
    """Whole credits to buy: what is owed (remaining below zero) plus a day of usage at ``burn``
    (µcr an hour), rounded up, within the purchase limits."""
    needed = max(0, -remaining) + SUGGESTED_HOURS * burn
    return min(maximum, max(minimum, -(-needed // MICRO)))


def deducted(book: Book) -> bool:
    return any(entry.type in ("deduction", "debt") for entry in book.entries)


def check(book: Book, at: datetime) -> bool:
    """Send the cycle's mail when remaining < one hour of burn (burn > 0); True when it was sent."""
    state = book.state
    if not state.credit_mail or state.mail_sent_cycle == state.mail_cycle:
        return False
    if state.month_closing is not None:
        return False  # the aggregates still hold the old month's usage (paid by its own lots)
    moment = max(at, state.as_of)
    remaining, burn = state.available(moment) - book.accrued(moment), book.hourly_burn(moment)
    if burn <= 0 or remaining >= burn:
        return False
    state.mail_sent_cycle = state.mail_cycle
    hours = hours_left(remaining, burn)
    book.emit("Low Balance Notified", remaining=format_credits(remaining), hours_left=hours)
    version = book.catalog.at(moment)
    buy = suggested_purchase(remaining, burn, version.purchase_min_credits, version.purchase_max_credits)
    book.mail(TEMPLATE, remaining=format_credits(remaining), hourly_burn=format_credits(burn), hours_left=hours,
              buy=buy)
    return True
