"""The schedules: the month boundary (the 1st, 00:00 UTC) and the periodic check of the accounts whose
forecast says a check is due. Each puts one page message per index shard on the work queue
(:func:`billing.services.sweeps.queue_sweeps`); WorkFunction does the rest, a page at a time."""

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
    return queue_sweeps(event, deps.get(wiring.work_queue))
