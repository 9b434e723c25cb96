"""Platform events in, in two steps, so that one account's events are applied one at a time:

1. :func:`accept_platform_event` (the EventBridge rules' target) validates an event (its shape, its
   time, the tier or model it prices) and queues it on the FIFO settlement queue, with the account
   as message group: a refused event fails the invocation and ends in the dead-letter queue.
2. :func:`settle_queued` (the queue's consumer) settles it, in order within its account, so a burst
   on one account is applied without concurrent changes competing for it. What only the account can
   tell (no such account, usage before its creation) is refused here: the event is put on the same
   dead-letter queue, with the reason, and the queue moves on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import datetime
from typing import Any

from billing.adapters import MessageQueue
from billing.domain.catalog import PriceCatalog
from billing.domain.clock import format_time, parse_time
from billing.domain.errors import BillingError, InvalidInput
from billing.domain.events import (
    AiUsageRecorded,
    ContainerStarted,
    PlatformEvent,
    check_event_time,
    parse_platform_event,
)
from billing.observability import log_context, logger, metrics, refused, settlement_timer
from billing.services.settlement import settle_platform_event
from billing.store.ledger import Applied, Ledger

SOURCES = ("platform.accounts", "platform.containers", "platform.ai")
# The time the intake accepted an event, carried on its queued message: the settlement applies the
# time bounds with it, so a queue's delay or a clock's skew never refuses an event the intake took.
# No caller can forge it: it is a message attribute on an internal queue, which only the intake may
# send to (template.yaml) besides the operator's replay, and the replay drops it.
ACCEPTED_AT = "AcceptedAt"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def message_group(account_id: str) -> str:
    """The account's FIFO message group (any account id, within SQS's 128 characters and alphabet)."""
    return "acct-" + _digest(account_id)[:48]


def _event_id_of(raw: Any) -> str | None:
    return _detail_field(raw, "event_id")


def _detail_field(raw: Any, name: str) -> str | None:
    detail = raw.get("detail") if isinstance(raw, dict) else None
    value = detail.get(name) if isinstance(detail, dict) else None
    return value if isinstance(value, str) else None


def event_log_context(raw: Any) -> Any:
    """The log keys of a platform event (as far as it has them): its account, its event id, and as
    correlation id the EventBridge event's ``id`` (the same in the intake and the settlement)."""
    correlation_id = raw.get("id") if isinstance(raw, dict) else None
    return log_context(_detail_field(raw, "account_id"), _event_id_of(raw),
                       correlation_id if isinstance(correlation_id, str) else None)


def _rejected(exc: BillingError, raw: Any) -> None:
    logger.error("event rejected", reason=exc.message, code=exc.code, event_id=_event_id_of(raw))
    refused(exc.code)


def check_priced(event: PlatformEvent, catalog: PriceCatalog) -> None:
    """An unknown tier or model is an error, never a free use."""
    d = event.detail
    if isinstance(d, ContainerStarted):
        catalog.at(d.occurred_at).tier(d.tier)
    elif isinstance(d, AiUsageRecorded):
        catalog.at(d.occurred_at).model(d.model)


def accept_platform_event(
    raw: Any, sources: tuple[str, ...], catalog: PriceCatalog, queue: MessageQueue, now: datetime
) -> dict[str, Any]:
    """Validate an EventBridge event and queue it for settlement in its account's order."""
    with event_log_context(raw):
        try:
            event = parse_platform_event(raw, sources)
            check_event_time(event.detail.occurred_at, now)
            check_priced(event, catalog)
        except BillingError as exc:
            _rejected(exc, raw)
            raise
        d = event.detail
        queue.send(json.dumps(raw), {ACCEPTED_AT: format_time(now)}, group=message_group(d.account_id),
                   dedup=_digest(d.event_id))
        metrics.add_metric(name="EventsAccepted", unit="Count", value=1)
        logger.info("event accepted", detail_type=event.detail_type)
        return {"event_id": d.event_id, "queued": True}


def accepted_time(value: str | None, now: datetime) -> datetime:
    """The intake's acceptance time of a queued event; ``now`` for a message without it (queued
    before it was carried, or replayed) or with one that cannot be read."""
    if value:
        with contextlib.suppress(ValueError):
            return parse_time(value)
        logger.warning("unreadable acceptance time: the settlement's clock checks the event", accepted_at=value[:40])
    return now


def settle_queued(body: str, ledger: Ledger, now: datetime, accepted_at: str | None = None) -> Applied:
    """Settle one queued event exactly once, its time bounds applied as of the intake's acceptance
    (``accepted_at``, else ``now``); a refusal is raised (see :func:`dead_letter`)."""
    try:
        raw = json.loads(body)
    except ValueError:
        raise InvalidInput("the queued event is not JSON") from None
    with event_log_context(raw):
        try:
            with settlement_timer():
                event = parse_platform_event(raw, SOURCES)
                applied = settle_platform_event(event, ledger, accepted_time(accepted_at, now))
        except BillingError as exc:
            if not exc.transient:
                _rejected(exc, raw)
            raise
        metrics.add_metric(name="EventsSettled", unit="Count", value=1)
        return applied


def dead_letter(body: str, error: BillingError, dead_letters: MessageQueue) -> None:
    """Put a refused event on the dead-letter queue with its reason, as Lambda's own DLQ does."""
    dead_letters.send(body, {"ErrorCode": error.code, "ErrorMessage": error.message[:1000]})
