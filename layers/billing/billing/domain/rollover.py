"""Time passing over an account: month boundaries, expiries, the monthly grant, forgetting.

A month boundary is a fact of time: whatever touches an account after one first settles its
containers up to the boundary (as of the month's last second, so that month's credits pay), expires
what is due, grants the new month's lot and starts the traffic allowance again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from billing.domain import accrual, lots
from billing.domain.catalog import PriceCatalog
from billing.domain.clock import SECOND, month_key, next_month_start
from billing.domain.model import SCHEMA, AccountState, Plan
from billing.domain.posting import Book

PRUNE_AFTER = timedelta(days=40)


def open_account(
    account_id: str, email: str, plan: Plan, at: datetime, catalog: PriceCatalog, event_id: str,
    credit_price_usd: str | None = None,
) -> Book:
    """A new account gets the full monthly credits of its plan for the month it is created in."""
    state = AccountState(
        schema=SCHEMA,
        account_id=account_id,
        email=email,
        created_at=at,
        plans=[(at, plan)],
        as_of=at,
        credit_price_usd=credit_price_usd or str(catalog.at(at).credit_price_usd),
        usage_legacy=False,
    )
    book = Book(state, catalog, event_id)
    grant_monthly(book, at)
    return book


def advance_to(book: Book, moment: datetime) -> None:
    """Roll the account forward to ``moment``: settle at each month boundary, expire, grant.

    Containers are settled to the boundary when this change can reach them all (see
    :class:`~billing.domain.account.Containers`); otherwise the month's closing goes to the work
    queue, and a container not settled yet pays its part of the month, when it is, from what that
    month's lots had left (written off, then taken back)."""
    state = book.state
    while moment >= next_month_start(state.as_of):
        boundary = next_month_start(state.as_of)
        accrual.settle_everything(book, boundary)
        book.flush(boundary - SECOND, "month_end_settlement")
        if not book.containers.complete(state):
            book.work("month_close", boundary)
            state.month_closing = boundary  # the overuse check waits for the last chunk
        expire(book, boundary)
        grant_monthly(book, boundary)
        state.as_of = boundary
        prune(state, boundary)
    expire(book, moment)
    if moment > state.as_of:
        state.as_of = moment


def advance_if_current(book: Book, at: datetime) -> None:
    """Roll to an event's time unless the event is late (older than the account's clock): a late
    event is applied in the past and rolls nothing."""
    if at >= book.state.as_of:
        advance_to(book, at)


def months_behind(state: AccountState, moment: datetime) -> int:
    """How many month boundaries lie between the account's clock and ``moment``."""
    count, boundary = 0, next_month_start(state.as_of)
    while boundary <= moment:
        count, boundary = count + 1, next_month_start(boundary)
    return count


def expire(book: Book, until: datetime) -> None:
    for lot in lots.expire_lots(book.state, until):
        if lot.expired:
            assert lot.expires_at is not None
            book.record("expiry", lot.expired, lot.expires_at, f"{lot.kind}_credits_expired", lot_id=lot.lot_id)


def grant_monthly(book: Book, month_begins: datetime) -> None:
    """The plan's monthly credits, valid to the end of the month (the plan in effect at ``month_begins``)."""
    plan = book.state.plan_at(month_begins)
    book.grant(
        "monthly",
        book.catalog.at(month_begins).monthly_micro(plan),
        month_begins,
        next_month_start(month_begins),
        f"monthly_credits_{plan}",
        lot_id=f"monthly-{month_key(month_begins)}",
    )


def prune(state: AccountState, now: datetime) -> None:
    """Forget what no late event can touch any more (the ledger keeps the history)."""
    horizon = now - PRUNE_AFTER
    state.lots = [
        lot
        for lot in state.lots
        if not ((lot.closed or lot.remaining == 0) and (lot.expires_at or lot.granted_at) < horizon)
    ]
    keep = {month_key(now), month_key(now - SECOND)}
    state.traffic_used = {m: b for m, b in state.traffic_used.items() if m in keep}
    state.month_charged = {m: b for m, b in state.month_charged.items() if m in keep}
    state.member_spent = {m: b for m, b in state.member_spent.items() if m in keep}
    if state.auto_top_up:
        state.auto_top_up.requested = {m: n for m, n in state.auto_top_up.requested.items() if m in keep}
    state.check_ins = state.check_ins[-40:]
