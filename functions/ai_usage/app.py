"""AI usage: every ``AI Usage Recorded`` event (Snap, Side Chat, AI Supporter) is deducted at once,
one line per use at the token prices of the model it names, exactly once per ``event_id``
(:func:`billing.services.settlement.handle_platform_event`).

An invalid event (unknown model, negative tokens, a missing field...) is logged with its reason and
raised, so the invocation fails and the event ends in the function's dead-letter queue; nothing of it
is applied.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.observability import logger, metrics, tracer
from billing.services.settlement import handle_platform_event

SOURCES = ("platform.ai",)
deps = wiring.Wiring()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_platform_event(event, SOURCES, deps.get(wiring.ledger), deps.get(wiring.clock)())
