"""Settles one account per sweep message up to the sweep's time: month boundary (settle, expire,
grant) and the overuse check (:func:`billing.services.settlement.settle_account`). A failed message
is retried alone (partial batch failures)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.domain.events import parse_message
from billing.observability import logger, metrics, tracer
from billing.services.settlement import settle_account
from billing.services.sweeps import AccountSweep

processor = BatchProcessor(event_type=EventType.SQS)
deps = wiring.Wiring()


def sweep_record(record: SQSRecord) -> None:
    sweep = parse_message(record.body, AccountSweep, "sweep message")
    applied = settle_account(sweep.account_id, sweep.at, sweep.event_id, deps.get(wiring.ledger))
    logger.info("account swept", account_id=sweep.account_id, sweep=sweep.sweep, entries=len(applied.entries))


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=sweep_record, processor=processor, context=context)
