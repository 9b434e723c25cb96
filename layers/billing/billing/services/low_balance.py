"""The low-credit mail: one check per SQS message ``{"account_id", "at"}`` (queued after a
deduction, at a container start, and by the periodic check).

The mail goes out when the remaining credits (available less accrued usage, as the balance route
shows them) are below one hour of the current burn, at most once per purchase cycle: the cycle is
claimed (atomically, in the ledger) before the mail is sent, so a crash between the two loses that
cycle's mail rather than risk a second one. Free of pydantic, like the settlement path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from msgspec import Meta

from billing.adapters import EventPublisher, MailSender
from billing.config import get_config
from billing.domain.amounts import format_credits, hours_left
from billing.domain.clock import Clock, utc_now
from billing.domain.events import Message, UtcTime
from billing.domain.model import AccountState
from billing.domain.posting import Book
from billing.domain.projection import project
from billing.observability import logger
from billing.store import keys
from billing.store.ledger import Change, Ledger


class LowBalanceCheck(Message, frozen=True, kw_only=True):
    """A low-credit mail check (the notifier's SQS message)."""

    account_id: Annotated[str, Meta(min_length=1, max_length=128)]
    at: UtcTime | None = None  # the check's moment (event time); None: now


@dataclass
class MailDecision:
    sent: bool
    reason: str
    remaining: int = 0
    hourly_burn: int = 0
    hours_left: float | None = None
    message_id: str | None = None


def low_balance_position(state: AccountState, ledger: Ledger, at: datetime) -> tuple[int, int]:
    """(remaining, hourly burn) at ``at``: available - accrued, as the balance route shows them."""
    seen = project(state, ledger.catalog, at)
    return seen.remaining, seen.hourly_burn


def maybe_send_low_balance_mail(
    account_id: str,
    at: datetime | None,
    ledger: Ledger,
    mail_sender: MailSender,
    publisher: EventPublisher,
    clock: Clock = utc_now,
) -> MailDecision:
    """Send the cycle's low-credit mail when remaining < one hour of burn (burn > 0), at most once."""
    moment = at or clock()
    state = ledger.load(account_id)
    if state is None:
        logger.warning("low balance check for an unknown account", account_id=account_id)
        return MailDecision(False, "unknown_account")
    remaining, burn = low_balance_position(state, ledger, moment)
    hours = hours_left(remaining, burn)
    decision = MailDecision(False, "", remaining, burn, hours)
    if not state.credit_mail:
        decision.reason = "credit_mail_off"
    elif burn <= 0 or remaining >= burn:
        decision.reason = "balance_sufficient"
    elif state.mail_sent_cycle == state.mail_cycle:
        decision.reason = "already_sent_this_cycle"
    if decision.reason:
        return decision
    cycle = state.mail_cycle
    event_id = keys.low_balance_mail_event_id(account_id, cycle)

    def claim(current: AccountState | None) -> Change | None:
        if current is None or not current.credit_mail or current.mail_cycle != cycle:
            return None
        if current.mail_sent_cycle == cycle:
            return None
        current.mail_sent_cycle = cycle
        book = Book(current, ledger.catalog, event_id)
        book.emit("Low Balance Notified", remaining=format_credits(remaining), hours_left=hours)
        return Change(book, result={"to": current.email})

    applied = ledger.apply(account_id, event_id, claim)
    if applied.duplicate or not applied.result:
        decision.reason = "claimed_elsewhere"
        return decision
    settings = get_config()
    left = f"about {hours} hours" if hours is not None else "unknown"
    body = (
        "Your credits are running low.\n\n"
        f"Remaining credits: {format_credits(remaining)}\n"
        f"Estimated time left at the current usage: {left}\n\n"
        f"Buy credits: {settings.buy_credits_url}\n"
    )
    decision.message_id = mail_sender.send(applied.result["to"], "Your credits are running low", body)
    publisher.publish(applied.outbox)
    decision.sent, decision.reason = True, "sent"
    logger.info("low balance mail sent", account_id=account_id, cycle=cycle, remaining=remaining, burn=burn)
    return decision
