"""Settlement services: an incoming platform event, the monthly job and the periodic check, each
applied to one account exactly once through the :class:`~billing.store.ledger.Ledger`. What a
settlement asks of the outside world is written with it (the outbox) and delivered by the outbox
dispatcher (:mod:`billing.services.outbox`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing.domain import rollover, settle
from billing.domain.errors import BillingError
from billing.domain.events import (
    AccountCreated,
    AiUsageRecorded,
    ContainerCreated,
    ContainerDeleted,
    ContainerInactivated,
    ContainerReactivated,
    ContainerResized,
    ContainerStarted,
    ContainerStopped,
    ContainerTrafficReported,
    Detail,
    PlanChanged,
    PlatformEvent,
    check_event_time,
    parse_platform_event,
)
from billing.domain.model import AccountState
from billing.domain.posting import Book
from billing.observability import logger, metrics
from billing.store.ledger import Applied, Change, Ledger


def apply_event(book: Book, d: Detail) -> None:
    """The domain rule of each platform event (Account Created opens the account instead)."""
    t = d.occurred_at
    match d:
        case PlanChanged():
            settle.plan_changed(book, t, d.plan)
        case ContainerCreated():
            settle.container_created(book, t, d.container_id, d.storage_gb)
        case ContainerStarted():
            settle.container_started(book, t, d.container_id, d.run_id, d.tier, d.code_supporter)
        case ContainerStopped():
            settle.container_stopped(book, t, d.container_id, d.run_id, d.traffic_bytes)
        case ContainerTrafficReported():
            settle.traffic_reported(book, t, d.container_id, d.run_id, d.traffic_bytes)
        case ContainerResized():
            settle.container_resized(book, t, d.container_id, d.storage_gb)
        case ContainerInactivated():
            settle.container_active(book, t, d.container_id, active=False)
        case ContainerReactivated():
            settle.container_active(book, t, d.container_id, active=True)
        case ContainerDeleted():
            settle.container_deleted(book, t, d.container_id)
        case AiUsageRecorded():
            settle.ai_used(book, t, d.feature, d.model, d.input_tokens, d.output_tokens, d.container_id)
        case _:
            raise AssertionError(f"no settlement for {type(d).__name__}")  # parse_platform_event admits no other


def _action(event: PlatformEvent, ledger: Ledger) -> Any:
    d = event.detail

    def action(state: AccountState | None) -> Change | None:
        if isinstance(d, AccountCreated):
            if state is not None:
                logger.info("account exists already", account_id=d.account_id)
                return None
            book = rollover.open_account(d.account_id, d.email, d.plan, d.occurred_at, ledger.catalog, d.event_id)
            return Change(book)
        book = Book(settle.require_existing_at(state, d.account_id, d.occurred_at), ledger.catalog, d.event_id)
        apply_event(book, d)
        return Change(book)

    return action


def settle_platform_event(event: PlatformEvent, ledger: Ledger, now: datetime, replayed: bool = False) -> Applied:
    """Apply a validated platform event exactly once (refused when dated too far from ``now``)."""
    d = event.detail
    check_event_time(d.occurred_at, now, replayed)
    applied = ledger.apply(d.account_id, d.event_id, _action(event, ledger))
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


def handle_platform_event(
    raw: dict[str, Any], sources: tuple[str, ...], ledger: Ledger, now: datetime
) -> dict[str, Any]:
    """What an EventBridge-triggered handler does: validate, then settle exactly once.

    An invalid or refused event is logged with its reason and raised, so the invocation fails and
    the event ends in the function's dead-letter queue; nothing of it is applied. A transient failure
    is raised too, and the trigger retries it."""
    try:
        parsed = parse_platform_event(raw, sources)
        applied = settle_platform_event(parsed, ledger, now)
    except BillingError as exc:
        if exc.transient:
            raise
        detail = raw.get("detail") if isinstance(raw, dict) else None
        event_id = detail.get("event_id") if isinstance(detail, dict) else None
        logger.error("event rejected", reason=exc.message, code=exc.code, event_id=event_id)
        metrics.add_metric(name="EventsRejected", unit="Count", value=1)
        raise
    metrics.add_metric(name="EventsSettled", unit="Count", value=1)
    return {"event_id": parsed.detail.event_id, "duplicate": applied.duplicate, "entries": len(applied.entries)}


def settle_account(account_id: str, at: datetime, event_id: str, ledger: Ledger) -> Applied:
    """The monthly job and the periodic check for one account: roll to ``at`` (month boundary:
    settle, expire, grant) and end the credits if running usage has reached the balance.
    Running it late, twice, or halfway and again gives the same result."""

    def action(state: AccountState | None) -> Change | None:
        if state is None:
            logger.warning("sweep for an unknown account", account_id=account_id)
            return None
        book = Book(state, ledger.catalog, event_id)
        settle.sweep(book, at)
        if not book.entries and not book.effects:
            return None  # no boundary crossed, no overuse, no mail: write nothing
        return Change(book)

    return ledger.apply(account_id, event_id, action)
