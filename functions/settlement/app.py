"""Settlement: the FIFO settlement queue's consumer, one account's events in their order
(:func:`billing.services.intake.settle_queued`). An event the account refuses (no such account,
usage from before its creation) goes to the platform events' dead-letter queue with its reason; a
transient failure fails the record and, as FIFO requires, the rest of its account's records in the
batch, which are retried in order. The time bounds apply as of the intake's acceptance of the event
(the queued message's ``AcceptedAt``), not the settlement's own clock."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.domain.errors import BillingError
from billing.observability import logger, metrics, tracer
from billing.services.intake import ACCEPTED_AT, dead_letter, settle_queued

processor = SqsFifoPartialProcessor(skip_group_on_error=True)
deps = wiring.Wiring()


def settle_record(record: SQSRecord) -> None:
    accepted = record.message_attributes[ACCEPTED_AT]  # set by the intake only (the queue is internal)
    try:
        settle_queued(record.body, deps.get(wiring.ledger), deps.get(wiring.clock)(),
                      accepted.string_value if accepted is not None else None)
    except BillingError as exc:
        if exc.transient:
            raise
        dead_letter(record.body, exc, deps.get(wiring.dead_letters))


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = process_partial_response(event=event, record_handler=settle_record, processor=processor, context=context)
    return dict(response)
