"""Settlement services: an incoming platform event, the monthly job and the periodic check, each
applied to one account exactly once through the :class:`~billing.store.ledger.Ledger`. What a
settlement asks of the outside world is written with it (the outbox) and delivered by the outbox
dispatcher (:mod:`billing.services.outbox`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing.domain import controls, forecast, members, rollover, settle
from billing.domain.account import Account
from billing.domain.events import (
    AccountCreated,
    AiUsageRecorded,
    ContainerCreated,
    ContainerDeleted,
    ContainerInactivated,
    ContainerLabeled,
    ContainerReactivated,
    ContainerResized,
    ContainerStarted,
    ContainerStopped,
    ContainerTrafficReported,
    Detail,
    MemberAdded,
    MemberRemoved,
    MemberRoleChanged,
    PlanChanged,
    PlatformEvent,
    check_event_time,
)
from billing.domain.posting import Book
from billing.observability import logger
from billing.store.ledger import Applied, Change, Ledger


def apply_event(book: Book, d: Detail) -> None:
    """The domain rule of each platform event (Account Created opens the account instead)."""
    t = d.occurred_at
    match d:
        case PlanChanged():
            settle.plan_changed(book, t, d.plan)
        case ContainerCreated():
            settle.container_created(book, t, d.container_id, d.storage_gb, d.labels, d.user_id)
        case ContainerLabeled():
            settle.container_labeled(book, t, d.container_id, d.labels)
        case ContainerStarted():
            settle.container_started(book, t, d.container_id, d.run_id, d.tier, d.code_supporter, d.user_id)
        case ContainerStopped():
            settle.container_stopped(book, t, d.container_id, d.run_id, d.traffic_bytes, d.user_id)
        case ContainerTrafficReported():
            settle.traffic_reported(book, t, d.container_id, d.run_id, d.traffic_bytes, d.user_id)
        case ContainerResized():
            settle.container_resized(book, t, d.container_id, d.storage_gb)
        case ContainerInactivated():
            settle.container_active(book, t, d.container_id, active=False)
        case ContainerReactivated():
            settle.container_active(book, t, d.container_id, active=True)
        case ContainerDeleted():
            settle.container_deleted(book, t, d.container_id)
        case AiUsageRecorded():
            settle.ai_used(book, t, d.feature, d.model, d.input_tokens, d.output_tokens, d.container_id, d.labels,
                           d.user_id)
        case MemberAdded():
            members.member_added(book, t, d.user_id, d.role, d.email)
        case MemberRemoved():
            members.member_removed(book, t, d.user_id)
        case MemberRoleChanged():
            members.member_role_changed(book, t, d.user_id, d.role)
        case _:
            raise AssertionError(f"no settlement for {type(d).__name__}")  # parse_platform_event admits no other


def _action(event: PlatformEvent, ledger: Ledger) -> Any:
    d = event.detail

    def action(account: Account | None) -> Change | None:
        if isinstance(d, AccountCreated):
            if account is not None:
                logger.info("account exists already", account_id=d.account_id)
                return None
            book = rollover.open_account(d.account_id, d.email, d.plan, d.occurred_at, ledger.catalog, d.event_id)
            return Change(book)
        book = Book(settle.require_existing_at(account, d.account_id, d.occurred_at), ledger.catalog, d.event_id)
        apply_event(book, d)
        return Change(book)

    return action


def settle_platform_event(event: PlatformEvent, ledger: Ledger, now: datetime, replayed: bool = False) -> Applied:
    """Apply a validated platform event exactly once (refused when dated too far from ``now``)."""
    d = event.detail
    check_event_time(d.occurred_at, now, replayed)
    if isinstance(d, MemberAdded | MemberRemoved | MemberRoleChanged):
        # A membership event is not idempotent on the state (a second Member Added of the same user is
        # refused): another delivery of one applied already is recognised by its record first.
        stored = ledger.stored(d.account_id, d.event_id)
        if stored is not None:
            return Applied(None, effects=stored.effects, duplicate=True, result=stored.result)
    container_id = getattr(d, "container_id", None)
    applied = ledger.apply(d.account_id, d.event_id, _action(event, ledger), [container_id] if container_id else [])
    logger.info(
        "event settled",
        detail_type=event.detail_type,
        account_id=d.account_id,
        event_id=d.event_id,
        duplicate=applied.duplicate,
        entries=len(applied.entries),
        attempts=applied.attempts,
    )
    return applied


def settle_account(account_id: str, at: datetime, event_id: str, ledger: Ledger) -> Applied:
    """The monthly job and the periodic check for one account: roll to ``at`` (month boundary:
    settle, expire, grant) and end the credits if running usage has reached the balance.
    Running it late, twice, or halfway and again gives the same result."""

    def action(account: Account | None) -> Change | None:
        if account is None:
            logger.warning("sweep for an unknown account", account_id=account_id)
            return None
        book = Book(account, ledger.catalog, event_id)
        due_before = account.state.next_check_at
        settle.sweep(book, at)
        # The controls the forecast timed (a spend cap, a member limit, an alert) are decided now, so a
        # check due at this very second is not mistaken for one with nothing to do.
        controls.evaluate(book, book.state.as_of)
        book.sync()
        if not book.entries and not book.effects and forecast.next_check(book.state, ledger.catalog) == due_before:
            return None  # no boundary crossed, no overuse, no mail, the same forecast: write nothing
        return Change(book)

    return ledger.apply(account_id, event_id, action)
