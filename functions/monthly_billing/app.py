"""The monthly job (the 1st, 00:00 UTC) and the periodic overuse check (every 5 minutes): enqueue
one sweep per account whose containers use resources. The sweeps settle in AccountSweepFunction."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.adapters import aws_client
from billing.events import parse_message
from billing.ledger import Ledger
from billing.observability import logger, metrics, tracer
from billing.settings import get_settings
from billing.sweeps import SweepRequest, accounts_using_resources, enqueue_sweeps


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event)


def handle(event: dict[str, Any], ledger: Ledger | None = None, sqs: Any | None = None) -> dict[str, Any]:
    request = parse_message(event, SweepRequest, "sweep request")
    settings = get_settings()
    sqs = sqs or aws_client("sqs")
    queued = enqueue_sweeps(accounts_using_resources(ledger or Ledger()), request, settings.sweep_queue_url or "", sqs)
    logger.info("sweeps queued", sweep=request.sweep, scheduled_time=str(request.scheduled_time), accounts=queued)
    metrics.add_metric(name="SweepsQueued", unit="Count", value=queued)
    return {"sweep": request.sweep, "queued": queued}
