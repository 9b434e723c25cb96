"""The monthly job (the 1st, 00:00 UTC) and the periodic overuse check (every 5 minutes): enqueue
one sweep per account whose containers use resources (:mod:`billing.services.sweeps`). The sweeps
settle in AccountSweepFunction."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.observability import logger, metrics, tracer
from billing.services.sweeps import queue_sweeps

deps = wiring.Wiring()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return queue_sweeps(event, deps.get(wiring.ledger), deps.get(wiring.sweep_queue))
