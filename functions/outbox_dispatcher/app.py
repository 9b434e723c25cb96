"""The outbox dispatcher: the table's stream hands it every committed change that asked for effects
(outbound events, mails, calls to the payment provider); :func:`billing.services.outbox.dispatch`
delivers them in order, at least once. A failed record is reported (partial batch failure) and
retried from there; an effect refused for good is put on OutboxDLQ alone, with its reason, and the
record goes on."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.config import get_config
from billing.observability import logger, metrics, tracer
from billing.services.outbox import PaymentSide, dispatch

deps = wiring.Wiring()


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dispatch(
        event, deps.get(wiring.ledger), deps.get(wiring.publisher), deps.get(wiring.mail_sender),
        deps.get(wiring.work_queue), get_config().buy_credits_url, deps.get(wiring.outbox_dead_letters),
        PaymentSide(deps.get(wiring.payments), deps.get(wiring.clock)),
    )
