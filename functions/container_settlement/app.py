"""Container settlement: every ``platform.containers`` event and the ``platform.accounts`` events.

An invalid event is logged with its reason and raised, so the invocation fails and the event ends
in the function's dead-letter queue; nothing of it is applied.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.adapters import EventPublisher
from billing.errors import BillingError
from billing.events import parse_platform_event
from billing.ledger import Ledger
from billing.observability import logger, metrics, tracer
from billing.settings import get_settings
from billing.settlement import settle_platform_event

SOURCES = ("platform.containers", "platform.accounts")


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event)


def handle(
    event: dict[str, Any], ledger: Ledger | None = None, publisher: EventPublisher | None = None
) -> dict[str, Any]:
    try:
        parsed = parse_platform_event(event, SOURCES)
        applied = settle_platform_event(
            parsed, ledger or Ledger(), publisher or EventPublisher(get_settings().event_bus_name)
        )
    except BillingError as exc:
        logger.error("event rejected", reason=exc.message, code=exc.code, event_id=_event_id(event))
        metrics.add_metric(name="EventsRejected", unit="Count", value=1)
        raise
    metrics.add_metric(name="EventsSettled", unit="Count", value=1)
    return {"event_id": parsed.detail.event_id, "duplicate": applied.duplicate, "entries": len(applied.entries)}


def _event_id(event: Any) -> Any:
    detail = event.get("detail") if isinstance(event, dict) else None
    return detail.get("event_id") if isinstance(detail, dict) else None
