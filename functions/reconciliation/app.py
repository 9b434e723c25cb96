"""Reconciliation: every account's stored balance and aggregates checked against its ledger, read-only
and at a bounded read rate (:mod:`billing.services.reconcile`); daily by its schedule and on demand
(``{"accounts": [...]}`` checks only those). Near its timeout it continues in an asynchronous
invocation of itself; the last one publishes ``Reconciliation Finished`` and the metrics."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.observability import logger, metrics, tracer
from billing.services.reconcile import scheduled_run

deps = wiring.Wiring()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ledger = deps.get(wiring.ledger)
    invoker = deps.get(wiring.function_invoker)
    return scheduled_run(
        event,
        context.aws_request_id,
        ledger.models,
        ledger.catalog,
        publish=deps.get(wiring.publisher).publish,
        continue_with=lambda payload: invoker.invoke_async(context.invoked_function_arn, payload),
        remaining_ms=context.get_remaining_time_in_millis,
        read_rate=deps.get(wiring.reconciliation_read_rate),
    )
