"""The platform's events in (EventBridge rules on platform.accounts, platform.containers and
platform.ai): validated, then queued for settlement in their account's order
(:func:`billing.services.intake.accept_platform_event`).

An invalid or refused event (its shape, its time, an unknown tier or model) is logged with its reason
and raised, so the invocation fails and the event ends in the function's dead-letter queue; nothing
of it is applied.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.observability import logger, metrics, tracer
from billing.services.intake import SOURCES, accept_platform_event

deps = wiring.Wiring()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return accept_platform_event(
        event, SOURCES, deps.get(wiring.catalog), deps.get(wiring.settlement_queue), deps.get(wiring.clock)()
    )
