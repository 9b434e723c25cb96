"""Low-credit mail: one SQS message ``{"account_id", "at"}`` per check (after a deduction, at a
container start, by the periodic check), evaluated by
:func:`billing.services.low_balance.maybe_send_low_balance_mail`. At most one mail per purchase
cycle, even when checks run concurrently. A failed message is retried alone (partial batch failures)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.domain.events import parse_message
from billing.observability import logger, metrics, tracer
from billing.services.low_balance import LowBalanceCheck, maybe_send_low_balance_mail

processor = BatchProcessor(event_type=EventType.SQS)
deps = wiring.Wiring()


def check_record(record: SQSRecord) -> None:
    check = parse_message(record.body, LowBalanceCheck, "low balance check")
    decision = maybe_send_low_balance_mail(
        check.account_id, check.at, deps.get(wiring.ledger), deps.get(wiring.mail_sender),
        deps.get(wiring.publisher), deps.get(wiring.clock),
    )
    logger.info("low balance checked", account_id=check.account_id, sent=decision.sent, reason=decision.reason)
    if decision.sent:
        metrics.add_metric(name="LowBalanceMails", unit="Count", value=1)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = process_partial_response(event=event, record_handler=check_record, processor=processor, context=context)
    return dict(response)
