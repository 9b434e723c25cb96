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
from billing.domain.posting import Book
from billing.domain.projection import Projection

EXHAUSTED = "credits_exhausted"


def exhaust(book: Book, at: datetime) -> None:
    """The final settlement up to ``at``; the stop, inactivation and exhaustion events."""
    accrual.settle_everything(book, at)
    book.flush(at, "final_settlement")
    newly = not book.state.exhausted
    book.state.exhausted = True
    running = accrual.running_container_ids(book)
    if running:
        book.emit("Stop Containers Requested", container_ids=running, reason=EXHAUSTED)
    if newly:
        for cid in accrual.storage_billed_container_ids(book, at):
            book.emit("Container Inactivation Requested", container_id=cid, reason=EXHAUSTED)
        book.emit("Credits Exhausted", debt=format_credits(book.state.debt))


def flush_event(book: Book, at: datetime, reason: str, debt_before: int) -> None:
    """Deduct what an event settled; a deduction that runs into debt triggers the final settlement."""
    book.flush(at, reason)
    if book.state.debt > debt_before and not book.state.exhausted:
        exhaust(book, max(at, book.state.as_of))


def check(book: Book, at: datetime) -> None:
    """The periodic check: running usage that has reached the available balance ends the credits."""
    state = book.state
    if state.exhausted or not accrual.running_container_ids(book):
        return
    if Projection(state, book.catalog, at).accrued >= state.available(at):
        exhaust(book, at)


def ask_to_stop_again(book: Book, container_id: str) -> None:
    """A container started while the account is exhausted is asked to stop (once per event)."""
    if book.state.exhausted and not book.emitted("Stop Containers Requested"):
        book.emit("Stop Containers Requested", container_ids=[container_id], reason=EXHAUSTED)
