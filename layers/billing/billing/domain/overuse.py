"""Overuse: when credits run out, the final settlement and what the platform is asked to do.

A deduction that runs into debt, or usage accrued by running containers that reaches the available
balance, ends the account's credits: everything is settled up to then, every available credit is
spent and the rest recorded as debt; the account is marked exhausted; running containers are asked
to stop and containers whose storage is billed to become inactive. This happens once, on entering
the exhausted state; later usage (the platform's stops) adds to the debt.
"""

from __future__ import annotations

from datetime import datetime

from billing.domain import accrual
from billing.domain.amounts import format_credits
from billing.domain.clock import month_key
from billing.domain.posting import Book

EXHAUSTED = "credits_exhausted"


def exhaust(book: Book, at: datetime) -> None:
    """The final settlement up to ``at``; the stop, inactivation and exhaustion events. When the
    account's accruing containers are too many for one change, the ones not reached here are settled
    and asked to stop by the work queue (:func:`finish_exhaustion` on each chunk)."""
    newly = not book.state.exhausted
    book.state.exhausted = True
    finish_exhaustion(book, at, newly)
    if not newly:
        return
    if book.containers.complete(book.state):
        book.emit("Credits Exhausted", debt=format_credits(book.state.debt))
    else:  # the last chunk says Credits Exhausted, with the debt of the whole final settlement
        reached = [c.container_id for c in book.containers.reachable(book.state)]
        book.work("final_settlement", at, skip=reached)


def finish_exhaustion(book: Book, at: datetime, newly: bool = True, skip: frozenset[str] = frozenset()) -> None:
    """Settle the containers this change reaches up to ``at`` (into debt) and ask the platform to
    stop the running ones and inactivate those whose storage is billed (but those in ``skip``,
    which the change that ended the credits asked about already)."""
    accrual.settle_everything(book, at)
    book.flush(at, "final_settlement")
    running = [cid for cid in accrual.running_container_ids(book) if cid not in skip]
    if running:
        book.emit("Stop Containers Requested", container_ids=running, reason=EXHAUSTED)
    if newly:
        for cid in accrual.storage_billed_container_ids(book, at):
            if cid not in skip:
                book.emit("Container Inactivation Requested", container_id=cid, reason=EXHAUSTED)


def end_of_final_settlement(book: Book) -> None:
    """The last chunk of a final settlement through the work queue: the debt is now final."""
    if book.state.exhausted:
        book.emit("Credits Exhausted", debt=format_credits(book.state.debt))


def flush_event(book: Book, at: datetime, reason: str, debt_before: int) -> None:
    """Deduct what an event settled; a deduction that runs into debt triggers the final settlement."""
    book.flush(at, reason)
    if book.state.debt > debt_before and not book.state.exhausted:
        exhaust(book, max(at, book.state.as_of))


def check(book: Book, at: datetime) -> None:
    """The forecast check: running usage that has reached the available balance ends the credits."""
    state = book.state
    book.sync()
    if state.exhausted or not state.accrual.running or state.month_closing is not None:
        return  # (while a month closes in chunks, the aggregates still hold the old month's usage)
    if book.accrued(at) >= state.available(at):
        exhaust(book, at)


def ask_to_stop_again(book: Book, container_id: str, at: datetime) -> None:
    """A container started while the account is exhausted, or while its spend cap is reached, is
    asked to stop (once per event)."""
    if book.emitted("Stop Containers Requested"):
        return
    if book.state.exhausted:
        book.emit("Stop Containers Requested", container_ids=[container_id], reason=EXHAUSTED)
    elif book.state.cap_reached == month_key(at):
        book.emit("Stop Containers Requested", container_ids=[container_id], reason="spend_cap")
