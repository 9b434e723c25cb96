"""Settlement services: an incoming platform event, the monthly job and the periodic check,
each applied to one account exactly once through the :class:`~billing.ledger.Ledger`, with the
resulting events published afterwards (again on a repeat, so a crash between commit and publish
loses nothing: consumers of ``billing`` events must tolerate a repeat)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from billing import engine
from billing.adapters import EventPublisher, LowBalanceChecks
from billing.engine import Book
from billing.errors import BillingError
from billing.events import (
    AccountCreated,
    AiUsageRecorded,
    ContainerCreated,
    ContainerFact,
    ContainerResized,
    ContainerStarted,
    ContainerStopped,
    ContainerTrafficReported,
    PlanChanged,
    PlatformEvent,
    parse_platform_event,
)
from billing.ledger import Applied, Ledger
from billing.model import AccountState, Container
from billing.observability import logger, metrics
from billing.settings import get_settings


def _on_account(ledger: Ledger, d: AccountCreated) -> Callable[[AccountState | None], Book | None]:
    def action(state: AccountState | None) -> Book | None:
        if state is not None:
            logger.info("account exists already", account_id=d.account_id)
            return None
        return engine.open_account(d.account_id, d.email, d.plan, d.occurred_at, ledger.catalog, d.event_id)

    return action


def _with_book(
    ledger: Ledger, event_id: str, account_id: str, apply: Callable[[Book], object]
) -> Callable[[AccountState | None], Book]:
    def action(state: AccountState | None) -> Book:
        book = Book(engine.require(state, account_id), ledger.catalog, event_id)
        apply(book)
        return book

    return action


def _storage_change(d: ContainerFact | ContainerResized, detail_type: str) -> Callable[[Container], None]:
    at = d.occurred_at
    if isinstance(d, ContainerResized):
        gb = d.storage_gb

        def resize(c: Container) -> None:
            c.sizes = sorted([*c.sizes, (at, gb)], key=lambda s: s[0])

        return resize
    if detail_type == "Container Deleted":

        def delete(c: Container) -> None:
            c.deleted_at = min(c.deleted_at or at, at)

        return delete
    active = detail_type == "Container Reactivated"

    def toggle(c: Container) -> None:
        c.activity = sorted([*c.activity, (at, active)], key=lambda s: s[0])

    return toggle


def action_for(event: PlatformEvent, ledger: Ledger) -> Callable[[AccountState | None], Book | None]:
    """The engine call for one validated platform event."""
    d = event.detail
    t = d.occurred_at
    kind = event.detail_type

    def book_action(apply: Callable[[Book], object]) -> Callable[[AccountState | None], Book]:
        return _with_book(ledger, d.event_id, d.account_id, apply)

    if isinstance(d, AccountCreated):
        return _on_account(ledger, d)
    if isinstance(d, PlanChanged):
        return book_action(lambda b: engine.change_plan(b, t, d.plan))
    if isinstance(d, ContainerCreated):
        return book_action(lambda b: engine.container_created(b, t, d.container_id, d.storage_gb))
    if isinstance(d, ContainerStarted):
        return book_action(
            lambda b: engine.container_started(b, t, d.container_id, d.run_id, d.tier, d.code_supporter)
        )
    if isinstance(d, ContainerStopped):
        return book_action(lambda b: engine.container_stopped(b, t, d.container_id, d.run_id, d.traffic_bytes))
    if isinstance(d, ContainerTrafficReported):
        return book_action(lambda b: engine.traffic_reported(b, t, d.container_id, d.run_id, d.traffic_bytes))
    if isinstance(d, ContainerResized | ContainerFact):
        reason = kind.lower().replace(" ", "_")
        change = _storage_change(d, kind)
        return book_action(lambda b: engine.storage_fact(b, t, d.container_id, change, reason))
    if isinstance(d, AiUsageRecorded):
        return book_action(
            lambda b: engine.ai_used(b, t, d.feature, d.model, d.input_tokens, d.output_tokens, d.container_id)
        )
    raise AssertionError(f"no settlement for {kind}")  # parse_platform_event admits no other event


def low_balance_checks() -> LowBalanceChecks:
    return LowBalanceChecks(get_settings().low_balance_queue_url)


def settle_platform_event(
    event: PlatformEvent, ledger: Ledger, publisher: EventPublisher, checks: LowBalanceChecks | None = None
) -> Applied:
    """Apply a validated platform event exactly once, publish what it asks of the platform, and
    have the low-credit mail checked after a deduction or a container start."""
    d = event.detail
    applied = ledger.apply(d.account_id, d.event_id, action_for(event, ledger))
    logger.info(
        "event settled",
        detail_type=event.detail_type,
        account_id=d.account_id,
        event_id=d.event_id,
        duplicate=applied.duplicate,
        entries=len(applied.entries),
        attempts=applied.attempts,
    )
    if applied.outbox:
        publisher.publish(applied.outbox)
    deducted = any(e.type in ("deduction", "debt") for e in applied.entries)
    if not applied.duplicate and (deducted or event.detail_type == "Container Started"):
        (checks or low_balance_checks()).enqueue(d.account_id, d.occurred_at)
    return applied


def handle_platform_event(
    raw: dict[str, Any],
    sources: tuple[str, ...],
    ledger: Ledger | None = None,
    publisher: EventPublisher | None = None,
) -> dict[str, Any]:
    """What an EventBridge-triggered handler does: validate, settle exactly once, publish.

    An invalid event is logged with its reason and raised, so the invocation fails and the event
    ends in the function's dead-letter queue; nothing of it is applied."""
    try:
        parsed = parse_platform_event(raw, sources)
        applied = settle_platform_event(
            parsed, ledger or Ledger(), publisher or EventPublisher(get_settings().event_bus_name)
        )
    except BillingError as exc:
        detail = raw.get("detail") if isinstance(raw, dict) else None
        event_id = detail.get("event_id") if isinstance(detail, dict) else None
        logger.error("event rejected", reason=exc.message, code=exc.code, event_id=event_id)
        metrics.add_metric(name="EventsRejected", unit="Count", value=1)
        raise
    metrics.add_metric(name="EventsSettled", unit="Count", value=1)
    return {"event_id": parsed.detail.event_id, "duplicate": applied.duplicate, "entries": len(applied.entries)}


def settle_account(
    account_id: str,
    at: datetime,
    event_id: str,
    ledger: Ledger,
    publisher: EventPublisher,
    checks: LowBalanceChecks | None = None,
) -> Applied:
    """The monthly job and the periodic check for one account: roll to ``at`` (month boundary:
    settle, expire, grant) and end the credits if running usage has reached the balance.
    Running it late, twice, or halfway and again gives the same result."""

    def action(state: AccountState | None) -> Book | None:
        if state is None:
            logger.warning("sweep for an unknown account", account_id=account_id)
            return None
        book = Book(state, ledger.catalog, event_id)
        engine.monthly_due(book, at)
        if not book.entries and not book.outbox:
            return None  # no boundary crossed and no overuse: write nothing
        return book

    applied = ledger.apply(account_id, event_id, action)
    if applied.outbox:
        publisher.publish(applied.outbox)
    state = applied.state or ledger.load(account_id)
    if state is not None and any(c.running_runs for c in state.containers.values()):
        (checks or low_balance_checks()).enqueue(account_id, at)  # the periodic check
    return applied
