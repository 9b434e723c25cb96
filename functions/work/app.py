"""The work queue's consumer: shard pages of the monthly job and the forecast checks, account sweeps,
and chunks of account-wide container work (:func:`billing.services.sweeps.handle_work`). A failed
message is retried alone (partial batch failures)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.observability import logger, metrics, tracer
from billing.services.sweeps import handle_work

processor = BatchProcessor(event_type=EventType.SQS)
deps = wiring.Wiring()


def work_record(record: SQSRecord) -> None:
    handle_work(record.body, deps.get(wiring.ledger), deps.get(wiring.work_queue))


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=work_record, processor=processor, context=context)
